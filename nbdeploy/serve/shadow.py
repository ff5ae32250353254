"""Shadow mode: a candidate model sees every request's inputs, off the request path.

The live model answers; after the answer is sent, the same inputs join the shadow's
queue. One consumer lets them gather for SHADOW_LINGER seconds (nobody waits for a
shadow's answer), or until half of ``max_pending`` are queued, and predicts all of them in one batch: on the event loop when the
shadow's predict is fast (see :class:`.variant.Variant`), else in its batcher's thread.
One queue and one batch per few milliseconds, instead of a task, a future and a small
predict per request, is what keeps a shadow's cost to the live model low
(``benchmarks/production.py``). When ``max_pending`` requests are already waiting, a new
one is dropped and counted instead of queued, so a slow shadow never holds up the live
model or grows memory. Each comparison goes into the running :class:`.compare.Agreement`
(``GET /shadow``) and, as a ``"endpoint": "shadow"`` record with both predictions, into
the request log.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from .batcher import Part
from .compare import Agreement

if TYPE_CHECKING:
    from .requestlog import RequestLog
    from .variant import Variant

#: seconds the shadow's requests gather before one predict takes them all (at 3,000 requests/s,
#: batches of ~60: a predict's fixed cost shared by that many)
SHADOW_LINGER = 0.02


class Shadow:
    def __init__(self, variant: Variant, primary_version: str, max_pending: int, log_payloads: bool) -> None:
        self.variant = variant
        self.max_pending = max_pending
        self.log_payloads = log_payloads
        self.agreement = Agreement(primary_version, variant.version)
        self.log: RequestLog | None = None
        #: (request id, (payload, rows, check, names, live answer, live version), live ms, time offered)
        self._queue: deque[tuple[str, tuple[Any, int, bool, Any, Any, str], float, float]] = deque()
        self._taken = 0  # requests in the batch being predicted
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        #: requests queued that end the linger early: a fast stream fills half the queue before the
        #: linger ends, and requests offered past max_pending would be dropped though nothing is behind
        self._enough = max(1, max_pending // 2)
        self._lingering: asyncio.Future[None] | None = None

    @property
    def pending(self) -> int:
        """Requests offered and not compared yet."""
        return len(self._queue) + self._taken

    def start(self) -> None:
        self.variant.batcher.start()  # for the requests that ask for this version by name (V2 /versions/{v})
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._consume())

    async def stop(self) -> None:
        """Compare everything offered so far, then stop."""
        while self.pending and self._task is not None and not self._task.done():
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.variant.batcher.stop()

    def offer(self, rid: str, item: tuple[Any, int, bool, Any, Any, str], primary_ms: float) -> None:
        """Hand a request that was just answered to the shadow (or drop it when the shadow is behind)."""
        if self.pending >= self.max_pending:
            self.agreement.dropped += 1
            self._write({"id": rid, "shadow": "dropped"})
            return
        self._queue.append((rid, item, primary_ms, time.perf_counter()))
        queued = len(self._queue)
        if queued == 1 and self._wakeup is not None:
            self._wakeup.set()
        elif queued >= self._enough and self._lingering is not None and not self._lingering.done():
            self._lingering.set_result(None)

    async def _consume(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._linger()
            taken = self._take()
            self._taken = len(taken)
            try:
                await self._compare(taken)
            finally:
                self._taken = 0

    async def _linger(self) -> None:
        """Let requests gather for SHADOW_LINGER seconds, or until half of max_pending are queued."""
        if len(self._queue) >= self._enough:
            return
        loop = asyncio.get_running_loop()
        self._lingering = fut = loop.create_future()
        timer = loop.call_later(SHADOW_LINGER, _resolve, fut)
        try:
            await fut
        finally:
            self._lingering = None
            timer.cancel()

    def _take(self) -> list[tuple[str, tuple[Any, int, bool, Any, Any, str], float, float]]:
        """Queued requests up to the batcher's max rows (a request is never split)."""
        q, limit = self._queue, self.variant.batcher.max_rows
        taken: list[tuple[str, tuple[Any, int, bool, Any, Any, str], float, float]]
        taken, rows = [], 0
        while q and (not taken or rows + q[0][1][1] <= limit):
            entry = q.popleft()
            taken.append(entry)
            rows += entry[1][1]
        return taken

    async def _compare(self, taken: list[tuple[str, tuple[Any, int, bool, Any, Any, str], float, float]]) -> None:
        parts = [Part(payload, n, None, check, None, names)  # type: ignore[arg-type]
                 for _, (payload, n, check, names, _, _), _, _ in taken]
        try:
            outcomes = await self.variant.batcher.run_parts(parts)
        except Exception as e:  # the batcher already retried one by one; this is its own failure
            outcomes = [(False, e)] * len(parts)
        done = time.perf_counter()
        # the records of one batch are written at one moment: one clock read and one look-up of
        # what every record repeats, instead of a dict merged into another per request
        log, ts, name, shadow_version = self.log, time.time(), self.variant.bundle.name, self.variant.version
        agreement, payloads = self.agreement, self.log_payloads
        for (rid, (_, n, _, _, answered, version), primary_ms, t0), (ok, outputs) in zip(taken, outcomes, strict=True):
            if not ok:
                message = f"{type(outputs).__name__}: {getattr(outputs, 'message', outputs)}"
                agreement.error(rid, message)
                self._write({"id": rid, "shadow": "error", "error": message})
                continue
            ms = int((done - t0) * 1e6) / 1000  # from the hand-over to the answer: its wait and predict
            agreement.primary = version
            agreement.add(rid, answered, outputs, primary_ms, ms)
            if log is None:
                continue
            if payloads:
                log.write({"ts": ts, "endpoint": "shadow", "model": name, "version": shadow_version, "id": rid,
                           "shadow": "ok", "rows": n, "latency_ms": ms,
                           "primary": {"version": version, "latency_ms": primary_ms, "outputs": answered},
                           "outputs": outputs})
            else:
                log.write({"ts": ts, "endpoint": "shadow", "model": name, "version": shadow_version, "id": rid,
                           "shadow": "ok", "rows": n, "latency_ms": ms,
                           "primary": {"version": version, "latency_ms": primary_ms}})

    def _write(self, record: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.write({"ts": time.time(), "endpoint": "shadow", "model": self.variant.bundle.name,
                            "version": self.variant.version, **record})

    def report(self) -> dict[str, Any]:
        return {**self.agreement.report(), "pending": self.pending, "max_pending": self.max_pending}


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
