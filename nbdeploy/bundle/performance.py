"""Live performance against training, for the CLI and the notebook (``nbdeploy performance``,
``%deploy performance``): from a running API's ``GET /performance`` or offline from its
request log (and a file of labels), both computed by :mod:`nbdeploy.serve.performance`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nbdeploy.base.errors import ServeError


class PerformanceReport:
    """Per version: labelled rows, live accuracy (or MAE/RMSE) and the training metric."""

    def __init__(self, source: str, doc: dict[str, Any]) -> None:
        self.source = source
        self.doc = doc

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, **self.doc}

    def text(self) -> str:
        from nbdeploy.serve.performance import text

        return text(self.doc, f"performance of {self.source} against the labels sent back")


def performance(source: str | Path, feedback: str | Path | None = None, token: str | None = None) -> PerformanceReport:
    """``source``: a running API's URL (its ``GET /performance``) or a request log file, read
    offline with the labels it holds (and those of ``feedback``: JSON lines or CSV)."""
    text = str(source)
    if text.startswith(("http://", "https://")):
        if feedback is not None:
            raise ServeError("--feedback goes with a request log, not a URL",
                             hint="POST the labels to the API's /feedback, or pass the log file")
        from nbdeploy.bundle.servers import get_json

        base = text.rstrip("/")
        return PerformanceReport(base, get_json(base, "/performance", token, timeout=30.0))
    from nbdeploy.serve.errors import ServingError
    from nbdeploy.serve.feedback import performance_log

    try:
        doc = performance_log(source, feedback)
    except ServingError as exc:
        raise ServeError(getattr(exc, "message", str(exc)), hint=getattr(exc, "hint", None)) from None
    return PerformanceReport(text + (f" with {feedback}" if feedback else ""), doc)
