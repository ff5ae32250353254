"""A damaged state file or registry store: one line naming the file, and the way on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

NB = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _nbdeploy(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbdeploy", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_a_damaged_capture_record_is_named_with_the_way_on(tmp_path: Path) -> None:
    (tmp_path / "nb.ipynb").write_text(json.dumps(NB))
    record = tmp_path / ".nbdeploy" / "nb" / "capture.json"
    record.parent.mkdir(parents=True)
    record.write_text("{not json")
    proc = _nbdeploy(tmp_path, "status", "nb.ipynb")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert f"{record} is damaged (not JSON" in proc.stderr and "nbdeploy capture NB" in proc.stderr


def test_a_damaged_registry_store_is_named_with_the_way_on(tmp_path: Path) -> None:
    store = tmp_path / ".nbdeploy" / "mlflow.db"
    store.parent.mkdir(parents=True)
    store.write_bytes(b"this is not a database" * 100)
    proc = _nbdeploy(tmp_path, "versions", "churn")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot open the model registry" in proc.stderr and "file is not a database" in proc.stderr
    assert f"mv {store} {store}.broken" in proc.stderr


def test_damaged_run_records_are_named_and_the_rest_still_listed(tmp_path: Path) -> None:
    (tmp_path / "nb.ipynb").write_text(json.dumps(NB))
    runs = tmp_path / ".nbdeploy" / "nb" / "runs"
    (runs / "a").mkdir(parents=True)
    (runs / "a" / "run.json").write_text("garbage")
    (runs / "b").mkdir()
    (runs / "b" / "run.json").write_text("[1, 2]")  # JSON, but not a run record
    (runs / "c").mkdir()
    (runs / "c" / "run.json").write_text(json.dumps({"run_id": "c", "notebook": str(tmp_path / "nb.ipynb"),
                                                     "run_dir": str(runs / "c"), "status": "completed"}))
    proc = _nbdeploy(tmp_path, "runs", "nb.ipynb")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "2 run record(s) could not be read" in proc.stderr
    assert str(runs / "a" / "run.json") in proc.stderr and str(runs / "b" / "run.json") in proc.stderr
    assert "c" in proc.stdout.split() and "completed" in proc.stdout


def test_doctor_repair_moves_damaged_records_aside_and_says_what_it_moved(tmp_path: Path) -> None:
    import sqlite3

    (tmp_path / "nb.ipynb").write_text(json.dumps(NB))
    state = tmp_path / ".nbdeploy"
    runs = state / "nb" / "runs"
    (runs / "bad").mkdir(parents=True)
    (runs / "bad" / "run.json").write_text("{half a rec")
    (runs / "bad" / "executed.ipynb").write_text("{}")
    (runs / "good").mkdir()
    good = {"run_id": "good", "notebook": str(tmp_path / "nb.ipynb"), "run_dir": str(runs / "good"),
            "status": "completed"}
    (runs / "good" / "run.json").write_text(json.dumps(good))
    (state / "nb" / "capture.json").write_text("")  # truncated by a full disk
    store = state / "mlflow.db"
    store.write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000)  # a header, then garbage
    (state / "mlartifacts").mkdir()
    (state / "mlartifacts" / "x.json").write_text("not json, and not a record")  # never touched

    looked = _nbdeploy(tmp_path, "doctor", "nb.ipynb")
    assert looked.returncode == 1 and "Traceback" not in looked.stderr, looked.stderr
    assert "3 of 4 record(s) damaged" in looked.stdout and "nbdeploy doctor --repair" in looked.stdout
    assert (runs / "bad" / "run.json").exists()  # only looked

    fixed = _nbdeploy(tmp_path, "doctor", "--repair", "--json")
    assert fixed.returncode == 0, fixed.stderr
    report = json.loads(fixed.stdout)
    moved = {Path(d["path"]).relative_to(state).as_posix(): Path(d["moved_to"]) for d in report["damaged"]}
    assert set(moved) == {"nb/runs/bad/run.json", "nb/capture.json", "mlflow.db"}
    for dest in moved.values():
        assert dest.exists() and dest.is_relative_to(state / "damaged")  # moved, not deleted
    assert (moved["nb/runs/bad/run.json"] / "executed.ipynb").exists()  # the whole run folder
    assert not (runs / "bad").exists() and not store.exists() and not (state / "nb" / "capture.json").exists()
    assert (runs / "good" / "run.json").exists() and (state / "mlartifacts" / "x.json").exists()

    listed = _nbdeploy(tmp_path, "runs", "nb.ipynb")
    assert listed.returncode == 0 and "could not be read" not in listed.stderr
    again = _nbdeploy(tmp_path, "doctor")
    assert again.returncode == 0 and "none damaged" in again.stdout

    sqlite3.connect(store).execute("CREATE TABLE experiments (id int)")  # a healthy-looking store
    assert _nbdeploy(tmp_path, "doctor").returncode == 0
