"""The request log on its own: order, rotation by size into gzipped files named by time, retention
by age with every deleted record counted, failures to write counted and recovered from."""

from __future__ import annotations

import gzip
import json
import os
import time

from conftest import wait_until

from nbdeploy.serve import logfiles
from nbdeploy.serve.requestlog import RequestLog, log_files


def _records(path):
    return [json.loads(line) for f in log_files(path) for line in logfiles.read_lines(f)]


def test_rotation_keeps_order_and_size_and_compresses(tmp_path):
    log = RequestLog(tmp_path / "r.jsonl", max_bytes=1000)
    for i in range(500):
        log.write({"i": i, "pad": "x" * 20})
    log.close()
    files = log_files(tmp_path / "r.jsonl")
    assert len(files) > 10
    rotated = files[:-1]
    assert all(f.name.endswith(".gz") for f in rotated), [f.name for f in files]
    assert all(len(gzip.decompress(f.read_bytes())) <= 1000 for f in rotated)
    assert files[-1].stat().st_size <= 1000
    times = [logfiles.rotated_time(f) for f in rotated]
    assert times == sorted(times) and abs(times[-1] - time.time()) < 60
    assert [r["i"] for r in _records(tmp_path / "r.jsonl")] == list(range(500))
    assert log.records == log.written == 500 and log.dropped == {"retention": 0, "write_error": 0}


def test_retention_deletes_by_age_and_counts_what_it_deleted(tmp_path):
    path = tmp_path / "r.jsonl"
    # rotated files of an earlier run: one two days old (3 records), one an hour old (2), one a
    # day old not compressed yet (a crash before its compression; 4 records)
    old = logfiles.rotated_name(path, time.time() - 2 * 86400)
    old.with_name(old.name + ".gz").write_bytes(gzip.compress(b'{"i":1}\n{"i":2}\n{"i":3}\n'))
    recent = logfiles.rotated_name(path, time.time() - 3600)
    recent.with_name(recent.name + ".gz").write_bytes(gzip.compress(b'{"i":4}\n{"i":5}\n'))
    plain = logfiles.rotated_name(path, time.time() - 86400 - 60)
    plain.write_bytes(b'{"i":0}\n' * 4)
    log = RequestLog(path, keep_seconds=86400)
    log.write({"i": 6})
    deadline = time.monotonic() + 30
    while log.dropped["retention"] < 7 and time.monotonic() < deadline:
        time.sleep(0.05)
    log.close()
    assert log.dropped["retention"] == 7  # 3 + 4: every record deleted is counted
    assert [r["i"] for r in _records(path)] == [4, 5, 6]
    assert [f.name for f in log_files(path)] == [recent.name + ".gz", "r.jsonl"]


def test_retention_covers_every_workers_files_but_not_a_live_ones(tmp_path):
    """With several workers each writes r.<pid>.jsonl; retention runs over all of them: the rotated
    files of any worker, and the current file of a worker that has exited once it is that old."""
    path = tmp_path / "r.jsonl"
    dead = tmp_path / f"r.{2**22 + 12345}.jsonl"  # above pid_max's default: no such process
    dead.write_bytes(b'{"i":1}\n' * 3)
    live = tmp_path / f"r.{os.getppid()}.jsonl"
    live.write_bytes(b'{"i":2}\n')
    old = time.time() - 3 * 86400
    for f in (dead, live):
        os.utime(f, (old, old))
    rotated = logfiles.rotated_name(dead, old)
    rotated.with_name(rotated.name + ".gz").write_bytes(gzip.compress(b'{"i":3}\n' * 2))
    log = RequestLog(tmp_path / f"r.{os.getpid()}.jsonl", keep_seconds=86400, family=path)
    wait_until(lambda: log.dropped["retention"] == 5, 20, "5 records dropped by retention")
    log.close()
    assert not dead.exists() and live.exists()
    assert not list(tmp_path.glob("*.gz"))


