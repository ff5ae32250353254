"""Execute a copy of a notebook in a fresh kernel with capture on (papermill).

Every job (``nbdeploy capture``, ``run``, ``reproduce``, ``batch``, ``build``)
goes through :func:`execute`: it injects a first cell that loads nbdeploy and
starts a capture session writing into ``state_dir``, optional extra cells at the
end (the bundle's model export), runs the copy with papermill (nbdeploy's engine,
:mod:`.engine`, which writes the executed notebook less often), and turns a
failing cell into a :class:`CellExecutionError` that names the cell as the user
sees it in their notebook.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nbdeploy.base.errors import CellExecutionError, NbdeployError
from nbdeploy.base.notebook import (
    INJECTED_TAG,
    JOB_CELL_MARK,
    error_text,
    failed_cell,
    first_line,
    is_injected,
    load_notebook,
    user_cell_index,
)
from nbdeploy.base.progress import Progress, note
from nbdeploy.base.state import atomic_write_text, read_json
from nbdeploy.job.kernelspec import choose_kernel


@dataclass
class ExecutionResult:
    notebook: Path  # the source notebook
    output: Path  # the executed copy
    state_dir: Path  # where the run's capture record was written
    duration: float
    status: Literal["completed", "failed"]
    kernel: str = ""  # the kernel spec it ran in
    record: dict = field(default_factory=dict)
    error: CellExecutionError | None = None


def skip_slow_schema_formats() -> None:
    """Make importing papermill/nbformat seconds cheaper in a job's driver process.

    nbformat imports jsonschema, which imports ``rfc3987_syntax`` when it is
    installed (jupyter-events pulls it in) and builds a Lark grammar for the
    ``iri`` string format: 2-3 CPU seconds per process. Notebook schemas never
    use that format. Only done before jsonschema is imported, so a process that
    already uses jsonschema (a Jupyter server) keeps its format checks.
    """
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]


def _papermill() -> Any:
    """papermill, with its local file handler changed in two ways (once per process).

    * It never changes this process's folder. papermill's own handler wraps every read and
      write in ``os.chdir(cwd)`` ... ``os.chdir(old)`` with one ``cwd`` shared by the whole
      process; batch workers are threads of one process, and two writes interleaving that
      pair left the process in another folder. nbdeploy gives papermill absolute paths.
    * The executed copies of nbdeploy's runs (:data:`_SCRUBBED`) are written through the
      secret scrubber, atomically, at *every* save: the injected parameters cell holds
      ``-p api_token ...`` as given and outputs may print a token, and a run killed between
      two saves must not leave a copy that was never scrubbed. Other paths are papermill's.
    """
    import papermill as pm
    from papermill import iorw

    handler = iorw.papermill_io.get_handler("local")
    if getattr(handler, "_nbdeploy", False):
        return pm
    handler._cwd = None  # read/write call chdir(self._cwd); chdir(None) is papermill's no-op
    handler.cwd = _no_folder  # what local_file_io_cwd sets (and restores) is never kept
    plain_write = handler.write

    def write(buf: str, path: str) -> None:
        if os.path.abspath(path) in _SCRUBBED:
            atomic_write_text(Path(path), buf)
        else:
            plain_write(buf, path)

    handler.write = write
    handler._nbdeploy = True
    return pm


#: the executed copies being written by runs of this process (absolute paths)
_SCRUBBED: set[str] = set()


def _no_folder(_path: str | None) -> None:
    return None


def _code_cell(source: str) -> Any:
    import nbformat

    cell = nbformat.v4.new_code_cell(f"{JOB_CELL_MARK}\n{source}")
    cell.metadata["tags"] = [INJECTED_TAG]
    return cell


def prepare(nb: Any, notebook: Path, state_dir: Path, tail: list[str] | None = None,
            recorded: dict[str, Any] | None = None, params_cell: int | None = None) -> tuple[Any, list[tuple[int, str]]]:
    """A copy of ``nb`` with the capture cell first, the ``tail`` cells last and its ``pip install``
    lines turned into checks (:func:`without_installs`); and the lines so changed.

    ``recorded`` (the job's effective parameters) and ``params_cell`` go into the
    capture record of the run.
    """
    nb = copy.deepcopy(nb)
    source = ("%load_ext nbdeploy\n"
              f"%deploy init --mode job --notebook {str(notebook)!r} --state-dir {str(state_dir)!r}")
    if recorded is not None:
        doc = json.dumps(recorded, default=str)
        source += ("\nimport json as _nbd_json\n"
                   "from nbdeploy.capture.session import current_session as _nbd_session\n"
                   f"_nbd_session().parameters = _nbd_json.loads({doc!r})\n"
                   f"_nbd_session().params_cell = {params_cell!r}\n"
                   "del _nbd_json, _nbd_session")
    not_run = without_installs(nb)
    head = _code_cell(source)
    nb.cells.insert(0, head)
    for src in tail or []:
        nb.cells.append(_code_cell(src))
    nb.cells.append(_code_cell("%deploy finish"))
    return nb, not_run


#: what a job runs instead of a ``pip install`` line: the check that its packages are installed
REQUIRE = "%deploy pip-check"


def without_installs(nb: Any) -> list[tuple[int, str]]:
    """Turn every ``!pip install ...`` / ``%pip install ...`` line of the notebook's code cells into
    ``%deploy pip-check ...``, which installs nothing and fails the cell, naming the packages, when
    one is missing or at a version the line excludes. A run reproduces the notebook in the
    environment it was given, whose lock goes into the record and the bundle: a Colab-style
    first cell must neither change that environment (``--upgrade``) nor hang without an index.
    (cell index, the line as written) of each line changed."""
    from nbdeploy.capture.deps import logical_lines, pip_install_args

    changed = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or is_injected(cell):
            continue
        lines = cell.source.splitlines()
        for first, last, line in logical_lines(cell.source):
            args = pip_install_args(line)
            if args is None:
                continue
            indent = line[: len(line) - len(line.lstrip())]
            lines[first] = f"{indent}{REQUIRE} {args.strip()}  # nbdeploy runs do not install: {line.strip()}"
            for k in range(first + 1, last + 1):  # a continued line: its rest stays, as comments
                lines[k] = f"{indent}# (continued) {lines[k].strip()}"
            changed.append((i, line.strip()))
        if changed and changed[-1][0] == i:
            cell.source = "\n".join(lines)
    return changed


def execute(notebook: str | Path, output: str | Path, state_dir: str | Path, *,
            parameters: dict[str, Any] | None = None, tail: list[str] | None = None,
            nb: Any = None, kernel_name: str | None = None, timeout: float | None = None,
            log_output: bool = False, recorded: dict[str, Any] | None = None,
            params_cell: int | None = None, warm: bool = False,
            progress: Progress | None = None) -> ExecutionResult:
    """Run a copy of ``notebook`` with papermill; raise nothing for a failing cell.

    A failing cell is returned as ``result.error`` (status ``failed``); errors that
    are not the notebook's (a kernel that will not start) raise ``NbdeployError``.
    ``warm``: fork the kernel from this process's kernel server when one runs
    (:mod:`.kernels`, started by a local batch). ``kernel_name``: a kernel spec that must
    exist; without it the notebook's own, else this Python's (:mod:`.kernelspec`, which
    tells ``progress`` in one line).
    """
    skip_slow_schema_formats()
    pm = _papermill()
    from papermill.exceptions import PapermillExecutionError

    src = Path(notebook).resolve()
    out = Path(output).resolve()
    state = Path(state_dir).resolve()
    nb = load_notebook(src) if nb is None else nb
    choice = choose_kernel(nb, src, kernel_name)
    if choice.note and progress is not None:
        progress(note(choice.note))
    prepared, not_run = prepare(nb, src, state, tail, recorded, params_cell)
    if progress is not None:
        for i, line in not_run:
            progress(note(f"cell {i} ({line!r}) is not run: an nbdeploy run installs nothing; it checks "
                          "that those packages are installed instead"))
    out.parent.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    # The kernel starts in the notebook's folder because nbclient is told so. Not
    # papermill's cwd=: that changes this whole process's working directory for the
    # run, and batch workers are threads of one process (two of them interleaving
    # their changes started kernels in the wrong folder).
    options: dict[str, Any] = {"resources": {"metadata": {"path": str(src.parent)}}}
    km = None
    if warm:
        from nbdeploy.job.kernels import manager_class

        km = manager_class()
    options["kernel_manager_class"] = km or ipc_manager_class()
    started = time.perf_counter()
    error = None
    try:
        _execute_scrubbed(pm, out, prepared, parameters, choice.name, log_output, timeout, options)
    except PapermillExecutionError as exc:
        executed = load_notebook(out)
        idx, cell = failed_cell(executed, exc.exec_count)
        ename, evalue = error_text(cell)
        at = user_cell_index(executed, idx)
        # the first line as the user wrote it (a job rewrites `pip install` lines)
        written = nb.cells[at].source if at < len(nb.cells) and not is_injected(cell) else cell.source
        error = CellExecutionError(
            at, first_line(written),
            ename or exc.ename, evalue if evalue is not None else exc.evalue, str(out))
    except NbdeployError:
        raise
    except Exception as exc:
        raise NbdeployError(f"could not execute {src.name}: {type(exc).__name__}: {exc}") from exc
    duration = time.perf_counter() - started
    record = read_json(state / "capture.json") if (state / "capture.json").exists() else {}
    return ExecutionResult(src, out, state, duration, "failed" if error else "completed",
                           choice.name, record, error)


def _execute_scrubbed(pm: Any, out: Path, prepared: Any, parameters: dict[str, Any] | None, kernel: str,
                      log_output: bool, timeout: float | None, options: dict[str, Any]) -> None:
    """papermill's run, whose executed copy passes the secret scrubber like every record.

    papermill writes the copy itself (the injected parameters cell holds ``-p api_token ...``
    as given, and outputs may print a token or a URL with its password): every save of it is
    scrubbed (:func:`_papermill`), and it is rewritten through the scrubber however the run ended.
    """
    from nbdeploy.job import engine

    _SCRUBBED.add(str(out))
    try:
        pm.execute_notebook(
            prepared, str(out), parameters=parameters or {}, engine_name=engine.NAME,
            kernel_name=kernel, progress_bar=False, log_output=log_output,
            execution_timeout=timeout, report_mode=False, **options,
        )
    finally:
        _SCRUBBED.discard(str(out))
        if out.is_file():  # written scrubbed at every save; once more in case a write bypassed it
            atomic_write_text(out, out.read_text(encoding="utf-8"))


_IPC_MANAGER: type | None = None


def ipc_manager_class() -> type | None:
    """A kernel manager that talks to its kernel over Unix sockets (IPC), not TCP.

    The kernel is this user's, on this machine: IPC keeps the traffic off the network
    stack, and ipykernel no longer warns at every start that TCP without encryption can be
    eavesdropped. The sockets live in Jupyter's runtime folder (never the notebook's),
    and jupyter_client removes them when the kernel shuts down. None where IPC does not
    exist (Windows): papermill's default manager (TCP on 127.0.0.1) is used there.
    """
    global _IPC_MANAGER
    if os.name != "posix":
        return None
    if _IPC_MANAGER is None:
        import uuid

        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.paths import jupyter_runtime_dir

        class IPCKernelManager(AsyncKernelManager):
            def __init__(self, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                runtime = Path(jupyter_runtime_dir())
                runtime.mkdir(parents=True, exist_ok=True)
                self.transport = "ipc"
                self.ip = str(runtime / f"nbdeploy-kernel-{uuid.uuid4().hex[:12]}")

        _IPC_MANAGER = IPCKernelManager
    return _IPC_MANAGER
