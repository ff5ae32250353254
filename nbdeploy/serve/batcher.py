"""Adaptive micro-batching: concurrent requests share one ``predict`` call.

Requests queue up while the model is busy; when it is free, the batcher takes every
queued request (up to ``max_rows`` rows, never splitting a request) into one batch. If
other requests are still being read or validated it waits for them up to ``max_wait``
seconds, so at low load nothing waits and at high load batches fill. Each request's rows
are a contiguous slice of the batch and get exactly that slice of the output back. If a
batch raises, its requests are retried one by one, so one bad request fails alone.

A canary's requests join the live model's queue with their own ``run`` (the canary's
predict): a batch that holds both is cut into one predict call per version. With a
batcher of its own, the canary's few requests formed small batches of their own, gathered
and answered apart from the live ones; in one queue they wait for nothing more than the
live requests do. What a canary still costs is that second predict call a batch (its
fixed cost, shared by a tenth of the rows) and counting each request by version
(benchmarks/production.py, docs/serve.md).

Where ``predict`` runs: in a worker thread, so that a slow model never stalls the event
loop; but when a call takes less than ``inline_below`` seconds (moving average), on the
event loop itself. A fast model in a thread loses more than it gains: while it holds the
GIL the loop thread waits up to the interpreter's switch interval (5 ms) for each turn,
so requests are read, and batches filled, far more slowly than the model could go.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .errors import RequestError

#: time a predict on the event loop spent off the CPU past which it counts as :attr:`Batcher.blocking`
#: (far longer than a shared machine preempts a thread)
BLOCKED_SECONDS = 0.1


@dataclass(slots=True)
class Part:
    data: Any  # columns (dict name -> values) or a Tensor
    n: int
    future: asyncio.Future[Any] = field(repr=False)
    #: the columns still need checking against the signature (done for the whole batch at once)
    check: bool = False
    #: soft findings of that check (out of range, unseen category), for the response
    flags: list[dict[str, Any]] | None = None
    #: when set, ``data`` is one row (a list of values in the order of these column names)
    names: list[str] | None = None
    #: another version's ``run_batch`` (a canary's) for this part; None: the batcher's own
    run: Callable[[list[Part]], list[Any]] | None = None


class Batcher:
    """``run_batch(parts) -> list of per-part outputs`` runs in one worker thread."""

    def __init__(
        self,
        run_batch: Callable[[list[Part]], list[Any]],
        max_rows: int = 1024,
        max_wait: float = 0.002,
        on_batch: Callable[[int, int, float], None] | None = None,
        inline_below: float = 0.0,
    ) -> None:
        self._run_batch = run_batch
        self.max_rows = max_rows
        self.max_wait = max_wait
        self._on_batch = on_batch
        self._queue: deque[Part] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbdeploy-predict")
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self.inline_below = inline_below
        #: moving average of the seconds one predict call takes (None until measured)
        self.predict_seconds: float | None = None
        #: requests being read or validated that will soon be submitted
        self.reading = 0
        #: its predict waits without computing (sleeps, I/O): :meth:`run_parts` keeps it off the loop,
        #: where the CPU time that judges a predict in the thread would not show the wait
        self.blocking = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Finish everything queued or running (and what requests still being read will submit), then stop."""
        while self._queue or self._busy or self.reading > 0:
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=True)

    async def submit(self, data: Any, n: int) -> Any:
        return (await self.submit_part(data, n))[0]

    async def submit_part(self, data: Any, n: int, check: bool = False, names: list[str] | None = None,
                          run: Callable[[list[Part]], list[Any]] | None = None) -> tuple[Any, Part]:
        """The output for these rows, and their part (its ``flags`` when ``check``); ``run``:
        predict them with another version's ``run_batch`` (see :attr:`Part.run`)."""
        fut = asyncio.get_running_loop().create_future()
        part = Part(data, n, fut, check, None, names, run)
        self._queue.append(part)
        self._wake()
        return await fut, part

    def _wake(self) -> None:
        w = self._wakeup
        if w is not None and not w.done():
            w.set_result(None)

    async def _sleep_until_woken(self, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        self._wakeup = fut = loop.create_future()
        handle = loop.call_later(timeout, _resolve, fut) if timeout is not None else None
        try:
            await fut
        finally:
            self._wakeup = None
            if handle is not None:
                handle.cancel()

    def _take(self, batch: list[Part], rows: int) -> int:
        q = self._queue
        while q and (not batch or rows + q[0].n <= self.max_rows):
            part = q.popleft()
            batch.append(part)
            rows += part.n
        return rows

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                await self._sleep_until_woken(None)
                continue
            batch: list[Part] = []
            rows = self._take(batch, 0)
            self._busy = True  # from here, parts are held here, out of the queue: stop() waits for them
            if self.max_wait > 0 and rows < self.max_rows:
                rows = await self._gather(batch, rows, loop.time() + self.max_wait)
            t0 = time.perf_counter()
            try:
                if self.predict_seconds is not None and self.predict_seconds < self.inline_below:
                    outcomes, calls = self._run_versions(batch)  # fast model: no thread hand-off, no GIL tug-of-war
                else:
                    outcomes, calls = await loop.run_in_executor(self._pool, self._run_versions, batch)
            finally:
                self._busy = False
            seconds = time.perf_counter() - t0
            self.observe(seconds)
            if self._on_batch is not None:
                for call in calls or ((rows, len(batch), seconds),):  # one count per predict call
                    self._on_batch(*call)
            for part, (ok, value) in zip(batch, outcomes, strict=True):
                if part.future.done():  # the client went away
                    continue
                if ok:
                    part.future.set_result(value)
                else:
                    if isinstance(value, RequestError):  # a client's mistake: its frames (which hold this
                        value.__traceback__ = None  # part, and so the future) would make a cycle
                    part.future.set_exception(value)

    async def run_parts(self, parts: list[Part]) -> list[tuple[bool, Any]]:
        """One batch the caller formed (a shadow's), outside the queue: each part's (ok, output or
        exception), predicted on the event loop when that is fast, else in this batcher's thread.

        On the loop a predict is timed by the clock (how long it held the loop); in the thread,
        by the CPU time it took there. By the clock it would also count its waits for the GIL
        that the busy loop holds: a predict sent to the thread once (say, preempted once on a
        shared machine) then looked slow every time and stayed there, each batch a tug-of-war
        with the loop (benchmarks/production.py). A predict that waits without computing
        (:attr:`blocking`: a sleep, I/O) never runs on the loop."""
        self._busy = True
        try:
            if not self.blocking and self.predict_seconds is not None and self.predict_seconds < self.inline_below:
                c0, t0 = time.thread_time(), time.perf_counter()
                outcomes = self._run_isolated(parts)
                seconds, cpu = time.perf_counter() - t0, time.thread_time() - c0
                if seconds - cpu > BLOCKED_SECONDS:  # no preemption lasts this long: it waited on something
                    self.blocking = True
            else:
                outcomes, seconds = await asyncio.get_running_loop().run_in_executor(self._pool, self._run_timed, parts)
        finally:
            self._busy = False
        self.observe(seconds)
        return outcomes

    def _run_timed(self, parts: list[Part]) -> tuple[list[tuple[bool, Any]], float]:
        """``_run_isolated`` and the CPU seconds this thread spent in it."""
        t0 = time.thread_time()
        outcomes = self._run_isolated(parts)
        return outcomes, time.thread_time() - t0

    def waits(self, seconds: float, cpu: float) -> bool:
        """Whether a predict that took ``seconds`` by the clock and ``cpu`` of CPU time spent more
        than :attr:`inline_below` waiting (most of its time): see :attr:`blocking`."""
        return seconds - cpu > self.inline_below and cpu < seconds / 2

    async def _gather(self, batch: list[Part], rows: int, deadline: float) -> int:
        """Let requests that already reached the server join the batch, until none arrive.

        A few turns of the event loop let it read sockets that are ready and run their
        handlers up to ``submit``; requests still being read (``reading``) are waited for
        up to ``deadline``. With one client this costs a few microseconds.
        """
        loop = asyncio.get_running_loop()
        while rows < self.max_rows and loop.time() < deadline:
            seen = len(batch) + len(self._queue)
            for _ in range(3):
                await asyncio.sleep(0)
            if self.reading > 0 and not self._queue:
                await self._sleep_until_woken(max(0.0, deadline - loop.time()))
            rows = self._take(batch, rows)
            if len(batch) + len(self._queue) == seen and self.reading == 0:
                break
        return rows

    def observe(self, seconds: float) -> None:
        p = self.predict_seconds
        self.predict_seconds = seconds if p is None else 0.8 * p + 0.2 * seconds

    def _run_versions(self, batch: list[Part]) -> tuple[list[tuple[bool, Any]], list[tuple[int, int, float]] | None]:
        """Each part's (ok, output or exception). A batch holding parts of other versions
        (:attr:`Part.run`) is cut into one predict call per version, in the order each first
        appears; then also (rows, requests, seconds) of each call, for the metrics."""
        if all(p.run is None for p in batch):
            return self._run_isolated(batch), None
        groups: dict[Any, list[int]] = {}
        for i, p in enumerate(batch):
            groups.setdefault(p.run, []).append(i)
        outcomes: list[tuple[bool, Any]] = [(False, None)] * len(batch)
        calls = []
        for run, index in groups.items():
            parts = [batch[i] for i in index]
            t0 = time.perf_counter()
            for i, outcome in zip(index, self._run_isolated(parts, run), strict=True):
                outcomes[i] = outcome
            calls.append((sum(p.n for p in parts), len(parts), time.perf_counter() - t0))
        return outcomes, calls

    def _run_isolated(self, batch: list[Part], run: Callable[[list[Part]], list[Any]] | None = None
                      ) -> list[tuple[bool, Any]]:
        """Each part's (ok, output or exception), predicted by ``run`` (default: this batcher's
        ``run_batch``). It may hand back an exception for a part it refused (say, a request whose
        columns do not match the signature)."""
        run = run or self._run_batch
        try:
            return [(not isinstance(out, Exception), out) for out in run(batch)]
        except Exception as e:
            if len(batch) == 1:
                return [(False, e)]
        outcomes: list[tuple[bool, Any]] = []
        for part in batch:
            try:
                out = run([part])[0]
                outcomes.append((not isinstance(out, Exception), out))
            except Exception as e:
                outcomes.append((False, e))
        return outcomes


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
