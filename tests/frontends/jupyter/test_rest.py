"""The REST API of the server extension, through a real jupyter_server (``jp_fetch``)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from nbdeploy.base.progress import Finished, ProgressEvent

NB = "churn_classifier.ipynb"


async def _json(jp_fetch, *parts, **kw):
    r = await jp_fetch("nbdeploy", *parts, **kw)
    return r.code, json.loads(r.body)


async def _error(jp_fetch, *parts, **kw) -> tuple[int, dict]:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbdeploy", *parts, **kw)
    body = info.value.response.body
    return info.value.code, json.loads(body) if body else {}


async def test_readiness_of_a_notebook(jp_fetch, root: Path) -> None:
    code, doc = await _json(jp_fetch, "readiness", params={"path": NB})
    assert code == 200
    assert doc["notebook"] == NB
    items = {i["key"]: i for i in doc["items"]}
    assert list(items) == ["parameters", "model", "dependencies", "lineage", "run", "bundle"]
    assert items["parameters"]["status"] == "ok"
    assert [d["label"] for d in items["parameters"]["details"]][:2] == ["n_estimators", "learning_rate"]
    assert items["dependencies"]["status"] == "missing"  # nothing captured in this fresh root
    assert items["dependencies"]["action"]
    assert doc["ready"] is False


async def test_readiness_flags_unresolved_imports(jp_fetch, root: Path) -> None:
    state = root / ".nbdeploy" / "churn_classifier"
    state.mkdir(parents=True)
    record = {"format": "nbdeploy.capture/1", "notebook": {"sha256": None},
              "dependencies": [{"name": "pandas", "version": "3.0.0"}],
              "unresolved": [{"module": "xgboost", "reason": "not installed", "cells": [3]}],
              "lineage": [{"role": "read", "path": str(root / "data/churn.csv"),
                           "relative_path": "data/churn.csv", "rows": 1000, "sha256": "ab" * 32}],
              "model": {"variable": "clf", "example": "X.head()", "cell": 9}}
    (state / "capture.json").write_text(json.dumps(record))
    _, doc = await _json(jp_fetch, "readiness", params={"path": NB})
    items = {i["key"]: i for i in doc["items"]}
    deps = items["dependencies"]
    assert deps["status"] == "error" and "xgboost" in deps["summary"]
    assert deps["details"][0] == {"label": "xgboost", "value": "unresolved", "status": "error",
                                  "note": "not installed", "path": None}
    lineage = items["lineage"]["details"][0]
    assert lineage["value"] == "1000 rows · sha256:abababababab"  # a capture/1 record: bare sha256
    assert lineage["path"] == "data/churn.csv"  # root-relative, never absolute
    assert items["model"]["status"] == "ok"


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
async def test_unauthenticated_requests_are_refused(jp_fetch, root: Path, method: str) -> None:
    parts, kw = {"GET": (("readiness",), {"params": {"path": NB}}),
                 "POST": (("jobs",), {"body": json.dumps({"kind": "run", "path": NB})}),
                 "DELETE": (("jobs", "abc123"), {})}[method]
    code, _ = await _error(jp_fetch, *parts, method=method, headers={"Authorization": "token nope"},
                           **kw)
    assert code == 403


@pytest.mark.parametrize("path", ["../outside.ipynb", "sub/../../outside.ipynb", "/etc/passwd",
                                  "/tmp/x.ipynb", "link/outside.ipynb"])
async def test_paths_outside_the_root_are_refused(jp_fetch, root: Path, path: str) -> None:
    (root.parent / "outside.ipynb").write_text((root / NB).read_text())
    (root / "link").symlink_to(root.parent, target_is_directory=True)
    code, doc = await _error(jp_fetch, "readiness", params={"path": path})
    assert 400 <= code < 500
    assert doc["message"]
    code, doc = await _error(jp_fetch, "jobs", method="POST",
                             body=json.dumps({"kind": "build", "path": path}))
    assert 400 <= code < 500
    code, doc = await _error(jp_fetch, "jobs", method="POST",
                             body=json.dumps({"kind": "build", "path": NB, "output": "../b"}))
    assert 400 <= code < 500
    code, doc = await _error(jp_fetch, "bundles", params={"path": "../"})
    assert 400 <= code < 500


@pytest.mark.parametrize("body, fragment", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"kind": "launch", "path": "x.ipynb"}', "kind"),
    ('{"kind": "build"}', "path"),
    ('{"kind": "build", "path": "data/churn.csv"}', "not a notebook"),
    ('{"kind": "verify", "path": "data"}', "not a bundle"),
    ('{"kind": "build", "path": "churn_classifier.ipynb", "colour": 1}', "unknown field"),
    ('{"kind": "build", "path": "missing.ipynb"}', "no such file"),
])
async def test_client_mistakes_are_4xx_json(jp_fetch, root: Path, body: str, fragment: str) -> None:
    code, doc = await _error(jp_fetch, "jobs", method="POST", body=body)
    assert 400 <= code < 500, doc
    assert fragment in doc["message"]
    assert set(doc) == {"error", "message", "hint"}


async def test_unknown_job_and_bad_offset(jp_fetch, root: Path) -> None:
    code, doc = await _error(jp_fetch, "jobs", "0123abcd")
    assert code == 404 and "no job" in doc["message"]
    code, doc = await _error(jp_fetch, "jobs", "not-a-job")
    assert code == 404 and doc["error"] == "NotFoundError"
    code, _ = await _error(jp_fetch, "jobs", "0123abcd", "log", params={"offset": "x"})
    assert code in (400, 404)
    code, doc = await _error(jp_fetch, "readiness", params={"path": "data/churn.csv"})
    assert code == 400 and "not a notebook" in doc["message"]


@pytest.fixture
def fake_cli(jp_serverapp, tmp_path: Path):
    """Jobs run this script instead of ``python -m nbdeploy`` (fast and controllable)."""
    script = tmp_path / "fake-python"
    # it writes what the real CLI writes: lines for the log, typed events to $NBDEPLOY_EVENTS
    first = ProgressEvent("first step", "started", 1, 2).to_dict()
    second = ProgressEvent("second step", "started", 2, 2).to_dict()
    broke = Finished(False, "it broke", {"error": "NbdeployError", "message": "it broke", "hint": None}).to_dict()
    script.write_text("#!/bin/sh\n"
                      "echo \"args: $*\"\n"
                      "echo '[1/2] first step ...'\n"
                      f"echo '{json.dumps(first)}' >> \"$NBDEPLOY_EVENTS\"\n"
                      "if [ -n \"$FAKE_FAIL\" ]; then echo 'nbdeploy: error: it broke'; "
                      f"echo '{json.dumps(broke)}' >> \"$NBDEPLOY_EVENTS\"; exit 2; fi\n"
                      "echo '[2/2] second step ...'\n"
                      f"echo '{json.dumps(second)}' >> \"$NBDEPLOY_EVENTS\"\n"
                      "exec sleep ${FAKE_SLEEP:-0}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    jobs = jp_serverapp.web_app.settings["nbdeploy_jobs"]
    jobs.python = str(script)
    return jobs


async def _wait(jp_fetch, job_id: str, until=lambda j: j["state"] != "running") -> dict:
    for _ in range(400):
        _, job = await _json(jp_fetch, "jobs", job_id)
        if until(job):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached the state: {job}")


async def test_job_lifecycle_log_and_result(jp_fetch, root: Path, fake_cli) -> None:
    code, job = await _json(jp_fetch, "jobs", method="POST",
                            body=json.dumps({"kind": "run", "path": NB, "parameters": {"seed": 7}}))
    assert code == 202 and job["state"] == "running" and job["kind"] == "run"
    assert job["command"][-5:] == ["run", str(root / NB), "-p", "seed", "7"]
    job = await _wait(jp_fetch, job["id"])
    assert job["state"] == "succeeded" and job["returncode"] == 0 and job["progress"] == 1.0
    assert job["step"] == "second step"
    assert job["result"]["ok"] is True
    _, log = await _json(jp_fetch, "jobs", job["id"], "log")
    assert "[1/2] first step" in log["text"] and log["complete"] is True
    _, rest = await _json(jp_fetch, "jobs", job["id"], "log", params={"offset": log["next_offset"]})
    assert rest["text"] == "" and rest["complete"] is True
    _, listed = await _json(jp_fetch, "jobs")
    assert [j["id"] for j in listed] == [job["id"]]


async def test_failed_job_reports_the_error_line(jp_fetch, root: Path, fake_cli,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FAIL", "1")
    _, job = await _json(jp_fetch, "jobs", method="POST", body=json.dumps({"kind": "reproduce",
                                                                          "path": NB}))
    job = await _wait(jp_fetch, job["id"])
    assert job["state"] == "failed" and job["returncode"] == 2
    assert job["error"] == "it broke" and job["result"]["ok"] is False


async def test_stop_a_running_job_and_conflicts(jp_fetch, root: Path, fake_cli,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SLEEP", "60")
    body = json.dumps({"kind": "run", "path": NB})
    _, job = await _json(jp_fetch, "jobs", method="POST", body=body)
    await _wait(jp_fetch, job["id"], until=lambda j: j["step"] == "second step")
    code, doc = await _error(jp_fetch, "jobs", method="POST", body=body)
    assert code == 409 and job["id"] in doc["hint"]
    _, stopped = await _json(jp_fetch, "jobs", job["id"], method="DELETE")
    assert stopped["state"] == "stopped"
    pid_alive = any(p.isdigit() and "sleep" in _cmdline(p) and str(root) in _environ(p)
                    for p in os.listdir("/proc"))
    assert not pid_alive


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _environ(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cwd").resolve().as_posix()
    except OSError:
        return ""


async def test_bundles_lists_manifests(jp_fetch, root: Path) -> None:
    b = root / "out" / "churn-bundle"
    b.mkdir(parents=True)
    (b / "nbdeploy.json").write_text(json.dumps({
        "format": "nbdeploy.bundle/1", "name": "churn-classifier", "version": "3",
        "created": "2026-01-01T00:00:00", "source": {"path": str(root / NB)}}))
    _, found = await _json(jp_fetch, "bundles")
    assert found == [{"path": "out/churn-bundle", "name": "churn-classifier", "version": "3",
                      "created": "2026-01-01T00:00:00", "notebook": NB, "verified": None}]
    _, doc = await _json(jp_fetch, "readiness", params={"path": NB})
    bundle = doc["items"][-1]
    assert bundle["status"] == "warning" and "not verified" in bundle["summary"]
    assert bundle["details"][0]["path"] == "out/churn-bundle"


async def test_verify_job_can_run_in_the_container(jp_fetch, root: Path, fake_cli) -> None:
    b = root / "out" / "churn-bundle"
    b.mkdir(parents=True)
    (b / "nbdeploy.json").write_text(json.dumps({"format": "nbdeploy.bundle/1", "name": "c"}))
    code, job = await _json(jp_fetch, "jobs", method="POST", body=json.dumps(
        {"kind": "verify", "path": "out/churn-bundle", "container": True}))
    assert code == 202 and job["command"][-3:] == ["verify", str(b), "--container"]
    job = await _wait(jp_fetch, job["id"])
    code, plain = await _json(jp_fetch, "jobs", method="POST", body=json.dumps(
        {"kind": "verify", "path": "out/churn-bundle"}))
    assert plain["command"][-2:] == ["verify", str(b)]


async def _cookie_login(jp_fetch, jp_serverapp) -> str:
    """A browser's session: the token once in the URL, then only the login cookie it set."""
    token = jp_serverapp.identity_provider.token
    r = await jp_fetch("nbdeploy", "jobs", params={"token": token}, headers={"Authorization": ""})
    cookies = [c.split(";", 1)[0] for c in r.headers.get_list("Set-Cookie")]
    login = [c for c in cookies if c.startswith("username-")]
    assert login, cookies
    return login[0]


