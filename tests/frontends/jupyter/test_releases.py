"""``/nbdeploy/releases``: the panel's versions list, Promote and Rollback, through a real jupyter_server.

Two real builds of a small notebook in the server's root; version 1's passing verify is
recorded with :func:`nbdeploy.bundle.catalog.record_verify` (verify itself is tested in
tests/bundle and tests/release).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

from tests.release.conftest import build_two_versions

pytestmark = pytest.mark.slow
NB = "proj/tiny_ridge.ipynb"


@pytest.fixture
def built(jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from nbdeploy.bundle.catalog import record_verify

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    v1, _ = build_two_versions(jp_root_dir / "proj")
    record_verify(v1, True, "verified")
    return jp_root_dir


async def _call(jp_fetch, method: str = "GET", body: dict | None = None, **params):
    kw = {"method": method, "body": json.dumps(body)} if body is not None else {"params": params}
    try:
        r = await jp_fetch("nbdeploy", "releases", **kw)
    except HTTPClientError as exc:
        return exc.code, json.loads(exc.response.body)
    return r.code, json.loads(r.body)


async def test_versions_promote_and_rollback_through_rest(jp_fetch, built: Path) -> None:
    code, doc = await _call(jp_fetch, path=NB)
    assert code == 200 and doc["name"] == "tiny-ridge" and doc["history"] == []
    assert [(v["version"], v["aliases"], v["verified"]) for v in doc["versions"]] == [
        ("2", [], None), ("1", [], True)]
    assert doc["versions"][0]["parameters"] == {"scale": 10.0}

    code, err = await _call(jp_fetch, "POST", {"path": NB, "action": "promote", "version": "2"})
    assert code == 409 and err["error"] == "PromoteError" and "version 2" in err["message"]
    assert "--force" in err["hint"]
    code, move = await _call(jp_fetch, "POST", {"path": NB, "action": "promote", "version": "1"})
    assert code == 200 and move["to_version"] == "1" and move["forced"] is False
    code, move = await _call(jp_fetch, "POST", {"path": NB, "action": "promote", "version": "2", "force": True})
    assert code == 200 and move["forced"] is True
    code, move = await _call(jp_fetch, "POST", {"path": NB, "action": "rollback"})
    assert code == 200 and (move["from_version"], move["to_version"]) == ("2", "1")

    _, doc = await _call(jp_fetch, path=NB)
    assert [v["aliases"] for v in doc["versions"]] == [[], ["champion"]]
    assert [(m["action"], m["to_version"], m["forced"]) for m in doc["history"]] == [
        ("promote", "1", False), ("promote", "2", True), ("rollback", "1", False)]
    assert all(m["user"] for m in doc["history"])


async def test_bad_release_requests_are_4xx(jp_fetch, jp_root_dir: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (jp_root_dir / "empty.ipynb").write_text("{}")
    code, err = await _call(jp_fetch, path="empty.ipynb")
    assert code == 404 and err["error"] == "RegistryError" and "no model registry" in err["message"]
    code, err = await _call(jp_fetch, "POST", {"path": "empty.ipynb", "action": "delete"})
    assert code == 400 and "`action`" in err["message"]
    code, err = await _call(jp_fetch, "POST", {"path": "empty.ipynb", "action": "promote"})
    assert code == 400 and "`version`" in err["message"]
    code, err = await _call(jp_fetch, "POST", {"path": "../x.ipynb", "action": "rollback"})
    assert code == 403
    code, err = await _call(jp_fetch, "POST", {"path": "empty.ipynb", "action": "rollback", "bogus": 1})
    assert code == 400 and "bogus" in err["message"]
