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


def _one_row(row: dict, i: int) -> dict:
    if i % 3 == 0:
        return {"dataframe_records": [row]}
    names = list(row) if i % 3 == 1 else list(reversed(row))
    return {"dataframe_split": {"columns": names, "data": [[row[n] for n in names]]}}


def test_bad_and_flagged_requests_in_a_batch_fail_or_flag_alone(classifier_server):
    """Columns are checked for the whole batch at once; one wrong value must still fail only its
    own request (422 naming the field), an out-of-range value flag only its own, and the rest
    predict exactly what they predict alone. The bodies mix records with one-row
    dataframe_split in two column orders, so one batch holds rows kept as they came (with
    different column lists) beside requests parsed into columns."""
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
            return [(i, *c.post("/invocations", _one_row(bodies[i], i))) for i in range(t, 150, 24)]
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


def test_rows_kept_as_they_came_predict_what_their_columns_predict(classifier_bundle):
    """One-row parts keep their row and column list; a batch of them is transposed at once.
    Every mix (one column list, two lists, rows beside columns, a bad row) gives each part
    what it gets alone, from columns."""
    from nbdeploy.serve.app import create_app
    from nbdeploy.serve.batcher import Part
    from nbdeploy.serve.config import ServeConfig
    from nbdeploy.serve.errors import RequestError

    app = create_app(classifier_bundle, ServeConfig(log_path=""))
    names = ["age", "income", "city", "member"]
    other = list(reversed(names))
    rows = [[20 + i, 30_000.0 + 997 * i, ["paris", "lyon", "nice"][i % 3], bool(i % 2)] for i in range(40)]

    def alone(row):
        return app.predictor.run_batch([Part({n: [v] for n, v in zip(names, row, strict=True)}, 1, None, True)])[0]

    expected = [alone(r) for r in rows]
    assert len({str(e) for e in expected}) > 1  # the rows do not all predict the same
    same = [Part(list(r), 1, None, True, None, names) for r in rows]
    assert app.predictor.run_batch(same) == expected
    mixed = []
    for i, r in enumerate(rows):
        if i % 3 == 0:
            mixed.append(Part(list(r), 1, None, True, None, names))
        elif i % 3 == 1:
            mixed.append(Part(list(reversed(r)), 1, None, True, None, other))
        else:
            mixed.append(Part({n: [v] for n, v in zip(names, r, strict=True)}, 1, None, True))
    mixed[7] = Part(["old", 1.0, "paris", True], 1, None, True, None, names)
    got = app.predictor.run_batch(mixed)
    assert isinstance(got[7], RequestError) and got[7].errors[0]["field"] == "age"
    assert [g for i, g in enumerate(got) if i != 7] == [e for i, e in enumerate(expected) if i != 7]


def test_outputs_with_keys_that_are_not_strings_are_answered(classifier_bundle):
    """Responses are written without orjson's non-string-keys option unless an output needs it."""
    from nbdeploy.serve.app import create_app
    from nbdeploy.serve.config import ServeConfig

    app = create_app(classifier_bundle, ServeConfig(log_path=""))
    assert app.json({"predictions": [1, 0]}) == b'{"predictions":[1,0]}'
    assert app.json({"predictions": [{0: 0.25, 1: 0.75}]}) == b'{"predictions":[{"0":0.25,"1":0.75}]}'


def test_a_shadow_predict_judged_in_its_thread_by_cpu_time_returns_to_the_event_loop():
    """In the thread a predict's clock time also counts its waits for the GIL the busy loop holds;
    judged by that, a shadow sent there once stayed there. Judged by its CPU time, a cheap
    predict comes back to the loop; one that waits without computing stays off it."""
    import asyncio
    import threading
    import time

    from nbdeploy.serve.batcher import Batcher, Part

    where: list[str] = []
    waits = [0.05]  # the first call waits (off the CPU, as for the GIL), later ones do not

    def run(parts):
        where.append(threading.current_thread().name)
        time.sleep(waits.pop() if waits else 0)
        return [p.data for p in parts]

    def sleepy(parts):
        where.append(threading.current_thread().name)
        time.sleep(0.15)
        return [p.data for p in parts]

    async def go(batcher, times):
        return [await batcher.run_parts([Part(i, 1, None)]) for i in range(times)]

    cheap = Batcher(run, inline_below=0.001)
    assert asyncio.run(go(cheap, 3)) == [[(True, 0)], [(True, 1)], [(True, 2)]]
    loop_thread = threading.current_thread().name
    assert where[0] != loop_thread and where[1:] == [loop_thread, loop_thread]  # back on the loop
    assert cheap.predict_seconds < 0.001 and not cheap.blocking
    where.clear()
    waiting = Batcher(sleepy, inline_below=0.001)
    waiting.predict_seconds = 0.0  # looks fast: tried on the loop, where its wait shows
    asyncio.run(go(waiting, 3))
    assert waiting.blocking and where[0] == loop_thread and loop_thread not in where[1:]
