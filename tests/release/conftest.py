"""A project with one small notebook built twice: versions 1 and 2 of one registered model.

Version 1 predicts ``t``, version 2 predicts ``10 * t`` (parameter ``scale``), so an answer
says which version gave it. Builds are real (a fresh kernel each, ~30 s): one pair per module.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

VENV_BIN = Path(sys.executable).parent
NAME = "tiny-ridge"  # the registered model: the notebook's name as a Kubernetes name

CELLS = (
    "scale = 1.0",  # tagged `parameters` below
    'import pandas as pd\nfrom sklearn.linear_model import LinearRegression\n'
    'df = pd.read_csv("data.csv")\nX = df[["a", "b", "c"]]\n'
    'm = LinearRegression().fit(X, df["t"] * scale)',
    "import nbdeploy\nnbdeploy.log_metric('r2', float(m.score(X, df['t'] * scale)))",
    "%deploy model m --example X.head(5)",
)


def make_project(folder: Path) -> Path:
    """``folder/tiny_ridge.ipynb`` and its ``data.csv`` (a, b, c -> t)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.uniform(0, 10, size=n),
                       "c": rng.integers(0, 5, size=n).astype(float)})
    df["t"] = 2 * df["a"] - 0.5 * df["b"] + df["c"] + rng.normal(scale=0.1, size=n)
    df.to_csv(folder / "data.csv", index=False)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nb.cells[0].metadata["tags"] = ["parameters"]
    path = folder / "tiny_ridge.ipynb"
    nbformat.write(nb, path)
    return path


def build_two_versions(folder: Path) -> tuple[Path, Path]:
    """Build version 1 (scale 1) and version 2 (scale 10): the two bundle folders."""
    from nbdeploy.bundle import build_bundle

    nb = make_project(folder)
    one = build_bundle(nb, output=folder / "bundles" / "v1", params={"scale": 1.0})
    two = build_bundle(nb, output=folder / "bundles" / "v2", params={"scale": 10.0})
    assert (one.version, two.version) == ("1", "2")
    return one.bundle, two.bundle


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:4]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s:\n{log.read_text()[-3000:]}")


class Processes:
    """Processes started in their own group, each stopped by its pid at teardown."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[subprocess.Popen] = []

    def start(self, *argv: str, name: str, env: dict | None = None, cwd: Path | None = None
              ) -> tuple[subprocess.Popen, Path]:
        log = self.folder / f"{name}-{len(self.procs)}.log"
        with open(log, "wb") as out:
            p = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, cwd=cwd or self.folder,
                                 env={**os.environ, **(env or {})}, start_new_session=True)
        self.procs.append(p)
        return p, log

    def stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory):
    procs = Processes(tmp_path_factory.mktemp("procs"))
    yield procs
    procs.stop_all()


def cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbdeploy", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=300)
