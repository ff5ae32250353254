"""Serving modes: every response names its version, canary, shadow, reload (POST and SIGHUP), compare/replay."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import HERE, Client, _pipeline, _write_bundle, read_log, seal_bundle, start

pytestmark = pytest.mark.slow

TOKEN = "s3cret-token"
ROWS = [{"age": age, "income": 30_000.0 + 900 * age, "city": city, "member": age % 3 == 0}
        for age in range(18, 80) for city in ("paris", "lyon", "nice")]


def _second_version(root: Path, model, X, name: str, trusted: list[str]) -> Path:
    """A bundle of another model under the same name, sealed as version 4."""
    _write_bundle(root, model, X, name, skops_trusted_types=trusted)
    seal_bundle(root, {"name": name, "version": "4", "summary": {"trained_on": len(X)},
                       "model": {"serialization": "skops"}})
    return root


@pytest.fixture(scope="module")
def classifier_v4(tmp_path_factory, training_frame) -> Path:
    from sklearn.ensemble import GradientBoostingClassifier

    X = training_frame
    y = (X["age"] > 50).astype(int)  # not the target of version 3: some answers differ
    model = _pipeline(GradientBoostingClassifier(n_estimators=5, max_depth=2, random_state=0)).fit(X, y)
    return _second_version(tmp_path_factory.mktemp("clf4") / "bundle", model, X, "churn",
                           ["sklearn.tree._tree.Tree", "numpy.dtype"])


@pytest.fixture(scope="module")
def regressor_v4(tmp_path_factory, training_frame) -> Path:
    from sklearn.linear_model import Ridge

    X = training_frame
    y = X["age"] * 2.5 + (X["city"] == "nice") * 4
    return _second_version(tmp_path_factory.mktemp("reg4") / "bundle", _pipeline(Ridge()).fit(X, y), X, "spend",
                           ["numpy.dtype"])


@pytest.fixture(scope="module")
def sleepy_model(tmp_path_factory) -> Path:
    """A bare MLflow model over column ``x`` whose predict sleeps 0.3 s: a shadow that falls behind."""
    import mlflow.sklearn
    import pandas as pd
    from fixture_models import Sleepy
    from mlflow.models import infer_signature

    X = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    model = Sleepy(delay=0.0).fit(X)
    sig = infer_signature(X, model.predict(X))
    model.delay = 0.3
    path = tmp_path_factory.mktemp("sleepy") / "sleepy"
    mlflow.sklearn.save_model(model, str(path), signature=sig, serialization_format="cloudpickle",
                              code_paths=[str(HERE / "fixture_models.py")])
    return path


def _answers(handle, rows, **kw) -> list[tuple[str, int]]:
    """(version, prediction) for each row, one request per row."""
    c = Client(handle.url, kw.pop("token", None))
    try:
        out = []
        for row in rows:
            status, headers, doc = c.post("/invocations", {"dataframe_records": [row]}, **kw)
            assert status == 200, doc
            out.append((headers["x-model-version"], doc["predictions"][0]))
        return out
    finally:
        c.close()


def _wait_for(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


# -- every response names its version -------------------------------------------
def test_every_response_names_the_version(classifier_server):
    c = Client(classifier_server.url)
    try:
        for method, path, body in (("GET", "/health", None), ("GET", "/metadata", None), ("GET", "/nope", None),
                                   ("POST", "/invocations", {"dataframe_records": [ROWS[0]]}),
                                   ("POST", "/invocations", {"dataframe_records": [{"age": "x"}]})):
            status, headers, _ = c.request(method, path, body)
            assert headers["x-model-version"] == "3", (path, status)
        v2 = {"inputs": [{"name": k, "shape": [1], "datatype": t, "data": [ROWS[0][k]]}
                         for k, t in (("age", "INT64"), ("income", "FP64"), ("city", "BYTES"), ("member", "BOOL"))]}
        status, headers, doc = c.post("/v2/models/churn/infer", v2)
        assert status == 200 and doc["model_version"] == headers["x-model-version"] == "3"
    finally:
        c.close()


# -- canary ------------------------------------------------------------------------
def test_canary_answers_its_share_sticky_per_key(classifier_bundle, classifier_v4, tmp_path):
    handle = start(classifier_bundle, tmp_path, canary=str(classifier_v4), canary_percent=10,
                   canary_key_header="X-Client")
    try:
        n = 2000
        rows = [ROWS[i % len(ROWS)] for i in range(n)]
        answers = _answers(handle, rows)
        canary = sum(v == "4" for v, _ in answers)
        assert {v for v, _ in answers} == {"3", "4"}
        # binomial(2000, 0.1): sd 13.4; 5 sd either side
        assert abs(canary - 200) <= 5 * math.sqrt(n * 0.1 * 0.9), canary
        # sticky: every request with one key value is answered by one version
        by_key: dict[str, set[str]] = {}
        c = Client(handle.url)
        try:
            for key in range(300):
                for _ in range(3):
                    status, headers, doc = c.post("/invocations", {"dataframe_records": [ROWS[key % len(ROWS)]]},
                                                  headers={"X-Client": f"user-{key}"})
                    assert status == 200
                    by_key.setdefault(f"user-{key}", set()).add(headers["x-model-version"])
            # V2 names the version that answered, as the header does
            v2 = {"inputs": [{"name": k, "shape": [1], "datatype": t, "data": [ROWS[0][k]]}
                             for k, t in (("age", "INT64"), ("income", "FP64"), ("city", "BYTES"),
                                          ("member", "BOOL"))]}
            seen = set()
            for i in range(60):
                status, headers, doc = c.post("/v2/models/churn/infer", v2, headers={"X-Client": f"user-{i}"})
                assert status == 200 and doc["model_version"] == headers["x-model-version"]
                seen.add(doc["model_version"])
            assert seen == {"3", "4"}
            _, _, metrics = c.get("/metrics")
            _, _, meta = c.get("/metadata")
            assert meta["version"] == "3"
            assert meta["canary"] == {"version": "4", "percent": 10, "key_header": "X-Client"}
        finally:
            c.close()
        assert all(len(v) == 1 for v in by_key.values())
        sticky = sum(v == {"4"} for v in by_key.values())
        assert abs(sticky - 30) <= 5 * math.sqrt(300 * 0.1 * 0.9), sticky
        v3 = sum(v == "3" for v, _ in answers)
        assert 'nbdeploy_version_requests_total{version="4",endpoint="invocations",status="200"}' in metrics
        assert f'version="3",endpoint="invocations",status="200"}} {v3 + 3 * (300 - sticky)}' in metrics
    finally:
        assert handle.stop() == 0
    records = [r for r in read_log(tmp_path / "requests.jsonl") if r["endpoint"] == "invocations"]
    assert sum(r["version"] == "4" for r in records) == canary + 3 * sticky


def test_canary_requests_share_the_live_batches_and_get_the_canary_answers(classifier_bundle, classifier_v4):
    """A canary's requests join the live requests' batch, which is cut into one predict per
    version: each request gets its own version's answer, and the metrics count each predict."""
    import asyncio

    from nbdeploy.serve.app import create_app
    from nbdeploy.serve.batcher import Part
    from nbdeploy.serve.config import ServeConfig

    app = create_app(classifier_bundle, ServeConfig(log_path="", canary=str(classifier_v4), canary_percent=50))
    names = ["age", "income", "city", "member"]
    rows = [[r[n] for n in names] for r in ROWS[:90]]

    def alone(variant, row):
        return variant.predictor.run_batch([Part({n: [v] for n, v in zip(names, row, strict=True)}, 1, None,
                                                 True)])[0]

    expected = [alone(app.canary if i % 2 else app.live, r) for i, r in enumerate(rows)]
    assert expected != [alone(app.live, r) for r in rows]  # the canary's answers differ on some rows
    calls, requests = app.metrics.batch_requests.count, app.metrics.batch_requests.sum

    async def batch():
        app.batcher.start()
        try:  # all submitted before the batcher runs: one batch
            return await asyncio.gather(*(app.batcher.submit_part(
                list(r), 1, check=True, names=names, run=app.canary.predictor.run_batch if i % 2 else None)
                for i, r in enumerate(rows)))
        finally:
            await app.batcher.stop()

    got = asyncio.run(batch())
    assert [out for out, _ in got] == expected
    assert app.metrics.batch_requests.count - calls == 2 and app.metrics.batch_requests.sum - requests == 90


