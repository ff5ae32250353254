"""A grid of parameter sets, run in parallel on Dask distributed.

``run_batch`` checks every parameter set before any kernel starts, then submits
one job per set to a ``LocalCluster`` of ``workers`` in-process workers (default;
their kernels are forked from one kernel server, :mod:`.kernels`) or to the
scheduler at ``scheduler`` (workers must see the notebook's folder at the same
path). Every run gets a new kernel process. One failed run does not stop the
others. Results go to ``.nbdeploy/<notebook>/batches/<name>/results.csv`` (and
``batch.json``), updated after every finished run, so a batch that is re-run
skips the parameter sets that already succeeded unless ``force``.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import io
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbdeploy.base.errors import NbdeployError, ParameterError
from nbdeploy.base.redact import scrub
from nbdeploy.base.state import NotebookState, atomic_write_json, atomic_write_text, read_json
from nbdeploy.job import params as P
from nbdeploy.job.run import RunRecord, load_run, new_run_id, prepare_job

BatchProgress = Callable[[int, int, RunRecord | None], None]


# -- the grid -------------------------------------------------------------------
_GRID_HINT = "write `grid: {name: [v1, v2]}` (every combination) and/or `runs: [{name: v1}, {name: v2}]`"


def _product(grid: dict) -> list[dict[str, Any]]:
    if not isinstance(grid, dict) or not all(isinstance(k, str) for k in grid):
        raise ParameterError("a grid is a mapping of parameter names to lists of values")
    names = list(grid)
    axes = [v if isinstance(v, list) else [v] for v in grid.values()]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]


def expand_grid(doc: Any) -> list[dict[str, Any]]:
    """Parameter sets of a grid document.

    ``{grid: {a: [1, 2], b: [x, y]}}`` (or the bare mapping) is a cartesian product,
    ``{runs: [{a: 1}, {a: 2, b: x}]}`` (or a bare list) an explicit list; both keys
    may be combined.
    """
    if isinstance(doc, list):
        sets = doc
    elif isinstance(doc, dict) and ({"grid", "runs"} & set(doc)):
        extra = set(doc) - {"grid", "runs"}
        if extra:
            raise ParameterError(f"unexpected keys in the grid file: {', '.join(sorted(extra))}",
                                 hint="use `grid:` (cartesian product) and/or `runs:` (a list)")
        runs = doc.get("runs") or []
        if not isinstance(runs, list):
            raise ParameterError("`runs:` is a list of parameter sets")
        sets = (_product(doc["grid"]) if doc.get("grid") else []) + runs
    elif isinstance(doc, dict):
        sets = _product(doc)
    else:
        raise ParameterError("a grid is a mapping (`grid:`) or a list of parameter sets (`runs:`)")
    if not sets:
        raise ParameterError("the grid is empty")
    for i, s in enumerate(sets):
        if not isinstance(s, dict) or not all(isinstance(k, str) for k in s):
            raise ParameterError(f"grid entry {i} is not a mapping of parameter names to values")
    return sets


def load_grid(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    doc = P.read_yaml_file(p, "grid")
    try:
        return expand_grid(doc)
    except ParameterError as exc:  # the same problem, said of this file
        raise ParameterError(f"{p}: {exc.message}", hint=exc.hint or _GRID_HINT) from None


def _key(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, default=str)


# -- results ------------------------------------------------------------------
@dataclass
class BatchResult:
    notebook: str
    name: str
    batch_dir: str
    csv: str
    runs: list[RunRecord] = field(default_factory=list)  # grid order
    reused: list[str] = field(default_factory=list)  # run ids kept from an earlier batch
    duration: float = 0.0
    scheduler: str = ""
    tracking: str = ""  # where the runs are logged (MLflow), one line

    @property
    def failed(self) -> list[RunRecord]:
        return [r for r in self.runs if not r.ok]

    def summary(self) -> str:
        done = len(self.runs) - len(self.failed)
        line = (f"batch {self.name} of {Path(self.notebook).name}: {done} of {len(self.runs)} "
                f"runs completed, {len(self.failed)} failed")
        if self.reused:
            line += f", {len(self.reused)} reused from an earlier batch"
        line += f" in {self.duration:.1f}s; results {self.csv}"
        return line + (f"\n{self.tracking}" if self.tracking else "")

    def to_dict(self) -> dict:
        return {"notebook": self.notebook, "name": self.name, "batch_dir": self.batch_dir,
                "csv": self.csv, "duration": self.duration, "scheduler": self.scheduler,
                "reused": self.reused, "tracking": self.tracking,
                "runs": [r.to_dict() for r in self.runs]}

    def table(self) -> tuple[list[str], list[list[Any]]]:
        pnames = list(dict.fromkeys(k for r in self.runs for k in r.given))
        mnames = list(dict.fromkeys(k for r in self.runs for k in r.metrics))
        headers = (["run_id", "status", "duration_s"] + [f"param.{n}" for n in pnames]
                   + [f"metric.{m}" for m in mnames] + ["output", "error_cell", "error"])
        rows = []
        for r in self.runs:
            err = r.error or {}
            given = scrub(r.parameters)  # a column of its own: the value alone no longer says "token"
            rows.append([r.run_id, r.status, r.duration]
                        + [given.get(n, "") for n in pnames]
                        + [r.metrics.get(m, "") for m in mnames]
                        + [r.output, err.get("cell_index", ""), err.get("message", "")])
        return headers, rows

    def view(self) -> Any:
        from nbdeploy.base.tables import View

        headers, rows = self.table()
        keep = [i for i, h in enumerate(headers) if h not in ("output", "run_id")]
        bad = {i for i, r in enumerate(self.runs) if not r.ok}
        return View([(f"batch {self.name}", [headers[i] for i in keep],
                      [[row[i] for i in keep] for row in rows], bad)], self.summary())

    def write(self) -> None:
        headers, rows = self.table()
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(headers)
        w.writerows(rows)
        atomic_write_text(Path(self.csv), buf.getvalue())  # parameters may hold a token
        atomic_write_json(Path(self.batch_dir) / "batch.json", self.to_dict())


def _previous(batch_dir: Path) -> dict[str, RunRecord]:
    """Completed runs of an earlier batch in ``batch_dir``, by parameter set."""
    doc_path = batch_dir / "batch.json"
    if not doc_path.exists():
        return {}
    done = {}
    for r in read_json(doc_path).get("runs", []):
        if r.get("status") == "completed" and Path(r.get("output", "")).exists():
            try:
                rec = load_run(r["run_dir"])
            except NbdeployError:
                continue
            done[_key(rec.given)] = rec
    return done


# -- running --------------------------------------------------------------------
def _worker_run(notebook: str, values: dict[str, Any], run_id: str, batch_id: str,
                timeout: float | None, warm: bool = False, kernel: str | None = None) -> dict:
    """Runs on a Dask worker: one job, never raising (a failure is a failed record).

    In an empty context: jupyter_core keeps the event loop that papermill runs on in a
    ContextVar, and in-process workers inherit the submitting thread's context, so two
    workers would otherwise share (and both try to run) one loop.
    """
    return contextvars.Context().run(_run_isolated, notebook, values, run_id, batch_id, timeout,
                                     warm, kernel)


def _run_isolated(notebook: str, values: dict[str, Any], run_id: str, batch_id: str,
                  timeout: float | None, warm: bool, kernel: str | None) -> dict:
    from nbdeploy.job.run import run_notebook

    try:
        rec = run_notebook(notebook, parameters=values, timeout=timeout, tracking="off",
                           kind="batch", batch_id=batch_id, run_id=run_id, warm=warm,
                           kernel=kernel)
        return rec.to_dict()
    except Exception as exc:
        return _failed(notebook, values, run_id, batch_id, f"{type(exc).__name__}: {exc}")
    finally:
        _close_thread_loop()


def _close_thread_loop() -> None:
    """Close the loop papermill left set for this worker thread (each task makes its own)."""
    import asyncio

    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        return
    if not loop.is_running():
        loop.close()
        asyncio.set_event_loop(None)


def _failed(notebook: str, values: dict, run_id: str, batch_id: str, message: str) -> dict:
    """The record of a run that raised: the one it saved (a kernel that timed out or died
    still leaves its record and executed notebook), else one made from what is known."""
    run_dir = NotebookState.for_notebook(notebook).runs_dir / run_id
    try:
        saved = load_run(run_dir)
    except NbdeployError:
        saved = None
    if saved is not None and saved.status == "failed":
        if not Path(saved.output).exists():
            saved.output = ""
        return saved.to_dict()
    return RunRecord(run_id, notebook, str(run_dir), "failed", values, values,
                     error={"message": message}, kind="batch", batch_id=batch_id).to_dict()


@contextlib.contextmanager
def _cluster(workers: int, scheduler: str | None) -> Iterator[Any]:
    """A Dask client: of the cluster at ``scheduler``, or of a LocalCluster of this process."""
    if scheduler:
        from dask.distributed import Client

        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise NbdeployError(f"cannot reach the Dask scheduler at {scheduler}: {exc}",
                                hint="start one with `dask scheduler` or drop --scheduler") from None
        with client:
            yield client
        return
    from nbdeploy.job.kernels import warm_starts

    # Local workers fork their kernels from one kernel server (see .kernels). It
    # starts first: its imports run while this process imports and starts Dask.
    with warm_starts():
        from dask.distributed import Client

        with _local_cluster(workers) as cluster, Client(cluster) as client:
            yield client


def _local_cluster(workers: int) -> Any:
    """A LocalCluster of in-process workers, without the monitors that nobody reads here.

    The work happens in kernel subprocesses; a worker only drives one through
    papermill. In-process workers (threads) do that as well as worker processes and save
    starting and importing a Python interpreter per worker (seconds). They share
    this process, so Dask's own monitors would watch the drivers: the statistical
    profiler samples every thread's stack every 10 ms and the memory and system
    monitors call psutil several times a second (together several CPU seconds of a
    16-run batch). Nothing reads them here (no dashboard, no data kept in worker
    memory), so they are off for this cluster only.
    """
    import dask
    from dask.distributed import LocalCluster

    with dask.config.set({"distributed.worker.profile.enabled": False,
                          "distributed.admin.system-monitor.interval": "60s"}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=False,
                            dashboard_address=None, memory_limit=0)


def _results(client: Any, notebook: str, todo: list[tuple[int, dict]], batch_id: str,
             timeout: float | None, warm: bool, kernel: str) -> Iterator[tuple[int, RunRecord]]:
    """Submit one task per parameter set; yield (grid index, record) as runs finish."""
    from dask.distributed import as_completed

    futures = {}
    for i, values in todo:
        rid = new_run_id()
        args = (notebook, values, rid, batch_id, timeout, warm, kernel)
        fut = client.submit(_worker_run, *args, pure=False, key=f"nbdeploy-{rid}")
        futures[fut] = (i, values, rid)
    for fut in as_completed(list(futures)):
        i, values, rid = futures[fut]
        try:
            rec = RunRecord.from_dict(fut.result())
        except Exception as exc:  # the worker died, the scheduler went away, ...
            rec = RunRecord.from_dict(_failed(notebook, values, rid, batch_id, _lost(exc)))
            _record_lost(rec)
        yield i, rec


def _lost(exc: BaseException) -> str:
    """Why a run's task raised on the client side, in the batch's words."""
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    if type(exc).__name__ == "KilledWorker":
        return (f"the Dask worker running it died (killed, out of memory, or its machine went away) and "
                f"the scheduler gave up on the task ({type(exc).__name__}: {first}); run the batch again "
                "to run it (completed runs are kept)")
    return (f"the run's Dask task was lost ({type(exc).__name__}: {first}); run the batch again to "
            "run it (completed runs are kept)")


def _record_lost(rec: RunRecord) -> None:
    """Write the failed record over the "running" one the dead worker left (if it left one)."""
    run_dir = Path(rec.run_dir)
    if run_dir.is_dir():
        atomic_write_json(run_dir / "run.json", rec.to_dict())


def run_batch(notebook: str | Path, grid: str | Path | list[dict[str, Any]] | dict, *,
              workers: int = 2, scheduler: str | None = None, force: bool = False,
              name: str | None = None, timeout: float | None = None,
              tracking: str = "background", progress: BatchProgress | None = None,
              kernel: str | None = None, say: Callable[[str], None] | None = None) -> BatchResult:
    """Run ``notebook`` once per parameter set of ``grid``; see the module's docstring.

    ``kernel``: the kernel spec every run uses (default: the notebook's, else this
    Python's, which ``say`` is told in one line). Checked, like the grid, before any run.
    """
    from nbdeploy.job.kernelspec import choose_kernel

    started = time.perf_counter()
    sets = load_grid(grid) if isinstance(grid, str | Path) else expand_grid(grid)
    src, nb, pc, _ = prepare_job(notebook)
    choice = choose_kernel(nb, src, kernel)
    checked = []
    for i, values in enumerate(sets):
        try:
            checked.append(P.check(pc, values))
        except ParameterError as exc:
            raise ParameterError(f"grid entry {i} ({_key(values)}): {exc.message}",
                                 hint=exc.hint) from None
    if choice.note and say is not None:
        say(choice.note)
    name = name or (Path(grid).stem if isinstance(grid, str | Path) else "batch")
    batch_dir = NotebookState.for_notebook(src).root / "batches" / name
    result = BatchResult(str(src), name, str(batch_dir), str(batch_dir / "results.csv"),
                         scheduler=scheduler or f"LocalCluster({workers} workers)")
    earlier = {} if force else _previous(batch_dir)
    slots: list[RunRecord | None] = []
    todo: list[tuple[int, dict]] = []
    for i, values in enumerate(checked):
        prev = earlier.get(_key(values))
        slots.append(prev)
        if prev is not None:
            result.reused.append(prev.run_id)
        else:
            todo.append((i, values))
    total, done = len(checked), len(checked) - len(todo)
    tick = progress or (lambda _d, _t, _r: None)
    tick(done, total, None)
    fresh: list[RunRecord] = []
    if todo:
        with _cluster(workers, scheduler) as client:
            for i, rec in _results(client, str(src), todo, name, timeout, not scheduler,
                                   choice.name):
                slots[i] = rec
                fresh.append(rec)
                done += 1
                result.runs = [s for s in slots if s is not None]
                result.duration = round(time.perf_counter() - started, 3)
                result.write()
                tick(done, total, rec)
    result.runs = [s for s in slots if s is not None]
    result.duration = round(time.perf_counter() - started, 3)
    if tracking != "off" and fresh:
        from nbdeploy.job.tracking import where_logged

        result.tracking = where_logged(src.parent, tracking)
    result.write()
    if tracking != "off" and fresh:
        _track([Path(r.run_dir) for r in fresh if (Path(r.run_dir) / "run.json").exists()],
               tracking)
    return result


def _track(run_dirs: list[Path], mode: str) -> None:
    from nbdeploy.job import tracking as T

    if mode == "sync":
        for d in run_dirs:
            T.log_run(d)
    elif run_dirs:
        T.log_run_background(*run_dirs)