@pytest.mark.parametrize("method, parts, body", [
    ("POST", ("jobs",), {"kind": "launch", "path": NB}),
    ("DELETE", ("jobs", "abc123"), None),
    ("POST", ("releases",), {"path": NB, "action": "rollback"}),
])
async def test_writes_from_a_cookie_session_need_the_xsrf_token(jp_fetch, jp_serverapp, root: Path,
                                                                method: str, parts: tuple, body) -> None:
    """A page on another site can make the browser send the login cookie, never the XSRF token:
    without it a write is refused before the handler runs; with it, the handler answers."""
    login = await _cookie_login(jp_fetch, jp_serverapp)
    data = {"body": json.dumps(body)} if body is not None else {}
    code, doc = await _error(jp_fetch, *parts, method=method, headers={"Authorization": "", "Cookie": login},
                             **data)
    assert code == 403 and "xsrf" in json.dumps(doc).lower(), doc
    headers = {"Authorization": "", "Cookie": f"{login}; _xsrf=nbdeploy-test", "X-XSRFToken": "nbdeploy-test"}
    code, doc = await _error(jp_fetch, *parts, method=method, headers=headers, **data)
    assert code in (400, 404), doc  # past the XSRF check: the handler's own answer to this body
    assert "xsrf" not in json.dumps(doc).lower()
