"""The ledger (labels and answers read from request-log files) and the performance table, on
files written here: incremental reads, rotation, cut-off lines, label matching, metric names."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from nbdeploy.serve.feedback import Ledger, read_feedback_file
from nbdeploy.serve.performance import report


def _answer(rid: str, version: str, outputs: Any, endpoint: str = "invocations") -> dict[str, Any]:
    return {"id": rid, "endpoint": endpoint, "status": 200, "version": version, "outputs": outputs}


def _feedback(pairs: list[list[Any]], training: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": "fb", "endpoint": "feedback", "status": 200, "labels": pairs, "training": training or {}}


def _append(path: Path, *records: dict[str, Any], tail: str = "") -> None:
    with path.open("a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        f.write(tail)


def test_the_ledger_reads_only_what_the_files_gained_and_waits_for_a_cut_off_line(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    _append(log, _answer("a", "3", [1]), _answer("b", "3", [0]), tail='{"id": "c", "endpoint": "invoc')
    ledger = Ledger(log)
    ledger.scan()
    assert set(ledger.answers) == {"a", "b"}
    with log.open("a") as f:  # the rest of the line the writer was in the middle of
        f.write('ations", "status": 200, "version": "3", "outputs": [1]}\n')
    _append(log, _feedback([["a", 1], ["b", 1], ["c", 0]], {"3": {"accuracy": 0.5}}))
    ledger.scan()
    assert set(ledger.answers) == {"a", "b", "c"} and ledger.labels == {"a": 1, "b": 1, "c": 0}
    doc = report(ledger)
    v = doc["versions"][0]
    assert (v["labelled_rows"], v["live"]["accuracy"], v["training"]) == (3, pytest.approx(1 / 3), {"accuracy": 0.5})
    # a rotation: the file moves to .1 and a new one starts; nothing is read twice
    os.replace(log, log.with_name("requests.jsonl.1"))
    _append(log, _answer("d", "4", [1]), _feedback([["d", 1], ["b", 0]]))
    ledger.scan()
    doc = report(ledger)
    assert [(v["version"], v["labelled_rows"]) for v in doc["versions"]] == [("3", 3), ("4", 1)]
    assert doc["versions"][0]["live"]["accuracy"] == pytest.approx(2 / 3)  # b's label replaced: right now
    # another worker's file beside it counts too
    _append(tmp_path / "requests.4242.jsonl", _answer("e", "4", [0]), _feedback([["e", 0]]))
    ledger.scan()
    assert report(ledger)["versions"][1]["labelled_rows"] == 2


def test_a_shadow_answer_joins_beside_the_answer_and_unscorable_outputs_are_counted(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    _append(log, _answer("a", "3", [1, 0]), {**_answer("a", "4", [1, 1], "shadow"), "shadow": "ok"},
            _answer("p", "3", [[0.2, 0.8]]), _answer("n", "3", {"predict": [1]}),
            _feedback([["a", [1, 0]], ["p", 1], ["n", 1], ["ghost", 1]]))
    ledger = Ledger(log)
    ledger.scan()
    doc = report(ledger)
    assert (doc["labels"], doc["joined"], doc["unjoined"]) == (4, 3, 1)
    v3, v4 = doc["versions"]
    assert v3["served_as"] == ["answered"] and v4["served_as"] == ["shadow"]
    assert v3["labelled_rows"] == 3 and v3["live"]["accuracy"] == 1.0 and v3["unscorable_rows"] == 1
    assert v4["labelled_rows"] == 2 and v4["live"]["accuracy"] == 0.5


def test_labels_as_text_and_regression_metrics_by_their_recorded_names(tmp_path: Path) -> None:
    log = tmp_path / "requests.jsonl"
    _append(log, _answer("a", "1", [2.0]), _answer("b", "1", [4.5]), _answer("c", "2", ["yes"]),
            _answer("d", "2", [True]), _answer("e", "2", [1]),
            _feedback([["a", "3.0"], ["b", 2.5], ["c", "yes"], ["d", "true"], ["e", "1"]],
                      {"1": {"val_mse": 4.0, "r2": 0.5}, "2": {"test_accuracy": 0.9}}))
    ledger = Ledger(log)
    ledger.scan()
    v1, v2 = report(ledger)["versions"]
    assert v1["kind"] == "regression" and v1["live"]["mae"] == pytest.approx(1.5)
    assert v1["live"]["rmse"] == pytest.approx(math.sqrt((1 + 4) / 2))
    assert v1["training"] == {"rmse": 2.0} and v1["training_metric_names"] == {"rmse": "sqrt(val_mse)"}
    assert v2["kind"] == "classification" and v2["live"]["accuracy"] == 1.0
    assert v2["training_metric_names"] == {"accuracy": "test_accuracy"}


def test_feedback_files_json_lines_list_and_csv_and_their_mistakes(tmp_path: Path) -> None:
    from nbdeploy.serve.errors import ServeError

    lines = tmp_path / "labels.jsonl"
    lines.write_text('{"request_id": "a", "label": 1}\n\n[{"request_id": "b", "label": [0, 1]}]\n')
    assert read_feedback_file(lines) == [("a", 1), ("b", [0, 1])]
    table = tmp_path / "labels.csv"
    table.write_text("request_id,label,note\na,1,x\nb,0,y\n")
    assert read_feedback_file(table) == [("a", "1"), ("b", "0")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"request_id": "a", "label": 1}\n{"request_id": "b"}\n')
    with pytest.raises(ServeError, match=r"line 2: feedback field label: missing"):
        read_feedback_file(bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,y\na,1\n")
    with pytest.raises(ServeError, match="needs request_id and label"):
        read_feedback_file(wrong)
