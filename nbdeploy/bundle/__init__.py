"""The handoff bundle: build it from a clean run of the notebook, verify it in a fresh environment.

    build_bundle(notebook, ...)  -> BuildResult      (nbdeploy build / %deploy build)
    verify_bundle(bundle, ...)   -> VerifyReport     (nbdeploy verify / %deploy verify)

Nothing heavy is imported until one of them is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbdeploy.bundle.build import BuildResult, build_bundle
    from nbdeploy.bundle.verify import VerifyReport, verify_bundle

__all__ = ["BuildResult", "VerifyReport", "build_bundle", "verify_bundle"]
_WHERE = {"BuildResult": "build", "build_bundle": "build", "VerifyReport": "verify",
          "verify_bundle": "verify"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
