"""Bundles built once per session from real papermill runs, and small fixture notebooks."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "example_notebooks"


@pytest.fixture(scope="session", autouse=True)
def _local_mlflow_store():
    """Builds register into the embedded store beside each notebook, never a configured server."""
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture(scope="session")
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("bundle-examples") / "examples"
    shutil.copytree(EXAMPLES, dest, ignore=shutil.ignore_patterns(".nbdeploy", "*.pyc", "__pycache__",
                                                                  "scored_test.csv", "*-bundle"))
    return dest


def _build(notebook: Path, **kw):
    from nbdeploy.bundle import build_bundle

    lines: list[str] = []
    result = build_bundle(notebook, progress=lines.append, **kw)
    result.progress = lines
    return result


@pytest.fixture(scope="session")
def churn_build(example_dir: Path):
    return _build(example_dir / "churn_classifier.ipynb")


@pytest.fixture(scope="session")
def diabetes_build(example_dir: Path):
    return _build(example_dir / "diabetes_regression.ipynb")


def make_notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder with a small numeric data set (a, b, c -> label y, target t)."""
    d = tmp_path_factory.mktemp("fixture-notebooks")
    rng = np.random.default_rng(0)
    n = 300
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.uniform(0, 10, size=n),
                       "c": rng.integers(0, 5, size=n).astype(float)})
    df["t"] = 2 * df["a"] - 0.5 * df["b"] + df["c"] + rng.normal(scale=0.1, size=n)
    df["y"] = (df["t"] > df["t"].median()).astype(int)
    df.to_csv(d / "data.csv", index=False)
    return d


READ = ('import pandas as pd\n'
        'df = pd.read_csv("data.csv")\n'
        'X = df[["a", "b", "c"]]')


def serve_and_test(bundle: Path) -> tuple[bool, str]:
    """Start the bundle's API with this interpreter (no venv: fast) and run the bundle's tests."""
    from nbdeploy.bundle.verify import run_tests, start_api

    work = Path(tempfile.mkdtemp(prefix="nbdeploy-test-serve-"))
    try:
        server = start_api(bundle, Path(sys.executable), work)
        try:
            ok, summary, out = run_tests(bundle, Path(sys.executable), server.url)
        finally:
            server.stop()
        return ok, summary + "\n" + out + "\n" + server.output()
    finally:
        shutil.rmtree(work, ignore_errors=True)
