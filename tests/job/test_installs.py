"""`pip install` lines in a notebook run by nbdeploy: the run installs nothing, it checks.

A Colab-style first cell (``!pip install -q xgboost``, ``%pip install --upgrade ...``) would
change the environment a run reproduces the notebook in (and whose lock goes into the
bundle), or hang without an index. Every job rewrites those lines into ``%deploy pip-check``,
which checks the packages against the kernel's environment and fails the cell, naming them,
when one is missing or excluded by the line's version.
"""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import nbformat
import pytest
from IPython.core.error import UsageError

from nbdeploy.base.notebook import INJECTED_TAG
from nbdeploy.capture.deps import check_requirements, pip_install_args
from nbdeploy.job.execute import REQUIRE, without_installs

PYTEST = md.version("pytest")


def _nb(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    return nb


def test_every_spelling_of_pip_install_is_rewritten_and_nothing_else():
    nb = _nb("!pip install -q xgboost  # boosting\n%pip install --upgrade scikit-learn pandas",
             "import sys\n!{sys.executable} -m pip install 'lightgbm>=4'\n!python3 -m pip install catboost",
             "if True:\n    !pip3 install shap\nx = 1",
             "!pip freeze > reqs.txt\n!pip show pandas\nprint('pip install x')",
             "!pip install xgboost \\\n    lightgbm==4.*\nimport xgboost")  # a continued line: IPython joins it
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("!pip install nothing-in-markdown"))
    injected = nbformat.v4.new_code_cell("!pip install injected")
    injected.metadata["tags"] = [INJECTED_TAG]
    nb.cells.append(injected)
    changed = without_installs(nb)
    assert changed == [(1, "!pip install -q xgboost  # boosting"),
                       (1, "%pip install --upgrade scikit-learn pandas"),
                       (2, "!{sys.executable} -m pip install 'lightgbm>=4'"),
                       (2, "!python3 -m pip install catboost"),
                       (3, "!pip3 install shap"),
                       (5, "!pip install xgboost lightgbm==4.*")]
    assert nb.cells[1].source.splitlines() == [
        f"{REQUIRE} -q xgboost  # boosting  # nbdeploy runs do not install: !pip install -q xgboost  # boosting",
        f"{REQUIRE} --upgrade scikit-learn pandas  # nbdeploy runs do not install: "
        "%pip install --upgrade scikit-learn pandas"]
    assert nb.cells[3].source.splitlines()[1].startswith(f"    {REQUIRE} shap  #")  # the block stays valid
    assert nb.cells[4].source == "!pip freeze > reqs.txt\n!pip show pandas\nprint('pip install x')"
    assert nb.cells[5].source.splitlines() == [
        f"{REQUIRE} xgboost lightgbm==4.*  # nbdeploy runs do not install: !pip install xgboost lightgbm==4.*",
        "# (continued) lightgbm==4.*", "import xgboost"]
    assert nb.cells[0].source == "!pip install nothing-in-markdown" and injected.source == "!pip install injected"
    assert pip_install_args("!pip list") is None


def test_requirements_are_checked_against_what_is_installed(tmp_path: Path):
    (tmp_path / "requirements.txt").write_text("# pinned\npytest>=1\n--extra-index-url https://x\n\n")
    check = check_requirements("-q --upgrade pytest 'pytest<1' nbdeploy-absent-package==1.0 "
                               "git+https://example.org/x.git -r requirements.txt", tmp_path)
    assert check.installed == [f"pytest {PYTEST}", f"pytest {PYTEST}"]
    assert check.missing == [f"pytest<1 is asked for, pytest {PYTEST} is installed",
                             "nbdeploy-absent-package is not installed"]
    assert check.to_install == ["pytest<1", "nbdeploy-absent-package"]
    assert check.unchecked == ["git+https://example.org/x.git"]
    assert check.requirements == ["pytest", "pytest<1", "nbdeploy-absent-package==1.0",
                                  "git+https://example.org/x.git", "pytest>=1"]
    # options that take a value: the value is no requirement (`--retries 0` is not a package "0")
    assert check_requirements("--index-url https://u:pw@127.0.0.1:9/simple --retries 0 --timeout 5 "
                              "--trusted-host pypi.org --progress-bar off pytest").requirements == ["pytest"]
    assert check_requirements("-r missing.txt", tmp_path).unchecked == [f"-r {tmp_path / 'missing.txt'} "
                                                                        "(cannot be read)"]


def test_the_require_magic_installs_nothing_and_names_what_is_missing(ipshell, capsys: pytest.CaptureFixture[str]):
    ipshell.run_line_magic("deploy", "pip-check -q --upgrade pytest  # nbdeploy runs do not install: !pip ...")
    assert capsys.readouterr().out.strip() == (f"nbdeploy: `pip install -q --upgrade pytest` not run in this job "
                                               f"(already installed: pytest {PYTEST})")
    with pytest.raises(UsageError) as err:
        ipshell.run_line_magic("deploy", "pip-check nbdeploy-absent-package 'pytest<1'")
    assert str(err.value) == (
        f"nbdeploy-absent-package is not installed; pytest<1 is asked for, pytest {PYTEST} is installed, and "
        "nbdeploy's runs do not run `pip install` lines (a run installs nothing into the environment it runs "
        "in): install nbdeploy-absent-package, pytest<1 into the kernel's environment, then try again")
    with pytest.raises(md.PackageNotFoundError):
        md.version("nbdeploy-absent-package")  # and nothing was installed


def test_a_run_checks_the_lines_records_them_and_names_the_cell_as_written(tmp_path: Path):
    from nbdeploy.base.progress import ProgressEvent
    from nbdeploy.job.execute import execute

    nb = _nb("# setup\n%pip install --quiet --upgrade pytest", "import pytest\nVERSION = pytest.__version__")
    path = tmp_path / "setup.ipynb"
    nbformat.write(nb, path)
    said: list[str] = []
    result = execute(path, tmp_path / "out.ipynb", tmp_path / "state",
                     progress=lambda e: said.append(e.title if isinstance(e, ProgressEvent) else str(e)))
    assert result.status == "completed", result.error
    assert said[-1] == ("cell 0 ('%pip install --quiet --upgrade pytest') is not run: an nbdeploy run installs "
                        "nothing; it checks that those packages are installed instead")
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    first = next(c for c in executed.cells if c.source.startswith("# setup"))
    assert "".join(o.get("text", "") for o in first.outputs).strip() == (
        f"nbdeploy: `pip install --quiet --upgrade pytest` not run in this job (already installed: pytest {PYTEST})")
    # recorded as if the line had run (cells are execution counts in capture records)
    assert {"requirement": "pytest", "cell": first.execution_count, "installed": PYTEST} in result.record["pip_installs"]
    # a package the environment lacks: the cell's error names it, and the cell as the user wrote it
    nbformat.write(_nb("import os", "!pip install -q nbdeploy-absent-package\nimport nbdeploy_absent_package"), path)
    failed = execute(path, tmp_path / "out2.ipynb", tmp_path / "state2")
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.message.startswith("cell 1 ('!pip install -q nbdeploy-absent-package') raised UsageError: "
                                           "nbdeploy-absent-package is not installed, and nbdeploy's runs do not run")
