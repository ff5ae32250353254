"""The request log on its own: order, rotation by size on line boundaries, bounded backups."""

from __future__ import annotations

import json

from nbdeploy.serve.requestlog import RequestLog, log_files


def _records(path):
    return [json.loads(line) for f in log_files(path) for line in f.read_text().splitlines()]


def test_rotation_keeps_order_and_size(tmp_path):
    log = RequestLog(tmp_path / "r.jsonl", max_bytes=1000, backups=100)
    for i in range(500):
        log.write({"i": i, "pad": "x" * 20})
    log.close()
    files = log_files(tmp_path / "r.jsonl")
    assert len(files) > 10
    assert all(f.stat().st_size <= 1000 for f in files)
    assert [r["i"] for r in _records(tmp_path / "r.jsonl")] == list(range(500))
    assert log.records == 500


def test_backups_are_bounded(tmp_path):
    log = RequestLog(tmp_path / "r.jsonl", max_bytes=200, backups=2)
    for i in range(100):
        log.write({"i": i})
    log.close()
    assert sorted(f.name for f in log_files(tmp_path / "r.jsonl")) == ["r.jsonl", "r.jsonl.1", "r.jsonl.2"]
    kept = [r["i"] for r in _records(tmp_path / "r.jsonl")]
    assert kept == list(range(kept[0], 100))  # the newest records, in order


def test_reopening_appends(tmp_path):
    for _ in range(2):
        log = RequestLog(tmp_path / "r.jsonl")
        log.write({"a": 1})
        log.close()
    assert len(_records(tmp_path / "r.jsonl")) == 2


def test_logged_inputs_replay_as_they_were_answered(classifier_bundle, training_frame, tmp_path):
    """Whatever format a request came in (split, records, instances, CSV, V2 tensors), its
    record keeps the inputs in dataframe_split form; sent back to /invocations as they are,
    they get the same predictions."""
    import csv
    import io

    from conftest import Client, read_log, start

    rows = training_frame.dropna().iloc[40:46].reset_index(drop=True)
    cols = list(rows.columns)
    buf = io.StringIO()
    csv.writer(buf).writerows([cols, *rows.values.tolist()])
    v2 = {"inputs": [{"name": c, "shape": [len(rows)], "datatype": t, "data": rows[c].tolist()}
                     for c, t in zip(cols, ["INT64", "FP64", "BYTES", "BOOL"], strict=True)]}
    handle = start(classifier_bundle, tmp_path)
    c = Client(handle.url)
    try:
        sent = [
            c.post("/invocations", {"dataframe_split": {"columns": cols, "data": rows.values.tolist()}}),
            c.post("/invocations", {"dataframe_split": {"columns": cols, "data": rows.values.tolist()[:1]}}),
            c.post("/invocations", {"dataframe_records": rows.to_dict(orient="records")}),
            c.post("/invocations", {"instances": rows.values.tolist()}),
            c.post("/invocations", buf.getvalue(), content_type="text/csv"),
            c.post("/v2/models/churn/infer", v2),
        ]
        assert [s for s, _, _ in sent] == [200] * 6
    finally:
        c.close()
        assert handle.stop() == 0
    records = [r for r in read_log(tmp_path / "requests.jsonl") if r["endpoint"] in ("invocations", "v2_infer")]
    assert len(records) == 6
    replay = start(classifier_bundle, tmp_path / "replay")
    c = Client(replay.url)
    try:
        for r in records:
            assert set(r["inputs"]) == {"columns", "data"} and len(r["inputs"]["data"]) == r["rows"]
            status, _, doc = c.post("/invocations", json.dumps({"dataframe_split": r["inputs"]}))
            assert status == 200 and doc["predictions"] == r["outputs"], (r, doc)
    finally:
        c.close()
        replay.stop()


def test_records_with_keys_that_are_not_strings_are_written(tmp_path):
    """Written without orjson's non-string-keys option (faster), and with it when a record needs it."""
    log = RequestLog(tmp_path / "r.jsonl")
    log.write({"id": "a", "outputs": {"p": 0.5}})
    log.write({"id": "b", "outputs": [{0: 0.25, 1: 0.75}]})
    log.close()
    assert _records(tmp_path / "r.jsonl") == [{"id": "a", "outputs": {"p": 0.5}},
                                              {"id": "b", "outputs": [{"0": 0.25, "1": 0.75}]}]


def test_secrets_a_client_sends_are_not_logged_and_plain_records_are_untouched(tmp_path, monkeypatch):
    monkeypatch.setenv("DB_PASSWORD", "srvPw8Zq2Lm7Xk4")  # the server's own secret
    token, key = "tkn8Hq3ZvR6pL1mX9cW4Param", "AKIAW2PARAMZ8Q4LK7NB"
    log = RequestLog(tmp_path / "r.jsonl")
    plain = {"id": "1", "status": 200, "inputs": {"columns": ["a", "note"], "data": [[1.5, "keyboard"]]}}
    log.write(plain)
    log.write({"id": "2", "status": 422, "inputs": {"columns": ["a", "api_token"], "data": [[0.1, token]]},
               "error": {"message": f"bad value {key}"}})
    log.write({"id": "3", "status": 422, "inputs": [{"a": "postgresql://u:Zq8Param3Lx7Mv2Kp@db/x", "b": key}]})
    log.write({"id": "4", "status": 422, "inputs": [{"a": "srvPw8Zq2Lm7Xk4"}]})
    log.close()
    text = (tmp_path / "r.jsonl").read_text()
    for secret in (token, key, "Zq8Param3Lx7Mv2Kp", "srvPw8Zq2Lm7Xk4"):
        assert secret not in text
    first, second, third, _ = _records(tmp_path / "r.jsonl")
    assert first == plain  # nothing suspect: written as it came
    assert second["inputs"]["data"] == [[0.1, "***"]] and second["error"]["message"] == "bad value ***"
    assert third["inputs"] == [{"a": "postgresql://u:***@db/x", "b": "***"}]
