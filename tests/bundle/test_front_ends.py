"""The thin front ends: `nbdeploy build/verify` exit codes and `%deploy build/verify` usage errors."""

from __future__ import annotations

import shutil

import pytest
from IPython.core.error import UsageError

from nbdeploy.frontends.cli import main

from .conftest import READ, make_notebook


def test_cli_build_refuses_an_existing_target(tmp_path, capsys):
    nb = make_notebook(tmp_path / "nb.ipynb", READ)
    (tmp_path / "out").mkdir()
    assert main(["build", str(nb), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err


def test_cli_build_unknown_parameter_before_any_kernel(tmp_path, capsys):
    nb = make_notebook(tmp_path / "nb.ipynb", READ)
    assert main(["build", str(nb), "-p", "alpha", "1"]) == 2
    assert "parameter" in capsys.readouterr().err


def test_cli_serve_a_bad_setting_is_one_line_not_a_traceback(tmp_path, capsys):
    assert main(["serve", str(tmp_path), "--log-keep", "a week"]) == 2
    err = capsys.readouterr().err
    assert "log_keep: 'a week' is not a duration" in err and "7d" in err and "Traceback" not in err


@pytest.mark.slow
def test_cli_verify_exit_codes(diabetes_build, tmp_path, capsys):
    b = tmp_path / "b"
    shutil.copytree(diabetes_build.bundle, b)
    (b / "README.md").write_text("edited")
    assert main(["verify", str(b)]) == 1
    out = capsys.readouterr().out
    assert "README.md: changed" in out and "NOT verified" in out
    assert main(["verify", str(tmp_path)]) == 2


def test_magic_build_and_verify_usage_errors(ipshell, tmp_path):
    nb = make_notebook(tmp_path / "nb.ipynb", READ)
    (tmp_path / "taken").mkdir()
    ipshell.run_line_magic("deploy", f"init --notebook {nb}")
    with pytest.raises(UsageError, match="already exists"):
        ipshell.run_line_magic("deploy", "build -o taken")
    with pytest.raises(UsageError, match="not an nbdeploy bundle"):
        ipshell.run_line_magic("deploy", "verify taken")
    with pytest.raises(UsageError, match="--out"):
        ipshell.run_line_magic("deploy", "export")
