"""One notebook job: run a copy in a fresh kernel with capture on, and record it.

Every run lives in ``.nbdeploy/<notebook>/runs/<run_id>/``:

``run.json``        the :class:`RunRecord` (parameters, status, duration, metrics,
                    lineage summary, error with the failing cell)
``executed.ipynb``  the executed copy, tracebacks included
``capture.json``    the run's full capture record (plus lock, requirements, OpenLineage)
``tracking.json``   where the run was logged in MLflow (written by the logger)

Parameters are checked before any kernel starts (:mod:`.params`).
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from nbdeploy.base.errors import CellExecutionError, NbdeployError, StateError
from nbdeploy.base.notebook import load_notebook
from nbdeploy.base.progress import Progress, ProgressEvent, note, silent
from nbdeploy.base.state import NotebookState, atomic_write_json, read_json
from nbdeploy.job import params as P

RUN_FILE = "run.json"
EXECUTED = "executed.ipynb"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")[:-3] + "-" + uuid.uuid4().hex[:6]


RunStatus = Literal["running", "completed", "failed"]
RunKind = Literal["run", "batch", "reproduce"]


@dataclass
class RunRecord:
    run_id: str
    notebook: str
    run_dir: str
    status: RunStatus
    parameters: dict[str, Any] = field(default_factory=dict)  # effective values (defaults + given)
    given: dict[str, Any] = field(default_factory=dict)  # the values passed in
    started: str = ""
    duration: float | None = None
    output: str = ""  # the executed notebook in the run folder
    copied_to: str | None = None  # -o OUT.ipynb
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: list[dict] = field(default_factory=list)  # path, role, hash, rows, cells
    error: dict | None = None  # CellExecutionError.to_dict()
    kind: RunKind = "run"
    batch_id: str | None = None
    reproduces: str | None = None
    tracking: dict = field(default_factory=dict)
    kernel: str = ""  # the kernel spec the run used

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> RunRecord:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in doc.items() if k in known})

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def cell_error(self) -> CellExecutionError | None:
        e = self.error
        if not e or "cell_index" not in e:
            return None
        return CellExecutionError(e["cell_index"], e.get("source_line", ""), e.get("ename", ""),
                                  e.get("evalue", ""), e.get("output_path"))

    def summary(self) -> str:
        name = Path(self.notebook).name
        metrics = " ".join(f"{k}={v:.6g}" for k, v in self.metrics.items())
        dur = f"{self.duration:.1f}s" if self.duration is not None else "-"
        line = f"run {self.run_id} of {name}: {self.status} in {dur}"
        if metrics:
            line += f"; {metrics}"
        if self.error:
            line += f"; {self.error.get('message')}"
        return line + f"; output {self.copied_to or self.output}"


def _lineage_summary(record: dict) -> list[dict]:
    keep = ("path", "relative_path", "role", "kind", "function", "hash", "bytes", "rows",
            "cells", "cell_indices")
    return [{k: e.get(k) for k in keep if k in e} for e in record.get("lineage", [])]


def _save(rec: RunRecord) -> None:
    atomic_write_json(Path(rec.run_dir) / RUN_FILE, rec.to_dict())


def prepare_job(notebook: str | Path, *, parameters: dict[str, Any] | None = None,
                cli: list[tuple[str, str]] | None = None,
                params_file: str | Path | None = None) -> tuple[Path, Any, P.ParametersCell | None,
                                                                 dict[str, Any]]:
    """(path, job notebook, parameters cell, checked values); raises before any kernel starts."""
    from nbdeploy.job.execute import skip_slow_schema_formats

    skip_slow_schema_formats()
    src = Path(notebook).resolve()
    nb, pc = P.job_notebook(load_notebook(src))
    values = P.resolve(pc, cli=cli, params_file=params_file, values=parameters)
    return src, nb, pc, values


def run_notebook(notebook: str | Path, *, parameters: dict[str, Any] | None = None,
                 cli: list[tuple[str, str]] | None = None, params_file: str | Path | None = None,
                 output: str | Path | None = None, timeout: float | None = None,
                 tracking: str = "background", kind: RunKind = "run", batch_id: str | None = None,
                 reproduces: str | None = None, run_id: str | None = None,
                 progress: Progress | None = None, prepared: tuple | None = None,
                 warm: bool = False, kernel: str | None = None) -> RunRecord:
    """Run a copy of ``notebook`` in a fresh kernel with papermill and capture on.

    ``tracking``: ``"background"`` (log to MLflow from a detached process),
    ``"sync"`` (log before returning) or ``"off"``. A failing cell does not raise:
    the record has ``status == "failed"`` and ``error`` names the cell. ``warm``:
    fork the kernel from a running kernel server (:mod:`.kernels`; a local batch).
    ``kernel``: the kernel spec to run in (default: the notebook's, else this Python's).
    """
    from nbdeploy.job.capture_run import _cells_to_indices
    from nbdeploy.job.execute import execute
    from nbdeploy.job.kernelspec import choose_kernel
    from nbdeploy.job.predictions import tail_cell

    say = progress or silent
    src, nb, pc, values = prepared or prepare_job(notebook, parameters=parameters, cli=cli,
                                                  params_file=params_file)
    effective = {**(pc.defaults() if pc else {}), **values}
    choice = choose_kernel(nb, src, kernel)  # before the run is recorded: a wrong name is no run
    run_id = run_id or new_run_id()
    run_dir = NotebookState.for_notebook(src).runs_dir / run_id
    rec = RunRecord(run_id, str(src), str(run_dir), "running", effective, values, _now(),
                    output=str(run_dir / EXECUTED), kind=kind, batch_id=batch_id,
                    reproduces=reproduces, kernel=choice.name)
    _save(rec)
    shown = " ".join(f"{k}={v!r}" for k, v in values.items()) or "defaults"
    if choice.note:
        say(note(choice.note))
    say(ProgressEvent(f"run {run_id}: executing a copy of {src.name} in a fresh kernel ({shown})", "started", 1, 2))
    try:
        result = execute(src, run_dir / EXECUTED, run_dir, parameters=values, nb=nb,
                         timeout=timeout, recorded=effective, tail=[tail_cell(run_dir)],
                         params_cell=pc.index if pc else None, warm=warm, kernel_name=choice.name)
    except NbdeployError as exc:  # the kernel did not start: still a recorded (failed) run
        rec.status, rec.error = "failed", exc.to_dict()
        _save(rec)
        raise
    rec.duration = round(result.duration, 3)
    rec.status = result.status
    record = result.record
    if (run_dir / EXECUTED).exists() and record:
        record = _cells_to_indices(record, run_dir / EXECUTED)
        atomic_write_json(run_dir / "capture.json", record)
    rec.metrics = {k: m["value"] for k, m in (record.get("metrics") or {}).items()}
    rec.lineage = _lineage_summary(record)
    if result.error is not None:
        rec.error = result.error.to_dict()
    if output is not None and (run_dir / EXECUTED).exists():
        out = Path(output).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / EXECUTED, out)
        rec.copied_to = str(out)
    _save(rec)
    say(ProgressEvent(f"run {run_id}: {rec.status} in {rec.duration:.1f}s", "ok" if rec.ok else "failed", 2, 2))
    if tracking != "off":
        rec.tracking = _track(run_dir, tracking)
        if tracking == "sync":
            _save(rec)
        say(note(_tracking_line(src.parent, tracking, rec.tracking)))
    return rec


def _tracking_line(project_dir: Path, mode: str, doc: dict) -> str:
    from nbdeploy.job.tracking import where_logged

    if doc.get("status") == "failed":
        return f"MLflow: the run was not logged: {doc.get('error')} (the run itself is recorded)"
    return where_logged(project_dir, mode)


def _track(run_dir: Path, mode: str) -> dict:
    from nbdeploy.job import tracking as T

    if mode == "sync":
        return T.log_run(run_dir)
    T.log_run_background(run_dir)
    return {"status": "pending", "mode": "background"}


# -- reading runs (the CLI, reproduce and the JupyterLab panel) ---------------
def load_run(run_dir: str | Path) -> RunRecord:
    run_dir = Path(run_dir)
    doc = read_json(run_dir / RUN_FILE)
    wrong = _record_problem(doc)
    if wrong:
        raise StateError(f"{run_dir / RUN_FILE} is damaged (not a run record: {wrong})",
                         hint="move it aside with `nbdeploy doctor --repair`; the other runs are kept")
    rec = RunRecord.from_dict(doc)
    tj = run_dir / "tracking.json"
    if tj.exists():
        try:
            rec.tracking = read_json(tj)
        except StateError:
            pass
    return rec


_NUMBER = (int, float)
#: what each field of a run record must hold (None allowed where the record allows it)
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "run_id": (str,), "notebook": (str,), "run_dir": (str,), "status": (str,), "parameters": (dict,),
    "given": (dict,), "started": (str,), "duration": (*_NUMBER, type(None)), "output": (str,),
    "copied_to": (str, type(None)), "metrics": (dict,), "lineage": (list,), "error": (dict, type(None)),
    "kind": (str,), "batch_id": (str, type(None)), "reproduces": (str, type(None)), "tracking": (dict,),
    "kernel": (str,),
}


def _record_problem(doc: Any) -> str | None:
    """What makes ``doc`` something other than a run record nbdeploy wrote (None: nothing)."""
    if not isinstance(doc, dict):
        return f"a JSON {type(doc).__name__}, not an object"
    missing = [k for k in ("run_id", "notebook", "run_dir", "status") if k not in doc]
    if missing:
        return f"no {', '.join(missing)}"
    for key, types in _FIELD_TYPES.items():
        if key in doc and (not isinstance(doc[key], types) or isinstance(doc[key], bool) and bool not in types):
            return f"{key} is a {type(doc[key]).__name__}"
    bad = [k for k, v in doc["metrics"].items() if not isinstance(v, _NUMBER) or isinstance(v, bool)] \
        if "metrics" in doc else []
    if bad:
        return f"metric {bad[0]!r} is not a number"
    return None


def list_runs(notebook: str | Path, *, kind: str | None = None) -> list[RunRecord]:
    """Runs of ``notebook``, oldest first."""
    root = NotebookState.for_notebook(notebook).runs_dir
    if not root.is_dir():
        return []
    runs = []
    for d in sorted(root.iterdir()):
        if (d / RUN_FILE).is_file():
            try:
                rec = load_run(d)
            except StateError:
                continue
            if kind is None or rec.kind == kind:
                runs.append(rec)
    return runs


def damaged_runs(notebook: str | Path) -> list[Path]:
    """Run records that cannot be read (``list_runs`` leaves them out; the CLI names them)."""
    root = NotebookState.for_notebook(notebook).runs_dir
    damaged = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if (d / RUN_FILE).is_file():
            try:
                load_run(d)
            except StateError:
                damaged.append(d / RUN_FILE)
    return damaged


def last_run(notebook: str | Path, *, status: str | None = None) -> RunRecord | None:
    for rec in reversed(list_runs(notebook)):
        if status is None or rec.status == status:
            return rec
    return None


def get_run(notebook: str | Path, run_id: str) -> RunRecord:
    d = NotebookState.for_notebook(notebook).runs_dir / run_id
    if not (d / RUN_FILE).is_file():
        raise StateError(f"no run {run_id!r} of {Path(notebook).name}",
                         hint=f"`nbdeploy runs {Path(notebook).name}` lists the runs")
    return load_run(d)
