"""The request log: one JSON object per line, appended by a writer thread, rotated by size.

The event loop only serializes a record (orjson, about a microsecond) and queues the
line; a thread writes the queued lines out every ``flush_interval`` seconds, or sooner
when they pass ``flush_bytes``. (Serializing in the thread instead would keep every
record alive until then, and the cyclic garbage collector's work on them costs more
than the serializing.) Memory is bounded: when ``max_pending_bytes`` are waiting,
requests wait (``await wait_for_space()``) instead of records being dropped, so the
number of records always equals the number of requests. ``close()`` writes all.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import orjson

from .redact import scrub, scrub_inputs, secret_values, suspect

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
# keys that are not strings (a model's output dict with integer class labels) need this
# option, which makes every dict slower to write: only a record that needs it gets it
_ANY_KEYS = _OPTIONS | orjson.OPT_NON_STR_KEYS


class RequestLog:
    def __init__(
        self,
        path: str | Path,
        max_bytes: int = 50 * 1024 * 1024,
        backups: int = 5,
        max_pending_bytes: int = 8 * 1024 * 1024,
        flush_interval: float = 0.5,
        flush_bytes: int = 1024 * 1024,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.backups = backups
        self.max_pending_bytes = max_pending_bytes
        self.flush_interval = flush_interval
        self.flush_bytes = flush_bytes
        self.records = 0
        # appended to by the event loop, emptied from the front by the writer: a slice and a `del`
        # of the first n lines are each one step under the GIL, so no line is lost between them
        self._queue: list[bytes] = []
        # bytes queued (counted by the event loop) and written (counted by the writer thread):
        # each counter has one writer, so neither needs a lock
        self._queued = 0
        self._written = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        #: values of this server's secret environment variables (DB_PASSWORD, ...), never logged
        self._secrets = [v.encode() for v in secret_values()]
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        self._size = self._file.tell()
        self._thread = threading.Thread(target=self._run, name="nbdeploy-request-log", daemon=True)
        self._thread.start()

    def write(self, record: dict[str, Any]) -> None:
        """Queue ``record`` as a JSON line. Called from one thread (the event loop's)."""
        line = _line(record)
        self._queue.append(line)
        self.records += 1
        self._queued += len(line)
        if self._queued - self._written >= self.flush_bytes and not self._wake.is_set():
            self._wake.set()

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

    def close(self) -> None:
        """Write everything that is queued, then stop the thread and close the file."""
        self._closed = True
        self._wake.set()
        self._thread.join()
        self._drain()
        self._file.close()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        queue = self._queue
        n = len(queue)
        lines = queue[:n]
        del queue[:n]
        with self._lock:
            waiters, self._waiters = self._waiters, []
        if lines:
            total = sum(map(len, lines))  # as queued (the accounting the event loop waits on)
            lines = self._scrubbed(lines)
            if self._size + total <= self.max_bytes:
                self._write(lines)
            else:  # rotate on line boundaries, so no file grows past max_bytes
                group: list[bytes] = []
                size = self._size
                for line in lines:
                    if size and size + len(line) > self.max_bytes:
                        self._write(group)
                        self._rotate()
                        group, size = [], 0
                    group.append(line)
                    size += len(line)
                self._write(group)
            self._written += total
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)

    def _scrubbed(self, lines: list[bytes]) -> list[bytes]:
        """The lines with any secret a client sent (a key, a token, a URL's password, a value of
        this server's secret variables) masked. Here in the writer thread, over the whole group
        at once: one check per flush, not per request, and none on the event loop."""
        if not suspect(b"".join(lines), self._secrets):
            return lines
        return [_scrub_line(line) if suspect(line, self._secrets) else line for line in lines]

    def _write(self, lines: list[bytes]) -> None:
        if lines:
            data = memoryview(b"".join(lines))
            while data:  # one system call (and one release of the GIL) for the whole group
                data = data[self._file.write(data):]
            self._size += sum(map(len, lines))

    def _rotate(self) -> None:
        self._file.close()
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115
        else:
            self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115
        self._size = 0


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


def log_files(path: str | Path) -> list[Path]:
    """The current log file and its rotated backups, oldest first."""
    p = Path(path)
    backups = sorted(p.parent.glob(p.name + ".*"), key=lambda q: -int(q.suffix[1:]) if q.suffix[1:].isdigit() else 0)
    return [*backups, *([p] if p.exists() else [])]
