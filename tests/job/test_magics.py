"""%%deploy params and %deploy run in an in-process IPython shell."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError

from nbdeploy.job.run import last_run
from tests.conftest import run


def test_params_cell_runs_in_the_live_kernel_and_is_recorded(ipshell, proj):
    ipshell.run_line_magic("deploy", f"init --notebook {proj / 'magic_params.ipynb'}")
    result = run(ipshell, "%%deploy params\nalpha = 0.25\nlabel = 'live'\nlayers = [4, 2]\n")
    assert result.success, result.error_in_exec
    assert ipshell.user_ns["alpha"] == 0.25 and ipshell.user_ns["layers"] == [4, 2]
    from nbdeploy.capture.session import current_session

    s = current_session()
    assert s.parameters == {"alpha": 0.25, "label": "live", "layers": [4, 2]}
    assert s.params_cell == result.execution_count
    assert s.sync()["parameters"]["label"] == "live"


def test_params_is_only_a_cell_magic(ipshell):
    with pytest.raises(UsageError, match="cell magic"):
        ipshell.run_line_magic("deploy", "params")


def test_run_with_a_bad_parameter_is_a_usage_error_and_starts_nothing(ipshell, proj):
    ipshell.run_line_magic("deploy", f"init --notebook {proj / 'tiny.ipynb'}")
    with pytest.raises(UsageError, match=r"%deploy run: parameter 'alpha' expects float"):
        ipshell.run_line_magic("deploy", "run -p alpha high")
    assert last_run(proj / "tiny.ipynb") is None


def test_run_executes_a_copy_in_a_fresh_kernel(ipshell, proj, capsys):
    ipshell.run_line_magic("deploy", f"init --notebook {proj / 'tiny.ipynb'}")
    ipshell.user_ns["score"] = "live value"
    ipshell.run_line_magic("deploy", "run -p alpha 0.1")
    out = capsys.readouterr().out
    assert "[2/2] run" in out and "completed" in out
    rec = last_run(proj / "tiny.ipynb")
    assert rec.metrics["score"] == pytest.approx(5.0)
    assert ipshell.user_ns["score"] == "live value"  # the live kernel is untouched


@pytest.mark.slow
def test_run_and_batch_magics_inside_a_real_kernel(proj):
    """A Jupyter kernel (which runs its own event loop) starting jobs and a LocalCluster."""
    import nbformat
    import papermill as pm

    (proj / "grid.yaml").write_text("grid:\n  n: [2]\n")
    v4 = nbformat.v4
    driver = v4.new_notebook(cells=[
        v4.new_code_cell("%load_ext nbdeploy\n%deploy init --notebook tiny.ipynb"),
        v4.new_code_cell("%deploy run -p alpha 0.1"),
        v4.new_code_cell("%deploy batch --grid grid.yaml --workers 1"),
    ])
    driver.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
    out = proj.parent / "driver-out.ipynb"
    pm.execute_notebook(driver, str(out), cwd=str(proj), progress_bar=False)
    from nbdeploy.job.run import list_runs

    runs = list_runs(proj / "tiny.ipynb")
    assert [r.kind for r in runs].count("run") == 1 and [r.kind for r in runs].count("batch") == 1
    assert all(r.ok for r in runs)
    executed = nbformat.read(out, 4)
    assert "batch grid of tiny.ipynb: 1 of 1 runs completed" in str(executed.cells[2].outputs)
