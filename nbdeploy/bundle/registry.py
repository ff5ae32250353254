"""Register a bundle's model as a new version in the MLflow model registry.

The store is the one :mod:`nbdeploy.job.tracking` names: the embedded SQLite
store beside the notebook, or ``MLFLOW_TRACKING_URI``. The model folder is
logged as the artifact ``model`` of a run in the experiment ``nbdeploy-bundles``,
and that artifact becomes the version's source, so the registry never points at
the bundle folder (which can be moved or deleted).

A version is tagged ``nbdeploy.build = building PID@HOST`` when it is registered and
``done`` when its bundle is attached. A build that fails in between withdraws (deletes) its
version; one killed in between cannot, so the next build of the same name deletes the
versions whose builder is gone (:func:`clear_unfinished`), as it clears staging folders.

Once the manifest is written, :func:`attach_bundle` logs the whole sealed bundle as the
run's artifact ``bundle`` and tags the version with the manifest's sha256 and the folder
it was built into: ``nbdeploy serve models:/NAME@champion`` and ``nbdeploy promote``
(:mod:`nbdeploy.release`) find the bundle, and its verify outcome, from the registry alone.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

from nbdeploy.base.errors import BundleError

EXPERIMENT = "nbdeploy-bundles"


def warm_up(project_dir: Path) -> threading.Thread:
    """Import MLflow and open the store in the background (hidden behind the notebook run)."""
    def work() -> None:
        try:
            _client(project_dir)
        except Exception:  # the real call reports it
            pass

    t = threading.Thread(target=work, name="nbdeploy-registry-warmup", daemon=True)
    t.start()
    return t


def _client(project_dir: Path):  # noqa: ANN202
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # no INFO lines about creating tables
    from mlflow import MlflowClient
    from mlflow.models import Model  # noqa: F401  (warm: the model folder is completed next)

    from nbdeploy.job.tracking import tracking_uri

    uri = tracking_uri(project_dir)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_experiments(max_results=1)  # creates and migrates an embedded store
    return client, uri


def register(model_dir: Path, name: str, project_dir: Path, tags: dict[str, str],
             params: dict | None = None, metrics: dict | None = None) -> dict:
    """Log ``model_dir`` and register it as a new version of ``name``: {uri, name, version, run_id}.

    The run also holds the notebook's parameters and metrics, so MLflow's own UI shows them.
    """
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException

    from nbdeploy.base.redact import scrub, scrub_text
    from nbdeploy.job.tracking import artifact_location

    # parameters (-p api_token ...) and the tags that repeat them: through the scrubber, as on disk
    params = scrub(params or {})
    tags = {k: scrub_text(v) for k, v in tags.items()}

    try:
        client, uri = _client(project_dir)
        exp = client.get_experiment_by_name(EXPERIMENT)
        exp_id = exp.experiment_id if exp else client.create_experiment(
            EXPERIMENT, artifact_location=artifact_location(project_dir))
        run = client.create_run(exp_id, tags=tags, run_name=f"bundle {name}")
        run_id = run.info.run_id
        numeric = {k: float(v) for k, v in (metrics or {}).items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}
        client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in (params or {}).items()],
                         metrics=[Metric(k, v, run.info.start_time, 0) for k, v in numeric.items()])
        client.log_artifacts(run_id, str(model_dir), "model")
        client.set_terminated(run_id)
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name, description="built by nbdeploy")
        mv = client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run_id,
                                         tags={**tags, TAG_BUILD: _building()})
    except MlflowException as exc:
        raise BundleError(f"registering {name} in the MLflow registry failed: {exc.message}",
                          hint="check MLFLOW_TRACKING_URI, or unset it to use the local store") from None
    except Exception as exc:  # the store itself (SQLAlchemy, sqlite): never a raw traceback
        from nbdeploy.job.tracking import tracking_uri

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise BundleError(f"registering {name} in the MLflow registry failed: the store "
                          f"{tracking_uri(project_dir)} answered {type(exc).__name__}: {first[:200]}",
                          hint="if it is the local store, an earlier run may have stopped while creating "
                               "it: move its file away and build again, or set MLFLOW_TRACKING_URI") from None
    return {"tracking_uri": uri, "name": name, "version": str(mv.version), "run_id": run_id,
            "source": mv.source}


#: version tags the release commands read (the source notebook's tags are set at registration)
TAG_BUILD = "nbdeploy.build"
TAG_MANIFEST = "nbdeploy.manifest_sha256"
TAG_BUNDLE_PATH = "nbdeploy.bundle_path"
TAG_BUNDLE_ARTIFACT = "nbdeploy.bundle_artifact"
BUNDLE_ARTIFACT = "bundle"
_TAG_MAX = 5000  # MLflow's limit on a model version tag's value


def json_tag(value: object) -> str:
    """A JSON tag value; one too long for the registry says where the whole record is."""
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _TAG_MAX else json.dumps({"truncated": "see the bundle's nbdeploy.json"})


def attach_bundle(bundle_dir: Path, registered: dict, project_dir: Path, target: Path,
                  manifest_sha256: str) -> dict:
    """Log the sealed bundle as the run's artifact ``bundle``; tag the version with where it is."""
    from mlflow.exceptions import MlflowException

    name, version = registered["name"], registered["version"]
    try:
        client, _ = _client(project_dir)
        client.log_artifacts(registered["run_id"], str(bundle_dir), BUNDLE_ARTIFACT)
        artifact = f"runs:/{registered['run_id']}/{BUNDLE_ARTIFACT}"
        for key, value in ((TAG_MANIFEST, manifest_sha256), (TAG_BUNDLE_PATH, str(target)),
                           (TAG_BUNDLE_ARTIFACT, artifact), (TAG_BUILD, "done")):
            client.set_model_version_tag(name, version, key, value)
    except MlflowException as exc:
        raise BundleError(f"attaching the bundle to {name} version {version} in the MLflow registry "
                          f"failed: {exc.message}",
                          hint="check MLFLOW_TRACKING_URI, or unset it to use the local store") from None
    return {**registered, "bundle_artifact": artifact}


