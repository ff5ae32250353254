"""Request log completeness under load, graceful shutdown with requests in flight, auth, workers."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import Client, metric, read_log, start, wait_until
from fixture_models import SLOW

pytestmark = pytest.mark.slow


def test_log_has_one_record_per_request_under_load_with_rotation(tripwire_model, tmp_path):
    handle = start(tripwire_model, tmp_path, log_max_bytes=8 * 1024)
    sent: list[str] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        c = Client(handle.url)
        try:
            for i in range(t, 600, 24):
                body = {"dataframe_records": [{"x": float(i)}]} if i % 10 else {"dataframe_records": [{"y": 1}]}
                status, headers, _ = c.post("/invocations", body)
                assert status == (200 if i % 10 else 422)
                with lock:
                    sent.append(headers["x-request-id"])
        finally:
            c.close()

    try:
        with ThreadPoolExecutor(24) as pool:
            list(pool.map(worker, range(24)))
    finally:
        assert handle.stop() == 0
    records = read_log(tmp_path / "requests.jsonl")
    assert len(list(tmp_path.glob("requests.jsonl.*.gz"))) > 3, "the log should have rotated and compressed"
    assert len(records) == len(sent) == 600
    assert sorted(r["id"] for r in records) == sorted(sent)
    ok = [r for r in records if r["status"] == 200]
    assert len(ok) == 540
    for r in ok:
        assert r["inputs"]["columns"] == ["x"] and len(r["inputs"]["data"]) == r["rows"]
        assert r["outputs"] == [2 * row[0] for row in r["inputs"]["data"]]
        assert r["model"] == "tripwire" and r["version"] == "1" and r["latency_ms"] > 0
    bad = [r for r in records if r["status"] == 422]
    assert all(r["error"]["errors"] for r in bad)


def test_sigterm_finishes_requests_in_flight(tripwire_model, tmp_path):
    handle = start(tripwire_model, tmp_path)
    results: list[tuple[int, dict]] = []

    def call(i: int) -> None:
        c = Client(handle.url)
        try:
            status, _, doc = c.post("/invocations", {"dataframe_records": [{"x": float(SLOW)}, {"x": float(i)}]})
            results.append((status, doc))
        finally:
            c.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    time.sleep(0.3)  # the requests are now queued or inside predict (which sleeps 0.5 s)
    code = handle.stop(timeout=30)
    for t in threads:
        t.join(30)
    assert code == 0
    assert len(results) == 12
    assert all(status == 200 for status, _ in results), results
    assert sorted(doc["predictions"][1] for _, doc in results) == [2.0 * i for i in range(12)]
    assert len(read_log(tmp_path / "requests.jsonl")) == 12
    with pytest.raises(OSError):
        Client(handle.url).get("/health")


def test_bearer_token(classifier_bundle, tmp_path):
    handle = start(classifier_bundle, tmp_path, token="s3cret")
    try:
        anon, good, bad = Client(handle.url), Client(handle.url, "s3cret"), Client(handle.url, "wrong")
        for path in ("/health", "/v2/health/live", "/v2/health/ready"):
            assert anon.get(path)[0] == 200
        # an anonymous probe reads the status; where the log is (and its error) needs the token
        assert anon.get("/health")[2] == {"status": "ok"} == bad.get("/health")[2]
        assert good.get("/health")[2]["request_log"]["path"] == str(tmp_path / "requests.jsonl")
        body = {"dataframe_records": [{"age": 40, "income": 1.0, "city": "nice", "member": False}]}
        for path in ("/metadata", "/metrics", "/openapi.json", "/docs", "/v2/models/churn"):
            assert anon.get(path)[0] == 401, path
            assert bad.get(path)[0] == 401, path
            assert good.get(path)[0] == 200, path
        status, headers, doc = anon.post("/invocations", body)
        assert status == 401 and headers["www-authenticate"] == "Bearer" and doc["error_code"] == "UNAUTHENTICATED"
        assert bad.post("/invocations", body)[0] == 401
        assert good.post("/invocations", body)[0] == 200
        v2 = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}]}
        assert anon.post("/v2/models/churn/infer", v2)[0] == 401
    finally:
        handle.stop()


def test_two_workers_serve_and_log(classifier_bundle, tmp_path):
    handle = start(classifier_bundle, tmp_path, workers=2, log_max_bytes=4096)
    body = {"dataframe_records": [{"age": 40, "income": 1.0, "city": "nice", "member": False}]}
    try:
        def calls(_: int) -> list[int]:
            c = Client(handle.url)
            try:
                return [c.post("/invocations", body)[0] for _ in range(10)]
            finally:
                c.close()

        with ThreadPoolExecutor(8) as pool:
            statuses = [s for ss in pool.map(calls, range(8)) for s in ss]
        assert statuses == [200] * 80
        def scrape() -> str:
            c = Client(handle.url)
            try:
                return c.get("/metrics")[2]
            finally:
                c.close()

        # each worker shares its counts once a second (later on a loaded machine; the second
        # worker may still be starting while the first answers all 80): once a scrape holds all
        # 80 from two workers, both shares are written, and whichever worker a scrape reaches
        # then, it answers with the sum over both workers
        def both(text: str) -> bool:
            return (metric(text, 'nbdeploy_requests_total{endpoint="invocations",status="200"}') == 80
                    and metric(text, "nbdeploy_workers") == 2)

        wait_until(lambda: both(scrape()), 30, "a scrape that holds both workers' shares of the 80 requests")
        for _ in range(6):
            text = scrape()
            assert metric(text, 'nbdeploy_requests_total{endpoint="invocations",status="200"}') == 80
            assert metric(text, "nbdeploy_batch_rows_sum") == 80
            assert (metric(text, 'nbdeploy_predictions_total{label="0"}') or 0) + (metric(
                text, 'nbdeploy_predictions_total{label="1"}') or 0) == 80
            assert metric(text, "nbdeploy_workers") == 2
            assert metric(text, "nbdeploy_drift_rows") == 80
    finally:
        assert handle.stop() == 0
    files = sorted(tmp_path.glob("requests.*.jsonl"))
    assert 1 <= len(files) <= 2
    assert list(tmp_path.glob("requests.*.jsonl.*.gz")), "each worker's log rotates into gzipped files"
    from nbdeploy.serve.compare import read_records

    # what `nbdeploy compare` reads: every worker's file and its rotated files
    assert len([r for r in read_records(tmp_path / "requests.jsonl") if r["endpoint"] == "invocations"]) == 80


def test_handle_round_trips_through_json_and_stops_from_elsewhere(tripwire_model, tmp_path):
    from nbdeploy.serve.launcher import ServerHandle

    handle = start(tripwire_model, tmp_path)
    other = ServerHandle.from_dict(json.loads(json.dumps(handle.to_dict())))
    assert other.url == handle.url and other.alive()
    assert other.stop() is None
    assert not other.alive()
    assert handle._process.wait(10) == 0
