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
