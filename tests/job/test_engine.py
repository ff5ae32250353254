"""When nbdeploy's papermill engine writes the executed notebook (no kernel needed)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from nbdeploy.job import engine


def _manager(tmp_path: Path) -> tuple[engine.FewerSaves, Path]:
    v4 = nbformat.v4
    nb = v4.new_notebook(cells=[v4.new_code_cell("a = 1"), v4.new_code_cell("1 / 0"),
                                v4.new_code_cell("b = 2")])
    nb.metadata["papermill"] = {}  # papermill.execute_notebook prepares this
    out = tmp_path / "executed.ipynb"
    return engine.FewerSaves(nb, output_path=str(out), progress_bar=False), out


def _cell_states(out: Path) -> list[str]:
    return [c["metadata"]["papermill"]["status"] for c in json.loads(out.read_text())["cells"]]


def test_written_at_the_start_when_a_cell_fails_and_at_the_end_not_per_cell(tmp_path):
    man, out = _manager(tmp_path)
    man.notebook_start()
    assert _cell_states(out) == ["pending"] * 3  # the file exists from the start
    cells = man.nb.cells
    man.cell_start(cells[0], 0)
    man.cell_complete(cells[0], 0)
    assert _cell_states(out) == ["pending"] * 3  # not rewritten for every cell
    man.cell_start(cells[1], 1)
    man.cell_exception(cells[1], 1)
    man.cell_complete(cells[1], 1)
    assert _cell_states(out) == ["completed", "failed", "pending"]  # the failure is on disk
    man.notebook_complete()
    doc = json.loads(out.read_text())
    assert doc["metadata"]["papermill"]["exception"] is True
    assert doc["metadata"]["papermill"]["end_time"] is not None


def test_a_long_run_is_written_as_cells_finish_once_save_every_has_passed(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "SAVE_EVERY", 0.0)  # every save is due
    man, out = _manager(tmp_path)
    man.notebook_start()
    man.cell_start(man.nb.cells[0], 0)
    man.cell_complete(man.nb.cells[0], 0)
    assert _cell_states(out) == ["completed", "pending", "pending"]
