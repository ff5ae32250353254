"""Live performance against training, for the CLI and the notebook (``nbdeploy performance``,
``%deploy performance``): from a running API's ``GET /performance`` or offline from its
request log (and a file of labels), both computed by :mod:`nbdeploy.serve.performance`."""

from __future__ import annotations

import json
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
        return PerformanceReport(text.rstrip("/"), _fetch(text.rstrip("/") + "/performance", token))
    from nbdeploy.serve.errors import ServingError
    from nbdeploy.serve.feedback import performance_log

    try:
        doc = performance_log(source, feedback)
    except ServingError as exc:
        raise ServeError(getattr(exc, "message", str(exc)), hint=getattr(exc, "hint", None)) from None
    return PerformanceReport(text + (f" with {feedback}" if feedback else ""), doc)


def _fetch(url: str, token: str | None, timeout: float = 30.0) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            doc: dict[str, Any] = json.loads(r.read())
            return doc
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read()).get("message") or e.reason
        except (ValueError, AttributeError):
            message = e.reason
        hint = "set NBDEPLOY_API_TOKEN to the API's token" if e.code == 401 else None
        raise ServeError(f"{url} answered {e.code}: {message}", hint=hint) from None
    except (urllib.error.URLError, OSError) as e:
        raise ServeError(f"no API answers at {url}: {getattr(e, 'reason', e)}",
                         hint="start one with `nbdeploy serve BUNDLE` or `%deploy serve`") from None