# -- shadow ------------------------------------------------------------------------
def test_shadow_never_changes_answers_and_logs_both(classifier_server, classifier_bundle, classifier_v4, tmp_path):
    from nbdeploy.serve.compare import compare_log

    rows = ROWS[:120]
    expected = _answers(classifier_server, rows)
    cand = start(classifier_v4, tmp_path / "v4")
    try:
        candidate = [p for _, p in _answers(cand, rows)]
    finally:
        cand.stop()
    handle = start(classifier_bundle, tmp_path, shadow=str(classifier_v4))
    try:
        got = _answers(handle, rows)
        assert got == expected  # the shadow never answers, nor changes what the live model answers
        c = Client(handle.url)
        try:
            report = _wait_for(lambda: (doc := c.get("/shadow")[2])["requests"] == len(rows) and doc)
        finally:
            c.close()
    finally:
        assert handle.stop() == 0
    differ = sum(a != b for (_, a), b in zip(expected, candidate, strict=True))
    assert differ > 0, "the fixture versions should disagree on some rows"
    assert report["primary"]["version"] == "3" and report["candidate"]["version"] == "4"
    assert report["kind"] == "classification" and report["dropped"] == 0 and report["errors"] == 0
    assert report["rows"] == len(rows) and report["disagreeing_rows"] == differ
    assert report["agreement"] == pytest.approx(1 - differ / len(rows), abs=1e-6)
    assert len(report["worst"]) == min(10, differ)
    assert report["primary"]["latency_ms"]["p50"] > 0 and report["candidate"]["latency_ms"]["p50"] > 0
    records = read_log(tmp_path / "requests.jsonl")
    answered = {r["id"]: r for r in records if r["endpoint"] == "invocations"}
    shadows = {r["id"]: r for r in records if r["endpoint"] == "shadow"}
    assert set(shadows) == set(answered) and len(answered) == len(rows)
    for rid, s in shadows.items():
        assert s["primary"]["outputs"] == answered[rid]["outputs"] and s["version"] == "4"
    assert sorted(s["outputs"][0] for s in shadows.values()) == sorted(candidate)
    # the log gives the same table as GET /shadow
    from_log = compare_log(tmp_path / "requests.jsonl")
    for key in ("requests", "rows", "agreement", "disagreeing_rows", "dropped", "kind"):
        assert from_log[key] == report[key]
    assert all("inputs" in w for w in from_log["worst"])


