"""Batch scoring with a bundle's own runtime: chunked in this process or on Dask, with lineage.

    score(bundle, input, output, workers=2, scheduler=None, ...) -> ScoreResult

The per-chunk work (validation, prediction, rejects) is :mod:`nbdeploy.serve.score`, the
code the API runs, so batch and online answers cannot differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .run import ScoreResult, score

__all__ = ["ScoreResult", "score"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
