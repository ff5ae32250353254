"""nbdeploy batch when a Dask worker process dies mid-run (SIGKILL, by pid).

A real ``dask scheduler`` and two ``dask worker --no-nanny`` processes; the batch runs
in a thread of the test, which kills one worker (and its kernel) once both are busy.
Dask either runs the lost task again on the surviving worker, or, past the scheduler's
``allowed-failures``, gives up on it: then the run is recorded as failed saying the
worker died, on disk too (not left "running"), and a re-run of the batch runs only it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import nbformat
import pytest

from nbdeploy.job.batch import BatchResult, run_batch
from tests.job.conftest import VENV_BIN, free_port, wait_port

GRID = {"runs": [{"sleep": 6, "tag": i} for i in range(4)]}


def _sleepy(proj: Path) -> Path:
    v4 = nbformat.v4
    nb = v4.new_notebook()
    params = v4.new_code_cell("sleep = 0\ntag = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, v4.new_code_cell("import time\ntime.sleep(sleep)"),
                v4.new_code_cell("%deploy metric tag {tag}")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, proj / "sleepy.ipynb")
    return proj / "sleepy.ipynb"


def _cluster(spawn, allowed_failures: int) -> tuple[str, list]:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": str(allowed_failures)}
    sched = spawn(str(VENV_BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                  "--no-dashboard", env=env, name="scheduler")
    wait_port(port, sched)
    workers = [spawn(str(VENV_BIN / "dask"), "worker", address, "--no-nanny", "--nthreads", "1",
                     "--host", "127.0.0.1", "--no-dashboard", name="worker") for _ in range(2)]
    from dask.distributed import Client

    with Client(address, timeout="60s") as client:
        client.wait_for_workers(2, timeout=120)
    return address, workers


def _running(nb: Path) -> int:
    runs = nb.parent / ".nbdeploy" / nb.stem / "runs"
    n = 0
    for doc in runs.glob("*/run.json"):
        try:
            n += json.loads(doc.read_text()).get("status") == "running"
        except ValueError:
            continue
    return n


def _batch_killing_a_worker(nb: Path, address: str, victim) -> BatchResult:
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("r", run_batch(
        nb, GRID, scheduler=address, tracking="off", name="grid")))
    t.start()
    deadline = time.monotonic() + 120
    while _running(nb) < 2:  # both workers are in a run
        assert time.monotonic() < deadline and t.is_alive(), "the runs never started"
        time.sleep(0.1)
    time.sleep(1.0)  # well into the sleep cell
    os.killpg(victim.pid, signal.SIGKILL)  # the worker and the kernel it drives
    victim.wait(timeout=30)
    t.join(timeout=240)
    assert not t.is_alive(), "the batch never finished after a worker died"
    return out["r"]


@pytest.mark.slow
def test_a_task_lost_with_its_worker_runs_again_on_another(proj, spawn):
    nb = _sleepy(proj)
    address, workers = _cluster(spawn, allowed_failures=3)
    result = _batch_killing_a_worker(nb, address, workers[0])
    assert [r.status for r in result.runs] == ["completed"] * 4, [r.error for r in result.runs]
    assert sorted(r.metrics["tag"] for r in result.runs) == [0, 1, 2, 3]
    again = run_batch(nb, GRID, scheduler=address, tracking="off", name="grid")
    assert sorted(again.reused) == sorted(r.run_id for r in result.runs)  # nothing ran again


@pytest.mark.slow
def test_a_run_whose_worker_died_is_failed_with_the_reason_and_a_rerun_resumes(proj, spawn):
    from nbdeploy.job.run import load_run

    nb = _sleepy(proj)
    address, workers = _cluster(spawn, allowed_failures=0)
    result = _batch_killing_a_worker(nb, address, workers[0])
    lost = [r for r in result.runs if not r.ok]
    done = [r for r in result.runs if r.ok]
    # the worker's running task and any queued behind it on that worker are given up on
    assert lost and done and len(lost) + len(done) == 4, [(r.status, r.error) for r in result.runs]
    message = lost[0].error["message"]
    assert "the Dask worker running it died" in message and "run the batch again" in message
    on_disk = load_run(lost[0].run_dir)
    assert on_disk.status == "failed" and on_disk.error["message"] == message  # not left "running"
    rows = (Path(result.csv)).read_text()
    assert "the Dask worker running it died" in rows

    again = run_batch(nb, GRID, scheduler=address, tracking="off", name="grid")
    assert sorted(again.reused) == sorted(r.run_id for r in done)  # the completed runs are kept
    assert all(r.ok for r in again.runs) and len(again.runs) == 4
