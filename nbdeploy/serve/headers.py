"""Response header lines, rendered once and checked once: what the server writes after the status line.

A header name must be an HTTP token; a value may hold no control character but a tab (a CR
or LF would let a value end the header block and write a response of its own). Lines the
application sends again and again (its content types, the model version) are kept, so
that a request pays a dictionary lookup for them, not a check.
"""

from __future__ import annotations

import re

_BAD_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\\\"/\\[\\]?={} \t]')
#: the control characters but the tab, deleted by bytes.translate: one pass at C speed (a regex
#: costs ~100 instructions a byte, more than the rest of an answer)
_CONTROL = bytes([*range(0x09), *range(0x0a, 0x20), 0x7f])
_LINES: dict[tuple[bytes, bytes], bytes] = {}
_NAMES: dict[bytes, bytes] = {}


def lower_name(name: bytes) -> bytes:
    """A header name in lower case, once it was checked to be a token (RuntimeError if not)."""
    low = _NAMES.get(name)
    if low is None:
        if not name or _BAD_NAME.search(name):
            raise RuntimeError(f"Invalid HTTP header name {name!r}.")
        if len(_NAMES) >= 256:
            _NAMES.clear()
        low = _NAMES[name] = name.lower()
    return low


def check_value(value: bytes) -> bytes:
    """``value`` when it holds no control character but a tab (RuntimeError if it does)."""
    if len(value.translate(None, _CONTROL)) != len(value):
        raise RuntimeError(f"Invalid HTTP header value {value[:60]!r}.")
    return value


def line(name: bytes, value: bytes) -> bytes:
    """``name: value\\r\\n`` checked, kept for the pairs seen most (RuntimeError for a bad one)."""
    found = _LINES.get((name, value))
    if found is None:
        found = b"%s: %s\r\n" % (lower_name(name), check_value(value))
        if len(_LINES) >= 1024:
            _LINES.clear()
        _LINES[(name, value)] = found
    return found


def lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    """Header pairs as lines, each checked (values that change per request are not kept)."""
    return b"".join([b"%s: %s\r\n" % (lower_name(n), check_value(v)) for n, v in headers])