def test_a_shadow_stops_lingering_once_half_its_queue_is_full(classifier_v4, monkeypatch):
    """Requests gather for SHADOW_LINGER, but not past half of max_pending: a fast stream would
    otherwise fill the queue while the shadow waits, and be dropped though nothing is behind."""
    import asyncio

    from nbdeploy.serve import shadow as shadow_module
    from nbdeploy.serve.config import ServeConfig
    from nbdeploy.serve.variant import open_variant

    monkeypatch.setattr(shadow_module, "SHADOW_LINGER", 60.0)  # nothing is compared by waiting it out
    shadow = shadow_module.Shadow(open_variant(classifier_v4, ServeConfig(log_path=""), None, shadow=True), "3",
                                  8, False)

    async def offer_half():
        shadow.start()
        loop = asyncio.get_running_loop()
        for i, row in enumerate(ROWS[:4]):
            shadow.offer(f"r{i}", ({k: [v] for k, v in row.items()}, 1, True, None, [0], "3"), 1.0)
        deadline = loop.time() + 30
        while shadow.pending and loop.time() < deadline:
            await asyncio.sleep(0.01)
        report = shadow.report()
        await shadow.stop()
        return report

    report = asyncio.run(offer_half())
    assert report["requests"] == 4 and report["pending"] == 0 and report["dropped"] == 0 and report["errors"] == 0


def test_slow_shadow_is_dropped_and_counted(tripwire_model, sleepy_model, tmp_path):
    handle = start(tripwire_model, tmp_path, shadow=str(sleepy_model), shadow_max_pending=2)
    n = 100
    try:
        c = Client(handle.url)
        try:
            for i in range(n):
                status, headers, doc = c.post("/invocations", {"dataframe_records": [{"x": float(i)}]})
                assert status == 200 and doc == {"predictions": [2.0 * i]}  # A's answer, never the shadow's 3x
            report = _wait_for(lambda: (d := c.get("/shadow")[2])["pending"] == 0
                               and d["requests"] + d["dropped"] == n and d)
        finally:
            c.close()
    finally:
        assert handle.stop() == 0
    assert report["dropped"] > 0 and report["errors"] == 0
    records = read_log(tmp_path / "requests.jsonl")
    assert sum(r.get("shadow") == "dropped" for r in records) == report["dropped"]
    assert sum(r.get("shadow") == "ok" for r in records) == report["requests"]
    assert report["kind"] == "regression" or report["requests"] == 0


