"""pytest-jupyter's server fixtures (``jp_fetch`` against a real jupyter_server), scoped to this folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403

EXAMPLES = Path(__file__).resolve().parents[3] / "example_notebooks"


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"nbdeploy": True}}}


@pytest.fixture
def root(jp_root_dir: Path) -> Path:
    """The server root holding a copy of the churn example (notebook, data, helper module)."""
    for name in ("churn_classifier.ipynb", "features.py"):
        shutil.copy(EXAMPLES / name, jp_root_dir / name)
    shutil.copytree(EXAMPLES / "data", jp_root_dir / "data")
    return jp_root_dir
