"""Warm kernel starts (nbdeploy.job.kernels) on real kernels: a kernel server, real forks."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from nbdeploy.job import kernels
from nbdeploy.job.batch import run_batch
from nbdeploy.job.run import run_notebook

pytestmark = pytest.mark.skipif(not kernels.supported(), reason="needs os.fork and pidfd (Linux)")


def _probe(folder: Path) -> Path:
    """A notebook that reports its kernel's process, folder and whether its namespace was empty."""
    v4 = nbformat.v4
    nb = v4.new_notebook()
    params = v4.new_code_cell("k = 0\nsleep = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        v4.new_code_cell("import os\nimport time\n\n"
                         "fresh = 0 if 'leftover' in globals() else 1\n"
                         "leftover = k\n"
                         "here = 1 if os.path.exists('data.csv') else 0\n"
                         "time.sleep(sleep)"),
        v4.new_code_cell("%deploy metric pid {os.getpid()}\n%deploy metric ppid {os.getppid()}\n"
                         "%deploy metric fresh {fresh}\n%deploy metric here {here}"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "probe.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_local_batch_runs_each_in_a_new_kernel_forked_from_one_server(proj, tmp_path, monkeypatch):
    nb = _probe(proj)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the batch is started from another folder
    result = run_batch(nb, {"grid": {"k": [1, 2, 3, 4, 5, 6]}}, workers=3, tracking="off")
    assert [r.status for r in result.runs] == ["completed"] * 6, [r.error for r in result.runs]
    metrics = [r.metrics for r in result.runs]
    assert len({m["pid"] for m in metrics}) == 6  # a process per run
    servers = {m["ppid"] for m in metrics}
    assert len(servers) == 1 and servers != {os.getpid()}  # forked by the kernel server
    assert all(m["fresh"] == 1 for m in metrics)  # nothing left from another run
    assert all(m["here"] == 1 for m in metrics)  # each kernel started in the notebook's folder
    assert os.getcwd() == str(elsewhere)  # and this process never changed folder
    assert kernels.manager_class() is None  # the server stopped with the batch ...
    assert not Path(f"/proc/{int(servers.pop())}").exists()  # ... and was reaped


@pytest.mark.slow
def test_a_kernel_the_server_cannot_reproduce_starts_as_usual(proj, tmp_path, monkeypatch):
    nb = _probe(proj)
    monkeypatch.chdir(tmp_path)
    with kernels.warm_starts():
        warm = run_notebook(nb, tracking="off", warm=True)
        monkeypatch.setenv("NBDEPLOY_TEST_ONLY", "1")  # the kernel's environment differs now
        cold = run_notebook(nb, tracking="off", warm=True)
    assert warm.ok and cold.ok
    assert warm.metrics["ppid"] != os.getpid()
    assert cold.metrics["ppid"] == os.getpid()  # launched by jupyter_client from this process
    assert warm.metrics["here"] == cold.metrics["here"] == 1  # both in the notebook's folder
    assert os.getcwd() == str(tmp_path)
