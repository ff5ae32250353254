"""API servers started in the background for a notebook's bundle (``%deploy serve``).

The handle of each server is kept as JSON in ``.nbdeploy/<notebook>/server.json``
so ``%deploy serve --stop`` (or another process, such as the JupyterLab
extension) can find and stop it, and a second ``%deploy serve`` reuses a live one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nbdeploy.base.errors import ServeError
from nbdeploy.base.state import NotebookState, atomic_write_json


def _handle_path(notebook: Path) -> Path:
    return NotebookState.for_notebook(notebook).root / "server.json"


def _translate(exc: Any) -> ServeError:
    """The serving runtime's error (:class:`nbdeploy.serve.errors.ServingError`) as nbdeploy's."""
    return ServeError(getattr(exc, "message", str(exc)), hint=getattr(exc, "hint", None))


def serve_forever(bundle: str | Path, config: Any) -> None:
    """``nbdeploy serve``: serve ``bundle`` in this process until SIGTERM or SIGINT."""
    from nbdeploy.serve import run
    from nbdeploy.serve.errors import ServingError

    try:
        run(bundle, config)  # prints its own "serving ... on URL" line once it listens
    except ServingError as exc:
        raise _translate(exc) from None


def request_log(notebook: Path) -> Path:
    """Where ``%deploy serve`` has this notebook's API write its request log."""
    return _handle_path(notebook).parent / "requests.jsonl"


def running(notebook: Path) -> Any | None:
    """The live server of this notebook, or None."""
    from nbdeploy.serve import ServerHandle

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
    from nbdeploy.serve import ServeConfig, launch
    from nbdeploy.serve.errors import ServingError

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
            cfg.log_path = str(request_log(notebook))
        handle = launch(bundle, cfg)
    except ServingError as exc:
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


def sample_curl(url: str, bundle: Path) -> str:
    """A curl command that asks the API at ``url`` for a prediction on the bundle's example rows
    (the magics, the CLI and the panel all show this one)."""
    example = bundle / "model" / "input_example.json"
    body = '{"dataframe_split": ' + (example.read_text().strip() if example.exists() else "{}") + "}"
    if example.exists():
        doc = json.loads(example.read_text())
        if isinstance(doc, dict) and "data" in doc:
            doc = {"columns": doc.get("columns"), "data": doc["data"][:2]}
            body = json.dumps({"dataframe_split": doc})
    return (f"curl -X POST {url}/invocations -H 'Content-Type: application/json' "
            f"-d '{body}'")


class DriftReport:
    """The drift report of a running API (its ``GET /drift``), for the CLI and the notebook."""

    def __init__(self, url: str, doc: dict[str, Any]) -> None:
        self.url = url
        self.doc = doc

    def to_dict(self) -> dict[str, Any]:
        return {"url": self.url, **self.doc}

    def text(self) -> str:
        d = self.doc
        lines = [f"drift of {self.url}: {d.get('status')} over the last {d.get('rows', 0)} rows served"
                 + (f" (drifted: {', '.join(d['drifted'])})" if d.get("drifted") else "")]
        lines.append(f"  {'column':24} {'PSI':>8}  {'status':12} detail")
        for c in d.get("columns", []):
            if c.get("kind") == "numeric":
                detail = (f"mean {_num(c.get('training_mean'))} -> {_num(c.get('served_mean'))}, "
                          f"above max {_pct(c.get('above_training_max'))}, below min {_pct(c.get('below_training_min'))}")
            else:
                top = (c.get("largest_shifts") or [{}])[0]
                detail = (f"{top.get('value')!r} {_pct(top.get('training'))} -> {_pct(top.get('served'))}"
                          if top else "")
            psi = c.get("psi")
            lines.append(f"  {str(c.get('field')):24} {psi if psi is not None else '-':>8}  "
                         f"{str(c.get('status')):12} {detail}")
        t = d.get("thresholds") or {}
        lines.append(f"  PSI: < {t.get('moderate')} ok, < {t.get('drift')} moderate, above: drift; "
                     f"fewer than {t.get('min_rows')} rows: insufficient")
        return "\n".join(lines)


class ComparisonReport:
    """How a candidate's answers compare with the live model's (``nbdeploy compare``): the same
    table as a shadow's ``GET /shadow``, computed by the serving runtime (:mod:`nbdeploy.serve.compare`)."""

    def __init__(self, source: str, doc: dict[str, Any]) -> None:
        self.source = source
        self.doc = doc

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, **self.doc}

    def text(self) -> str:
        from nbdeploy.serve.compare import text

        d = self.doc
        title = f"{self.source}: v{d['primary']['version']} (live) against v{d['candidate']['version']} (candidate)"
        return text(d, title)


def compare(log: str | Path, candidate: str | Path | None = None) -> ComparisonReport:
    """The shadow records of a request log, or (``candidate``) a replay of its requests through
    that bundle, loaded here after its seal is checked."""
    from nbdeploy.serve import compare as comparing
    from nbdeploy.serve.errors import ServingError

    try:
        if candidate is None:
            return ComparisonReport(f"shadow records of {log}", comparing.compare_log(log))
        return ComparisonReport(f"replay of {log} through {candidate}", comparing.replay(log, candidate))
    except ServingError as exc:
        raise _translate(exc) from None


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.4g}"


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def fetch_drift(url: str, token: str | None = None, timeout: float = 10.0) -> DriftReport:
    """``GET {url}/drift`` of a running nbdeploy API (bearer ``token`` when it needs one)."""
    base = url.rstrip("/")
    return DriftReport(base, get_json(base, "/drift", token, timeout))


def get_json(base: str, path: str, token: str | None = None, timeout: float = 10.0) -> Any:
    """``GET {base}{path}`` of a running nbdeploy API as JSON; its errors as one ServeError line."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{base}{path}", headers={"Authorization": f"Bearer {token}"} if token else {})
    where = f"{base}{path.partition('?')[0]}"
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read()).get("message") or e.reason
        except (ValueError, AttributeError):
            message = e.reason
        hint = "set NBDEPLOY_API_TOKEN to the API's token" if e.code == 401 else None
        raise ServeError(f"{where} answered {e.code}: {message}", hint=hint) from None
    except ValueError as e:
        raise ServeError(f"{where} did not answer JSON: {e}", hint="is it an nbdeploy API?") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ServeError(f"no API answers at {base}: {reason}",
                         hint="start one with `nbdeploy serve BUNDLE` or `%deploy serve`") from None
