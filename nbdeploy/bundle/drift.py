"""Drift reports for the CLI and the notebook: of a request log against its bundle, or of a running API.

The statistics and the page are the serving runtime's (:mod:`nbdeploy.serve.drift_report`,
:mod:`nbdeploy.serve.drift_html`), so the API's ``GET /drift?format=html`` and ``nbdeploy
drift BUNDLE --log`` read the same way; this module picks the source and hands the front
ends one typed result, :class:`FeatureDrift`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from nbdeploy.base.errors import ServeError
from nbdeploy.base.state import atomic_write_text

FailOn = Literal["drift", "moderate"]
#: what ``nbdeploy drift --fail-on`` exits with when a feature reached the level
EXIT_DRIFTED = 3


def is_url(source: str | Path | None) -> bool:
    """A running API (``http://`` or ``https://``) rather than a bundle folder or a ``models:/`` URI."""
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


class FeatureDrift:
    """A drift report: per feature a verdict, the test that gave it and why, and a chart."""

    def __init__(self, doc: dict[str, Any], url: str | None = None) -> None:
        self.doc = doc
        self.url = url

    @property
    def verdict(self) -> str:
        return str(self.doc.get("verdict"))

    def failed(self, level: FailOn) -> list[str]:
        """The features at ``level`` or worse (``--fail-on``)."""
        from nbdeploy.serve.drift_report import failed

        return failed(self.doc, level)

    def to_dict(self) -> dict[str, Any]:
        return {**({"url": self.url} if self.url else {}), **self.doc}

    def text(self) -> str:
        from nbdeploy.serve.drift_report import text

        return text(self.doc)

    def html(self) -> str:
        """The report as one self-contained page."""
        from nbdeploy.serve.drift_html import document

        return document(self.doc)

    def write_html(self, path: str | Path) -> Path:
        out = Path(path).expanduser()
        if out.is_dir():
            raise ServeError(f"--html {out} is a folder", hint="give a file name, e.g. drift.html")
        try:
            atomic_write_text(out, self.html())
        except OSError as e:
            raise ServeError(f"cannot write the drift report to {out}: {e.strerror or e}") from None
        return out

    def _repr_html_(self) -> str:  # the notebook shows the report inline
        from nbdeploy.serve.drift_html import fragment

        return fragment(self.doc)

    def __repr__(self) -> str:
        return self.text()


def _translate(exc: Any) -> ServeError:
    return ServeError(getattr(exc, "message", str(exc)), hint=getattr(exc, "hint", None))


def of_log(bundle: str | Path, log: str | Path) -> FeatureDrift:
    """The rows logged at ``log`` (its rotated and gzipped files too) against ``bundle``'s
    training profile, and the logged predictions against its prediction profile."""
    from nbdeploy.serve.drift_log import log_report
    from nbdeploy.serve.errors import ServingError

    folder = Path(bundle).expanduser()
    if not folder.is_dir():
        raise ServeError(f"no bundle folder at {folder}",
                         hint="give the bundle that served the log (a folder or models:/NAME@champion), or the "
                              "URL of a running API")
    try:
        return FeatureDrift(log_report(folder, log))
    except ServingError as exc:
        raise _translate(exc) from None


def of_api(url: str, token: str | None = None, timeout: float = 30.0) -> FeatureDrift:
    """The report of a running API: ``GET {url}/drift?format=report``."""
    from nbdeploy.bundle.servers import get_json

    base = url.rstrip("/")
    doc = get_json(base, "/drift?format=report", token, timeout)
    if not isinstance(doc, dict) or doc.get("kind") != "nbdeploy-drift-report":
        raise ServeError(f"{base}/drift does not give the per-feature report (an API of an older nbdeploy)",
                         hint=f"`nbdeploy drift BUNDLE --log REQUESTS.jsonl` reads its request log instead; "
                              f"`curl {base}/drift` gives its PSI per column")
    return FeatureDrift(doc, base)


def for_notebook(notebook: Path, source: str | Path | None = None, log: str | Path | None = None,
                 token: str | None = None) -> FeatureDrift:
    """``%deploy drift``: a URL's report; else ``log`` (default: the log of the API ``%deploy serve``
    started) against ``source`` (default: this notebook's bundle); with neither, the running API
    of this notebook, or when none runs, its last request log."""
    from nbdeploy.base.state import default_bundle_dir
    from nbdeploy.bundle import servers

    if is_url(source):
        if log is not None:
            raise ServeError("--log reads a request log against a bundle, not against a URL",
                             hint="%deploy drift [BUNDLE] --log REQUESTS.jsonl")
        return of_api(str(source), token)
    if source is None and log is None:
        handle = servers.running(notebook)
        if handle is not None:
            return of_api(handle.url, token)
    log = log if log is not None else servers.request_log(notebook)
    if not Path(log).exists():
        raise ServeError(f"no API of this notebook is running and there is no request log at {log}",
                         hint="start one with %deploy serve, or give a URL, or --log REQUESTS.jsonl")
    return of_log(source if source is not None else default_bundle_dir(notebook), log)
