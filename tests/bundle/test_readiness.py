"""The readiness checklist computed from a notebook file and its state folder (no kernel)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nbdeploy.base.errors import NotebookInputError
from nbdeploy.bundle.catalog import record_verify
from nbdeploy.bundle.readiness import readiness
from nbdeploy.frontends.render import readiness_text

NB = "churn_classifier.ipynb"


def _run(examples: Path, run_id: str, status: str = "completed", reproduce: dict | None = None,
         record: dict | None = None) -> Path:
    d = examples / ".nbdeploy" / "churn_classifier" / "runs" / run_id
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({
        "run_id": run_id, "status": status, "kind": "run", "run_dir": str(d),
        "started": "2026-11-22T07:00:00Z", "output": str(d / "executed.ipynb"),
        "metrics": {"accuracy": 0.75}, "error": None if status == "completed" else
        {"message": "cell 4 raised KeyError: 'x'"}}))
    if reproduce is not None:
        (d / "reproduce.json").write_text(json.dumps(reproduce))
    if record is not None:
        (d / "capture.json").write_text(json.dumps(record))
    return d


def test_fresh_notebook(examples: Path) -> None:
    r = readiness(examples / NB)
    assert [i.key for i in r.items] == ["parameters", "model", "dependencies", "lineage", "run",
                                        "bundle"]
    assert r.item("parameters").status == "ok"
    assert r.item("model").status == "warning"  # `%deploy model` is in a cell that has not run
    assert all(r.item(k).status == "missing" for k in ("dependencies", "lineage", "run", "bundle"))
    assert all(r.item(k).action for k in ("dependencies", "lineage", "run", "bundle"))
    assert not r.ready
    assert "[·] Bundle and verify: no bundle built yet" in readiness_text(r)


def test_no_parameters_tag(examples: Path) -> None:
    nb = json.loads((examples / NB).read_text())
    for c in nb["cells"]:
        c["metadata"].pop("tags", None)
    (examples / NB).write_text(json.dumps(nb))
    item = readiness(examples / NB).item("parameters")
    assert item.status == "missing" and "Mark as parameters cell" in item.action


def test_last_run_reproduced_or_not(examples: Path) -> None:
    record = {"updated": "2026-11-22T07:00:01Z", "dependencies": [{"name": "pandas", "version": "3"}],
              "lineage": [{"role": "read", "path": "data/churn.csv", "rows": 10,
                           "hash": "blake3:" + "f" * 64}],
              "model": {"variable": "clf", "cell": 9}}
    _run(examples, "20261122T070000000-aaaaaa", record=record)
    r = readiness(examples / NB)
    assert r.item("run").status == "warning" and "Reproduce" in r.item("run").action
    assert r.item("dependencies").status == "ok"  # the run's capture record is used
    assert r.item("lineage").details[0].value == "10 rows · blake3:ffffffffffff"
    _run(examples, "20261122T070100000-bbbbbb", reproduce={"ok": False, "checks": [
        {"kind": "metric", "name": "accuracy", "status": "differed", "detail": "0.75 -> 0.74"}]})
    item = readiness(examples / NB).item("run")
    assert item.status == "error" and "1 of 1" in item.summary
    assert any(d.status == "error" and d.label == "metric accuracy" for d in item.details)
    _run(examples, "20261122T070150000-dddddd", reproduce={"ok": True, "checks": [
        {"kind": "status", "name": "run", "status": "matched"},
        {"kind": "input", "name": "data/churn.csv", "status": "skipped"}]})
    item = readiness(examples / NB).item("run")
    assert item.status == "ok" and item.summary == \
        "reproduced: 1 of 2 checks matched; 1 skipped: input data/churn.csv"
    _run(examples, "20261122T070200000-cccccc", status="failed")
    item = readiness(examples / NB).item("run")
    assert item.status == "error" and "KeyError" in item.action


def test_bundle_verified_only_for_the_same_manifest(examples: Path) -> None:
    b = examples / "churn_classifier-bundle"
    b.mkdir()
    manifest = {"format": "nbdeploy.bundle/1", "name": "churn-classifier", "version": "1",
                "created": "2026-11-22T07:00:00+00:00", "source": {"path": str(examples / NB)}}
    (b / "nbdeploy.json").write_text(json.dumps(manifest))
    assert readiness(examples / NB).item("bundle").status == "warning"
    record_verify(b, True, "verified")
    item = readiness(examples / NB).item("bundle")
    assert item.status == "ok" and item.details[0].path == str(b)
    (b / "nbdeploy.json").write_text(json.dumps({**manifest, "version": "2"}))  # rebuilt
    assert readiness(examples / NB).item("bundle").status == "warning"
    record_verify(b, False, "tests: 1 failed")
    item = readiness(examples / NB).item("bundle")
    assert item.status == "error" and item.details[-1].note == "tests: 1 failed"


def test_bundle_says_whether_its_model_runs_as_a_compiled_program(examples: Path) -> None:
    b = examples / "churn_classifier-bundle"
    (b / "model").mkdir(parents=True)
    (b / "nbdeploy.json").write_text(json.dumps({"format": "nbdeploy.bundle/1", "name": "churn-classifier",
                                                 "source": {"path": str(examples / NB)}}))
    served = {d.label: d for d in readiness(examples / NB).item("bundle").details}["served by"]
    assert served.value == "the model's library"
    (b / "model" / "nbdeploy_program").mkdir()
    (b / "model" / "nbdeploy_program" / "program.json").write_text(json.dumps({"checked_rows": 2575}))
    served = {d.label: d for d in readiness(examples / NB).item("bundle").details}["served by"]
    assert served.value == "compiled program" and "2575 rows" in served.note


def test_not_a_notebook(examples: Path) -> None:
    with pytest.raises(NotebookInputError):
        readiness(examples / "data" / "churn.csv")
