"""Full-content SHA-256 of files and folders, cheap enough to run on every read.

``hashlib`` releases the GIL while it digests large buffers, so a hash started
in a thread just before pandas parses a file runs on the other core while the
parser works, and costs the caller almost nothing.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 8 << 20  # few GIL round-trips while a parser holds the GIL


def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(hex digest, size in bytes) of one file, read in 8 MiB chunks into one reused buffer."""
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    size = 0
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
            size += n
    return h.hexdigest(), size


def sha256_path(path: str | os.PathLike[str]) -> tuple[str, int]:
    """A file's digest, or for a folder (a parquet dataset) the digest of its files' names and digests."""
    p = Path(path)
    if not p.is_dir():
        return sha256_file(p)
    h = hashlib.sha256()
    total = 0
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        digest, size = sha256_file(f)
        h.update(f"{f.relative_to(p).as_posix()}\0{digest}\n".encode())
        total += size
    return h.hexdigest(), total
