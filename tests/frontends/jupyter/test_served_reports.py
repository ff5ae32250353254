"""A serve job's drift report page and performance table through the server extension (``jp_fetch``).

A real API (``python -m nbdeploy serve`` started by the job manager) on a small bundle
answers real requests and is sent labels on ``/feedback``; the extension fetches its
``/drift`` report and ``/performance`` through the core.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tornado.httpclient import HTTPClientError

pytestmark = pytest.mark.slow
FEATURES = ["age", "income"]


def _bundle(root: Path, profile: bool = True) -> Path:
    """A sealed bundle of a small classifier with its training profile and accuracy, as a build writes."""
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    from nbdeploy.capture.profile import profile_frame
    from nbdeploy.serve.seal import checksums

    rng = np.random.default_rng(3)
    X = pd.DataFrame({"age": rng.integers(18, 80, 300).astype("float64"),
                      "income": rng.normal(50_000, 12_000, 300).round(2)})
    model = LogisticRegression(max_iter=500).fit(X, (X["age"] > 45).astype(int))
    out = root / "bundle"
    out.mkdir()
    mlflow.sklearn.save_model(model, str(out / "model"), signature=infer_signature(X, model.predict(X)),
                              input_example=X.head(3), skops_trusted_types=["numpy.dtype"])
    if profile:
        (out / "profile.json").write_text(json.dumps(profile_frame(X)))
    manifest = {"name": "ages", "version": "2", "model": {"serialization": "skops"},
                "summary": {"trained_on": 300, "metrics": {"accuracy": 0.9}}}
    (out / "nbdeploy.json").write_text(json.dumps({**manifest, "files": checksums(out)}))
    return out


async def _json(jp_fetch, *parts, **kw):
    r = await jp_fetch("nbdeploy", *parts, **kw)
    return r.code, json.loads(r.body)


async def _error(jp_fetch, *parts) -> tuple[int, dict]:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("nbdeploy", *parts)
    return info.value.code, json.loads(info.value.response.body)


def _post(url: str, doc: object) -> tuple[dict, dict]:
    req = urllib.request.Request(url, json.dumps(doc).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return dict(r.headers), json.loads(r.read())


async def _serving(jp_fetch, path: str) -> dict:
    _, job = await _json(jp_fetch, "jobs", method="POST", body=json.dumps({"kind": "serve", "path": path}))
    for _ in range(1200):
        _, job = await _json(jp_fetch, "jobs", job["id"])
        if job["state"] != "running" or (job["result"] or {}).get("url"):
            break
        await asyncio.sleep(0.1)
    assert job["state"] == "running" and job["result"]["url"], job
    return job


async def test_drift_page_and_performance_of_a_serve_job(jp_fetch, root: Path) -> None:
    _bundle(root)
    job = await _serving(jp_fetch, "bundle")
    url = job["result"]["url"]
    try:
        code, doc = await _json(jp_fetch, "jobs", job["id"], "performance")
        assert code == 200 and (doc["source"], doc["labels"], doc["versions"]) == (url, 0, [])
        rows = [{"age": 20.0 + i, "income": 40_000.0 + 100 * i} for i in range(40)]
        answers = [await asyncio.to_thread(_post, f"{url}/invocations", {"dataframe_records": [r]}) for r in rows]
        # labels for 10 answers: 8 the model's own answer, 2 the other class
        labels = [{"request_id": h["x-request-id"], "label": a["predictions"][0] if i < 8 else 1 - a["predictions"][0]}
                  for i, (h, a) in enumerate(answers[:10])]
        _, fed = await asyncio.to_thread(_post, f"{url}/feedback", labels)
        assert fed["joined"] == 10, fed

        r = await jp_fetch("nbdeploy", "jobs", job["id"], "drift")
        page = r.body.decode()
        assert r.headers["Content-Type"].startswith("text/html")
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "sandbox" in csp and "script-src" not in csp
        assert "<script" not in page.lower()
        assert page.count('<section class="feature"') == len(FEATURES)
        assert all(f'data-field="{f}"' in page for f in FEATURES)

        code, doc = await _json(jp_fetch, "jobs", job["id"], "performance")
        assert code == 200 and doc["labels"] == 10 and doc["joined"] == 10
        [v] = doc["versions"]
        assert (v["version"], v["kind"], v["labelled_rows"]) == ("2", "classification", 10)
        assert v["live"] == {"accuracy": 0.8} and v["training"] == {"accuracy": 0.9}
        assert v["change"]["accuracy"] == pytest.approx(-0.1)
    finally:
        _, stopped = await _json(jp_fetch, "jobs", job["id"], method="DELETE")
    assert stopped["state"] == "stopped"
    for what in ("drift", "performance"):  # a stopped API has no report: the reason, not a 500
        code, doc = await _error(jp_fetch, "jobs", job["id"], what)
        assert code == 400 and "not a serve job with an API answering yet" in doc["message"], doc


async def test_drift_of_an_api_without_a_training_profile_says_so(jp_fetch, root: Path) -> None:
    _bundle(root, profile=False)
    job = await _serving(jp_fetch, "bundle")
    try:
        code, doc = await _error(jp_fetch, "jobs", job["id"], "drift")
    finally:
        await _json(jp_fetch, "jobs", job["id"], method="DELETE")
    assert code == 400 and "no drift report" in doc["message"] and "training profile" in doc["message"], doc


async def test_an_api_with_a_token_is_read_with_the_servers_token(jp_fetch, root: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBDEPLOY_API_TOKEN", "panel-test-token")  # the API and the extension both read it
    _bundle(root)
    job = await _serving(jp_fetch, "bundle")
    url = job["result"]["url"]
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:  # the API really wants the token
            await asyncio.to_thread(urllib.request.urlopen, f"{url}/performance", timeout=30)
        assert refused.value.code == 401
        refused.value.close()
        code, doc = await _json(jp_fetch, "jobs", job["id"], "performance")
        assert code == 200 and doc["labels"] == 0
        r = await jp_fetch("nbdeploy", "jobs", job["id"], "drift")
        assert r.body.decode().count('<section class="feature"') == len(FEATURES)
    finally:
        await _json(jp_fetch, "jobs", job["id"], method="DELETE")


async def test_reports_of_a_job_that_is_not_serving(jp_fetch, root: Path) -> None:
    code, doc = await _error(jp_fetch, "jobs", "0123abcd", "drift")
    assert code == 404 and "no job" in doc["message"]
    code, doc = await _error(jp_fetch, "jobs", "0123abcd", "performance")
    assert code == 404 and "no job" in doc["message"]
