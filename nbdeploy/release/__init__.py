"""Release management on MLflow's model registry: versions, aliases, promote, rollback, history.

    promote(name, version, alias=..., force=...)  -> Move         (nbdeploy promote)
    rollback(name, alias=...)                      -> Move         (nbdeploy rollback)
    list_versions(name)                            -> VersionList  (nbdeploy versions)
    read_history(name)                             -> History      (nbdeploy history)
    resolve("models:/NAME@champion")              -> ResolvedBundle (nbdeploy serve models:/...)

Nothing heavy (MLflow) is imported until one of them is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbdeploy.release.history import History, Move
    from nbdeploy.release.moves import promote, read_history, rollback
    from nbdeploy.release.store import model_name
    from nbdeploy.release.uris import ResolvedBundle, is_models_uri, resolve
    from nbdeploy.release.versions import VersionInfo, VersionList, list_versions

__all__ = ["History", "Move", "ResolvedBundle", "VersionInfo", "VersionList", "is_models_uri", "list_versions",
           "model_name", "promote", "read_history", "resolve", "rollback"]
_WHERE = {"History": "history", "Move": "history", "promote": "moves", "read_history": "moves",
          "rollback": "moves", "ResolvedBundle": "uris", "is_models_uri": "uris", "resolve": "uris",
          "VersionInfo": "versions", "VersionList": "versions", "list_versions": "versions",
          "model_name": "store"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
