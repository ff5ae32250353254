"""nbdeploy: from a Jupyter notebook to a verified, serving handoff bundle.

Importing this package is cheap on purpose (it is imported by ``%load_ext``):
MLflow, Dask, pandas and the serving stack are imported only when used.
"""

from __future__ import annotations

from typing import Any

from nbdeploy._version import __version__

__all__ = ["__version__", "load_ipython_extension", "log_metric", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    from nbdeploy.frontends.magics import DeployMagics

    ipython.register_magics(DeployMagics(ipython))


def unload_ipython_extension(ipython: Any) -> None:
    from nbdeploy.capture.session import current_session

    session = current_session()
    if session is not None:
        session.stop()


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Record a metric of this notebook run (``%deploy metric NAME VALUE`` in code)."""
    from nbdeploy.base.errors import StateError
    from nbdeploy.capture.session import current_session

    session = current_session()
    if session is None:
        raise StateError("capture is not started in this kernel",
                         hint="run `%load_ext nbdeploy` and `%deploy init` first")
    session.log_metric(name, value, step)


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "nbdeploy.frontends.jupyter"}]


def _jupyter_labextension_paths() -> list[dict]:
    return [{"src": "labextension", "dest": "nbdeploy"}]
