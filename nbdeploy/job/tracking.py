"""Where runs and models are tracked: MLflow, embedded by default.

Without ``MLFLOW_TRACKING_URI`` every notebook directory gets its own SQLite
store (``.nbdeploy/mlflow.db``) with artifacts beside it, so nothing needs set-up;
with it, runs and model versions go to that server.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..state import STATE_DIRNAME


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
