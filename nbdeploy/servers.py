"""API servers started in the background for a notebook's bundle (``%deploy serve``).

The handle of each server is kept as JSON in ``.nbdeploy/<notebook>/server.json``
so ``%deploy serve --stop`` (or another process, such as the JupyterLab
extension) can find and stop it, and a second ``%deploy serve`` reuses a live one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ServeError
from .state import NotebookState, atomic_write_json


def _handle_path(notebook: Path) -> Path:
    return NotebookState.for_notebook(notebook).root / "server.json"


def _translate(exc: Exception) -> ServeError:
    return ServeError(getattr(exc, "message", str(exc)), hint=getattr(exc, "hint", None))


def running(notebook: Path) -> Any | None:
    """The live server of this notebook, or None."""
    from .serve import ServerHandle

    path = _handle_path(notebook)
    if not path.exists():
        return None
    try:
        handle = ServerHandle.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None
    return handle if handle.alive() else None


def start(notebook: Path, bundle: Path, **config: Any) -> Any:
    """Serve ``bundle`` in the background (reusing a live server of the same bundle)."""
    from .serve import ServeConfig, launch
    from .serve.errors import ServeError as RuntimeServeError

    current = running(notebook)
    if current is not None:
        if Path(current.bundle_dir) == bundle.resolve():
            return current
        current.stop()
    if not (bundle / "model").is_dir():
        raise ServeError(f"{bundle} is not a bundle (no model/ folder)",
                         hint="build one first: %deploy build")
    try:
        cfg = ServeConfig.from_env(**config)
        if "log_path" not in config:
            cfg.log_path = str(_handle_path(notebook).parent / "requests.jsonl")
        handle = launch(bundle, cfg)
    except RuntimeServeError as exc:
        raise _translate(exc) from None
    atomic_write_json(_handle_path(notebook), handle.to_dict())
    return handle


def stop(notebook: Path) -> Any | None:
    """Stop this notebook's server; returns the handle that was stopped, or None."""
    handle = running(notebook)
    if handle is not None:
        handle.stop()
    _handle_path(notebook).unlink(missing_ok=True)
    return handle


def sample_curl(handle: Any, bundle: Path) -> str:
    """A curl command that asks the server for a prediction on the bundle's example rows."""
    example = bundle / "model" / "input_example.json"
    body = '{"dataframe_split": ' + (example.read_text().strip() if example.exists() else "{}") + "}"
    if example.exists():
        doc = json.loads(example.read_text())
        if isinstance(doc, dict) and "data" in doc:
            doc = {"columns": doc.get("columns"), "data": doc["data"][:2]}
            body = json.dumps({"dataframe_split": doc})
    return (f"curl -X POST {handle.url}/invocations -H 'Content-Type: application/json' "
            f"-d '{body}'")
