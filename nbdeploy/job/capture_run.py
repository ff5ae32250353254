"""``nbdeploy capture NB``: capture a notebook file by running it headlessly."""

from __future__ import annotations

import tempfile
from pathlib import Path

from nbdeploy.base.notebook import load_notebook
from nbdeploy.base.progress import Progress
from nbdeploy.base.state import NotebookState, atomic_write_json, atomic_write_text
from nbdeploy.job.execute import ExecutionResult, execute


def _cells_to_indices(record: dict, executed: Path) -> dict:
    """Add ``cell_index`` (position in the user's notebook) next to execution counts."""
    from nbdeploy.base.notebook import is_injected

    nb = load_notebook(executed)
    index_of, i = {}, 0
    for cell in nb.cells:
        if is_injected(cell):
            continue
        if cell.cell_type == "code" and cell.get("execution_count") is not None:
            index_of[cell.execution_count] = i
        i += 1
    for entry in record.get("lineage", []):
        entry["cell_indices"] = [index_of[c] for c in entry.get("cells", []) if c in index_of]
    for dep in record.get("dependencies", []):
        dep["cell_indices"] = [index_of[c] for c in dep.get("cells", []) if c in index_of]
    return record


def capture_notebook(notebook: str | Path, *, timeout: float | None = None,
                     kernel: str | None = None,
                     progress: Progress | None = None) -> ExecutionResult:
    """Run ``notebook`` in a fresh kernel with capture on; its record replaces the notebook's state.

    The record is written to ``.nbdeploy/<notebook>/`` only when the run is
    complete, so a failing run leaves the previous record as it was. ``kernel``: the
    kernel spec to run in (default: the notebook's, else this Python's, told to ``progress``).
    """
    nb_path = Path(notebook).resolve()
    nb = load_notebook(nb_path)
    state = NotebookState.for_notebook(nb_path)
    with tempfile.TemporaryDirectory(prefix="nbdeploy-capture-") as tmp:
        tmp_state = Path(tmp) / "state"
        result = execute(nb_path, Path(tmp) / "executed.ipynb", tmp_state, nb=nb, timeout=timeout,
                         kernel_name=kernel, progress=progress)
        if result.error is not None:
            kept = state.root / "last-failed-capture.ipynb"
            atomic_write_text(kept, (Path(tmp) / "executed.ipynb").read_text("utf-8"))
            result.error.output_path = str(kept)
            result.error.hint = f"the full traceback is in {kept}"
            return result
        record = _cells_to_indices(result.record, Path(tmp) / "executed.ipynb")
        for f in tmp_state.iterdir():
            if f.is_file() and f.name != "capture.json":
                atomic_write_text(state.root / f.name, f.read_text("utf-8"))
        result.output = state.root / "captured.ipynb"
        atomic_write_text(result.output, (Path(tmp) / "executed.ipynb").read_text("utf-8"))
        atomic_write_json(state.capture_path, record)  # last: readers see a complete set
        result.state_dir = state.root
        result.record = record
    return result
