"""A token given as a parameter (-p, a grid) reaches no file: not the executed copy papermill
writes, not the batch's results.csv, not the MLflow store's params, tags or artifacts."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import nbformat
import pytest

from nbdeploy.job.batch import run_batch
from tests.job.conftest import VENV_BIN

TOKEN = "tkn8Hq3ZvR6pL1mX9cW4Param"
PASSWORD = "Zq8Param3Lx7Mv2Kp"


def _notebook(proj: Path) -> Path:
    v4 = nbformat.v4
    nb = v4.new_notebook()
    params = v4.new_code_cell('api_token = "none"\ndb_url = "sqlite:///x.db"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, v4.new_code_cell('print("calling with", {"Authorization": f"Bearer {api_token}"}, db_url)'),
                v4.new_code_cell("%deploy metric n {len(api_token)}")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, proj / "secretive.ipynb")
    return proj / "secretive.ipynb"


@pytest.mark.slow
def test_a_token_parameter_is_scrubbed_from_runs_results_and_the_mlflow_store(proj: Path) -> None:
    nb = _notebook(proj)
    result = run_batch(nb, {"runs": [{"api_token": TOKEN, "db_url": f"postgresql://app:{PASSWORD}@db/prod"}]},
                       workers=1, tracking="sync")
    (run,) = result.runs
    assert run.ok, run.error
    executed = Path(run.output).read_text()
    assert "Bearer ***" in executed and "app:***@db" in executed  # the outputs, scrubbed in place
    state = proj / ".nbdeploy"
    written = [p for p in state.rglob("*") if p.is_file()]
    assert any(p.name == "executed.ipynb" and "mlartifacts" in p.parts for p in written)  # logged to MLflow
    for p in written:
        data = p.read_bytes()
        assert TOKEN.encode() not in data and PASSWORD.encode() not in data, p
    con = sqlite3.connect(state / "mlflow.db")
    params = dict(con.execute("SELECT key, value FROM params").fetchall())
    con.close()
    assert params["api_token"] == "***" and params["db_url"] == "postgresql://app:***@db/prod"


@pytest.mark.slow
def test_a_run_killed_mid_cell_leaves_no_copy_with_the_token(proj: Path) -> None:
    """papermill saves the executed copy when the run starts (parameters cell injected, token
    in it) and again later; a run killed in between must not leave that first save unscrubbed."""
    v4 = nbformat.v4
    nb = v4.new_notebook()
    params = v4.new_code_cell('api_token = "none"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, v4.new_code_cell("import time\ntime.sleep(120)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, proj / "slow.ipynb")
    proc = subprocess.Popen([str(VENV_BIN / "nbdeploy"), "run", str(proj / "slow.ipynb"), "-p", "api_token", TOKEN,
                             "--tracking", "off"], cwd=proj, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        copies: list[Path] = []
        while not copies and time.monotonic() < deadline and proc.poll() is None:
            copies = [p for p in proj.rglob("*.ipynb") if "time.sleep(120)" in p.read_text(errors="replace")
                      and p.name != "slow.ipynb"]
            time.sleep(0.2)
        assert copies, "the run never saved its executed copy"
        time.sleep(1.0)  # inside the sleeping cell now
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and the kernel it started
        proc.wait(30)
    assert "api_token = " in copies[0].read_text()  # the injected cell is there...
    for p in proj.rglob("*"):
        if p.is_file():
            assert TOKEN.encode() not in p.read_bytes(), p  # ...but not the token, in any file
