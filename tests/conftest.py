"""Shared fixtures: copies of the example notebooks, and an in-process IPython shell."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "example_notebooks"


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    """A private copy of example_notebooks/ (tests never write into the repository)."""
    dest = tmp_path / "examples"
    shutil.copytree(EXAMPLES, dest, ignore=shutil.ignore_patterns(".nbdeploy", "*.pyc",
                                                                  "__pycache__", "scored_test.csv"))
    return dest


@pytest.fixture
def ipshell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An in-process IPython shell with nbdeploy loaded, working in ``tmp_path``."""
    from IPython.testing.globalipapp import get_ipython

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("NBDEPLOY_NOTEBOOK", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    shell = get_ipython()
    shell.reset(new_session=True)  # no history or names from an earlier test
    shell.run_line_magic("load_ext", "nbdeploy")
    yield shell
    from nbdeploy.capture.session import current_session

    s = current_session()
    if s is not None:
        s.stop()
    shell.user_ns.pop("__vsc_ipynb_file__", None)


def run(shell, source: str):
    """Run a cell like a notebook does (history on, so execution counts advance)."""
    result = shell.run_cell(source, store_history=True)
    return result