# -- reload ------------------------------------------------------------------------
class _Traffic(threading.Thread):
    """A client that keeps sending predictions until stopped, recording (status, version)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen: list[tuple[int, str]] = []
        self.stopped = threading.Event()
        self.error: Exception | None = None

    def run(self) -> None:
        c = Client(self.url, TOKEN)
        try:
            i = 0
            while not self.stopped.is_set():
                status, headers, _ = c.post("/invocations", {"dataframe_records": [ROWS[i % len(ROWS)]]})
                self.seen.append((status, headers.get("x-model-version", "")))
                i += 1
        except Exception as e:  # a dropped connection is a failed request
            self.error = e
        finally:
            c.close()

    def versions(self) -> list[str]:
        out: list[str] = []
        for _, v in self.seen:
            if not out or out[-1] != v:
                out.append(v)
        return out


def _point(link: Path, target: Path) -> None:
    tmp = link.with_name(link.name + ".new")
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)


def test_reload_and_sighup_switch_versions_without_failing_a_request(classifier_bundle, classifier_v4, tmp_path):
    import shutil

    link = tmp_path / "current"
    _point(link, classifier_bundle)
    broken = tmp_path / "broken"
    shutil.copytree(classifier_v4, broken)
    (broken / "model" / "input_example.json").write_text('{"columns": ["age"], "data": [[1]]}')  # seal broken
    handle = start(link, tmp_path, token=TOKEN)
    traffic = _Traffic(handle.url)
    traffic.start()
    try:
        _wait_for(lambda: len(traffic.seen) > 20)
        admin = Client(handle.url)
        wrong = Client(handle.url, "not-the-token")
        good = Client(handle.url, TOKEN)
        try:
            assert admin.post("/admin/reload", None, content_type=None)[0] == 401
            assert wrong.post("/admin/reload", None, content_type=None)[0] == 401
            _point(link, classifier_v4)
            status, headers, doc = good.post("/admin/reload", None, content_type=None)
            assert status == 200, doc
            assert doc["version"] == "4" and doc["previous"] == "3"
            _wait_for(lambda: traffic.seen[-1][1] == "4")
            n = len(traffic.seen)
            _wait_for(lambda: len(traffic.seen) > n + 20)
            # a bundle that fails its seal is refused; the live one keeps serving
            _point(link, broken)
            status, _, doc = good.post("/admin/reload", None, content_type=None)
            assert status == 422 and "v4 keeps serving" in doc["message"] and "manifest" in doc["message"]
            # SIGHUP does what POST /admin/reload does
            _point(link, classifier_bundle)
            os.kill(handle.pid, signal.SIGHUP)
            _wait_for(lambda: traffic.seen[-1][1] == "3")
            n = len(traffic.seen)
            _wait_for(lambda: len(traffic.seen) > n + 20)
            status, headers, doc = good.get("/metadata")
            assert doc["version"] == "3" and headers["x-model-version"] == "3"
        finally:
            for c in (admin, wrong, good):
                c.close()
    finally:
        traffic.stopped.set()
        traffic.join(30)
        assert handle.stop() == 0
    assert traffic.error is None
    assert all(status == 200 for status, _ in traffic.seen), {s for s, _ in traffic.seen}
    assert traffic.versions() == ["3", "4", "3"]
    logged = [r for r in read_log(tmp_path / "requests.jsonl") if r["endpoint"] == "invocations"]
    assert len(logged) == len(traffic.seen) and [r["version"] for r in logged] == [v for _, v in traffic.seen]


def test_reload_with_workers_replaces_each_worker(classifier_bundle, classifier_v4, tmp_path):
    link = tmp_path / "current"
    _point(link, classifier_bundle)
    handle = start(link, tmp_path, token=TOKEN, workers=2)

    def versions() -> set[str]:
        seen = set()
        for _ in range(8):  # a new connection each time: any worker may answer
            c = Client(handle.url, TOKEN)
            try:
                status, headers, _ = c.post("/invocations", {"dataframe_records": [ROWS[0]]})
                assert status == 200
                seen.add(headers["x-model-version"])
            finally:
                c.close()
        return seen

    try:
        assert versions() == {"3"}
        _point(link, classifier_v4)
        c = Client(handle.url, TOKEN)
        try:
            status, _, doc = c.post("/admin/reload", None, content_type=None)
        finally:
            c.close()
        assert status == 200 and doc["reloading"] is True and doc["version"] == "4"
        _wait_for(lambda: versions() == {"4"}, timeout=120)
    finally:
        assert handle.stop() == 0


def test_reload_is_refused_without_a_configured_token(classifier_server):
    c = Client(classifier_server.url)
    try:
        status, headers, doc = c.post("/admin/reload", None, content_type=None)
    finally:
        c.close()
    assert status == 403 and "NBDEPLOY_API_TOKEN" in doc["message"]


# -- compare and replay --------------------------------------------------------------
def test_agreement_numbers_on_known_inputs():
    from nbdeploy.serve.compare import Agreement

    clf = Agreement("3", "4")
    clf.add("a", [1, 0, 1, 1], [1, 1, 1, 0], 1.0, 2.0)
    clf.add("b", ["x"], ["x"], 3.0, 4.0)
    doc = clf.report()
    assert doc["kind"] == "classification" and doc["rows"] == 5 and doc["agreement"] == 0.6
    assert doc["disagreeing_rows"] == 2 and [(w["id"], w["row"]) for w in doc["worst"]] == [("a", 1), ("a", 3)]
    assert doc["primary"]["latency_ms"]["p50"] == 3.0 and doc["candidate"]["latency_ms"]["mean"] == 3.0
    reg = Agreement("3", "4")
    reg.add("a", [1.0, 2.5, 4.0], [1.5, 2.0, 4.0])
    reg.add("b", [10.25], [12.25])
    doc = reg.report()
    assert doc["kind"] == "regression" and doc["mean_abs_diff"] == pytest.approx(0.75) and doc["max_abs_diff"] == 2.0
    assert doc["agreement"] == 0.25 and [w["difference"] for w in doc["worst"]] == [2.0, 0.5, 0.5]


def test_agreement_of_equal_label_lists_counts_as_row_by_row():
    """Equal lists of labels are counted at once; the report is the one comparing row by row gives
    (a label list that equals numbers, booleans or NaN is compared row by row)."""
    from nbdeploy.serve import compare
    from nbdeploy.serve.compare import Agreement

    pairs = [([0, 1, 1], [0, 1, 1]), (["yes"], ["yes"]), ([True], [True]), ([1], [1.0]), ([1], [True]),
             ([], []), ([0, "a"], [0, "a"]), ([2.5], [2.5]), ([float("nan")], [float("nan")]), ([1, 0], [1, 1])]
    for cut in range(len(pairs)):  # each order of kinds: the first pair decides nothing alone
        chosen = pairs[cut:] + pairs[:cut]
        fast = Agreement("3", "4")
        for i, (a, b) in enumerate(chosen):
            fast.add(f"r{i}", a, b, 1.0, 2.0)
        labels, compare._LABELS = compare._LABELS, frozenset()  # every pair row by row
        try:
            slow = Agreement("3", "4")
            for i, (a, b) in enumerate(chosen):
                slow.add(f"r{i}", a, b, 1.0, 2.0)
        finally:
            compare._LABELS = labels
        assert str(fast.report()) == str(slow.report())
    numbers = Agreement()  # equal integers counted at once stay numbers: with floats, a regression
    numbers.add("a", [1, 0], [1, 0])
    numbers.add("b", [2.5], [3.0])
    assert numbers.report()["kind"] == "regression" and numbers.report()["mean_abs_diff"] == pytest.approx(0.5 / 3)


def test_replay_of_a_logged_day(regressor_bundle, regressor_v4, tmp_path, capsys):
    from nbdeploy.frontends.cli import main
    from nbdeploy.serve.compare import replay

    rows = ROWS[:90]
    live = start(regressor_bundle, tmp_path)
    try:
        answered = [p for _, p in _answers(live, rows)]
    finally:
        assert live.stop() == 0
    cand = start(regressor_v4, tmp_path / "v4")
    try:
        candidate = [p for _, p in _answers(cand, rows)]
    finally:
        cand.stop()
    diffs = [abs(a - b) for a, b in zip(answered, candidate, strict=True)]
    doc = replay(tmp_path / "requests.jsonl", regressor_v4)
    assert doc["requests"] == doc["rows"] == len(rows) and doc["errors"] == 0 and doc["kind"] == "regression"
    assert doc["primary"]["version"] == "3" and doc["candidate"]["version"] == "4"
    assert doc["mean_abs_diff"] == pytest.approx(sum(diffs) / len(diffs), rel=1e-9)
    assert doc["max_abs_diff"] == pytest.approx(max(diffs), rel=1e-9)
    assert doc["worst"][0]["difference"] == pytest.approx(max(diffs), rel=1e-9) and "inputs" in doc["worst"][0]
    assert main(["compare", "--replay", str(tmp_path / "requests.jsonl"), str(regressor_v4)]) == 0
    out = capsys.readouterr().out
    assert "v3 (live) against v4 (candidate)" in out and f"max {max(diffs):.6g}" in out
    assert main(["compare", str(tmp_path / "requests.jsonl")]) == 2  # no shadow records in this log
    # the bundle's own copy of the runtime runs the same replay
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "nbdeploy.serve", str(regressor_v4), "--replay",
                          str(tmp_path / "requests.jsonl"), "--json"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["max_abs_diff"] == pytest.approx(max(diffs), rel=1e-9)
