"""The model registry the release commands read and move: MLflow's, opened once per command.

The store is the one the build registered into (:mod:`nbdeploy.job.tracking`): the
embedded SQLite store ``.nbdeploy/mlflow.db`` in the project folder (the notebook's),
or the server ``MLFLOW_TRACKING_URI`` names. A command run in a folder that has neither
is refused rather than creating an empty store there.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbdeploy.base.errors import RegistryError
from nbdeploy.base.state import STATE_DIRNAME

CHAMPION, CHALLENGER = "champion", "challenger"
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


@dataclass
class Registry:
    """An open registry: the MLflow client, its URI and the project folder it belongs to."""

    client: Any
    uri: str
    project_dir: Path

    @property
    def shown(self) -> str:
        """The URI as messages and listings show it: never a password."""
        from nbdeploy.base.redact import strip_url_password

        return strip_url_password(self.uri)

    def model(self, name: str) -> Any:
        """The registered model ``name`` (RegistryError naming the store when it has none)."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_registered_model(name)
        except MlflowException:
            names = sorted(m.name for m in self.client.search_registered_models(max_results=50))
            known = f"; it holds {', '.join(names)}" if names else "; it holds no model yet"
            raise RegistryError(f"no registered model {name!r} in {self.shown}{known}",
                                hint="build one with `nbdeploy build NOTEBOOK`") from None

    def version(self, name: str, ref: str) -> Any:
        """Version ``ref`` of ``name``: a number, or an alias such as ``champion``."""
        from mlflow.exceptions import MlflowException

        self.model(name)
        try:
            if str(ref).isdigit():
                return self.client.get_model_version(name, str(ref))
            return self.client.get_model_version_by_alias(name, str(ref))
        except MlflowException:
            versions = ", ".join(sorted((str(v.version) for v in self.versions(name)), key=int))
            what = f"version {ref}" if str(ref).isdigit() else f"alias {ref!r}"
            raise RegistryError(f"{name} has no {what} in {self.shown} (versions: {versions or 'none'})",
                                hint=f"list them with `nbdeploy versions {name}`") from None

    def versions(self, name: str) -> list[Any]:
        """Every version of ``name``, newest first."""
        found = self.client.search_model_versions(f"name = '{name}'")
        return sorted(found, key=lambda v: int(v.version), reverse=True)

    def aliases(self, name: str) -> dict[str, str]:
        """alias -> version of ``name``."""
        return {str(a): str(v) for a, v in (getattr(self.model(name), "aliases", None) or {}).items()}


def model_name(notebook: str | Path) -> str:
    """The registered model a notebook's builds are versions of (its name as a Kubernetes name)."""
    from nbdeploy.bundle.deploy_files import k8s_name

    return k8s_name(Path(notebook).stem)


def check_alias(alias: str) -> str:
    if not _ALIAS.match(alias) or alias.isdigit() or alias.lower() == "latest":
        raise RegistryError(f"{alias!r} cannot be an alias",
                            hint="use a word such as champion or challenger")
    return alias


def open_registry(project_dir: str | Path | None = None) -> Registry:
    """The registry of ``project_dir`` (default: the current folder), or MLFLOW_TRACKING_URI's."""
    import logging

    project = Path(project_dir or ".").resolve()
    if not os.environ.get("MLFLOW_TRACKING_URI") and not (project / STATE_DIRNAME / "mlflow.db").is_file():
        raise RegistryError(f"no model registry in {project} (no {STATE_DIRNAME}/mlflow.db, and "
                            "MLFLOW_TRACKING_URI is not set)",
                            hint="run it in the notebook's folder, pass --project DIR, or set "
                                 "MLFLOW_TRACKING_URI")
    for logger in ("mlflow", "alembic"):
        logging.getLogger(logger).setLevel(logging.WARNING)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    from nbdeploy.job.tracking import tracking_uri

    uri = tracking_uri(project)
    try:
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_registered_models(max_results=1)
    except (MlflowException, SQLAlchemyError) as exc:
        from nbdeploy.base.redact import strip_url_password

        why = getattr(exc, "message", None) or str(getattr(exc, "orig", None) or exc).splitlines()[0]
        local = project / STATE_DIRNAME / "mlflow.db"
        if uri.startswith("sqlite:") and not os.environ.get("MLFLOW_TRACKING_URI"):
            hint = (f"the local store {local} is damaged: move it aside (`nbdeploy doctor --repair`, or "
                    f"mv {local} {local}.broken); the next `nbdeploy build` starts a new registry")
        else:
            hint = "check MLFLOW_TRACKING_URI, or unset it to use the local store"
        raise RegistryError(f"cannot open the model registry {strip_url_password(uri)}: {why}", hint=hint) from None
    return Registry(client, uri, project)
