"""The capture session that lives in a kernel while a data scientist works.

``CaptureSession`` listens to IPython's ``pre_run_cell``/``post_run_cell``
events, scans every executed cell for imports, ``%pip install`` and ``%run``,
records pandas I/O through :class:`.lineage.LineageRecorder`, and keeps the
notebook's record in ``.nbdeploy/<notebook>/`` up to date. The expensive parts
(resolving modules to distributions, the lock, profiles, OpenLineage) run on a
background writer, so a cell returns as fast as without capture;
:meth:`CaptureSession.sync` waits for them when a front end needs the full
picture.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from nbdeploy._version import __version__
from nbdeploy.base.notebook import JOB_CELL_MARK
from nbdeploy.base.state import NotebookState, atomic_write_json, atomic_write_text
from nbdeploy.capture.deps import ImportSite, Resolution, scan_source
from nbdeploy.capture.environment import capture_environment
from nbdeploy.capture.lineage import LineageRecorder
from nbdeploy.capture.record import CaptureRecord, SessionMode, SessionStatus, assemble

_current: CaptureSession | None = None


def current_session() -> CaptureSession | None:
    return _current


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CaptureSession:
    def __init__(self, notebook: str | Path, shell: Any = None, *, state_dir: Path | None = None,
                 mode: SessionMode = "interactive", profile: bool = True) -> None:
        nb = Path(notebook).resolve()
        st = NotebookState.for_notebook(nb)
        self.state = NotebookState(nb, Path(state_dir).resolve()) if state_dir else st
        self.notebook = nb
        self.project_dir = nb.parent
        self.shell = shell
        self.mode: SessionMode = mode
        self.id = str(uuid.uuid4())
        self.started = _now()
        self.status: SessionStatus = "running"
        self.sites: list[ImportSite] = []
        self.pip_installs: list[dict] = []
        self.failed_imports: dict[str, int | None] = {}
        self.metrics: dict[str, dict] = {}
        self.model: dict | None = None
        self.parameters: dict[str, Any] = {}
        self.params_cell: int | None = None
        self.environment = capture_environment()
        self.lineage = LineageRecorder(self.project_dir, self._cell, self.request_flush, profile)
        self.resolutions: dict[str, Resolution] = {}
        self.scanned_files: dict[str, float] = {}
        self.lock_cache: tuple[frozenset, Any] | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbdeploy-writer")
        self._queued: Future | None = None
        self._guard = threading.Lock()
        self._cell_now: int | None = None
        self.record: CaptureRecord | None = None  # the last record written (sync() returns it)

    # -- lifecycle --------------------------------------------------------
    def start(self) -> CaptureSession:
        global _current
        if _current is not None and _current is not self:
            _current.stop()
        _current = self
        self.lineage.install()
        if self.shell is not None:
            self._scan_history()
            self.shell.events.register("pre_run_cell", self._pre_run_cell)
            self.shell.events.register("post_run_cell", self._post_run_cell)
        self.request_flush()
        return self

    def stop(self) -> None:
        global _current
        if self.shell is not None:
            for name, cb in (("pre_run_cell", self._pre_run_cell), ("post_run_cell", self._post_run_cell)):
                try:
                    self.shell.events.unregister(name, cb)
                except ValueError:
                    pass
        self.lineage.uninstall()
        if _current is self:
            _current = None

    def finish(self, status: SessionStatus = "completed") -> CaptureRecord:
        """Mark the session finished (job runs), write everything, return the record."""
        self.status = status
        return self.sync()

    # -- kernel events ----------------------------------------------------
    def _cell(self) -> int | None:
        return self._cell_now

    def _scan_history(self) -> None:
        """Cells run before ``%deploy init`` count too."""
        inputs = self.shell.user_ns.get("In", []) if self.shell is not None else []
        for n, src in enumerate(inputs):
            if n and src:
                self.scan(src, cell=n)

    def _pre_run_cell(self, info: Any) -> None:
        count = getattr(self.shell, "execution_count", None)
        # IPython has already advanced the counter when it stores history
        if count is not None and getattr(info, "store_history", False):
            count -= 1
        self._cell_now = count
        self.lineage.ensure_patched()
        src = getattr(info, "raw_cell", "") or ""
        self.scan(src, cell=self._cell_now)

    def _post_run_cell(self, result: Any) -> None:
        err = getattr(result, "error_in_exec", None)
        if isinstance(err, ModuleNotFoundError) and err.name:
            self.failed_imports.setdefault(err.name, self._cell_now)
        self._cell_now = None
        self.request_flush()

    # -- what the notebook tells us ---------------------------------------
    def scan(self, source: str, *, cell: int | None = None, found_by: str = "import",
             ipython: bool = True) -> None:
        if source.startswith(JOB_CELL_MARK):  # the job's own cell: its imports are not the notebook's
            return
        found = scan_source(source, found_by=found_by, cell=cell, ipython=ipython)
        with self._guard:
            self.sites.extend(found.imports)
            self.pip_installs.extend({"requirement": r, "cell": cell} for r in found.pip_installs)
        for f in found.run_files:
            self.scan_file(self.project_dir / f, found_by=f"%run {f}")

    def add_pip_installs(self, requirements: list[str]) -> None:
        """Requirements a ``pip install`` line of the running cell names (``%deploy pip-check``: the
        line a job did not run), recorded as if the line had run."""
        with self._guard:
            self.pip_installs.extend({"requirement": r, "cell": self._cell_now} for r in requirements)

    def scan_file(self, path: Path, found_by: str) -> None:
        """Scan a local ``.py`` file (a ``%run`` script or a helper module) once per version."""
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return
        if self.scanned_files.get(str(path)) == mtime:
            return
        self.scanned_files[str(path)] = mtime
        if path.suffix == ".py":
            self.scan(path.read_text(encoding="utf-8", errors="replace"), found_by=found_by,
                      ipython=False)

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        entry: dict[str, Any] = {"value": float(value), "step": step, "cell": self._cell(), "time": _now()}
        with self._guard:
            prev = self.metrics.get(name)
            entry["history"] = ([*prev.get("history", []), prev["value"]] if prev else [])[-100:]
            self.metrics[name] = entry
        self.request_flush()

    @property
    def current_cell(self) -> int | None:
        """The execution count of the cell running now (None between cells)."""
        return self._cell_now

    def set_parameters(self, values: dict[str, Any], cell: int | None) -> None:
        """Record the notebook's parameters (``%%deploy params``); values that are not plain
        data are kept as their ``repr``."""
        self.parameters = {k: v if isinstance(v, bool | int | float | str | list | dict | None) else repr(v)
                           for k, v in values.items()}
        self.params_cell = cell
        self.request_flush()

    def set_model(self, variable: str, example: str | None = None, name: str | None = None) -> None:
        self.model = {"variable": variable, "example": example, "name": name, "cell": self._cell()}
        self.request_flush()

    # -- writing ----------------------------------------------------------
    def request_flush(self) -> None:
        """Schedule a write of the record (coalesced; never blocks the cell)."""
        with self._guard:
            if self._queued is not None and not self._queued.running() and not self._queued.done():
                return
            self._queued = self._writer.submit(self._flush_safe)

    def _flush_safe(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # never take the kernel down
            import logging

            logging.getLogger("nbdeploy.capture").warning("nbdeploy: writing state failed: %s", exc)

    def sync(self, timeout: float = 120.0) -> CaptureRecord:
        """Wait for pending work, write the record now, and return it."""
        deadline = time.monotonic() + timeout
        self.lineage.wait()
        fut = self._writer.submit(self.flush)
        fut.result(timeout=max(1.0, deadline - time.monotonic()))
        assert self.record is not None  # flush() just wrote it
        return self.record

    def flush(self) -> CaptureRecord:
        with self._guard:
            sites = list(self.sites)
            pip = list(self.pip_installs)
        record, lock = assemble(self, sites, pip)
        root = self.state.root
        atomic_write_json(self.state.capture_path, record)
        atomic_write_text(self.state.requirements_path, "\n".join(record["requirements"]) + "\n")
        atomic_write_text(self.state.lock_path, lock.to_text(
            f"transitive lock for {self.notebook.name}, from the packages installed in the kernel\n"
            f"generated by nbdeploy {__version__} at {record['updated']}"))
        if record["lineage"] or self.status != "running":
            from nbdeploy.capture.openlineage import run_events

            atomic_write_json(root / "openlineage.json",
                              run_events(record, finished=self.status != "running"))
        self.record = record
        return record
