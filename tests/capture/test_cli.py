"""``nbdeploy capture`` on real notebooks in real kernels (papermill)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

NBDEPLOY = [sys.executable, "-m", "nbdeploy"]


def _nbdeploy(*args: str, cwd: Path | None = None, env: dict | None = None):
    return subprocess.run([*NBDEPLOY, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def _write_nb(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


def test_capture_json_of_the_churn_example(examples: Path):
    proc = _nbdeploy("capture", str(examples / "churn_classifier.ipynb"), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    for key in ("dependencies", "environment", "lineage", "unresolved", "lock", "requirements"):
        assert key in doc
    deps = {d["name"]: d for d in doc["dependencies"]}
    assert {"pandas", "scikit-learn"} <= set(deps)
    assert all(d["version"] and d["found_by"] for d in deps.values())
    assert doc["project_modules"][0]["relative_path"] == "features.py"
    assert doc["unresolved"] == []
    read = next(e for e in doc["lineage"] if e["role"] == "read")
    assert read["relative_path"] == "data/churn.csv" and read["rows"] == 2000
    assert {"name": "contract", "dtype": "str"} in read["columns"]
    assert read["cell_indices"] == [4]  # the fifth cell of the notebook reads it
    write = next(e for e in doc["lineage"] if e["role"] == "write")
    assert write["relative_path"] == "scored_test.csv" and write["rows"] == 500
    assert set(doc["metrics"]) == {"accuracy", "roc_auc"}
    assert doc["model"]["variable"] == "clf"
    state = examples / ".nbdeploy" / "churn_classifier"
    assert json.loads((state / "capture.json").read_text())["session"]["id"] == doc["session"]["id"]
    events = json.loads((state / "openlineage.json").read_text())
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    assert read["hash"].startswith("blake3:")
    assert events[1]["inputs"][0]["facets"]["version"]["datasetVersion"] == read["hash"]
    assert "scikit-learn==" in (state / "requirements.txt").read_text()


def test_capture_text_of_the_regression_example(examples: Path):
    proc = _nbdeploy("capture", str(examples / "diabetes_regression.ipynb"))
    assert proc.returncode == 0, proc.stderr
    assert "data/diabetes.csv" in proc.stdout and "scikit-learn" in proc.stdout
    status = _nbdeploy("status", str(examples / "diabetes_regression.ipynb"), "--json")
    assert json.loads(status.stdout)["metrics"].keys() == {"r2", "mae"}


def test_a_failing_cell_is_named_and_the_previous_record_kept(tmp_path: Path):
    nb = _write_nb(tmp_path / "broken.ipynb", "x = 1", "y = 2\nraise ValueError('bad column')")
    proc = _nbdeploy("capture", str(nb))
    assert proc.returncode == 1
    assert "cell 1 ('y = 2') raised ValueError: bad column" in proc.stderr
    assert "last-failed-capture.ipynb" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / ".nbdeploy" / "broken" / "capture.json").exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [("notes.txt", "hello", "is not a notebook"),
     ("bad.ipynb", "{not json", "is not valid notebook JSON"),
     ("empty.ipynb", "{}", "is not a notebook"),
     ("missing.ipynb", None, "no such notebook")],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, name: str, content: str | None, message: str):
    if content is not None:
        (tmp_path / name).write_text(content)
    proc = _nbdeploy("capture", str(tmp_path / name))
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_secrets_never_reach_the_state_folder(tmp_path: Path):
    secrets = {
        "MY_SERVICE_TOKEN": "tok-7f3a9c1e5b2d4f60",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "DB_PASSWORD": "correct-horse-battery",
        "OPENAI_API_KEY": "sk-test-0123456789abcdef",
    }
    url_password = "Sup3rS3cretPw"
    env = {**os.environ, **secrets,
           "MLFLOW_TRACKING_URI": "http://ci:mlflow-pw-4242@127.0.0.1:5999",
           "OMP_NUM_THREADS": "2"}
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    nb = _write_nb(
        tmp_path / "leaky.ipynb",
        "import os\nimport pandas as pd",
        "token = os.environ['MY_SERVICE_TOKEN']\nprint('using', token, os.environ['DB_PASSWORD'])",
        f"warehouse = 'postgresql://analyst:{url_password}@db.internal/sales'\nprint(warehouse)",
        "df = pd.read_csv('data.csv')\ndf.to_csv('copy.csv')",
    )
    proc = _nbdeploy("capture", str(nb), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["environment"]["variables"]["OMP_NUM_THREADS"] == "2"
    assert doc["environment"]["variables"]["MLFLOW_TRACKING_URI"] == "http://ci:***@127.0.0.1:5999"
    written = [p for p in (tmp_path / ".nbdeploy").rglob("*") if p.is_file()]
    assert {p.name for p in written} >= {"capture.json", "captured.ipynb", "requirements.txt",
                                         "requirements.lock", "openlineage.json"}
    leaks = [*secrets.values(), url_password, "mlflow-pw-4242"]
    for p in written:
        text = p.read_text(errors="replace")
        for value in leaks:
            assert value not in text, f"{value!r} leaked into {p}"
    for value in leaks:
        assert value not in proc.stdout
