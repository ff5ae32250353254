"""Score units of work on Dask: a LocalCluster of worker processes, or the cluster at ``scheduler``.

Each worker loads the bundle once (kept in this module of the worker process, keyed by the
bundle's folder and manifest) and writes each unit's rows to its own part file; the client
joins the parts in input order. Workers must see the bundle, the inputs and the part folder
(beside the output) at the same paths: one machine, or shared storage.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from nbdeploy.base.errors import NbdeployError
from nbdeploy.serve.score_io import Unit

_SCORERS: dict[tuple[str, float], Any] = {}


def _scorer(bundle: str) -> Any:
    """The worker's Scorer of this bundle: loaded (seal checked, model read) once per process."""
    from nbdeploy.serve.score import Scorer

    key = (bundle, os.stat(os.path.join(bundle, "nbdeploy.json")).st_mtime
           if os.path.exists(os.path.join(bundle, "nbdeploy.json")) else 0.0)
    if key not in _SCORERS:
        _SCORERS.clear()
        _SCORERS[key] = Scorer(bundle)
    return _SCORERS[key]


def score_part(bundle: str, unit: Unit, chunk_rows: int, id_column: str | None, parts: str, index: int) -> dict:
    """One unit on a worker -> ``part-N.parquet`` and ``rejects-N.parquet`` in ``parts``; its counts."""
    from nbdeploy.serve.score_io import TableWriter
    from nbdeploy.serve.score_run import id_columns, score_unit

    out = TableWriter(os.path.join(parts, f"part-{index:06d}.parquet"), "parquet", id_columns(id_column))
    rejects = TableWriter(os.path.join(parts, f"rejects-{index:06d}.parquet"), "parquet")
    scorer = _scorer(bundle)
    try:
        counts = score_unit(scorer, unit, chunk_rows, out, rejects, id_column)
    finally:
        out.close()
        rejects.close()
    c = counts
    return {"rows": c.rows, "scored": c.scored, "rejected": c.rejected, "out_of_range": c.out_of_range,
            "flags": dict(c.flags), "sources": dict(c.sources), "predictor": scorer.model.detail}


@contextlib.contextmanager
def client(workers: int, scheduler: str | None) -> Iterator[Any]:
    """A Dask client of the cluster at ``scheduler``, or of a LocalCluster of ``workers`` processes."""
    import dask
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            c = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise NbdeployError(f"cannot reach the Dask scheduler at {scheduler}: {exc}",
                                hint="start one with `dask scheduler` (and `dask worker`), or drop --scheduler"
                                ) from None
        with c:
            yield c
        return
    # worker processes: the validation and conversion hold the GIL, so threads would not scale
    with dask.config.set({"distributed.worker.profile.enabled": False,
                          "distributed.admin.system-monitor.interval": "60s",
                          "distributed.worker.daemon": False}):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                          worker_dashboard_address=None, memory_limit=0) as cluster, Client(cluster) as c:
            yield c


def run_units(c: Any, bundle: str, units: list[Unit], chunk_rows: int, id_column: str | None, parts: str,
              on_unit: Callable[[int, dict], None]) -> list[dict]:
    """Every unit as one task; ``on_unit`` with each unit's counts as it finishes. The first
    failure cancels the rest and is raised as an NbdeployError naming the unit."""
    from dask.distributed import as_completed

    futures = {c.submit(score_part, bundle, u, chunk_rows, id_column, parts, i, pure=False,
                        key=f"nbdeploy-score-{os.getpid()}-{id(units)}-{i}"): i for i, u in enumerate(units)}
    results: list[dict | None] = [None] * len(units)
    for fut in as_completed(list(futures)):
        i = futures[fut]
        try:
            results[i] = fut.result()
        except Exception as exc:
            for other in futures:
                other.cancel()
            message = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            hint = getattr(exc, "hint", None)
            raise NbdeployError(f"scoring {units[i].path} failed on a Dask worker: {message}",
                                hint=hint or "fix the input or the bundle and run again; no output was written"
                                ) from None
        on_unit(i, results[i])  # type: ignore[arg-type]
    return [r for r in results if r is not None]
