"""nbdeploy batch on real Dask: a LocalCluster, and a scheduler + workers started by the test."""

from __future__ import annotations

import csv
import os
import time

import pytest

from nbdeploy.frontends import cli
from nbdeploy.job.batch import run_batch
from nbdeploy.job.run import list_runs
from tests.job.conftest import VENV_BIN, free_port, wait_port


def _rows(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_one_failing_combination_does_not_stop_the_others_and_resume_skips_successes(proj, capsys):
    (proj / "grid.yaml").write_text("grid:\n  alpha: [0.5, 1.0]\nruns:\n  - {alpha: 2, fail: true}\n")
    argv = ["batch", str(proj / "tiny.ipynb"), "--grid", str(proj / "grid.yaml"),
            "--workers", "2", "--tracking", "off"]
    assert cli.main(argv) == 1  # one run failed
    out = capsys.readouterr().out
    assert "[0/3] batch of 3 runs started" in out and "[3/3] " in out
    assert "2 of 3 runs completed, 1 failed" in out
    csv_path = proj / ".nbdeploy" / "tiny" / "batches" / "grid" / "results.csv"
    rows = {r["param.alpha"]: r for r in _rows(csv_path)}
    assert [rows[a]["status"] for a in ("0.5", "1.0", "2.0")] == ["completed", "completed", "failed"]
    assert rows["0.5"]["metric.score"] == "13.0" and rows["1.0"]["metric.score"] == "23.0"
    assert rows["2.0"]["error_cell"] == "4"
    assert rows["2.0"]["error"].startswith("cell 4 ('if fail:') raised ValueError")
    assert rows["2.0"]["output"].endswith("executed.ipynb")
    first = {r["param.alpha"]: r["run_id"] for r in _rows(csv_path)}

    # a re-run only runs what did not succeed
    result = run_batch(proj / "tiny.ipynb", proj / "grid.yaml", workers=1, tracking="off")
    assert sorted(result.reused) == sorted([first["0.5"], first["1.0"]])
    again = {r["param.alpha"]: r["run_id"] for r in _rows(csv_path)}
    assert again["0.5"] == first["0.5"] and again["2.0"] != first["2.0"]
    assert len(list_runs(proj / "tiny.ipynb", kind="batch")) == 4


@pytest.mark.slow
def test_batch_on_a_remote_scheduler_started_as_processes(proj, spawn, capsys):
    from dask.distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    sched = spawn(str(VENV_BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                  "--no-dashboard", name="scheduler")
    wait_port(port, sched)
    for _ in range(2):
        spawn(str(VENV_BIN / "dask"), "worker", address, "--nworkers", "1", "--nthreads", "1",
              "--host", "127.0.0.1", "--no-dashboard", name="worker")
    with Client(address, timeout="60s") as client:
        client.wait_for_workers(2, timeout=120)
    (proj / "grid.yaml").write_text("runs:\n  - {n: 1}\n  - {n: 2, label: remote}\n")
    code = cli.main(["batch", str(proj / "tiny.ipynb"), "--grid", str(proj / "grid.yaml"),
                     "--scheduler", address, "--tracking", "off"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 of 2 runs completed, 0 failed" in out
    rows = _rows(proj / ".nbdeploy" / "tiny" / "batches" / "grid" / "results.csv")
    assert sorted(r["metric.score"] for r in rows) == ["11.0", "12.0"]
    with Client(address, timeout="60s") as client:  # the runs went through this scheduler
        keys = client.run_on_scheduler(
            lambda dask_scheduler: [t[0] for t in dask_scheduler.transition_log])
    assert {f"nbdeploy-{r['run_id']}" for r in rows} <= set(keys)

    again = run_batch(proj / "tiny.ipynb", proj / "grid.yaml", scheduler=address, tracking="off")
    assert sorted(again.reused) == sorted(r["run_id"] for r in rows)  # nothing ran
    forced = run_batch(proj / "tiny.ipynb", proj / "grid.yaml", scheduler=address, force=True,
                       tracking="off")
    assert forced.reused == [] and all(r.ok for r in forced.runs)
    assert not {r.run_id for r in forced.runs} & {r["run_id"] for r in rows}


@pytest.mark.slow
def test_batch_after_papermill_ran_in_this_process(proj):
    """jupyter_core keeps its event loop in a ContextVar; in-process Dask workers inherited the
    loop of an earlier papermill run in this thread, and two of them ran it at once
    ("This event loop is already running")."""
    from nbdeploy.job.execute import execute

    first = execute(proj / "tiny.ipynb", proj / "first.ipynb", proj / "state")
    assert first.status == "completed"
    result = run_batch(proj / "tiny.ipynb", {"grid": {"alpha": [0.1, 0.2, 0.3, 0.4]}},
                       workers=2, tracking="off")
    errors = [r.error for r in result.runs if r.status != "completed"]
    assert errors == []


@pytest.mark.slow
def test_batch_started_from_another_folder_runs_every_kernel_in_the_notebooks_folder(
        proj, tmp_path, monkeypatch):
    """papermill's cwd= changes the whole process's folder for a run; in-process workers
    interleaved those changes and some kernels started where data.csv is not."""
    import os

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run_batch(proj / "tiny.ipynb", {"grid": {"n": [1, 2, 3, 4, 5, 6, 7, 8]}},
                       workers=4, tracking="off")
    assert [r.error for r in result.runs if not r.ok] == []  # tiny.ipynb reads data.csv
    assert os.getcwd() == str(elsewhere)  # this process never changed folder


@pytest.mark.slow
def test_a_run_that_times_out_fails_alone_and_keeps_its_record_and_notebook(proj):
    import nbformat

    v4 = nbformat.v4
    nb = v4.new_notebook()
    params = v4.new_code_cell("sleep = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, v4.new_code_cell("import time\ntime.sleep(sleep)"),
                v4.new_code_cell("%deploy metric slept {sleep}")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, proj / "sleepy.ipynb")
    result = run_batch(proj / "sleepy.ipynb", {"runs": [{"sleep": 60}, {"sleep": 0}]}, workers=2,
                       timeout=5, tracking="off")
    slow, quick = result.runs
    assert quick.ok and quick.metrics == {"slept": 0.0}
    assert slow.status == "failed" and "timed out" in slow.error["message"]
    assert slow.output.endswith("executed.ipynb") and slow.started  # the run's own record
    executed = nbformat.read(slow.output, as_version=4)  # written when the run stopped
    assert executed.cells[1].execution_count is not None  # the parameters, before the sleep
    assert executed.metadata.papermill.end_time is not None
    row = _rows(result.csv)[0]
    assert row["status"] == "failed" and row["output"] == slow.output


def test_papermill_writes_never_move_the_process_to_another_folder(tmp_path, monkeypatch):
    """Batch workers are threads: papermill's chdir-around-each-write raced across them.

    A write into a FIFO blocks in ``open`` until a reader comes, so the folder the process
    is in *during* a write is seen from the main thread. papermill's own handler, with a
    folder set by ``local_file_io_cwd`` (as each run sets it), sits in that folder then.
    """
    import threading

    from papermill.iorw import local_file_io_cwd, papermill_io

    from nbdeploy.job.execute import _papermill

    _papermill()
    here, other = tmp_path / "here", tmp_path / "other"
    here.mkdir()
    other.mkdir()
    fifo = tmp_path / "out.ipynb"
    os.mkfifo(fifo)
    monkeypatch.chdir(here)
    seen: list[str] = []

    def write() -> None:
        with local_file_io_cwd(str(other)):
            papermill_io.write("{}", str(fifo))

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.5)  # the writer is blocked in open() now
    seen.append(os.getcwd())
    with open(fifo) as f:  # let it finish
        assert f.read() == "{}"
    writer.join(10)
    assert seen == [str(here)]
    assert os.getcwd() == str(here)
