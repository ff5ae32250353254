"""%deploy in an in-process IPython shell: capture while a data scientist works."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from blake3 import blake3
from IPython.core.error import UsageError

from tests.conftest import run


def _notebook(dir: Path, name: str = "analysis.ipynb") -> Path:
    nb = dir / name
    nb.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return nb


def _record(dir: Path, name: str = "analysis") -> dict:
    return json.loads((dir / ".nbdeploy" / name / "capture.json").read_text())


def test_init_finds_the_only_notebook_and_is_idempotent(ipshell, tmp_path, capsys):
    _notebook(tmp_path)
    ipshell.run_line_magic("deploy", "init")
    ipshell.run_line_magic("deploy", "init")
    out = capsys.readouterr().out
    assert "capturing analysis.ipynb" in out
    assert "already on" in out
    from nbdeploy.capture.session import current_session

    current_session().sync()
    assert _record(tmp_path)["notebook"]["name"] == "analysis.ipynb"


def test_init_without_a_notebook_is_a_usage_error(ipshell, tmp_path):
    _notebook(tmp_path, "a.ipynb")
    _notebook(tmp_path, "b.ipynb")
    with pytest.raises(UsageError, match="--notebook"):
        ipshell.run_line_magic("deploy", "init")


def test_help_lists_subcommands_from_the_table(ipshell, capsys):
    from nbdeploy.frontends.magics import SUBCOMMANDS

    ipshell.run_line_magic("deploy", "--help")
    out = capsys.readouterr().out
    for sub in SUBCOMMANDS:
        assert (sub.name in out) != sub.hidden


def test_unknown_subcommand_and_bad_arguments_are_one_line_errors(ipshell, tmp_path):
    with pytest.raises(UsageError, match="unknown subcommand 'frobnicate'"):
        ipshell.run_line_magic("deploy", "frobnicate")
    _notebook(tmp_path)
    ipshell.run_line_magic("deploy", "init")
    with pytest.raises(UsageError, match="invalid float value"):
        ipshell.run_line_magic("deploy", "metric acc high")
    with pytest.raises(UsageError, match="no variable 'nothere'"):
        ipshell.run_line_magic("deploy", "model nothere")


def test_capture_of_a_working_session(ipshell, tmp_path):
    _notebook(tmp_path)
    (tmp_path / "helpers.py").write_text("import yaml\n\ndef clean(df):\n    return df.dropna()\n")
    (tmp_path / "train.csv").write_text("a,b,city\n1,2.5,x\n3,,y\n5,6.5,x\n")
    ipshell.run_line_magic("deploy", "init")
    run(ipshell, "import pandas as pd\nimport sklearn\nfrom helpers import clean")
    run(ipshell, "df = pd.read_csv('train.csv')\nclean(df).to_csv('clean.csv', index=False)")
    run(ipshell, "import not_a_real_package_xyz")
    run(ipshell, "%pip install --quiet --no-index pyyaml")
    ipshell.run_line_magic("deploy", "metric rmse 0.25")
    view = ipshell.run_line_magic("deploy", "status")
    text = view.text()
    assert "scikit-learn" in text and "UNRESOLVED" in text and "train.csv" in text
    rec = _record(tmp_path)
    deps = {d["name"]: d for d in rec["dependencies"]}
    assert {"pandas", "scikit-learn", "PyYAML"} <= set(deps)
    assert "helper helpers.py" in deps["PyYAML"]["found_by"]
    assert "%pip install" in deps["PyYAML"]["found_by"]
    assert rec["project_modules"][0]["module"] == "helpers"
    assert [u["module"] for u in rec["unresolved"]] == ["not_a_real_package_xyz"]
    assert rec["metrics"]["rmse"]["value"] == 0.25
    assert "pandas==" + deps["pandas"]["version"] in rec["requirements"]
    lock = (tmp_path / ".nbdeploy" / "analysis" / "requirements.lock").read_text()
    assert "numpy==" in lock  # transitive
    reads = [e for e in rec["lineage"] if e["role"] == "read"]
    assert reads[0]["rows"] == 3 and reads[0]["relative_path"] == "train.csv"
    assert reads[0]["profile"]["columns"]["b"]["nulls"] == 1
    assert reads[0]["profile"]["columns"]["city"]["values"] == ["x", "y"]
    assert reads[0]["hash"] == "blake3:" + blake3((tmp_path / "train.csv").read_bytes()).hexdigest()


def test_cells_run_before_init_are_captured(ipshell, tmp_path):
    _notebook(tmp_path)
    run(ipshell, "import yaml")
    ipshell.run_line_magic("deploy", "init")
    ipshell.run_line_magic("deploy", "deps")
    assert "PyYAML" in {d["name"] for d in _record(tmp_path)["dependencies"]}


def test_model_records_variable_and_checks_the_example(ipshell, tmp_path):
    _notebook(tmp_path)
    ipshell.run_line_magic("deploy", "init")
    run(ipshell, "model = object()\nrows = [1, 2]")
    with pytest.raises(UsageError, match="--example 'rowz' raised NameError"):
        ipshell.run_line_magic("deploy", "model model --example rowz")
    ipshell.run_line_magic("deploy", "model model --example rows[:1]")
    from nbdeploy.capture.session import current_session

    rec = current_session().sync()
    assert rec["model"]["variable"] == "model"
    assert rec["model"]["example"] == "rows[:1]"


def test_import_of_nbdeploy_stays_cheap():
    code = ("import sys, nbdeploy, nbdeploy.frontends.magics\n"
            "heavy = [m for m in ('mlflow', 'dask', 'pandas', 'sklearn', 'openlineage') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([__import__("sys").executable, "-c", code], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == ""


def test_imports_made_by_run_scripts_count(ipshell, tmp_path):
    _notebook(tmp_path)
    (tmp_path / "prep.py").write_text("import yaml\nCONFIG = yaml.safe_load('a: 1')\n")
    ipshell.run_line_magic("deploy", "init")
    run(ipshell, "%run prep.py")
    ipshell.run_line_magic("deploy", "deps")
    deps = {d["name"]: d for d in _record(tmp_path)["dependencies"]}
    assert deps["PyYAML"]["found_by"] == ["%run prep.py"]


def test_model_example_keeps_its_quotes(ipshell, tmp_path):
    _notebook(tmp_path)
    ipshell.run_line_magic("deploy", "init")
    run(ipshell, "import pandas as pd\nclf = object()\nX = pd.DataFrame({'a': [1], 'b': [2]})")
    ipshell.run_line_magic("deploy", "model clf --example X.rename(columns={'a': 'z'})")
    from nbdeploy.capture.session import current_session

    assert current_session().model["example"] == "X.rename(columns={'a': 'z'})"


def test_live_needs_a_running_api(ipshell, tmp_path, capsys):
    """`%deploy live` reads the API `%deploy serve` started; without one it says how to start it,
    and an API that does not answer is reported as such (the status itself: tests/serve/test_live_status.py)."""
    import socket

    _notebook(tmp_path)
    ipshell.run_line_magic("deploy", "init")
    with pytest.raises(UsageError, match="no API of this notebook is running; start one with %deploy serve"):
        ipshell.run_line_magic("deploy", "live")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ipshell.run_line_magic("deploy", f"live http://127.0.0.1:{port}")
    assert f"http://127.0.0.1:{port}: not answering" in capsys.readouterr().out
