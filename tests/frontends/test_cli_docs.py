"""The README's CLI table names every command the CLI has, and `nbdeploy --help` reads as help."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nbdeploy.frontends.cli import COMMANDS, main

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_command_is_in_the_readme_table() -> None:
    documented = set(re.findall(r"^\| `nbdeploy ([a-z0-9-]+)", README.read_text(encoding="utf-8"), re.M))
    assert set(COMMANDS) - documented == set(), "commands missing from the README's CLI table"
    assert documented - set(COMMANDS) == set(), "the README documents commands the CLI lacks"


def test_help_is_written_for_a_user(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[2] == "From a Jupyter notebook to a verified, serving handoff bundle."
    assert "``" not in out and ":class:" not in out  # no docstring markup
    assert "nbdeploy build NB.ipynb" in out and "nbdeploy COMMAND --help" in out
