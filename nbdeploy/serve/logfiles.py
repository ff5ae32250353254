"""The files of a request log: naming, compression, retention by age, and reading them back.

A log ``requests.jsonl`` rotates (by size, see requestlog.py) into
``requests.jsonl.<UTC time of the rotation>``, which a background thread compresses into
``requests.jsonl.<time>.gz``: the name sorts in time order, and the time is that of the
newest record inside, so retention (``--log-keep 7d``) deletes a file once everything in
it is older than that. A deleted file's records are counted first, so that what
retention removed shows in ``nbdeploy_requestlog_dropped_total{reason="retention"}``.

With several workers each writes ``requests.<pid>.jsonl`` (and rotates it the same way);
readers (``nbdeploy compare``, ``--replay``) read every file of the family: the base
file, each worker's, their rotated files compressed or not yet, and the numbered backups
(``requests.jsonl.1``) that earlier versions left.
"""

from __future__ import annotations

import gzip
import os
import re
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

#: gzip level of rotated files: on request records level 1 compresses about 10x at ~50 MB/s of one
#: (shared) core here, level 6 12.6x at 16 MB/s: a server logging 20k requests/s (6 MB/s) spends
#: ~12 % of a core on level 1, in a thread of its own
COMPRESS_LEVEL = 1
_CHUNK = 1 << 20
_STAMP = re.compile(r"\.(\d{8}T\d{6}\d{6}Z(?:-\d+)?)(\.gz)?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_keep(text: str) -> float:
    """Seconds of ``7d``, ``12h``, ``30m``, ``45s``, ``2w`` (a bare number is seconds); 0 or "" = keep all."""
    raw = str(text).strip().lower()
    if raw in ("", "0", "forever", "all"):
        return 0.0
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw]?)", raw)
    if m is None:
        raise ValueError(f"{text!r} is not a duration: give a number and a unit, e.g. 7d, 12h, 30m (0 keeps all)")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def rotated_name(path: Path, now: float | None = None) -> Path:
    """A new, unused name for the rotated file of ``path``: its name and the UTC time, to the microsecond."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now % 1 * 1e6):06d}Z"
    candidate = path.with_name(f"{path.name}.{stamp}")
    n = 0
    while candidate.exists() or candidate.with_name(candidate.name + ".gz").exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{stamp}-{n}")
    return candidate


def rotated_time(path: Path) -> float | None:
    """The rotation time in a rotated file's name (seconds since the epoch), or None."""
    m = _STAMP.search(path.name)
    if m is None:
        return None
    stamp = m.group(1)
    t = time.strptime(stamp[:15], "%Y%m%dT%H%M%S")
    return float(_timegm(t)) + int(stamp[15:21]) / 1e6


def _timegm(t: time.struct_time) -> int:
    import calendar

    return calendar.timegm(t)


def log_files(path: str | Path) -> list[Path]:
    """The files of one log, oldest first: numbered backups of earlier versions (``.5`` .. ``.1``),
    the rotated files (compressed or not yet), then the current file."""
    p = Path(path)
    numbered: list[tuple[int, Path]] = []
    rotated: dict[str, Path] = {}
    for q in p.parent.glob(p.name + ".*"):
        rest = q.name[len(p.name) + 1:]
        if rest.isdigit():
            numbered.append((int(rest), q))
            continue
        m = _STAMP.fullmatch("." + rest)
        if m is None:
            continue
        stamp, gz = m.group(1), m.group(2)
        # a crash between writing the .gz and deleting the plain file leaves both: read the .gz only
        if gz or stamp not in rotated:
            rotated[stamp] = q
    old = [q for _, q in sorted(numbered, reverse=True)]
    return [*old, *(rotated[s] for s in sorted(rotated)), *([p] if p.exists() else [])]


def family(path: str | Path) -> list[Path]:
    """The current files of a log: ``path`` and each worker's ``<stem>.<pid><suffix>`` beside it."""
    p = Path(path)
    out = [p]
    if p.suffix:
        for other in sorted(p.parent.glob(f"{p.stem}.*{p.suffix}")):
            if other.stem[len(p.stem) + 1:].isdigit():
                out.append(other)
    return out


def family_files(path: str | Path) -> list[Path]:
    """Every file of the log ``path`` and of its workers' logs, each log's oldest first."""
    return [f for member in family(path) for f in log_files(member)]


def read_lines(path: Path) -> Iterator[bytes]:
    """The lines of one log file, gzip or plain (a .gz cut short by a crash yields what it holds)."""
    if path.name.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            try:
                yield from f
            except (EOFError, OSError, zlib.error):
                return
    else:
        with path.open("rb") as f:
            yield from f


def count_lines(path: Path) -> int:
    """Records in one log file (a torn last line counts: it was a record)."""
    n = 0
    last = b"\n"
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                n += chunk.count(b"\n")
                last = chunk[-1:]
    except (EOFError, zlib.error, gzip.BadGzipFile):
        pass
    return n + (last != b"\n")


def compress(path: Path) -> Path:
    """Gzip the rotated file ``path`` into ``path.gz`` (via a temporary name), then delete it.

    On failure (a full disk) the partial output is removed and the plain file stays: nothing
    is lost, and the next sweep tries again. Raises the OSError.
    """
    target = path.with_name(path.name + ".gz")
    tmp = path.with_name(f"{path.name}.gz.{os.getpid()}.tmp")
    try:
        with path.open("rb") as src, open(tmp, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", compresslevel=COMPRESS_LEVEL, fileobj=raw, mtime=0) as out:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
        os.replace(tmp, target)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    path.unlink(missing_ok=True)
    return target


def uncompressed(path: Path) -> list[Path]:
    """Rotated files of the log ``path`` that are not compressed yet (a rotation the server did not finish)."""
    return [q for q in log_files(path) if q != path and _STAMP.search(q.name) and not q.name.endswith(".gz")]


def expired(path: str | Path, keep_seconds: float, now: float | None = None) -> list[Path]:
    """Rotated files of the log ``path`` and its workers' whose newest record is older than ``keep_seconds``,
    and the current files of workers that have exited (no longer written) older than that."""
    if keep_seconds <= 0:
        return []
    cutoff = (time.time() if now is None else now) - keep_seconds
    out: list[Path] = []
    for i, member in enumerate(family(path)):
        for f in log_files(member):
            if f == member:
                if i > 0 and not _pid_alive(member) and _mtime(f) < cutoff:
                    out.append(f)  # a worker's file it no longer writes
                continue
            t = rotated_time(f)
            if t is not None and t < cutoff:
                out.append(f)
    return out


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")


def _pid_alive(worker_file: Path) -> bool:
    return pid_alive(int(worker_file.stem.rsplit(".", 1)[1]))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (this one always does; another user's counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
