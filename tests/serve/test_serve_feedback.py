"""Ground truth: POST /feedback joins labels to the logged answers; GET /performance per version
against the training metric; across workers and restarts; the CLI's offline table is the same;
V2 requests choose a served version."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Client, seal_bundle, start

pytestmark = pytest.mark.slow

ROWS = [{"age": age, "income": 30_000.0 + 900 * age, "city": city, "member": age % 3 == 0}
        for age in range(18, 80) for city in ("paris", "lyon", "nice")]
_KINDS = {"age": "INT64", "income": "FP64", "city": "BYTES", "member": "BOOL"}
ROOT = Path(__file__).resolve().parents[2]


def _with_metrics(src: Path, dest: Path, version: str, metrics: dict[str, float]) -> Path:
    """A copy of a fixture bundle sealed as ``version`` with the training metrics a build records."""
    shutil.copytree(src, dest)
    manifest = json.loads((dest / "nbdeploy.json").read_text())
    manifest.pop("files", None)
    seal_bundle(dest, {**manifest, "version": version, "summary": {**manifest["summary"], "metrics": metrics}})
    return dest


@pytest.fixture(scope="module")
def clf3(classifier_bundle, tmp_path_factory) -> Path:
    return _with_metrics(classifier_bundle, tmp_path_factory.mktemp("fb") / "v3", "3",
                         {"accuracy": 0.9, "roc_auc": 0.95})


@pytest.fixture(scope="module")
def clf4(tmp_path_factory, training_frame) -> Path:
    from conftest import _pipeline, _write_bundle
    from sklearn.ensemble import GradientBoostingClassifier

    X = training_frame
    model = _pipeline(GradientBoostingClassifier(n_estimators=5, max_depth=2, random_state=0)).fit(
        X, (X["age"] > 50).astype(int))
    root = _write_bundle(tmp_path_factory.mktemp("fb4") / "raw", model, X, "churn",
                         skops_trusted_types=["sklearn.tree._tree.Tree", "numpy.dtype"])
    return _with_metrics(root, tmp_path_factory.mktemp("fb4b") / "v4", "4", {"test_accuracy": 0.8})


@pytest.fixture(scope="module")
def reg3(regressor_bundle, tmp_path_factory) -> Path:
    return _with_metrics(regressor_bundle, tmp_path_factory.mktemp("fbr") / "v3", "3", {"mae": 2.0, "r2": 0.9})


def _v2(row: dict[str, Any]) -> dict[str, Any]:
    return {"inputs": [{"name": k, "shape": [1], "datatype": _KINDS[k], "data": [row[k]]} for k in row]}


def _predict(c: Client, rows: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    """(request id, version that answered, prediction) for each row, one request per row."""
    out = []
    for row in rows:
        status, headers, doc = c.post("/invocations", {"dataframe_records": [row]})
        assert status == 200, doc
        out.append((headers["x-request-id"], headers["x-model-version"], doc["predictions"][0]))
    return out


def _version(doc: dict[str, Any], version: str) -> dict[str, Any]:
    found = [v for v in doc["versions"] if v["version"] == version]
    assert len(found) == 1, doc
    return found[0]


def _poll(c_make, check, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        c = c_make()
        try:
            doc = c.get("/performance")[2]
        finally:
            c.close()
        if check(doc) or time.monotonic() > deadline:
            return doc
        time.sleep(0.1)


# -- one server, a shadow: labels join both versions ------------------------------
def test_feedback_joins_live_and_shadow_answers_and_performance_is_the_hand_computed_accuracy(
        clf3, clf4, tmp_path):
    handle = start(clf3, tmp_path, shadow=str(clf4))
    c = Client(handle.url)
    try:
        rows = ROWS[:60]
        answered = _predict(c, rows)
        assert {v for _, v, _ in answered} == {"3"}
        # V2 with a version: the shadow's answers for the same rows, from the same server
        shadow_preds = []
        for row in rows:
            status, headers, doc = c.post("/v2/models/churn/versions/4/infer", _v2(row))
            assert status == 200 and doc["model_version"] == headers["x-model-version"] == "4", doc
            shadow_preds.append(doc["outputs"][0]["data"][0])
        # labels: the live answer for the first 45 requests, the other class for the last 15
        labels = [p if i < 45 else 1 - p for i, (_, _, p) in enumerate(answered)]
        items = [{"request_id": rid, "label": y} for (rid, _, _), y in zip(answered, labels, strict=True)]
        status, _, doc = c.post("/feedback", items[:30])
        assert status == 200 and doc == {"received": 30, "joined": 30, "unknown": 0, "mismatched": 0}, doc
        status, _, doc = c.post("/feedback", [*items[30:], {"request_id": "nosuchid", "label": 1}])
        assert status == 200 and doc["joined"] == 30 and doc["unknown"] == 1 and doc["unknown_ids"] == ["nosuchid"]
        status, _, doc = c.post("/feedback", {"request_id": answered[0][0], "label": [1, 0]})
        assert status == 200 and doc["mismatched"] == 1 and doc["joined"] == 0, doc
        # the shadow answers after the live one; wait until /shadow has compared all 60
        deadline = time.monotonic() + 30
        while c.get("/shadow")[2]["requests"] < len(rows) and time.monotonic() < deadline:
            time.sleep(0.05)
        _, _, perf = c.get("/performance")
    finally:
        c.close()
        assert handle.stop() == 0
    assert perf["labels"] == 60 and perf["joined"] == 60 and perf["unjoined"] == 0
    live = _version(perf, "3")
    assert live["served_as"] == ["answered"] and live["kind"] == "classification"
    assert live["labelled_requests"] == live["labelled_rows"] == 60
    assert live["live"]["accuracy"] == pytest.approx(45 / 60)
    assert live["training"] == {"accuracy": 0.9}
    assert live["change"]["accuracy"] == pytest.approx(45 / 60 - 0.9)
    shadow = _version(perf, "4")
    assert shadow["served_as"] == ["shadow"] and shadow["labelled_rows"] == 60
    hand = sum(p == y for p, y in zip(shadow_preds, labels, strict=True)) / 60
    assert shadow["live"]["accuracy"] == pytest.approx(hand)
    assert shadow["training"] == {"accuracy": 0.8} and shadow["training_metric_names"] == {"accuracy": "test_accuracy"}
    # offline, from the log the server wrote: the same table
    offline = _cli_json("performance", str(tmp_path / "requests.jsonl"))
    assert offline["versions"] == perf["versions"]
    assert (offline["labels"], offline["joined"]) == (60, 60)
    # a bundle on its own: its copy of the runtime prints the same table
    done = subprocess.run([sys.executable, "-m", "nbdeploy.serve", "performance", str(tmp_path / "requests.jsonl"),
                           "--json"], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["versions"] == perf["versions"]


def _cli_json(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "nbdeploy", *args, "--json"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


# -- regression: MAE and RMSE -----------------------------------------------------------
def test_regression_mae_and_rmse_against_the_training_mae_and_a_feedback_file(reg3, tmp_path, ipshell, capsys):
    handle = start(reg3, tmp_path)
    c = Client(handle.url)
    try:
        answered = _predict(c, ROWS[:20])
        errors = [(-1) ** i * (i % 5) for i in range(20)]  # known errors: 0, -1, 2, -3, 4, 0, ...
        items = [{"request_id": rid, "label": p + e} for (rid, _, p), e in zip(answered, errors, strict=True)]
        assert c.post("/feedback", items)[2]["joined"] == 20
        perf = c.get("/performance")[2]
        # the notebook renders the running API's table
        ipshell.run_line_magic("deploy", f"performance {handle.url}")
        shown = capsys.readouterr().out
        assert f"performance of {handle.url}" in shown and "v3 (answered) regression: 20 labelled rows" in shown
        assert f"mae      live {perf['versions'][0]['live']['mae']:.4g}   training 2" in shown
    finally:
        c.close()
        assert handle.stop() == 0
    v = _version(perf, "3")
    assert v["kind"] == "regression"
    assert v["live"]["mae"] == pytest.approx(sum(abs(e) for e in errors) / 20)
    assert v["live"]["rmse"] == pytest.approx(math.sqrt(sum(e * e for e in errors) / 20))
    assert v["training"] == {"mae": 2.0} and v["change"]["mae"] == pytest.approx(v["live"]["mae"] - 2.0)
    # labels kept in a CSV beside a log that has none: the same numbers
    log = tmp_path / "bare" / "requests.jsonl"
    log.parent.mkdir()
    log.write_text("".join(line + "\n" for line in (tmp_path / "requests.jsonl").read_text().splitlines()
                           if '"endpoint":"feedback"' not in line))
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\n" + "".join(f"{i['request_id']},{i['label']!r}\n" for i in items))
    offline = _cli_json("performance", str(log), "--feedback", str(labels))
    o = _version(offline, "3")
    assert o["live"]["mae"] == pytest.approx(v["live"]["mae"]) and o["live"]["rmse"] == pytest.approx(v["live"]["rmse"])
    assert o["training"] == {}  # the bare log never met the bundle: no training metric to show
    done = subprocess.run([sys.executable, "-m", "nbdeploy", "performance", str(log)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode != 0 and "holds no feedback" in done.stderr and "Traceback" not in done.stderr


# -- several workers, a canary, a restart ---------------------------------------------------
def test_feedback_across_two_workers_with_a_canary_and_a_restart(clf3, clf4, tmp_path):
    handle = start(clf3, tmp_path, workers=2, canary=str(clf4), canary_percent=50)
    try:
        answered = []
        for i in range(0, 80, 8):  # new connections: both workers answer some
            c = Client(handle.url)
            try:
                answered += _predict(c, ROWS[i:i + 8])
            finally:
                c.close()
        assert {v for _, v, _ in answered} == {"3", "4"}
        labels = [p if i % 4 else 1 - p for i, (_, _, p) in enumerate(answered)]  # every 4th wrong
        items = [{"request_id": rid, "label": y} for (rid, _, _), y in zip(answered, labels, strict=True)]
        for i in range(0, 60, 10):  # the labels of the first 60, each post on a new connection
            c = Client(handle.url)
            try:
                status, _, doc = c.post("/feedback", items[i:i + 10])
            finally:
                c.close()
            assert status == 200 and doc["joined"] == 10 and doc["unknown"] == 0, doc
        expected = _expected(answered[:60], labels[:60])
        perf = _poll(lambda: Client(handle.url), lambda d: _numbers(d) == expected)
        assert _numbers(perf) == expected and perf["labels"] == 60
    finally:
        assert handle.stop() == 0
    # each worker wrote its own file; which worker took which connection is the kernel's
    # choice (one may have taken all ten prediction connections), so rows count across both
    per_worker = [f.read_text() for f in tmp_path.glob("requests.*.jsonl")]
    assert len(per_worker) == 2
    assert sum(t.count('"endpoint":"invocations"') for t in per_worker) == len(answered)
    # a restart (one worker now) reads the labels and the answers back from the logs
    handle = start(clf3, tmp_path, canary=str(clf4), canary_percent=50)
    c = Client(handle.url)
    try:
        assert _numbers(c.get("/performance")[2]) == expected
        status, _, doc = c.post("/feedback", items[60:])  # answered before the restart
        assert status == 200 and doc["joined"] == 20 and doc["unknown"] == 0, doc
        perf = c.get("/performance")[2]
    finally:
        c.close()
        assert handle.stop() == 0
    assert _numbers(perf) == _expected(answered, labels) and perf["labels"] == 80
    assert _version(perf, "3")["served_as"] == ["answered"] == _version(perf, "4")["served_as"]
    offline = _cli_json("performance", str(tmp_path / "requests.jsonl"))
    assert offline["versions"] == perf["versions"]


def _expected(answered: list[tuple[str, str, Any]], labels: list[Any]) -> dict[str, tuple[int, float]]:
    out = {}
    for version in ("3", "4"):
        pairs = [(p, y) for (_, v, p), y in zip(answered, labels, strict=True) if v == version]
        out[version] = (len(pairs), round(sum(p == y for p, y in pairs) / len(pairs), 6))
    return out


def _numbers(doc: dict[str, Any]) -> dict[str, tuple[int, float]]:
    return {v["version"]: (v["labelled_rows"], v["live"]["accuracy"]) for v in doc.get("versions", [])}


# -- bad bodies ------------------------------------------------------------------------------
BAD = [  # (body, status, the field the answer names)
    ({}, 422, "request_id"),
    ({"request_id": "x"}, 422, "label"),
    ({"request_id": 5, "label": 1}, 422, "request_id"),
    ({"request_id": "", "label": 1}, 422, "request_id"),
    ({"request_id": "x", "label": None}, 422, "label"),
    ({"request_id": "x", "label": {"a": 1}}, 422, "label"),
    ({"request_id": "x", "label": []}, 422, "label"),
    ({"request_id": "x", "label": [1, None]}, 422, "label[1]"),
    ({"request_id": "x", "label": 1, "extra": 2}, 422, "extra"),
    ([], 422, "body"),
    ('"text"', 422, "body"),
    ([{"request_id": "x", "label": 1}, {"request_id": "y"}], 422, "[1].label"),
    ([{"request_id": "x", "label": 1}, 7], 422, "[1]"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD)
def test_a_bad_feedback_body_is_a_4xx_naming_the_field(classifier_server, client_for, body, status, field):
    got, _, doc = client_for(classifier_server).post("/feedback", body)
    assert got == status, doc
    assert doc["errors"][0]["field"] == field and field in doc["message"]


def test_feedback_that_is_not_json_and_the_unknown_version(classifier_server, client_for):
    c = client_for(classifier_server)
    status, _, doc = c.post("/feedback", b"{nope")
    assert status == 400 and "not valid JSON" in doc["message"]
    status, _, doc = c.post("/feedback", "request_id,label\nx,1\n", content_type="text/csv")
    assert status == 415
    status, _, doc = c.get("/feedback")
    assert status == 405
    status, _, doc = c.post("/v2/models/churn/versions/9/infer", _v2(ROWS[0]))
    assert status == 404 and "'9'" in doc["error"] and "'3' (live)" in doc["error"], doc
    status, headers, doc = c.post("/v2/models/churn/versions/3/infer", _v2(ROWS[0]))
    assert status == 200 and doc["model_version"] == headers["x-model-version"] == "3"
    status, _, doc = c.get("/v2/models/churn/versions/3")
    assert status == 200 and doc["versions"] == ["3"]
