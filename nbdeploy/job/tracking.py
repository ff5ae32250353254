"""Where runs and models are tracked: MLflow, embedded by default.

Without ``MLFLOW_TRACKING_URI`` every notebook directory gets its own SQLite
store (``.nbdeploy/mlflow.db``) with artifacts beside it, so nothing needs set-up;
with it, runs and model versions go to that server.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nbdeploy.base.state import STATE_DIRNAME


def tracking_uri(project_dir: str | Path) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    db = Path(project_dir).resolve() / STATE_DIRNAME / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def artifact_location(project_dir: str | Path) -> str | None:
    """Artifact root for experiments created in the embedded store (None: the server decides)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    return (Path(project_dir).resolve() / STATE_DIRNAME / "mlartifacts").as_uri()


def where_logged(project_dir: str | Path, mode: str = "sync") -> str:
    """One line for the user: which MLflow store the runs go to, and how to look at them."""
    import shlex

    how = "logging from a background process" if mode == "background" else "logged"
    uri = tracking_uri(project_dir)
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return f"MLflow: {how} to the tracking server {uri} (MLFLOW_TRACKING_URI); its UI is there"
    db = uri.removeprefix("sqlite:///")
    return (f"MLflow: {how} to the store {db}; browse it with: "
            f"mlflow ui --backend-store-uri {shlex.quote(uri)}")


# -- logging runs ------------------------------------------------------------
# MLflow costs seconds to import (and the first use of a SQLite store runs its
# migrations), which would dominate a small notebook job. So ``nbdeploy run``
# writes its run record first and logs it to MLflow from a detached process
# (``python -m nbdeploy.job.tracking RUN_DIR``); ``tracking="sync"`` logs in
# process. Either way the outcome lands in ``<run_dir>/tracking.json``.

TRACKING_FILE = "tracking.json"


def experiment_name(notebook: str | Path) -> str:
    return f"nbdeploy/{Path(notebook).stem}"


@contextlib.contextmanager
def _store_lock(project_dir: Path):
    """One writer at a time per embedded store (concurrent SQLite migrations corrupt it)."""
    path = project_dir / STATE_DIRNAME / "mlflow.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _ms(iso: str | None) -> int | None:
    if not iso:
        return None
    return int(dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def log_run(run_dir: str | Path) -> dict:
    """Log a stored run (``run.json`` + executed notebook + capture record) to MLflow."""
    from nbdeploy.base.state import atomic_write_json, read_json

    run_dir = Path(run_dir)
    run = read_json(run_dir / "run.json")
    nb = Path(run["notebook"])
    uri = tracking_uri(nb.parent)
    doc: dict[str, Any] = {"uri": uri, "experiment": experiment_name(nb)}
    try:
        # MLflow prints "View run ... at ..." on stdout; stdout belongs to the front end
        with _store_lock(nb.parent), contextlib.redirect_stdout(sys.stderr):
            doc.update(_log(run, run_dir, uri))
        doc["status"] = "logged"
    except Exception as exc:  # the run itself stays recorded; say why tracking failed
        doc.update(status="failed", error=f"{type(exc).__name__}: {exc}")
    atomic_write_json(run_dir / TRACKING_FILE, doc)
    return doc


def _log(run: dict, run_dir: Path, uri: str) -> dict:
    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from nbdeploy.base.redact import scrub, scrub_text

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)

    nb = Path(run["notebook"])
    client = MlflowClient(tracking_uri=uri)
    name = experiment_name(nb)
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp else client.create_experiment(
        name, artifact_location=artifact_location(nb.parent))
    err = run.get("error") or {}
    tags = {"mlflow.runName": run["run_id"], "mlflow.source.name": str(nb),
            "mlflow.source.type": "JOB", "nbdeploy.run_id": run["run_id"],
            "nbdeploy.kind": run.get("kind", "run"), "nbdeploy.status": run["status"]}
    if run.get("batch_id"):
        tags["nbdeploy.batch_id"] = run["batch_id"]
    if run.get("reproduces"):
        tags["nbdeploy.reproduces"] = run["reproduces"]
    if err:
        tags["nbdeploy.error"] = scrub_text(err.get("message", ""))[:5000]
    start = _ms(run.get("started")) or int(time.time() * 1000)
    mlrun = client.create_run(exp_id, start_time=start, tags=tags)
    rid = mlrun.info.run_id
    # the run record on disk is scrubbed; these come from it, but a store outlives any one
    # scrubber's rules, so they pass it again here (a -p api_token ... never reaches a params row)
    params = [Param(k, scrub_text(json.dumps(v) if not isinstance(v, str) else v))
              for k, v in scrub(run.get("parameters") or {}).items()]
    metrics = [Metric(k, float(v), start, 0) for k, v in (run.get("metrics") or {}).items()]
    client.log_batch(rid, metrics=metrics, params=[Param(p.key, p.value[:6000]) for p in params],
                     tags=[RunTag("nbdeploy.duration_s", f"{run.get('duration') or 0:.3f}")])
    for fname in ("executed.ipynb", "run.json", "capture.json", "openlineage.json"):
        if (run_dir / fname).exists():
            client.log_artifact(rid, str(run_dir / fname))
    end = start + int((run.get("duration") or 0) * 1000)
    client.set_terminated(rid, "FINISHED" if run["status"] == "completed" else "FAILED", end)
    return {"experiment_id": exp_id, "mlflow_run_id": rid}


def log_run_background(*run_dirs: str | Path) -> subprocess.Popen:
    """Log stored runs from one detached process; each result lands in its ``tracking.json``."""
    dirs = [str(Path(d)) for d in run_dirs]
    with open(Path(dirs[0]) / "tracking.log", "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "nbdeploy.job.tracking", *dirs],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True, close_fds=True)


def wait_logged(run_dir: str | Path, timeout: float = 180.0) -> dict:
    """The ``tracking.json`` of a run, waiting for a background logger to write it."""
    from nbdeploy.base.errors import NbdeployError
    from nbdeploy.base.state import read_json

    path = Path(run_dir) / TRACKING_FILE
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise NbdeployError(f"the run in {run_dir} was not logged to MLflow within {timeout:.0f}s",
                                hint=f"see {Path(run_dir) / 'tracking.log'}")
        time.sleep(0.2)
    return read_json(path)


if __name__ == "__main__":
    results = [log_run(d) for d in sys.argv[1:]]
    sys.exit(0 if all(r.get("status") == "logged" for r in results) else 1)
