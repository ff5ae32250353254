"""The nbdeploy serving runtime: a small, fast ASGI server for a handoff bundle.

Self-contained: imports nothing from the rest of nbdeploy, because the bundle builder
copies this folder into every bundle as the top-level package ``nbdeploy_serve``.
Importing it is cheap; the heavy parts load when a server starts.

    run(bundle_dir, config)        serve in this process (blocking)
    launch(bundle_dir, config)     serve in a background process -> ServerHandle
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ServeConfig
    from .errors import ServeError
    from .launcher import ServerHandle, launch
    from .openapi import openapi_document
    from .server import run

__all__ = ["ServeConfig", "ServeError", "ServerHandle", "launch", "openapi_document", "run"]

_WHERE = {
    "ServeConfig": "config",
    "ServeError": "errors",
    "ServerHandle": "launcher",
    "launch": "launcher",
    "openapi_document": "openapi",
    "run": "server",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
