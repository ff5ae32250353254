"""A build that fails after registering its model withdraws the version it made: the
registry keeps no version without a bundle, and the version's run is marked failed."""

from __future__ import annotations

from mlflow import MlflowClient

from nbdeploy.bundle import registry

NAME = "withdrawn_model"


def _versions(client: MlflowClient) -> list[str]:
    return sorted(str(mv.version) for mv in client.search_model_versions(f"name = '{NAME}'"))


def test_a_withdrawn_version_is_deleted_and_its_run_marked_failed(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the project's own SQLite store
    model = tmp_path / "model"
    model.mkdir()
    (model / "MLmodel").write_text("artifact_path: model\nflavors: {}\n")
    kept = registry.register(model, NAME, tmp_path, {"nbdeploy.source": "churn.ipynb"})
    failed = registry.register(model, NAME, tmp_path, {"nbdeploy.source": "churn.ipynb"})
    client = MlflowClient(tracking_uri=failed["tracking_uri"], registry_uri=failed["tracking_uri"])
    assert _versions(client) == sorted([kept["version"], failed["version"]])
    assert registry.unfinished(client.get_model_version(NAME, failed["version"]).tags)

    assert registry.withdraw(failed, tmp_path) is None
    assert _versions(client) == [kept["version"]]  # only the failed build's version is gone
    assert client.get_run(failed["run_id"]).info.status == "FAILED"
    assert client.get_run(kept["run_id"]).info.status == "FINISHED"

    # the version is gone already: what is left to do is said in one line, nothing is raised
    note = registry.withdraw(failed, tmp_path)
    assert note is not None and f"{NAME} version {failed['version']} stays in the registry" in note
    assert "delete it in MLflow's UI" in note