def _building() -> str:
    return f"building {os.getpid()}@{socket.gethostname()}"


def unfinished(tags: dict[str, str]) -> bool:
    """Registered by a build that has not attached its bundle (still running, failed or killed)."""
    return str(tags.get(TAG_BUILD, "")).startswith("building")


def withdraw(registered: dict, project_dir: Path) -> str | None:
    """Delete the version a failing build registered; None, or why it could not (best effort:
    the build's own error is what the user needs first)."""
    try:
        client, _ = _client(project_dir)
        client.delete_model_version(registered["name"], registered["version"])
        client.set_terminated(registered["run_id"], "FAILED")
    except Exception as exc:  # noqa: BLE001  (reported as a note, never instead of the build's error)
        return (f"{registered['name']} version {registered['version']} stays in the registry without a bundle "
                f"({type(exc).__name__}); delete it in MLflow's UI")
    return None


def clear_unfinished(name: str, project_dir: Path) -> list[str]:
    """Delete the versions of ``name`` whose build was killed on this machine before attaching
    its bundle (their builder's process is gone); the version numbers deleted."""
    from mlflow.exceptions import MlflowException

    from nbdeploy.serve.logfiles import pid_alive

    host = socket.gethostname()
    removed = []
    try:
        client, _ = _client(project_dir)
        for mv in client.search_model_versions(f"name = '{name}'"):
            state = str((mv.tags or {}).get(TAG_BUILD, ""))
            pid, _, where = state.removeprefix("building ").partition("@")
            if not state.startswith("building ") or where != host or not pid.isdigit() or pid_alive(int(pid)):
                continue
            client.delete_model_version(name, mv.version)
            if mv.run_id:
                client.set_terminated(mv.run_id, "KILLED")
            removed.append(str(mv.version))
    except MlflowException:  # a name not registered yet, or a store that refuses: nothing to clear
        return removed
    return sorted(removed, key=int)
