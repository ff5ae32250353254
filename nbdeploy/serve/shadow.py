"""Shadow mode: a candidate model sees every request's inputs, off the request path.

The live model answers; after the answer is sent, the same inputs are handed to the
shadow's own batcher (predict always in its thread, never on the event loop). When
``max_pending`` shadow requests are already waiting, a new one is dropped and counted
instead of queued, so a slow shadow never holds up the live model or grows memory. Each
comparison goes into the running :class:`.compare.Agreement` (``GET /shadow``) and, as a
``"endpoint": "shadow"`` record with both predictions, into the request log.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from .compare import Agreement

if TYPE_CHECKING:
    from .requestlog import RequestLog
    from .variant import Variant


class Shadow:
    def __init__(self, variant: Variant, primary_version: str, max_pending: int, log_payloads: bool) -> None:
        self.variant = variant
        self.max_pending = max_pending
        self.log_payloads = log_payloads
        self.agreement = Agreement(primary_version, variant.version)
        self.pending = 0
        self.log: RequestLog | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.variant.batcher.start()

    async def stop(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.variant.batcher.stop()

    def offer(self, rid: str, item: tuple[Any, int, bool, Any, Any, str], primary_ms: float) -> None:
        """Hand a request that was just answered to the shadow (or drop it when the shadow is behind)."""
        if self.pending >= self.max_pending:
            self.agreement.dropped += 1
            self._write({"id": rid, "shadow": "dropped"})
            return
        self.pending += 1
        task = asyncio.get_running_loop().create_task(self._run(rid, item, primary_ms))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, rid: str, item: tuple[Any, int, bool, Any, Any, str], primary_ms: float) -> None:
        payload, n, check, names, answered, version = item
        t0 = time.perf_counter()
        try:
            outputs, _ = await self.variant.batcher.submit_part(payload, n, check=check, names=names)
        except Exception as e:
            message = f"{type(e).__name__}: {getattr(e, 'message', e)}"
            self.agreement.error(rid, message)
            self._write({"id": rid, "shadow": "error", "error": message})
            return
        finally:
            self.pending -= 1
        ms = int((time.perf_counter() - t0) * 1e6) / 1000
        self.agreement.primary = version
        self.agreement.add(rid, answered, outputs, primary_ms, ms)
        record: dict[str, Any] = {"id": rid, "shadow": "ok", "rows": n, "latency_ms": ms,
                                  "primary": {"version": version, "latency_ms": primary_ms}}
        if self.log_payloads:
            record["outputs"] = outputs
            record["primary"]["outputs"] = answered
        self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.write({"ts": time.time(), "endpoint": "shadow", "model": self.variant.bundle.name,
                            "version": self.variant.version, **record})

    def report(self) -> dict[str, Any]:
        return {**self.agreement.report(), "pending": self.pending, "max_pending": self.max_pending}
