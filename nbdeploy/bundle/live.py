"""What a running API is doing now: version, requests, errors, drift, and its canary or shadow.

Read from the API's own endpoints, never from its process: ``GET /metadata`` (name,
version, workers, canary and shadow set-up), ``GET /metrics`` (request counts, summed
over the workers), ``GET /drift`` and, when a shadow runs, ``GET /shadow``. The Deploy
panel's live view (through the server extension) and ``nbdeploy live URL`` both render
the one :class:`LiveStatus` this returns.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

#: endpoints that answer predictions (the others are probes, metadata and reports)
PREDICT_ENDPOINTS = frozenset({"invocations", "v2_infer"})
_REQUESTS = re.compile(r'^nbdeploy_requests_total\{endpoint="([^"]*)",status="(\d+)"\} (\S+)$')
_BY_VERSION = re.compile(r'^nbdeploy_version_requests_total\{version="([^"]*)",endpoint="([^"]*)",status="(\d+)"\} (\S+)$')
_WORKERS = re.compile(r"^nbdeploy_workers (\S+)$")


@dataclass
class CanaryStatus:
    version: str  # the candidate that answers a share of requests
    percent: float  # its configured share
    answered: int  # prediction requests the candidate answered with predictions so far
    share: float | None  # its share of all the predictions given (None before any)


@dataclass
class ShadowStatus:
    version: str  # the candidate that sees every request's inputs after the answer
    requests: int
    rows: int
    agreement: float | None  # share of rows where the candidate agreed with the live model
    errors: int


@dataclass
class LiveStatus:
    url: str
    up: bool
    error: str | None = None  # why the API did not answer (up is False)
    name: str | None = None
    version: str | None = None
    workers: int | None = None  # worker processes it was started with
    requests: int = 0  # prediction requests answered (MLflow /invocations and V2 infer)
    errors: int = 0  # of them, answered with a 4xx or 5xx
    drift: str | None = None  # ok | moderate | drift | insufficient; None: no drift report
    drift_rows: int = 0
    drifted: list[str] = field(default_factory=list)
    not_measured: list[str] = field(default_factory=list)  # inputs with no drift measure (free text)
    canary: CanaryStatus | None = None
    shadow: ShadowStatus | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        if not self.up:
            return f"{self.url}: not answering ({self.error})"
        lines = [f"{self.url}: {self.name} v{self.version}, {self.workers} worker(s); "
                 f"{self.requests} prediction request(s), {self.errors} error(s)",
                 "drift: " + ("no report (no training profile)" if self.drift is None else
                              f"{self.drift} over {self.drift_rows} rows"
                              + (f" (drifted: {', '.join(self.drifted)})" if self.drifted else "")
                              + (f"; not measured: {', '.join(self.not_measured)} (free text)"
                                 if self.not_measured else ""))]
        if self.canary is not None:
            c = self.canary
            share = "-" if c.share is None else f"{100 * c.share:.0f}%"
            lines.append(f"canary: v{c.version} answers {c.percent:g}% (so far {c.answered}, {share})")
        if self.shadow is not None:
            s = self.shadow
            agree = "-" if s.agreement is None else f"{100 * s.agreement:.1f}%"
            lines.append(f"shadow: v{s.version} saw {s.requests} request(s), agreement {agree}")
        return "\n".join(lines)


def _get(base: str, path: str, token: str | None, timeout: float) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(base + path, headers=headers), timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _counts(metrics: str) -> tuple[int, int, dict[str, int], int | None]:
    """(prediction requests, of them errors, predictions given by each version, workers) of /metrics."""
    requests = errors = 0
    by_version: dict[str, int] = {}
    workers = None
    for line in metrics.splitlines():
        if m := _REQUESTS.match(line):
            if m[1] in PREDICT_ENDPOINTS:
                n = int(float(m[3]))
                requests += n
                errors += n if int(m[2]) >= 400 else 0
        elif m := _BY_VERSION.match(line):
            if m[2] in PREDICT_ENDPOINTS and int(m[3]) < 400:
                by_version[m[1]] = by_version.get(m[1], 0) + int(float(m[4]))
        elif m := _WORKERS.match(line):
            workers = int(float(m[1]))
    return requests, errors, by_version, workers


def live_status(url: str, token: str | None = None, timeout: float = 5.0) -> LiveStatus:
    """The live status of the nbdeploy API at ``url`` (an API that does not answer is ``up=False``)."""
    base = url.rstrip("/")
    try:
        code, body = _get(base, "/metadata", token, timeout)
        if code != 200:
            why = "its token: set NBDEPLOY_API_TOKEN" if code == 401 else f"/metadata answered {code}"
            return LiveStatus(base, False, why)
        meta = json.loads(body)
        _, metrics = _get(base, "/metrics", token, timeout)
        drift_code, drift = _get(base, "/drift", token, timeout)
        shadow = _get(base, "/shadow", token, timeout)[1] if meta.get("shadow") else None
    except (urllib.error.URLError, OSError, ValueError) as e:
        return LiveStatus(base, False, str(getattr(e, "reason", e)))
    requests, errors, by_version, workers = _counts(metrics.decode("utf-8", "replace"))
    status = LiveStatus(base, True, name=meta.get("name"), version=str(meta.get("version")),
                        workers=(meta.get("server") or {}).get("workers") or workers,
                        requests=requests, errors=errors)
    if drift_code == 200:
        d = json.loads(drift)
        status.drift, status.drift_rows, status.drifted = d.get("status"), int(d.get("rows") or 0), d.get("drifted") or []
        status.not_measured = [str(c.get("field")) for c in d.get("not_measured") or [] if isinstance(c, dict)]
    if meta.get("canary"):
        c = meta["canary"]
        answered = by_version.get(str(c["version"]), 0)
        total = sum(by_version.values())
        status.canary = CanaryStatus(str(c["version"]), float(c.get("percent") or 0), answered,
                                     answered / total if total else None)
    if shadow is not None:
        s = json.loads(shadow)
        status.shadow = ShadowStatus(str((s.get("candidate") or {}).get("version")), int(s.get("requests") or 0),
                                     int(s.get("rows") or 0), s.get("agreement"), int(s.get("errors") or 0))
    return status
