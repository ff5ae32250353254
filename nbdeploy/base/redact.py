"""Keep secrets on the machine.

Two guards. Names: an environment variable whose name looks like a secret is
never recorded, whatever its value. Values: every document nbdeploy writes is
scrubbed of the values of such variables (and of passwords in URLs), so a token
that reaches a record some other way (a SQL URL, a parameter, a log line) is
still replaced by ``***`` before it touches disk.
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

SECRET_NAME = re.compile(
    r"(KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|PRIVATE|COOKIE|SIGNATURE)",
    re.IGNORECASE,
)
MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_MIN_SECRET_LEN = 8  # shorter values ("1", "true") are not secrets and would mangle text


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look like secrets, longest first."""
    env = os.environ if environ is None else environ
    vals = {v for k, v in env.items() if is_secret_name(k) and len(v) >= _MIN_SECRET_LEN}
    return sorted(vals, key=len, reverse=True)


def strip_url_password(url: str) -> str:
    """``postgresql://u:pw@host/db`` -> ``postgresql://u:***@host/db``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", url)
    if parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        netloc = f"{parts.username or ''}:{MASK}@{host}"
        return urlunsplit(parts._replace(netloc=netloc))
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", url)


def scrub_text(text: str, values: list[str] | None = None) -> str:
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    for v in secret_values() if values is None else values:
        if v in text:
            text = text.replace(v, MASK)
    return text


def scrub(obj: Any, values: list[str] | None = None) -> Any:
    """Return ``obj`` with every string scrubbed (dicts, lists and tuples walked)."""
    vals = secret_values() if values is None else values
    if isinstance(obj, str):
        return scrub_text(obj, vals)
    if isinstance(obj, dict):
        return {scrub(k, vals) if isinstance(k, str) else k: scrub(v, vals) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [scrub(v, vals) for v in obj]
    return obj
