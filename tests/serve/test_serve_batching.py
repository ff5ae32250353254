"""Concurrent clients with distinct rows through the micro-batcher; a model that raises."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from conftest import Client
from fixture_models import RAISE


def _rows(i: int) -> list[float]:
    """Request i sends 1 to 5 rows, all different from every other request's rows."""
    return [float(i * 10 + j) for j in range(1 + i % 5)]


def _batch_stats(metrics: str) -> tuple[float, float]:
    count = float(re.search(r"^nbdeploy_batch_requests_count(?:\{[^}]*\})? (\S+)$", metrics, re.M).group(1))
    total = float(re.search(r"^nbdeploy_batch_requests_sum(?:\{[^}]*\})? (\S+)$", metrics, re.M).group(1))
    return count, total


def test_concurrent_clients_get_exactly_their_rows(tripwire_server):
    n_requests, n_threads = 400, 32

    def worker(t: int) -> list[tuple[int, int, list[float], list[float]]]:
        c = Client(tripwire_server.url)
        out = []
        try:
            for i in range(t, n_requests, n_threads):
                xs = _rows(i)
                body = {"dataframe_records": [{"x": x} for x in xs]} if i % 2 else {"inputs": {"x": xs}}
                status, _, doc = c.post("/invocations", body)
                out.append((i, status, xs, doc.get("predictions")))
        finally:
            c.close()
        return out

    before = _batch_stats(Client(tripwire_server.url).get("/metrics")[2])
    with ThreadPoolExecutor(n_threads) as pool:
        results = [r for rs in pool.map(worker, range(n_threads)) for r in rs]
    assert len(results) == n_requests
    for i, status, xs, preds in results:
        assert status == 200, (i, preds)
        assert preds == [2 * x for x in xs], f"request {i} got someone else's rows"
    after = _batch_stats(Client(tripwire_server.url).get("/metrics")[2])
    batches, requests = after[0] - before[0], after[1] - before[1]
    assert requests == n_requests
    assert batches < n_requests, "no request was ever coalesced with another"


def test_model_exception_is_500_with_error_id_and_server_keeps_serving(tripwire_server, client_for):
    c = client_for(tripwire_server)
    status, _, doc = c.post("/invocations", {"dataframe_records": [{"x": 1.0}, {"x": float(RAISE)}]})
    assert status == 500
    assert doc["error_code"] == "INTERNAL_ERROR" and "tripwire" in doc["message"]
    error_id = doc["error_id"]
    assert re.fullmatch(r"[0-9a-f]{16}", error_id)
    assert error_id in tripwire_server.stderr_tail(200)
    status, _, doc = c.post("/invocations", {"dataframe_records": [{"x": 1.0}]})
    assert status == 200 and doc["predictions"] == [2.0]
    status, _, doc = c.post("/v2/models/tripwire/infer",
                            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [RAISE]}]})
    assert status == 500 and doc["error_id"] and "tripwire" in doc["error"]


def test_a_raising_request_does_not_fail_the_requests_batched_with_it(tripwire_server):
    def call(i: int) -> tuple[int, int, dict]:
        c = Client(tripwire_server.url)
        try:
            x = float(RAISE) if i % 7 == 0 else float(1000 + i)
            status, _, doc = c.post("/invocations", {"dataframe_records": [{"x": x}]})
            return i, status, doc
        finally:
            c.close()

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(call, range(120)))
    for i, status, doc in results:
        if i % 7 == 0:
            assert status == 500 and doc["error_id"]
        else:
            assert status == 200 and doc["predictions"] == [2.0 * (1000 + i)]


def test_bad_and_flagged_requests_in_a_batch_fail_or_flag_alone(classifier_server):
    """Columns are checked for the whole batch at once; one wrong value must still fail only its
    own request (422 naming the field), an out-of-range value flag only its own, and the rest
    predict exactly what they predict alone."""
    rows = [{"age": 20 + i % 50, "income": 30_000.0 + 250 * i, "city": ["paris", "lyon", "nice"][i % 3],
             "member": bool(i % 2)} for i in range(150)]
    kinds = ["bad" if i % 5 == 1 else "far" if i % 5 == 3 else "clean" for i in range(150)]
    bodies = [{**r, "age": "old"} if k == "bad" else {**r, "age": 900} if k == "far" else r
              for r, k in zip(rows, kinds, strict=True)]
    alone = Client(classifier_server.url)
    try:
        expected = {i: alone.post("/invocations", {"dataframe_records": [b]})[2]["predictions"]
                    for i, b in enumerate(bodies) if kinds[i] != "bad"}
    finally:
        alone.close()

    def worker(t: int) -> list[tuple[int, int, dict, object]]:
        c = Client(classifier_server.url)
        try:
            return [(i, *c.post("/invocations", {"dataframe_records": [bodies[i]]})) for i in range(t, 150, 24)]
        finally:
            c.close()

    before = _batch_stats(Client(classifier_server.url).get("/metrics")[2])
    with ThreadPoolExecutor(24) as pool:
        results = [r for rs in pool.map(worker, range(24)) for r in rs]
    assert len(results) == 150
    for i, status, headers, doc in results:
        if kinds[i] == "bad":
            assert status == 422, (i, doc)
            assert [e["field"] for e in doc["errors"]] == ["age"] and doc["errors"][0]["problem"] == "wrong_type"
        else:
            assert status == 200 and doc["predictions"] == expected[i], (i, doc)
            flagged = "age:out_of_range" in headers.get("x-nbdeploy-flags", "")
            assert flagged == (kinds[i] == "far"), (i, headers)
    after = _batch_stats(Client(classifier_server.url).get("/metrics")[2])
    assert after[0] - before[0] < after[1] - before[1], "no request was coalesced with another"
