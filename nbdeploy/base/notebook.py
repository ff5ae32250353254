"""Reading notebook files, with errors a user can act on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nbdeploy.base.errors import NotebookInputError

INJECTED_TAG = "nbdeploy-injected"
PAPERMILL_INJECTED_TAG = "injected-parameters"
PAPERMILL_ERROR_TAG = "papermill-error-cell-tag"
#: the first line of every cell a job adds (capture, exports, predictions): capture skips such a
#: cell, whose imports of nbdeploy are the job's, not the notebook's
JOB_CELL_MARK = "# nbdeploy: a cell of the job, not of the notebook"


def load_notebook(path: str | Path) -> Any:
    """Read and validate a notebook file (nbformat 4)."""
    import nbformat

    p = Path(path)
    if not p.exists():
        raise NotebookInputError(f"no such notebook: {p}")
    if p.is_dir() or p.suffix != ".ipynb":
        raise NotebookInputError(f"{p} is not a notebook", hint="give a .ipynb file")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NotebookInputError(f"{p} is not valid notebook JSON: {exc}") from None
    if not isinstance(raw, dict) or "cells" not in raw and "worksheets" not in raw:
        raise NotebookInputError(f"{p} is not a notebook: no cells", hint="give a .ipynb file")
    try:
        nb = nbformat.reads(json.dumps(raw), as_version=4)
        nbformat.validate(nb)
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NotebookInputError(f"{p} is not a valid notebook: {msg}") from None
    return nb


def is_injected(cell: Any) -> bool:
    tags = cell.get("metadata", {}).get("tags", [])
    return bool({INJECTED_TAG, PAPERMILL_INJECTED_TAG, PAPERMILL_ERROR_TAG} & set(tags))


def user_cell_index(nb: Any, executed_index: int) -> int:
    """Index in the user's notebook of a cell of an executed copy (injected cells skipped)."""
    return sum(1 for c in nb.cells[:executed_index] if not is_injected(c))


def first_line(source: str) -> str:
    """The cell's first line of code (a comment line only when the cell holds nothing else)."""
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    code = [line for line in lines if not line.startswith("#")]
    return (code or lines or [""])[0][:120]


def failed_cell(nb: Any, exec_count: int | None) -> tuple[int, Any]:
    """(index in the executed copy, cell) of the cell that raised."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return i, cell
        if exec_count is not None and cell.get("execution_count") == exec_count:
            return i, cell
    for i, cell in enumerate(nb.cells):  # papermill marks the failing cell with a banner
        if "papermill-error-cell" in cell.source and cell.cell_type == "markdown" and i + 1 < len(nb.cells):
            if PAPERMILL_ERROR_TAG in cell.metadata.get("tags", []) and "id=" in cell.source:
                return i + 1, nb.cells[i + 1]
    return 0, nb.cells[0]


def error_text(cell: Any) -> tuple[str | None, str | None]:
    """(ename, evalue) from a cell's outputs, or its stderr when IPython printed a usage error."""
    for o in cell.get("outputs", []):
        if o.get("output_type") == "error":
            return o.get("ename"), o.get("evalue")
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream" and o.get("name") == "stderr" and o.get("text", "").strip():
            text = o["text"].strip().splitlines()[-1]
            name, _, value = text.partition(": ")
            return (name, value) if value and name.isidentifier() else ("Error", text)
    return None, None
