"""REST handlers under ``{base_url}nbdeploy/``. Thin: parse, call the core or the job manager, answer JSON.

=======  ===========================  ==========================================
GET      nbdeploy/readiness?path=NB    the readiness checklist of a notebook
GET      nbdeploy/bundles?path=DIR     bundles under a folder (default: the root)
GET      nbdeploy/jobs                 all jobs of this server
POST     nbdeploy/jobs                 start a job (body: JobRequest)
GET      nbdeploy/jobs/ID              one job (state, progress, result)
DELETE   nbdeploy/jobs/ID              stop a job (serve jobs run until stopped)
GET      nbdeploy/jobs/ID/log?offset=N the job's log from byte N
GET      nbdeploy/jobs/ID/live         a serve job's API now: version, requests, errors, drift, canary, shadow
GET      nbdeploy/jobs/ID/drift        a serve job's drift report: one self-contained HTML page (no scripts)
GET      nbdeploy/jobs/ID/performance  a serve job's live metric against training, per version (its labels)
GET      nbdeploy/parameters?path=NB   the parameters cell of a notebook: names, types, defaults
GET      nbdeploy/candidates?path=NB   the models the last build found (Build can choose one)
GET      nbdeploy/releases?path=NB     the registered versions of a notebook's model, and its history
POST     nbdeploy/releases             promote a version or roll an alias back (body: ReleaseRequest)
=======  ===========================  ==========================================

Every method requires Jupyter's authentication; writes are XSRF-checked by
``APIHandler``. Errors are translated in one place (:meth:`_Handler.write_error`):
an :class:`NbdeployError` becomes its ``status`` and ``to_dict()`` body, so a
client mistake is never a 500.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from nbdeploy.base.errors import NbdeployError
from nbdeploy.frontends.jupyter.jobs import JobManager
from nbdeploy.frontends.jupyter.models import (
    JOB_KINDS,
    AliasMove,
    BundleInfo,
    JobRequest,
    Parameters,
    Performance,
    ReleaseRequest,
    Releases,
    VersionRow,
    to_json,
)
from nbdeploy.frontends.jupyter.paths import Root

AUTH_RESOURCE = "nbdeploy"


class _Handler(APIHandler):
    auth_resource = AUTH_RESOURCE

    def initialize(self, root: Root, jobs: JobManager) -> None:
        self.root, self.jobs = root, jobs

    def reply(self, obj: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(to_json(obj)))

    def body(self) -> dict:
        try:
            doc = json.loads(self.request.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise NbdeployError("the request body is not valid JSON") from None
        if not isinstance(doc, dict):
            raise NbdeployError("the request body must be a JSON object")
        return doc

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, NbdeployError):
            self.set_status(exc.status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(exc.to_dict()))
            return
        if isinstance(exc, tornado.web.HTTPError):
            self.set_header("Content-Type", "application/json")
            message = exc.log_message % exc.args if exc.log_message and exc.args else (
                exc.log_message or self._reason)
            self.finish(json.dumps({"error": "HTTPError", "message": message, "hint": None}))
            return
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": "InternalError", "hint": None,
                                "message": f"{type(exc).__name__}: {exc}" if exc else self._reason}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, NbdeployError):
            self.log.info("nbdeploy: %s %s -> %s: %s", self.request.method, self.request.uri,
                          value.status, value)
            return
        super().log_exception(typ, value, tb)


class ReadinessHandler(_Handler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        from nbdeploy.bundle.readiness import readiness

        nb = self.root.resolve(self.get_query_argument("path", None))
        r = await asyncio.to_thread(readiness, nb)
        for item in r.items:
            for d in item.details:
                d.path = self.root.relative(d.path)
        r.notebook = self.root.relative(r.notebook) or ""
        r.state_dir = self.root.relative(r.state_dir) or ""
        self.reply(r)


class BundlesHandler(_Handler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        from nbdeploy.bundle.catalog import find_bundles

        folder = self.root.resolve(self.get_query_argument("path", "") or ".")
        if not folder.is_dir():
            raise NbdeployError(f"{self.get_query_argument('path')} is not a folder")
        found = await asyncio.to_thread(find_bundles, folder, 3)
        out = []
        for b in found:
            v = b.get("verify")
            out.append(BundleInfo(
                path=self.root.relative(b["path"]) or "", name=b.get("name"), version=b["version"],
                created=b.get("created"), notebook=self.root.relative(b.get("notebook")),
                verified=None if v is None else bool(v.get("ok"))))
        self.reply(out)


class JobsHandler(_Handler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(self.jobs.all())

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        doc = self.body()
        known = {f.name for f in dataclasses.fields(JobRequest)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise NbdeployError(f"unknown field(s) {', '.join(unknown)}",
                                hint=f"a job request has {', '.join(sorted(known))}")
        if doc.get("kind") not in JOB_KINDS:
            raise NbdeployError(f"`kind` must be one of {', '.join(JOB_KINDS)}")
        if not isinstance(doc.get("path"), str):
            raise NbdeployError("`path` must be a string")
        req = _job_request(doc)
        job = await self.jobs.start(req)
        self.set_header("Location", url_path_join(self.base_url, "nbdeploy", "jobs", job.id))
        self.reply(job, status=202)


_OPTIONAL_TEXT = ("output", "model", "grid", "shadow", "canary")


def _job_request(doc: dict) -> JobRequest:
    """The request's fields, each checked for its type (the values are checked by the core)."""
    params = doc.get("parameters") or {}
    if not isinstance(params, dict) or not all(isinstance(v, str | int | float | bool) for v in params.values()):
        raise NbdeployError("`parameters` must be an object of NAME: VALUE")
    for name in _OPTIONAL_TEXT:
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise NbdeployError(f"`{name}` must be a string")
    workers = doc.get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)):
        raise NbdeployError(f"`workers` must be a whole number, not {workers!r}")
    percent = doc.get("canary_percent")
    if percent is not None and (isinstance(percent, bool) or not isinstance(percent, int | float)):
        raise NbdeployError(f"`canary_percent` must be a number, not {percent!r}")
    text = {name: doc.get(name) or None for name in _OPTIONAL_TEXT}
    return JobRequest(kind=doc["kind"], path=doc["path"],
                      parameters={str(k): _text(v) for k, v in params.items()},
                      force=bool(doc.get("force", False)), container=bool(doc.get("container", False)),
                      workers=workers, canary_percent=None if percent is None else float(percent), **text)


