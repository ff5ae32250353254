"""Keep secrets on the machine (the one copy: nbdeploy.base.redact re-exports it).

Two guards. Names: an environment variable whose name looks like a secret is
never recorded, whatever its value. Values: every document nbdeploy writes is
scrubbed of the values of such variables, of passwords in URLs, of keys whose
shape gives them away (cloud keys, ``sk-...`` API keys, tokens, bearer tokens,
private-key blocks) and of random-looking literals given to a name like
``api_key``, ``token`` or ``secret`` - so a key written into a notebook cell, or a
token that reaches a record some other way (a SQL URL, a parameter, a log line),
is replaced by ``***`` before it touches disk.

What was scrubbed (its kind, never its value) is told to whoever asked with
:func:`recording` - the bundle build reports it per file.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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
    """``postgresql://u:pw@host/db`` -> ``postgresql://u:***@host/db``; a credential in the
    query (``?X-Amz-Signature=...``, ``?sig=...``, ``?token=...``) -> ``***`` too."""
    if "=" in url and "://" in url:
        url = _URL_QUERY_SECRET.sub(_mask_query_secret, url)
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


def _random(value: str) -> bool:
    """Whether a literal looks like a generated secret rather than a word, a name or a path:
    16+ characters without spaces, letters and digits mixed, about 3 bits per character or more."""
    if len(value) < 16 or not _HAS_DIGIT.search(value) or not _HAS_LETTER.search(value):
        return False
    if "://" in value or value.startswith(("/", "./", "~")) or _FILE_END.search(value):
        return False
    counts = Counter(value)
    entropy = -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values())
    return entropy >= 3.0


_HAS_DIGIT = re.compile(r"[0-9]")
_HAS_LETTER = re.compile(r"[A-Za-z]")
_FILE_END = re.compile(r"\.[A-Za-z]{2,5}$")
#: an unquoted value that is code (``key=sort_key_2024``, ``token=cfg.api_token``), not a literal
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_SNAKE = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)+")
#: a name whose last part says it holds a secret: api_key, AWS_SECRET_ACCESS_KEY, token, db_password
_SECRET_WORD = r"(?:[A-Za-z0-9]+[_\-])*(?:api_?key|key|token|secret|passw(?:or)?d|pwd|credentials?)"
_SECRET_KEY_NAME = re.compile(rf"^{_SECRET_WORD}$", re.IGNORECASE)
_ASSIGNED = re.compile(  # (only the name's last part is matched: the rest cannot change the verdict)
    r"""(?<![A-Za-z0-9])(?:api_?key|key|token|secret|passw(?:or)?d|pwd|credentials?)\b  # code, JSON, YAML, .env
    (?:\\?["'])?\s*(?::\s*[A-Za-z_][\w.]*\s*)?  # the closing quote of a dict key; a type annotation
    [:=]\s*
    (?:(?P<q>\\?["'])(?P<quoted>[^"'\\\s]+)(?P=q)|(?P<bare>[A-Za-z0-9+/=_\-.]+))""",
    re.IGNORECASE | re.VERBOSE,
)

_SHORTEST_KEY = 15  # no key shape or assigned secret fits in fewer characters (xoxb- + 10)
_AWS_PREFIXES = ("AKIA", "ASIA", "AIDA", "AROA", "AGPA", "ANPA", "ANVA", "AIPA")
#: (kind, substrings one of which the text must hold, pattern, the group that is the secret,
#: the group that must look random or None); the substrings spare the regex on most texts
KEY_SHAPES: tuple[tuple[str, tuple[str, ...], re.Pattern[str], int | str, str | None], ...] = (
    ("private key block", ("PRIVATE KEY-----",), re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----", re.S), 0, None),
    ("AWS access key id", _AWS_PREFIXES, re.compile(rf"\b(?:{'|'.join(_AWS_PREFIXES)})[0-9A-Z]{{16}}\b"), 0, None),
    ("API key (sk-...)", ("sk-", "sk_", "rk-", "rk_"), re.compile(r"\b(?:sk|rk)[-_](?P<k>[A-Za-z0-9_\-]{16,})"),
     0, "k"),
    ("GitHub token", ("gh", "github_pat_"),
     re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})"), 0, None),
    ("Slack token", ("xox",), re.compile(r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"), 0, None),
    ("Google API key", ("AIza",), re.compile(r"\bAIza[0-9A-Za-z_\-]{35}"), 0, None),
    ("JSON web token", ("eyJ",), re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
     0, None),
    ("bearer token", ("earer",), re.compile(r"\b[Bb]earer\s+(?P<t>[A-Za-z0-9\-._~+/]{16,}=*)"), "t", "t"),
)

#: what was scrubbed while :func:`recording` is active: {"kind", "count", "where"}
_FOUND: ContextVar[list[dict[str, Any]] | None] = ContextVar("nbdeploy_scrubbed", default=None)
_WHERE: ContextVar[str | None] = ContextVar("nbdeploy_scrubbed_where", default=None)


@contextmanager
def recording() -> Iterator[list[dict[str, Any]]]:
    """Collect what the scrubber replaces inside the block (kind and where, never the value)."""
    found: list[dict[str, Any]] = []
    token = _FOUND.set(found)
    try:
        yield found
    finally:
        _FOUND.reset(token)


@contextmanager
def scrubbing(where: str) -> Iterator[None]:
    """Name the file being scrubbed, for :func:`recording`."""
    token = _WHERE.set(where)
    try:
        yield
    finally:
        _WHERE.reset(token)


def _note(kind: str, count: int) -> None:
    found = _FOUND.get()
    if found is not None and count:
        found.append({"kind": kind, "count": count, "where": _WHERE.get()})


def _masker(kind: str, group: int | str, check: str | None) -> Callable[[re.Match[str]], str]:
    def mask(m: re.Match[str]) -> str:
        if check is not None and (not _random(m.group(check)) or _SNAKE.fullmatch(m.group(check))):
            return m.group(0)  # a word or a snake_case name (sk_learn_model_2024), not a key
        _note(kind, 1)
        whole, start, end = m.group(0), m.start(group) - m.start(0), m.end(group) - m.start(0)
        return whole[:start] + MASK + whole[end:]

    return mask


def _mask_assigned(m: re.Match[str]) -> str:
    group = "quoted" if m.group("quoted") is not None else "bare"
    value = m.group(group)
    if value == MASK or not _random(value) or (group == "bare" and _is_code(value)):
        return m.group(0)
    _note("secret assigned to a name", 1)
    start, end = m.start(group) - m.start(0), m.end(group) - m.start(0)
    return m.group(0)[:start] + MASK + m.group(0)[end:]


def _is_code(value: str) -> bool:
    return bool(_IDENTIFIER.fullmatch(value)) and ("_" in value or "." in value)


#: a URL's query parameter that carries a credential: pre-signed S3 (``X-Amz-Signature``,
#: ``X-Amz-Credential``, ``X-Amz-Security-Token``), GCS (``X-Goog-Signature``), Azure SAS
#: (``sig``), ``?token=``, ``?access_token=``, ``?api_key=``, ``?code=``: whoever holds the URL
#: holds the access, so the value never reaches a record (the name stays, for the reader)
_URL_QUERY_SECRET = re.compile(
    r"(?P<name>[?&;](?:[A-Za-z0-9]*[-_.])*"  # the secret word starts the name or one of its parts
    r"(?:signature|sig|token|key|apikey|secret|passw(?:or)?d|pwd|credential|auth|session|code)"
    r"[A-Za-z0-9_.\-]*=)(?P<value>[^&#\s\"'<>]{8,})",
    re.IGNORECASE,
)


def _mask_query_secret(m: re.Match[str]) -> str:
    if m["value"] == MASK:
        return m.group(0)
    _note("credential in a URL's query", 1)
    return f"{m['name']}{MASK}"


def _mask_url_password(m: re.Match[str]) -> str:
    if m["pw"] != MASK:
        _note("password in a URL", 1)
    return f"{m['scheme']}{m['user']}:{MASK}@"


def scrub_text(text: str, values: list[str] | None = None) -> str:
    if "://" in text:
        text = _URL_PASSWORD.sub(_mask_url_password, text)
        if "=" in text:
            text = _URL_QUERY_SECRET.sub(_mask_query_secret, text)
    for v in secret_values() if values is None else values:
        if v in text:
            _note("value of a secret environment variable", text.count(v))
            text = text.replace(v, MASK)
    if len(text) < _SHORTEST_KEY:
        return text
    for kind, hints, pattern, group, check in KEY_SHAPES:
        if any(h in text for h in hints):
            text = pattern.sub(_masker(kind, group, check), text)
    return _ASSIGNED.sub(_mask_assigned, text)


def scrub(obj: Any, values: list[str] | None = None) -> Any:
    """Return ``obj`` with every string scrubbed (dicts, lists and tuples walked); a random-looking
    string under a key named like a secret (``{"api_key": "..."}``) is masked as well."""
    vals = secret_values() if values is None else values
    if isinstance(obj, str):
        return scrub_text(obj, vals)
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(k, str) and isinstance(v, str) and _SECRET_KEY_NAME.match(k) and _random(v):
                _note("secret assigned to a name", 1)
                v = MASK
            out[scrub(k, vals) if isinstance(k, str) else k] = scrub(v, vals)
        return out
    if isinstance(obj, list | tuple):
        return [scrub(v, vals) for v in obj]
    return obj


#: what a serialized record must contain (lower-cased) for a secret to possibly be in it: plain
#: substring passes over a whole flush of the request log (a regex cost more than the request);
#: the AWS ids of users and roles (AIDA, AROA, ...) are not secrets and are left to the full scrub
_SUSPECT = tuple(h.lower().encode() for h in (
    "AKIA", "ASIA", "sk-", "sk_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "AIza",
    "eyJ", "bearer", "PRIVATE KEY",
    "key", "token", "secret", "passw", "pwd", "credential"))


def suspect(line: bytes, values: list[bytes]) -> bool:
    """Whether a serialized record may hold a secret: cheap enough for every request."""
    low = line.lower()
    if b"://" in low and b"@" in low:
        return True
    return any(h in low for h in _SUSPECT) or any(v in line for v in values)


#: a secret value made of these characters could be printed inside a number (0.123456789)
_NUMBER_TEXT = re.compile(rb"[0-9.eE+\-]+")


class KnownClean:
    """Strings searched once and found to hold no secret, so a logged payload made only of them
    and of numbers needs no search: a served model's categories and column names repeat, and
    a request's record is then "plain" on the event loop for a set lookup per value.

    A new string is searched (:func:`suspect`, as the writer searches a line) when it is seen;
    ``limit`` strings of at most ``longest`` characters are remembered, so memory stays bounded
    whatever clients send (past the limit a new string is searched each time; a longer one
    leaves its record to the writer's search). Numbers are clean unless one of this server's
    secret values could be read inside a number.
    """

    def __init__(self, secrets: list[bytes], limit: int = 4096, longest: int = 64) -> None:
        self._secrets = secrets
        self._seen: set[str] = set()
        self.limit = limit
        self.longest = longest
        numbers = not any(_NUMBER_TEXT.fullmatch(v) for v in secrets)
        #: the kinds of value that are clean without a look (bool and numbers print as JSON literals)
        self._scalars = frozenset({type(None), *((int, float, bool) if numbers else ())})
        self._names: list[str] = []  # the column names last found clean

    def string(self, value: str) -> bool:
        if value in self._seen:
            return True
        if len(value) > self.longest or not self._searched_clean(value):
            return False
        if len(self._seen) < self.limit:
            self._seen.add(value)
        return True

    @property
    def remembered(self) -> int:
        return len(self._seen)

    def schema(self, columns: Iterable[tuple[str, str, Iterable[Any] | None]]) -> bool:
        """Whether values that passed validation against these columns - (name, type, the
        categories a string column accepts, or None) - can hold no secret: numbers, booleans
        and training categories, each category and name searched here once. A free-text
        column, or a name like ``api_token``, makes the answer no."""
        for name, kind, categories in columns:
            if not self._searched_clean(name):
                return False
            if kind in ("double", "float", "long", "integer"):
                if int not in self._scalars:
                    return False
            elif kind == "string":
                if categories is None or not all(type(c) is str and self._searched_clean(c) for c in categories):
                    return False
            elif kind != "boolean":
                return False
        return True

    def outputs(self, outputs: Any) -> bool:
        """Whether a logged list of predictions can hold no secret (one number: one lookup)."""
        if type(outputs) is not list:
            return outputs is None
        scalars = self._scalars
        if len(outputs) == 1:
            return type(outputs[0]) in scalars or self.values(outputs)
        return scalars.issuperset(map(type, outputs)) or self.values(outputs)  # a batch's numbers: one C pass

    def _searched_clean(self, value: str) -> bool:
        """Searched now, as the writer searches a line, and found clean."""
        try:
            return not suspect(value.encode(), self._secrets)
        except UnicodeEncodeError:  # a lone surrogate: the writer's search decides
            return False

    def values(self, values: Iterable[Any]) -> bool:
        """Whether every item is None, a number the secrets cannot hide in, or a clean string."""
        seen, scalars = self._seen, self._scalars
        for v in values:
            kind = type(v)
            if kind is str:
                if v in seen or self.string(v):
                    continue
                return False
            if kind not in scalars:
                return False
        return True

    def payload(self, inputs: Any, outputs: Any) -> bool:
        """A record's logged ``inputs`` (MLflow's split form, as the log keeps a frame) and
        ``outputs`` (a list of scalars, or None): whether neither can hold a secret. Called for
        every logged request: a row costs a loop over its values and a set lookup per string."""
        if type(inputs) is not dict or len(inputs) != 2:
            return False
        names, rows = inputs.get("columns"), inputs.get("data")
        if type(names) is not list or type(rows) is not list:
            return False
        if names != self._names:  # a model's clients send the same columns: one comparison
            if not self.values(names):
                return False
            self._names = list(names)
        values = self.values
        for row in rows:
            if type(row) is not list or not values(row):
                return False
        return self.outputs(outputs)



def scrub_inputs(inputs: Any) -> Any:
    """A request's logged inputs, scrubbed: key shapes and URL passwords anywhere, and the
    random-looking values of a column named like a secret (``{"columns": [..., "api_token"],
    "data": [[..., "..."]]}``, or records ``[{"api_token": "..."}]``)."""
    if isinstance(inputs, dict) and isinstance(inputs.get("columns"), list) and isinstance(inputs.get("data"), list):
        secret_cols = {i for i, c in enumerate(inputs["columns"]) if isinstance(c, str) and _SECRET_KEY_NAME.match(c)}
        if secret_cols:
            rows = []
            for row in inputs["data"]:
                if isinstance(row, list):
                    row = [MASK if i in secret_cols and isinstance(v, str) and _random(v) else v
                           for i, v in enumerate(row)]
                rows.append(row)
            inputs = {**inputs, "data": rows}
    return scrub(inputs)
