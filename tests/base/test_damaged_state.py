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