def _text(value: str | int | float | bool) -> str:
    """A parameter value as the command line would give it (``true``, not Python's ``True``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


class JobHandler(_Handler):
    @tornado.web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        self.reply(self.jobs.get(job_id))

    @tornado.web.authenticated
    @authorized
    async def delete(self, job_id: str) -> None:
        self.reply(await self.jobs.stop(job_id))


class _ServedHandler(_Handler):
    """A handler about the API a serve job runs: it answers only while that API does."""

    def api_url(self, job_id: str) -> str:
        job = self.jobs.get(job_id)
        url = job.result.url if job.result else None
        if job.kind != "serve" or job.state != "running" or not url:  # a stopped API has no live view
            raise NbdeployError(f"job {job_id} is not a serve job with an API answering yet")
        return url


class LiveHandler(_ServedHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        """What the API of a serve job is doing now (its /metadata, /metrics, /drift, /shadow)."""
        import os

        from nbdeploy.bundle.live import live_status

        url = self.api_url(job_id)
        self.reply(await asyncio.to_thread(live_status, url, os.environ.get("NBDEPLOY_API_TOKEN")))


#: the drift page is static HTML with inline styles and inline SVG charts: nothing may run or load
DRIFT_PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
                  "form-action 'none'; frame-ancestors 'self'; sandbox")


class DriftHandler(_ServedHandler):
    @property
    def content_security_policy(self) -> str:
        return DRIFT_PAGE_CSP

    @tornado.web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        """The API's per-feature drift report as the page ``nbdeploy drift URL --html`` writes."""
        import os

        from nbdeploy.bundle.drift import of_api

        url = self.api_url(job_id)
        report = await asyncio.to_thread(of_api, url, os.environ.get("NBDEPLOY_API_TOKEN"))
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(report.html(), set_content_type="text/html; charset=utf-8")