def test_reopening_appends_and_a_torn_last_line_does_not_swallow_the_next(tmp_path):
    for _ in range(2):
        log = RequestLog(tmp_path / "r.jsonl")
        log.write({"a": 1})
        log.close()
    with open(tmp_path / "r.jsonl", "ab") as f:
        f.write(b'{"a": 1, "cut')  # a server killed in the middle of a write
    log = RequestLog(tmp_path / "r.jsonl")
    log.write({"a": 2})
    log.close()
    lines = (tmp_path / "r.jsonl").read_bytes().splitlines()
    assert lines[-1] == b'{"a":2}' and len(lines) == 4


def test_a_full_disk_drops_and_counts_records_then_recovers(tmp_path):
    """The log file is a symlink to /dev/full: every write fails with ENOSPC, for real. The writer
    counts each record it could not write, says so in its status, and once the path leads to a
    writable file again it reopens it and carries on."""
    path = tmp_path / "r.jsonl"
    path.symlink_to("/dev/full")
    log = RequestLog(path, flush_interval=0.05)
    for i in range(10):
        log.write({"i": i})
    wait_until(lambda: log.dropped["write_error"] == 10, 20, "10 records dropped as not writable")
    status = log.status()
    assert not status["ok"] and "No space left on device" in status["error"] and status["since"] > 0
    assert log.written == 0
    tmp = tmp_path / "link"
    tmp.symlink_to(tmp_path / "real.jsonl")
    os.replace(tmp, path)  # the disk has room again
    for i in range(10, 15):
        log.write({"i": i})
    wait_until(lambda: log.written == 5, 20, "5 records written")
    log.close()
    status = log.status()
    assert status["ok"] and "No space left" in status["last_error"] and time.time() - status["recovered_at"] < 60
    assert log.dropped == {"retention": 0, "write_error": 10}
    assert [r["i"] for r in _records(tmp_path / "real.jsonl")] == list(range(10, 15))


def test_too_many_records_waiting_makes_writers_wait_not_drop(tmp_path):
    """Back-pressure still holds while the disk fails: the writer frees the space by counting the
    lines it could not write, so requests waiting for space are released."""
    import asyncio

    path = tmp_path / "r.jsonl"
    path.symlink_to("/dev/full")
    log = RequestLog(path, max_pending_bytes=200, flush_interval=10)

    async def main():
        for i in range(100):
            log.write({"i": i, "pad": "x" * 10})
            if log.full:
                await asyncio.wait_for(log.wait_for_space(), 10)

    asyncio.run(main())
    log.close()
    assert log.dropped["write_error"] == 100 and log.records == 100


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
    app_token = "ghs_" + "Qw3Er5Ty7Ui9Op1As2Df4Gh6Jk8Lz0Xc2Vb4N"  # a GitHub App token, no secret-like name
    log.write({"id": "5", "status": 422, "inputs": [{"a": app_token}]})
    log.close()
    text = (tmp_path / "r.jsonl").read_text()
    for secret in (token, key, "Zq8Param3Lx7Mv2Kp", "srvPw8Zq2Lm7Xk4", app_token):
        assert secret not in text
    first, second, third, *_ = _records(tmp_path / "r.jsonl")
    assert first == plain  # nothing suspect: written as it came
    assert second["inputs"]["data"] == [[0.1, "***"]] and second["error"]["message"] == "bad value ***"
    assert third["inputs"] == [{"a": "postgresql://u:***@db/x", "b": "***"}]


def test_records_the_server_marks_plain_are_not_searched_and_the_others_of_their_flush_still_are(tmp_path):
    """A successful request's record holds only the server's own values (``plain``): the writer's
    search for secrets skips it, while a client's record written in the same flush is scrubbed."""
    key = "AKIAW2PARAMZ8Q4LK7NB"
    log = RequestLog(tmp_path / "r.jsonl")
    # a value of the server's own that has a key's shape: masked were it searched, left as it is when plain
    own = {"id": "1", "status": 200, "path": "/invocations", "model": "churn", "version": "AKIAW2OWNZ8Q4LK7NBX1"[:20],
           "rows": 1}
    log.write(own, plain=True)
    log.write({"id": "2", "status": 400, "error": {"message": f"bad value {key}"}})
    log.write({**own, "id": "3"}, plain=True)
    log.close()
    first, second, third = _records(tmp_path / "r.jsonl")
    assert first == own and third == {**own, "id": "3"}
    assert second["error"]["message"] == "bad value ***"
    assert key not in (tmp_path / "r.jsonl").read_text()
