"""The release commands against a real ``mlflow server`` process (``MLFLOW_TRACKING_URI`` points at it).

The fixture starts ``mlflow server`` on a free port with its own SQLite store and artifact
folder, builds versions 1 and 2 into it, and stops it by its pid. Version 1's passing verify
is recorded with :func:`nbdeploy.bundle.catalog.record_verify` (``test_local_registry`` runs the
real verify; here what is tested is what the server keeps). Every command runs as its own
process, so aliases and history are read back from the server, not from anything in memory.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.release.conftest import NAME, VENV_BIN, build_two_versions, cli, free_port, wait_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, processes):
    base = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    proc, log = processes.start(
        str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{base / 'server.db'}",
        "--artifacts-destination", str(base / "artifacts"), "--workers", "1", name="mlflow")
    wait_port(port, proc, log, timeout=300)
    uri = f"http://127.0.0.1:{port}"
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield uri, base
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved
        processes.stop(proc)


@pytest.fixture(scope="module")
def project(server):
    from nbdeploy.bundle.catalog import record_verify

    folder = server[1] / "proj"
    v1, v2 = build_two_versions(folder)
    record_verify(v1, True, "verified")
    return folder, v1, v2


def _aliases(uri: str) -> dict[str, str]:
    model = MlflowClient(tracking_uri=uri, registry_uri=uri).get_registered_model(NAME)
    return {a: str(v) for a, v in model.aliases.items()}


def test_versions_are_registered_on_the_server_with_their_bundles(server, project):
    uri, _ = server
    folder, _, _ = project
    assert not (folder / ".nbdeploy" / "mlflow.db").exists()  # nothing went to an embedded store
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = client.search_model_versions(f"name = '{NAME}'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    for v in versions:
        assert v.tags["nbdeploy.manifest_sha256"] and v.tags["nbdeploy.bundle_artifact"].endswith("/bundle")
        assert {a.path for a in client.list_artifacts(v.run_id)} == {"model", "bundle"}
    out = cli("versions", NAME, "--json", cwd=folder)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["registry"] == uri and [v["verify"]["ok"] if v["verify"] else None
                                       for v in doc["versions"]] == [None, True]


def test_promote_rollback_and_history_are_kept_by_the_server(server, project, tmp_path):
    uri, _ = server
    folder, _, _ = project
    assert cli("promote", NAME, "1", cwd=folder, env={"NBDEPLOY_USER": "alice"}).returncode == 0
    assert _aliases(uri) == {"champion": "1"}
    refused = cli("promote", NAME, "2", cwd=folder)
    assert refused.returncode == 2 and "version 2 has no passing verify" in refused.stderr
    forced = cli("promote", NAME, "2", "--force", cwd=folder, env={"NBDEPLOY_USER": "bob"})
    assert forced.returncode == 0 and "forced" in forced.stdout
    assert _aliases(uri) == {"champion": "2"}
    back = cli("rollback", NAME, cwd=folder, env={"NBDEPLOY_USER": "carol"})
    assert back.returncode == 0 and "version 2 -> version 1" in back.stdout
    assert _aliases(uri) == {"champion": "1"}
    out = cli("history", NAME, "--json", cwd=tmp_path)  # any folder: the server holds the history
    assert out.returncode == 0, out.stderr
    moves = json.loads(out.stdout)["moves"]
    assert [(m["from_version"], m["to_version"], m["action"], m["user"], m["forced"]) for m in moves] == [
        (None, "1", "promote", "alice", False), ("1", "2", "promote", "bob", True),
        ("2", "1", "rollback", "carol", False)]


def test_serve_models_uri_downloads_the_champion_from_the_server(server, project, processes, tmp_path):
    folder, v1, _ = project
    original = (v1 / "nbdeploy.json").read_bytes()
    v1.rename(folder / "v1-on-another-machine")  # the build folder is not here: only the server has it
    port = free_port()
    proc, log = processes.start(sys.executable, "-m", "nbdeploy", "serve", f"models:/{NAME}@champion",
                                "--port", str(port), "--log-path", "", name="serve", cwd=tmp_path)
    try:
        wait_port(port, proc, log)
        body = json.dumps({"dataframe_records": [{"a": 1.0, "b": 2.0, "c": 3.0}]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer = json.loads(resp.read())["predictions"][0]
    finally:
        processes.stop(proc)
        (folder / "v1-on-another-machine").rename(v1)
    served = tmp_path / ".nbdeploy" / "models" / NAME / "1"
    assert (served / "nbdeploy.json").read_bytes() == original
    assert "tiny-ridge version 1" in log.read_text() and "downloaded" in log.read_text()
    assert answer == pytest.approx(_version_one_answer(folder), rel=1e-9)  # scale 1, not version 2's 10


def _version_one_answer(folder: Path) -> float:
    import pandas as pd
    from sklearn.linear_model import LinearRegression

    df = pd.read_csv(folder / "data.csv")
    model = LinearRegression().fit(df[["a", "b", "c"]], df["t"])
    return float(model.predict(pd.DataFrame({"a": [1.0], "b": [2.0], "c": [3.0]}))[0])