class PerformanceHandler(_ServedHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        """The API's ``GET /performance``: per version, the labels sent back and the live metric."""
        import os

        from nbdeploy.bundle.performance import performance

        url = self.api_url(job_id)
        report = await asyncio.to_thread(performance, url, None, os.environ.get("NBDEPLOY_API_TOKEN"))
        self.reply(Performance.of(report.to_dict()))


class ParametersHandler(_Handler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        from nbdeploy.base.notebook import load_notebook
        from nbdeploy.job.params import find_parameters_cell

        path = self.get_query_argument("path", None)
        nb = self.root.resolve(path)
        pc = find_parameters_cell(await asyncio.to_thread(load_notebook, nb))
        self.reply(Parameters(str(path), pc.index if pc else None, list(pc.specs.values()) if pc else []))


class CandidatesHandler(_Handler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        from nbdeploy.bundle.candidates import kept_candidates

        nb = self.root.resolve(self.get_query_argument("path", None))
        found = await asyncio.to_thread(kept_candidates, nb)
        found.notebook = self.root.relative(nb) or ""
        self.reply(found)


class JobLogHandler(_Handler):
    @tornado.web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        raw = self.get_query_argument("offset", "0")
        try:
            offset = int(raw)
        except ValueError:
            raise NbdeployError(f"`offset` must be an integer, not {raw!r}") from None
        self.reply(self.jobs.log(job_id, offset))


class ReleasesHandler(_Handler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        nb = self.root.resolve(self.get_query_argument("path", None))
        self.reply(await asyncio.to_thread(_releases, nb))

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        from nbdeploy.release import model_name, promote, rollback

        doc = self.body()
        known = {f.name for f in dataclasses.fields(ReleaseRequest)}
        if set(doc) - known:
            raise NbdeployError(f"unknown field(s) {', '.join(sorted(set(doc) - known))}",
                                hint=f"a release request has {', '.join(sorted(known))}")
        if doc.get("action") not in ("promote", "rollback"):
            raise NbdeployError("`action` must be promote or rollback")
        if doc["action"] == "promote" and not isinstance(doc.get("version"), str):
            raise NbdeployError("`version` must be a string such as \"3\" to promote")
        nb = self.root.resolve(doc.get("path"))
        user = _user_name(self.current_user)
        alias = str(doc.get("alias") or "champion")
        if doc["action"] == "promote":
            move = await asyncio.to_thread(promote, model_name(nb), doc["version"], alias=alias,
                                           force=bool(doc.get("force", False)), project_dir=nb.parent, user=user)
        else:
            move = await asyncio.to_thread(rollback, model_name(nb), alias=alias, project_dir=nb.parent, user=user)
        self.reply(move.to_dict())


def _user_name(user: Any) -> str | None:
    """Who moves an alias: the hub's user; None (the login name) for a token server's anonymous id."""
    name = getattr(user, "username", None)
    return None if not name or re.fullmatch(r"[0-9a-f]{32}", name) else name


def _releases(nb: Any) -> Releases:
    from nbdeploy.release import list_versions, model_name, read_history

    listed = list_versions(model_name(nb), nb.parent)
    rows = [VersionRow(v.version, v.aliases, v.created, v.notebook, v.notebook_sha256, v.parameters,
                       v.metrics, None if v.verify is None else bool(v.verify.get("ok")),
                       None if v.verify is None else v.verify.get("summary")) for v in listed.versions]
    moves = [AliasMove(m.time, m.alias, m.action, m.from_version, m.to_version, m.user, m.forced)
             for m in read_history(listed.name, nb.parent).moves]
    return Releases(listed.name, listed.registry, rows, moves)


def setup_handlers(web_app: Any, root: Root, jobs: JobManager) -> None:
    base = url_path_join(web_app.settings["base_url"], "nbdeploy")
    kw = {"root": root, "jobs": jobs}
    job_id = r"(?P<job_id>[^/]+)"
    web_app.add_handlers(".*$", [
        (url_path_join(base, "readiness"), ReadinessHandler, kw),
        (url_path_join(base, "bundles"), BundlesHandler, kw),
        (url_path_join(base, "jobs"), JobsHandler, kw),
        (url_path_join(base, "jobs", job_id), JobHandler, kw),
        (url_path_join(base, "jobs", job_id, "log"), JobLogHandler, kw),
        (url_path_join(base, "jobs", job_id, "live"), LiveHandler, kw),
        (url_path_join(base, "jobs", job_id, "drift"), DriftHandler, kw),
        (url_path_join(base, "jobs", job_id, "performance"), PerformanceHandler, kw),
        (url_path_join(base, "parameters"), ParametersHandler, kw),
        (url_path_join(base, "candidates"), CandidatesHandler, kw),
        (url_path_join(base, "releases"), ReleasesHandler, kw),
    ])
