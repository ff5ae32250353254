"""Which kernel a job runs in: --kernel NAME, the notebook's own, else the Python nbdeploy runs in.

Real kernels through papermill. The second kernel spec, ``other-py``, runs this same
interpreter with a marker in its environment, so a run can tell which spec started it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest

from nbdeploy.frontends import cli
from nbdeploy.job.batch import run_batch
from nbdeploy.job.run import last_run, list_runs

MARKER = "NBDEPLOY_TEST_KERNEL_MARKER"


@pytest.fixture
def other_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    spec = tmp_path / "jupyter" / "kernels" / "other-py"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Other Python", "language": "python", "env": {MARKER: "7"}}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.delenv(MARKER, raising=False)
    return "other-py"


def _marked(proj: Path, kernel_name: str) -> Path:
    """tiny.ipynb, naming ``kernel_name`` in its metadata, with a cell that reports the marker."""
    path = proj / "tiny.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.metadata["kernelspec"] = {"name": kernel_name, "display_name": kernel_name,
                                 "language": "python"}
    nb.cells.append(nbformat.v4.new_code_cell(
        f"import os\nnbdeploy.log_metric('marker', float(os.environ.get({MARKER!r}, '0')))"))
    nbformat.write(nb, path)
    return path


def test_a_kernel_this_machine_lacks_falls_back_to_this_python_and_says_so(proj, capsys):
    nb = _marked(proj, "authors-conda-env")
    assert cli.main(["run", str(nb), "--tracking", "off"]) == 0
    out = capsys.readouterr().out.splitlines()
    said = [ln for ln in out if "authors-conda-env" in ln]
    assert said == [f"the kernel 'authors-conda-env' that tiny.ipynb names is not on this machine: "
                    f"running it in python3 ({sys.executable}), the Python nbdeploy runs in; "
                    "choose with --kernel NAME"]
    rec = last_run(nb)
    assert rec.ok and rec.kernel == "python3" and rec.metrics["marker"] == 0.0
    # capture says it the same way (it printed the event's dataclass repr)
    assert cli.main(["capture", str(nb)]) == 0
    said = [ln for ln in capsys.readouterr().out.splitlines() if "authors-conda-env" in ln]
    assert said == [f"the kernel 'authors-conda-env' that tiny.ipynb names is not on this machine: "
                    f"running it in python3 ({sys.executable}), the Python nbdeploy runs in; "
                    "choose with --kernel NAME"]


def test_kernel_names_the_kernel_of_run_reproduce_and_batch(proj, other_kernel, capsys):
    nb = _marked(proj, "python3")
    assert cli.main(["run", str(nb), "--kernel", other_kernel, "--tracking", "off"]) == 0
    run = last_run(nb)
    assert run.kernel == "other-py" and run.metrics["marker"] == 7.0
    assert "not on this machine" not in capsys.readouterr().out  # asked for: nothing to say

    assert cli.main(["reproduce", str(nb), "--kernel", other_kernel, "--tracking", "off"]) == 0
    rerun = last_run(nb)
    assert rerun.kind == "reproduce" and rerun.kernel == "other-py"
    assert rerun.metrics["marker"] == 7.0

    result = run_batch(nb, {"runs": [{"n": 1}]}, kernel=other_kernel, tracking="off")
    (one,) = result.runs
    assert one.ok and one.kernel == "other-py" and one.metrics["marker"] == 7.0


@pytest.mark.parametrize("command", [["run"], ["reproduce"], ["build"], ["capture"],
                                     ["batch", "--grid", "GRID"]])
def test_a_kernel_asked_for_that_does_not_exist_is_one_line_naming_the_ones_that_do(
        proj, other_kernel, capsys, command):
    nb = _marked(proj, "python3")
    (proj / "grid.yaml").write_text("runs: [{n: 1}]\n")
    argv = [c.replace("GRID", str(proj / "grid.yaml")) for c in command]
    if command[0] == "reproduce":  # something to reproduce, so the kernel is what fails
        (proj / ".nbdeploy" / "tiny").mkdir(parents=True)
        (proj / ".nbdeploy" / "tiny" / "capture.json").write_text(json.dumps({"metrics": {}}))
    assert cli.main([argv[0], str(nb), *argv[1:], "--kernel", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "NoSuchKernel" not in err
    assert err.startswith("nbdeploy: error: cannot run tiny.ipynb in the kernel 'nope': no kernel "
                          "of that name on this machine (available: other-py, python3)")
    assert "ipykernel install --user --name nope" in err
    assert list_runs(nb) == []  # nothing started, nothing recorded
    assert not (proj / "tiny-bundle").exists()
