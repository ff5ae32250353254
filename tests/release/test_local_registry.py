"""Versions, promote, rollback, history and ``serve models:/`` on the embedded SQLite registry.

One project is built twice (versions 1 and 2, real builds); version 1 is verified for real
with :func:`nbdeploy.bundle.verify.verify_bundle`. The tests run in file order: each moves
the aliases on from where the one before left them, as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from nbdeploy.base.errors import PromoteError, RegistryError
from nbdeploy.release import list_versions, promote, read_history, resolve, rollback
from tests.release.conftest import NAME, build_two_versions, cli, free_port, wait_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory):
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)  # the embedded store beside the notebook
    folder = tmp_path_factory.mktemp("release") / "proj"
    v1, v2 = build_two_versions(folder)
    yield folder, v1, v2
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture(scope="module")
def client(project) -> MlflowClient:
    uri = f"sqlite:///{project[0] / '.nbdeploy' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _aliases(client: MlflowClient) -> dict[str, str]:
    return {a: str(v) for a, v in client.get_registered_model(NAME).aliases.items()}


def test_versions_list_what_each_version_was_built_from(project):
    folder, v1, _ = project
    listed = list_versions(NAME, folder)
    assert [v.version for v in listed.versions] == ["2", "1"]
    one = listed.versions[1]
    manifest = json.loads((v1 / "nbdeploy.json").read_text())
    assert one.notebook == "tiny_ridge.ipynb" and one.notebook_sha256 == manifest["source"]["sha256"]
    assert one.parameters == {"scale": 1.0} and listed.versions[0].parameters == {"scale": 10.0}
    assert set(one.metrics) == {"r2"}
    assert one.training_data[0]["path"] == "data.csv"
    assert one.training_data[0]["hash"] == manifest["training_data"]["hash"]
    assert one.created.endswith("Z") and one.aliases == [] and one.verify is None
    text = listed.text()
    assert "scale=10.0" in text and "not verified" in text


def test_promote_refuses_a_version_without_a_passing_verify(project, client):
    folder, _, _ = project
    with pytest.raises(PromoteError) as info:
        promote(NAME, "1", project_dir=folder)
    msg = str(info.value)
    assert "version 1" in msg and "nbdeploy verify models:/tiny-ridge/1" in msg and "--force" in msg
    assert "\n" not in msg
    assert _aliases(client) == {}


def test_promote_refuses_a_version_whose_verify_failed(project):
    """The failed outcome is recorded with catalog.record_verify (only the refusal logic is tested here)."""
    from nbdeploy.bundle.catalog import record_verify

    folder, _, v2 = project
    record_verify(v2, False, "tests: 1 failed")
    with pytest.raises(PromoteError, match=r"version 2 failed verify \(tests: 1 failed\)"):
        promote(NAME, "2", project_dir=folder)


def test_a_verified_version_is_promoted_and_the_alias_really_moves(project, client, monkeypatch):
    from nbdeploy.bundle.verify import verify_bundle

    folder, v1, _ = project
    report = verify_bundle(v1)
    assert report.ok, report.text()
    monkeypatch.setenv("NBDEPLOY_USER", "alice")
    move = promote(NAME, "1", project_dir=folder)
    assert (move.from_version, move.to_version, move.forced, move.user) == (None, "1", False, "alice")
    assert _aliases(client) == {"champion": "1"}
    assert list_versions(NAME, folder).versions[1].verify["ok"] is True


def test_cli_refuses_then_force_promotes_and_the_history_says_forced(project, client):
    folder, _, _ = project
    refused = cli("promote", NAME, "2", cwd=folder, env={"NBDEPLOY_USER": "bob"})
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("nbdeploy: error: refusing to promote")
    assert _aliases(client) == {"champion": "1"}
    forced = cli("promote", NAME, "2", "--force", "--json", cwd=folder, env={"NBDEPLOY_USER": "bob"})
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["forced"] is True
    assert _aliases(client) == {"champion": "2"}
    challenger = cli("promote", NAME, "1", "--as", "challenger", cwd=folder)
    assert challenger.returncode == 0, challenger.stderr
    assert _aliases(client) == {"champion": "2", "challenger": "1"}


def test_serve_models_uri_answers_from_the_champion(project, processes):
    folder, _, _ = project
    assert _predict(processes, folder, f"models:/{NAME}@champion") == pytest.approx(10 * _predict(
        processes, folder, f"models:/{NAME}/1"), rel=1e-6)


def test_rollback_goes_back_to_the_previous_champion(project, client, processes):
    folder, _, _ = project
    move = rollback(NAME, project_dir=folder, user="carol")
    assert (move.from_version, move.to_version, move.action) == ("2", "1", "rollback")
    assert _aliases(client) == {"champion": "1", "challenger": "1"}
    with pytest.raises(PromoteError, match="no earlier version held it"):
        rollback(NAME, project_dir=folder)
    out = cli("versions", NAME, cwd=folder)
    assert out.returncode == 0 and "challenger,champion" in out.stdout


def test_history_says_which_version_was_champion_when_and_who_moved_it(project):
    folder, _, _ = project
    moves = read_history(NAME, folder).moves
    assert [(m.alias, m.from_version, m.to_version, m.action, m.user, m.forced) for m in moves] == [
        ("champion", None, "1", "promote", "alice", False),
        ("champion", "1", "2", "promote", "bob", True),
        ("challenger", None, "1", "promote", moves[2].user, False),
        ("champion", "2", "1", "rollback", "carol", False),
    ]
    assert all(m.time.endswith("Z") for m in moves) and moves[0].time <= moves[-1].time
    out = cli("history", NAME, cwd=folder)  # another process reads the same history
    assert out.returncode == 0 and "rollback  carol" in out.stdout and "yes" in out.stdout


def test_a_version_whose_folder_was_rebuilt_is_downloaded_from_its_artifact(project):
    folder, v1, v2 = project
    moved = folder / "elsewhere"
    shutil.move(v1, moved)
    try:
        got = resolve(f"models:/{NAME}@champion", folder)
        assert got.version == "1" and got.source == "downloaded"
        assert got.bundle == folder / ".nbdeploy" / "models" / NAME / "1"
        assert resolve(f"models:/{NAME}/1", folder).source == "download cache"
        assert resolve(f"models:/{NAME}/2", folder).bundle == v2  # its build folder still holds it
        (got.bundle / "tests" / "golden.json").write_text("{}")
        with pytest.raises(RegistryError, match="golden.json: changed"):
            resolve(f"models:/{NAME}/1", folder)
    finally:
        shutil.move(moved, v1)


def test_bad_references_are_one_line_errors(project, tmp_path):
    folder, _, _ = project
    with pytest.raises(RegistryError, match="not a model URI"):
        resolve("models:/tiny-ridge", folder)
    with pytest.raises(RegistryError, match=r"tiny-ridge has no version 9 .*\(versions: 1, 2\)"):
        promote(NAME, "9", project_dir=folder)
    with pytest.raises(RegistryError, match="no registered model 'nope'.*holds tiny-ridge"):
        list_versions("nope", folder)
    with pytest.raises(RegistryError, match="no model registry in .*MLFLOW_TRACKING_URI"):
        list_versions(NAME, tmp_path)
    assert not (tmp_path / ".nbdeploy").exists()  # no empty store was created there
    out = cli("serve", "models:/tiny-ridge@nobody", cwd=folder)
    assert out.returncode == 2 and out.stderr.startswith("nbdeploy: error: tiny-ridge has no alias 'nobody'")


def _predict(processes, folder: Path, uri: str) -> float:
    port = free_port()
    proc, log = processes.start(
        sys.executable, "-m", "nbdeploy", "serve", uri, "--port", str(port), "--log-path", "",
        name="serve", cwd=folder)
    try:
        wait_port(port, proc, log)
        body = json.dumps({"dataframe_records": [{"a": 1.0, "b": 2.0, "c": 3.0}]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())["predictions"][0]
    finally:
        processes.stop(proc)
