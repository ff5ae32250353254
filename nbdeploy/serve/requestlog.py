"""The request log: one JSON object per line, appended by a writer thread, rotated by size.

The event loop only serializes a record (orjson, about a microsecond) and queues the
line; a thread writes the queued lines out every ``flush_interval`` seconds, or sooner
when they pass ``flush_bytes``. (Serializing in the thread instead would keep every
record alive until then, and the cyclic garbage collector's work on them costs more
than the serializing.) Memory is bounded: when ``max_pending_bytes`` are waiting,
requests wait (``await wait_for_space()``) instead of records being dropped, so the
number of records always equals the number of requests. ``close()`` writes all.

Past ``max_bytes`` the file is rotated: renamed with the time and gzipped by a second
thread, which also deletes rotated files older than ``keep_seconds`` (logfiles.py).
Nothing is lost without being counted: ``dropped`` holds the records that retention
deleted and those that could not be written (a full disk, a read-only file system), and
``status()`` says whether the log is failing now, since when, and when it last recovered.
A failure never stops the server: the writer drops what it cannot write, counts it, and
tries the file again (reopening it) on its next round, so the log recovers by itself
once the disk has room again.

``counters``: a 16-byte file (the metrics folder of a server with several workers) that
holds, mapped in memory, the records this process has promised (a request counts when it
starts) and those settled (written or counted as dropped). It outlives a SIGKILL, so the
records a killed worker lost - its requests in flight and its queued lines - are
``promised - settled`` (see :func:`lost_by`).
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import stat
import threading
import time
from itertools import compress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from . import logfiles
from .errors import ServeError
from .logfiles import log_files
from .redact import KnownClean, scrub, scrub_inputs, secret_values, suspect

if TYPE_CHECKING:
    from .config import ServeConfig

__all__ = ["RequestLog", "log_files", "lost_by", "open_log"]

logger = logging.getLogger("nbdeploy.serve")

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
# keys that are not strings (a model's output dict with integer class labels) need this
# option, which makes every dict slower to write: only a record that needs it gets it
_ANY_KEYS = _OPTIONS | orjson.OPT_NON_STR_KEYS
#: why records are counted in nbdeploy_requestlog_dropped_total
REASONS = ("retention", "write_error", "worker_died")
#: a rotation that failed (a read-only folder) is tried again after this many seconds
ROTATE_RETRY_SECONDS = 10.0
#: a worker's counters in the metrics folder its server's workers share: ``<pid>.logcount`` (see lost_by)
LOG_COUNTERS_SUFFIX = ".logcount"
#: retention looks for expired files this often (and after every rotation)
RETENTION_SECONDS = 60.0


class RequestLog:
    def __init__(
        self,
        path: str | Path,
        max_bytes: int = 50 * 1024 * 1024,
        keep_seconds: float = 7 * 86400,
        max_pending_bytes: int = 8 * 1024 * 1024,
        flush_interval: float = 0.5,
        flush_bytes: int = 1024 * 1024,
        family: str | Path | None = None,
        counters: str | Path | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        #: the configured log path: retention covers its files and every worker's (``<stem>.<pid><suffix>``)
        self.family = Path(family) if family is not None else self.path
        self.max_bytes = max_bytes
        self.keep_seconds = keep_seconds
        self.max_pending_bytes = max_pending_bytes
        self.flush_interval = flush_interval
        self.flush_bytes = flush_bytes
        self.records = 0
        #: records written to the file
        self.written = 0
        #: records the writer searched for secrets (not marked plain; see write)
        self.searched = 0
        #: records lost, by reason (REASONS); worker_died is counted by the metrics of a multi-worker server
        self.dropped = dict.fromkeys(REASONS[:2], 0)
        #: what is failing now (None: nothing), since when; the last failure and when it ended
        self.error: str | None = None
        self.error_since: float | None = None
        self.last_error: str | None = None
        self.recovered_at: float | None = None
        # appended to by the event loop, emptied from the front by the writer: a slice and a `del`
        # of the first n lines are each one step under the GIL, so no line is lost between them
        #: (line, whether the secret check may skip it: every value in it is the server's own)
        self._queue: list[tuple[bytes, bool]] = []
        # bytes queued (counted by the event loop) and written (counted by the writer thread):
        # each counter has one writer, so neither needs a lock
        self._queued = 0
        self._written = 0
        self._lock = threading.Lock()
        self._draining = threading.Lock()  # the writer thread and flush() take turns
        self._wake = threading.Event()
        self._closed = False
        #: values of this server's secret environment variables (DB_PASSWORD, ...), never logged
        self._secrets = [v.encode() for v in secret_values()]
        #: the strings of logged payloads already searched (categories, column names)
        self.clean = KnownClean(self._secrets)
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        #: [records promised (a request counts when it starts), records settled (written or counted as
        #: dropped)]: two int64 in memory shared with the file ``counters`` when given
        self.counts, self._map = _counters(counters)
        self._file: Any = None
        self._size = 0
        self._torn = False  # the file ends inside a line: the next write starts a new one
        self._rotate_after = 0.0  # monotonic time before which a failed rotation is not tried again
        self._regular = False
        self._write_failure: str | None = None
        self._rotate_failure: str | None = None
        self._gzip_failure: str | None = None
        self._state_lock = threading.Lock()
        self._stopping = False
        self._open()  # at start-up a log that cannot be opened is an error (a wrong --log-path)
        self._to_compress: list[Path] = logfiles.uncompressed(self.path)
        self._housekeeping = threading.Event()
        self._housekeeping.set()
        self._thread = threading.Thread(target=self._run, name="nbdeploy-request-log", daemon=True)
        self._thread.start()
        self._gzip_thread = threading.Thread(target=self._run_housekeeping, name="nbdeploy-request-log-gzip",
                                             daemon=True)
        self._gzip_thread.start()

    # -- the event loop's side ------------------------------------------------------
    def write(self, record: dict[str, Any], promised: bool = False, plain: bool = False) -> bool:
        """Queue ``record`` as a JSON line. Called from one thread (the event loop's). Returns
        :attr:`full`: whether the caller should wait for space (:meth:`wait_for_space`).

        ``promised``: the request was counted as promised when it started (the caller did
        ``log.counts[0] += 1``: a crash before this write then still shows as a lost record).
        ``plain``: the caller knows that no value in the record came from the client (a
        successful request's path, status, latency, row count, version): the writer's search
        for secrets skips it. Anything else is searched, and scrubbed where a secret may be.
        """
        line = _line(record)
        self._queue.append((line, plain))
        if not promised:
            self.counts[0] += 1
        self.records += 1
        self._queued += len(line)
        waiting = self._queued - self._written
        if waiting >= self.flush_bytes and not self._wake.is_set():
            self._wake.set()
        return waiting >= self.max_pending_bytes

    @property
    def full(self) -> bool:
        return self._queued - self._written >= self.max_pending_bytes

    async def wait_for_space(self) -> None:
        """Back-pressure: wait while too many bytes are waiting to be written."""
        while self.full and not self._closed:
            fut = asyncio.get_running_loop().create_future()
            with self._lock:
                self._waiters.append((asyncio.get_running_loop(), fut))
            self._wake.set()
            await fut

    @property
    def ok(self) -> bool:
        return self.error is None

    def status(self) -> dict[str, Any]:
        """What /health says of the log: whether it is failing, since when, the last recovery, the counts."""
        doc: dict[str, Any] = {"ok": self.error is None, "path": str(self.path), "written": self.written,
                               "dropped": dict(self.dropped)}
        if self.error is not None:
            doc["error"] = self.error
            doc["since"] = self.error_since
        if self.last_error is not None and self.recovered_at is not None:
            doc["last_error"] = self.last_error
            doc["recovered_at"] = self.recovered_at
        return doc

    def flush(self) -> None:
        """Write out everything queued so far, now (for a reader of the file: ``GET /performance``)."""
        self._drain()

    def close(self) -> None:
        """Write everything that is queued, then stop the threads and close the file."""
        self._closed = True
        self._wake.set()
        self._thread.join()
        self._drain()
        self._stopping = True  # the housekeeping thread compresses what the last rotations left, and ends
        self._housekeeping.set()
        self._gzip_thread.join()
        if self._file is not None:
            try:
                self._file.close()
            except OSError as e:  # the last write's error shows only now (NFS): its lines are counted already
                logger.warning("request log %s: closing failed: %s", self.path, e)
        if self._map is not None:
            self._map.flush()

    # -- the writer thread -----------------------------------------------------------
    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            try:
                self._drain()
            except Exception:  # a bug must not stop the writer: requests would wait for it forever
                logger.exception("request log %s: the writer failed; it carries on", self.path)

    def _drain(self) -> None:
        with self._draining:
            self._drain_queue()

    def _drain_queue(self) -> None:
        queue = self._queue
        n = len(queue)
        queued = queue[:n]
        del queue[:n]
        lines = [line for line, _ in queued]
        with self._lock:
            waiters, self._waiters = self._waiters, []
        if lines:
            total = sum(map(len, lines))  # as queued (the accounting the event loop waits on)
            try:
                self._write_all(self._scrubbed(lines, [not plain for _, plain in queued]))
            finally:
                self._written += total  # written or counted as dropped: the space is free either way
                self.counts[1] += len(lines)
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)

    def _write_all(self, lines: list[bytes]) -> None:
        total = sum(map(len, lines))
        if self._size + total <= self.max_bytes or not self._can_rotate():
            self._write(lines)
            return
        group: list[bytes] = []  # rotate on line boundaries, so no file grows past max_bytes
        size = self._size
        for line in lines:
            if size and size + len(line) > self.max_bytes and self._can_rotate():
                self._write(group)
                self._rotate()
                group, size = [], self._size
            group.append(line)
            size += len(line)
        self._write(group)

    def _scrubbed(self, lines: list[bytes], checked: list[bool]) -> list[bytes]:
        """The lines with any secret a client sent (a key, a token, a URL's password, a value of
        this server's secret variables) masked. Here in the writer thread, over the ``checked``
        lines of the whole group at once: one search per flush, not per request, and none on the
        event loop; a flush of successful requests' records alone needs none."""
        searched = sum(checked)
        if not searched:
            return lines
        self.searched += searched
        if not suspect(b"".join(compress(lines, checked)), self._secrets):
            return lines
        return [_scrub_line(line) if check and suspect(line, self._secrets) else line
                for line, check in zip(lines, checked, strict=True)]

    def _write(self, lines: list[bytes]) -> None:
        """Write ``lines`` in one system call; what cannot be written is counted in ``dropped``."""
        if not lines:
            return
        data = b"".join(lines)
        if self._torn:
            data = b"\n" + data
        done = 0
        try:
            if self._file is None:
                self._open()
            view = memoryview(data)
            while done < len(data):  # one system call (and one release of the GIL) for the whole group
                done += self._file.write(view[done:])
        except OSError as e:
            self._failed_write(lines, data, done, e)
            return
        self._size += len(data)
        self._torn = False
        self.written += len(lines)
        if self._write_failure is not None:
            self._write_failure = None
            self._update_error()

    def _failed_write(self, lines: list[bytes], data: bytes, done: int, e: OSError) -> None:
        """Cut a partly written group back off the file where possible; count what did not make it."""
        kept = 0
        if done and self._file is not None:
            try:
                os.ftruncate(self._file.fileno(), self._size)  # a regular file: as if nothing was written
            except OSError:
                kept = data[:done].count(b"\n") - (1 if self._torn else 0)  # whole lines that stay
                self._size += done
                self._torn = not data[:done].endswith(b"\n")
        self.written += kept
        self.dropped["write_error"] += len(lines) - kept
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None  # reopened on the next write: a path fixed meanwhile is found again
        if self._write_failure is None:
            logger.error("request log %s: cannot write (%s); records are counted as dropped until it can",
                         self.path, e.strerror or e)
        self._write_failure = f"cannot write {self.path}: {e.strerror or e}"
        self._update_error()

    def _open(self) -> None:
        f = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in close() or on failure
        try:
            info = os.fstat(f.fileno())
            self._size = info.st_size if stat.S_ISREG(info.st_mode) else 0
            self._regular = stat.S_ISREG(info.st_mode)
            if self._size:  # a file a killed process left inside a line: start a new one
                with open(self.path, "rb") as r:
                    r.seek(self._size - 1)
                    self._torn = r.read(1) != b"\n"
        except OSError:
            f.close()
            raise
        self._file = f

    def _can_rotate(self) -> bool:
        # a device or a pipe (/dev/full, a FIFO) is never renamed; a failed rotation waits a while
        return self._file is not None and self._regular and time.monotonic() >= self._rotate_after

    def _rotate(self) -> None:
        """Rename the file with the time and start a new one; the housekeeping thread compresses it."""
        target = logfiles.rotated_name(self.path)
        try:
            os.rename(self.path, target)
        except OSError as e:  # a read-only folder: keep appending to the file, nothing is lost
            self._rotate_after = time.monotonic() + ROTATE_RETRY_SECONDS
            if self._rotate_failure is None:
                logger.error("request log %s: cannot rotate (%s); it grows past its size until it can",
                             self.path, e.strerror or e)
            self._rotate_failure = f"cannot rotate {self.path}: {e.strerror or e}"
            self._update_error()
            return
        if self._file is not None:  # None when the write just before failed
            self._file.close()
        self._file = None
        self._size = 0
        self._torn = False
        if self._rotate_failure is not None:
            self._rotate_failure = None
            self._update_error()
        with self._lock:
            self._to_compress.append(target)
        self._housekeeping.set()
        try:
            self._open()
        except OSError as e:  # the next write tries again, and counts what it cannot write
            logger.error("request log %s: cannot open a new file after rotating: %s", self.path, e.strerror or e)

    def _update_error(self) -> None:
        """The log's state from its failures (writing first: it loses records), or its recovery."""
        with self._state_lock:
            now = self._write_failure or self._rotate_failure or self._gzip_failure
            if now:
                if self.error is None:
                    self.error_since = time.time()
                self.error = now
            elif self.error is not None:
                self.last_error, self.error = self.error, None
                self.recovered_at = time.time()
                logger.warning("request log %s: recovered from: %s", self.path, self.last_error)

    # -- the housekeeping thread: compression and retention ---------------------------
    def _run_housekeeping(self) -> None:
        """After each rotation and every RETENTION_SECONDS: compress rotated files, delete expired ones."""
        while True:
            self._housekeeping.wait(RETENTION_SECONDS)
            self._housekeeping.clear()
            stopping = self._stopping
            try:
                self._compress_rotated()
                if self.keep_seconds > 0 and not stopping:
                    self._apply_retention()
            except Exception:
                logger.exception("request log %s: housekeeping failed; it carries on", self.path)
            if stopping:
                return

    def _compress_rotated(self) -> None:
        with self._lock:
            todo, self._to_compress = self._to_compress, []
        failed = []
        for path in todo:
            try:
                logfiles.compress(path)
            except FileNotFoundError:
                continue
            except OSError as e:  # a full disk: the plain file stays (readable); tried again later
                failed.append(path)
                self._gzip_failure = f"cannot compress {path.name}: {e.strerror or e}"
        if failed:
            with self._lock:
                self._to_compress[:0] = failed
        elif self._gzip_failure is not None:
            self._gzip_failure = None
        self._update_error()

    def _apply_retention(self) -> None:
        for path in logfiles.expired(self.family, self.keep_seconds):
            n = logfiles.count_lines(path)
            try:
                path.unlink()
            except FileNotFoundError:
                continue  # another worker deleted (and counted) it
            except OSError as e:
                logger.warning("request log: cannot delete %s past its retention: %s", path, e.strerror or e)
                continue
            self.dropped["retention"] += n
            logger.info("request log: deleted %s (%d records past --log-keep)", path, n)


def open_log(config: ServeConfig, shared: str | None = None) -> RequestLog:
    """The request log of this process. With several workers: its own file (no shared rotation) and its
    counters in the folder ``shared`` the workers share (a killed worker's lost records are counted from them)."""
    path = Path(config.log_path)
    counters = None
    if config.workers > 1:
        if not path.exists() or path.is_file():  # /dev/stdout or a pipe is shared as it is
            path = path.with_name(f"{path.stem}.{os.getpid()}{path.suffix}")
        if shared and Path(shared).is_dir():
            counters = Path(shared) / f"{os.getpid()}{LOG_COUNTERS_SUFFIX}"
    try:
        return RequestLog(path, config.log_max_bytes, config.log_keep_seconds, family=config.log_path,
                          counters=counters)
    except OSError as e:
        raise ServeError(f"cannot open the request log {path}: {e.strerror or e}",
                         hint="give a writable --log-path (NBDEPLOY_LOG_PATH), or \"\" for no request log") from None


def _counters(path: str | Path | None) -> tuple[memoryview, mmap.mmap | None]:
    """Promised and settled counts (two int64): in a file mapped into memory (``path``), or in this process only."""
    if path is None:
        return memoryview(bytearray(16)).cast("q"), None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, 16)
        m = mmap.mmap(fd, 16)
    finally:
        os.close(fd)
    return memoryview(m).cast("q"), m


def lost_by(counters: str | Path) -> int:
    """Records a process promised but never settled (written or counted): what it lost when it was killed."""
    try:
        raw = Path(counters).read_bytes()
    except OSError:
        return 0
    if len(raw) < 16:
        return 0
    promised, settled = memoryview(raw[:16]).cast("q")
    return max(0, promised - settled)


def _line(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record, default=str, option=_OPTIONS)
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:
        return orjson.dumps(record, default=str, option=_ANY_KEYS)
    except (TypeError, orjson.JSONEncodeError) as e:
        keep = {k: record.get(k) for k in ("ts", "id", "method", "path", "endpoint", "status", "latency_ms")}
        return orjson.dumps({**keep, "log_error": f"{type(e).__name__}: {e}"}, default=str, option=_OPTIONS)


def _scrub_line(line: bytes) -> bytes:
    record = orjson.loads(line)
    if not isinstance(record, dict):
        return line
    inputs = {"inputs": scrub_inputs(record["inputs"])} if "inputs" in record else {}
    return _line({**scrub({k: v for k, v in record.items() if k != "inputs"}), **inputs})


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
