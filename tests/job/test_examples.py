"""The example notebooks as jobs, logged to a real `mlflow server`, then reproduced."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nbdeploy.job.reproduce import reproduce
from nbdeploy.job.run import last_run
from tests.job.conftest import VENV_BIN, free_port, wait_port


@pytest.mark.slow
def test_example_run_logged_to_an_mlflow_server_then_reproduced(examples, spawn, tmp_path):
    from mlflow.tracking import MlflowClient

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = spawn(str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                   "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                   "--artifacts-destination", str(tmp_path / "server-artifacts"),
                   "--workers", "1", name="mlflow")
    nb = examples / "diabetes_regression.ipynb"
    wait_port(port, server, timeout=300)
    proc = subprocess.run([sys.executable, "-m", "nbdeploy", "run", str(nb), "-p", "alpha", "0.5",
                           "--tracking", "sync", "--json"], capture_output=True, text=True,
                          cwd=examples, timeout=600, env={**__import__("os").environ,
                                                          "MLFLOW_TRACKING_URI": uri})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["tracking"]["status"] == "logged", doc["tracking"]
    assert doc["tracking"]["uri"] == uri
    ml = MlflowClient(tracking_uri=uri).get_run(doc["tracking"]["mlflow_run_id"])
    assert ml.data.params["alpha"] == "0.5" and ml.data.params["seed"] == "0"
    assert set(ml.data.metrics) == {"r2", "mae"}
    artifacts = {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(ml.info.run_id)}
    assert {"executed.ipynb", "capture.json", "run.json"} <= artifacts
    assert not (examples / ".nbdeploy" / "mlflow.db").exists()  # nothing went to the embedded store

    rec = last_run(nb)
    report = reproduce(nb, run_id=rec.run_id, tracking="off")
    assert report.ok, report.text()
    names = {(c.kind, c.name): c.status for c in report.checks}
    assert names[("input", "data/diabetes.csv")] == "matched"
    assert names[("metric", "r2")] == "matched" and names[("metric", "mae")] == "matched"
    assert names[("prediction", "reg on X_test.head(10)")] == "matched"
