"""Full-content hashes of files and folders: BLAKE3 for data lineage, SHA-256 for the rest.

Lineage hashes every file pandas reads, in full, on every read, in a thread
started just before the parser. There is no idle core to hide it on: pandas 3.1
parses a large CSV with one thread per core, so every CPU second the hash takes
is half a second added to the read on a 2-core machine. Two choices keep it small:

* the hash: BLAKE3 is cryptographic (a one-byte edit changes the digest, and no
  edit can be made to keep it) and digests about 3.5 GB/s on one core of the
  development machine, where SHA-256 does about 1 GB/s;
* how the bytes are read: the file is memory-mapped and handed to the hasher in
  one call. Nothing is copied out of the page cache first (reading a 200 MB file
  in 8 MiB chunks costs 0.04 s of CPU on top of the 0.06 s BLAKE3 takes), and
  the GIL is released once instead of twice per chunk, while the parser's
  threads want it too (smaller chunks that stay in cache were slower for that).
  pandas maps the same file for its own parallel read. Files that cannot be
  mapped (empty, pipes) are read.

A lineage hash is written ``"<algorithm>:<hex>"`` (``"blake3:…"``), so a record
says how it was made; :func:`recorded_hash` also reads the bare ``sha256`` of
older records.

The notebook file, local modules and bundle manifests keep SHA-256
(:func:`sha256_file`): they are small, off the read path, and ``sha256sum``
checks them by hand.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any

LINEAGE_ALGORITHM = "blake3"
_CHUNK = 8 << 20  # reads of what cannot be mapped: few GIL round-trips


def _hasher(algorithm: str) -> Any:
    if algorithm == "blake3":
        from blake3 import blake3  # imported on first use: `%deploy init` stays cheap

        return blake3()  # one thread: the other core is the parser's
    if algorithm == "sha256":
        import hashlib

        return hashlib.sha256()
    raise ValueError(f"unknown hash algorithm {algorithm!r} (known: blake3, sha256)")


def _digest_file(path: str | os.PathLike[str], algorithm: str) -> tuple[str, int]:
    """(hex digest, size in bytes) of one file; the size is what was hashed.

    Memory-mapped, as pandas' parallel CSV reader does; like it, a file truncated
    by another process while it is mapped ends the process with SIGBUS.
    """
    h = _hasher(algorithm)
    with open(path, "rb", buffering=0) as fh:
        try:
            mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # empty, a pipe, or a file system that cannot map
            return _digest_stream(fh, h)
        with mapped:
            h.update(mapped)  # one call: the GIL is released once, for the whole file
            return h.hexdigest(), len(mapped)


def _digest_stream(fh: Any, h: Any) -> tuple[str, int]:
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    size = 0
    while n := fh.readinto(buf):
        h.update(view[:n])
        size += n
    return h.hexdigest(), size


def sha256_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(hex SHA-256, size in bytes) of one file: notebooks, local modules, bundle files."""
    return _digest_file(path, "sha256")


def content_hash(path: str | os.PathLike[str], algorithm: str = LINEAGE_ALGORITHM) -> tuple[str, int]:
    """(``"<algorithm>:<hex>"``, size in bytes) of a file, or of a folder (a parquet dataset).

    A folder's digest is that of its files' relative names and digests, in name order.
    """
    p = Path(path)
    if not p.is_dir():
        digest, size = _digest_file(p, algorithm)
        return f"{algorithm}:{digest}", size
    h = _hasher(algorithm)
    total = 0
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        digest, size = _digest_file(f, algorithm)
        h.update(f"{f.relative_to(p).as_posix()}\0{digest}\n".encode())
        total += size
    return f"{algorithm}:{h.hexdigest()}", total


#: how long the second download of a URL that pandas read may take before it is given up
URL_TIMEOUT = 60.0


def url_hash(url: str, headers: dict[str, str] | None = None, algorithm: str = LINEAGE_ALGORITHM,
             timeout: float = URL_TIMEOUT) -> tuple[str, int]:
    """(``"<algorithm>:<hex>"``, size in bytes) of what an ``http(s)://`` URL serves, downloaded
    once more and hashed as it streams (nothing is kept). ``headers``: those pandas was given
    (``storage_options``), so a URL that needs them answers the same. Raises OSError (with the
    HTTP status or the network's reason) when it cannot be read."""
    import urllib.error
    import urllib.request

    h = _hasher(algorithm)
    req = urllib.request.Request(url, headers={"User-Agent": "nbdeploy-lineage", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the notebook's own URL)
            digest, size = _digest_stream(resp, h)
    except urllib.error.HTTPError as exc:
        raise OSError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise OSError(str(exc.reason)) from None
    return f"{algorithm}:{digest}", size


def recorded_hash(entry: dict) -> str | None:
    """A lineage entry's ``"<algorithm>:<hex>"``, from ``hash`` or an older record's ``sha256``."""
    if entry.get("hash"):
        return entry["hash"]
    return f"sha256:{entry['sha256']}" if entry.get("sha256") else None


def algorithm_of(hash_: str) -> str:
    """``"blake3"`` of ``"blake3:<hex>"``."""
    return hash_.partition(":")[0]


def short_hash(hash_: str | None, n: int = 12) -> str:
    """``"blake3:1f2e3d4c5b6a"``: the algorithm and the first ``n`` hex digits, or ``-``."""
    if not hash_:
        return "-"
    algorithm, _, digest = hash_.partition(":")
    return f"{algorithm}:{digest[:n]}"
