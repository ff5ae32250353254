"""Faults of a real server: a full disk under the request log, a read-only log folder, SIGTERM under
load, a worker killed with SIGKILL. Each test starts its own server and stops only what it started."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import Client, metric, read_log, start, wait_until
from fixture_models import SLOW

from nbdeploy.serve.server import WORKER_READY_SECONDS

pytestmark = pytest.mark.slow

ONE = {"dataframe_records": [{"x": 1.0}]}


def _get(handle, path: str):
    c = Client(handle.url)
    try:
        return c.get(path)
    finally:
        c.close()


def test_a_full_disk_under_the_log_is_reported_and_the_api_keeps_answering(tripwire_model, tmp_path):
    """requests.jsonl is a symlink to /dev/full, so every write of the log fails with ENOSPC (a real
    device, not a mock). The API answers every request; /health says "degraded" and why; /metrics
    counts each record that could not be written. When the path leads to a file with room again, the
    log recovers by itself and /health says so."""
    log = tmp_path / "requests.jsonl"
    log.symlink_to("/dev/full")
    handle = start(tripwire_model, tmp_path)
    c = Client(handle.url)
    try:
        assert [c.post("/invocations", ONE)[0] for _ in range(20)] == [200] * 20
        wait_until(lambda: _get(handle, "/health")[2].get("status") == "degraded", what="/health to say degraded")
        status, _, doc = _get(handle, "/health")
        assert status == 200 and "No space left on device" in doc["request_log"]["error"]
        metrics = wait_until(lambda: (t := _get(handle, "/metrics")[2]) and metric(
            t, 'nbdeploy_requestlog_dropped_total{reason="write_error"}') == 20 and t, what="20 dropped records")
        assert metric(metrics, "nbdeploy_requestlog_failing") == 1
        assert metric(metrics, "nbdeploy_requestlog_records_total") == 0

        room = tmp_path / "room.jsonl"
        link = tmp_path / "link"
        link.symlink_to(room)
        os.replace(link, log)  # the disk has room again
        assert [c.post("/invocations", ONE)[0] for _ in range(5)] == [200] * 5
        doc = wait_until(lambda: (d := _get(handle, "/health")[2])["status"] == "ok" and d, what="recovery")
        assert "No space left" in doc["request_log"]["last_error"] and doc["request_log"]["recovered_at"] > 0
        metrics = _get(handle, "/metrics")[2]
        assert metric(metrics, "nbdeploy_requestlog_failing") == 0
        assert metric(metrics, 'nbdeploy_requestlog_dropped_total{reason="write_error"}') == 20
    finally:
        c.close()
        assert handle.stop() == 0
    assert len(read_log(room)) == 5  # the records after the recovery, flushed at shutdown
    assert "cannot write" in Path(handle.stderr_path).read_text()


def _unprivileged_python(tmp_path: Path) -> str | None:
    """A python that runs as root without CAP_DAC_OVERRIDE, so that file modes apply to it (a test
    runs as root here; dropping the capability from the bounding set is what makes chmod bite)."""
    import sys

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    probe = subprocess.run([setpriv, "--bounding-set=-dac_override,-dac_read_search", "true"], capture_output=True)
    if probe.returncode != 0:
        return None
    wrapper = tmp_path / "python-without-dac-override"
    wrapper.write_text(f'#!/bin/sh\nexec {setpriv} --bounding-set=-dac_override,-dac_read_search {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def test_a_log_folder_made_read_only_after_start(tripwire_model, tmp_path):
    """The folder turns read-only while the server runs: appending to the open file still works, so no
    record is lost, but rotating (a rename in the folder) fails. /health says so; the file grows past
    its size meanwhile; when the folder is writable again the next rotation goes through."""
    from nbdeploy.serve import ServeConfig, launch

    python = _unprivileged_python(tmp_path)
    if python is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
    folder = tmp_path / "logs"
    folder.mkdir()
    cfg = ServeConfig(port=0, log_path=str(folder / "requests.jsonl"), log_max_bytes=2000)
    handle = launch(tripwire_model, cfg, python=python, timeout=180)
    c = Client(handle.url)
    try:
        folder.chmod(0o555)
        sent = [c.post("/invocations", ONE)[0] for _ in range(40)]  # ~ 10 kB of records: rotations due
        assert sent == [200] * 40
        doc = wait_until(lambda: (d := _get(handle, "/health")[2])["status"] == "degraded" and d, what="degraded")
        assert "cannot rotate" in doc["request_log"]["error"] and "Permission denied" in doc["request_log"]["error"]
        assert list(folder.iterdir()) == [folder / "requests.jsonl"]
        folder.chmod(0o755)
        # a failed rotation is tried again 10 s later, on a write
        deadline = time.monotonic() + 60
        while _get(handle, "/health")[2]["status"] != "ok":
            assert time.monotonic() < deadline, "the log did not recover"
            assert c.post("/invocations", ONE)[0] == 200
            time.sleep(0.5)
        metrics = _get(handle, "/metrics")[2]
        assert metric(metrics, 'nbdeploy_requestlog_dropped_total{reason="write_error"}') == 0
    finally:
        folder.chmod(0o755)
        c.close()
        assert handle.stop() == 0
    assert any(f.name.endswith(".gz") for f in folder.iterdir())
    records = read_log(folder / "requests.jsonl")
    served = metric(metrics, 'nbdeploy_requests_total{endpoint="invocations",status="200"}')
    assert len(records) == served  # nothing lost while the folder was read-only


def test_a_read_only_log_folder_at_start_is_a_clear_error(tripwire_model, tmp_path):
    from nbdeploy.serve import ServeConfig, ServeError, launch

    python = _unprivileged_python(tmp_path)
    if python is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
    folder = tmp_path / "logs"
    folder.mkdir(mode=0o555)
    cfg = ServeConfig(port=0, log_path=str(folder / "requests.jsonl"))
    with pytest.raises(ServeError) as e:
        launch(tripwire_model, cfg, python=python, timeout=180)
    assert "cannot open the request log" in e.value.hint and "Permission denied" in e.value.hint


def test_sigterm_under_load_answers_what_it_accepted_and_logs_all(tripwire_model, tmp_path):
    """Eight clients send without pause; SIGTERM arrives in the middle. The server exits 0, every
    answer a client received has its record in the log, and no request the server took in is left
    without one (records may exceed answers only by requests whose answer was cut with the connection)."""
    handle = start(tripwire_model, tmp_path)
    answered: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(_: int) -> None:
        c = Client(handle.url)
        try:
            while not stop.is_set():
                try:
                    status, headers, _ = c.post("/invocations", ONE)
                except OSError as e:  # the server closed: this client is done
                    with lock:
                        errors.append(type(e).__name__)
                    return
                assert status == 200
                with lock:
                    answered.append(headers["x-request-id"])
        finally:
            c.close()

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client, i) for i in range(8)]
        wait_until(lambda: len(answered) > 300, what="load")
        code = handle.stop(timeout=60)
        stop.set()
        for f in futures:
            f.result()
    assert code == 0
    ids = {r["id"] for r in read_log(tmp_path / "requests.jsonl")}
    assert set(answered) <= ids
    assert len(ids) - len(answered) <= len(errors) <= 8


def _workers(supervisor: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (p / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == supervisor and b"spawn_main" in cmd:
            out.append(int(p.name))
    return sorted(out)


def _shared_folder(worker: int) -> Path:
    env = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    value = next(e for e in env if e.startswith(b"NBDEPLOY_METRICS_DIR="))
    return Path(value.split(b"=", 1)[1].decode())


def _in_flight(folder: Path, pid: int) -> int:
    from nbdeploy.serve.requestlog import lost_by

    return lost_by(folder / f"{pid}.logcount")


def test_a_killed_worker_is_replaced_and_what_it_lost_is_counted(tripwire_model, tmp_path):
    """--workers 2; slow requests in flight in both workers; one worker gets SIGKILL. The supervisor
    starts a replacement, the API keeps answering, and the requests the dead worker had in flight are
    counted as lost (metric and server log), with any answered record it had not written yet; all the
    others are in the log."""
    handle = start(tripwire_model, tmp_path, workers=2)
    try:
        workers = wait_until(lambda: len(w := _workers(handle.pid)) == 2 and w, what="two workers")
        shared = _shared_folder(workers[0])
        results: list[int | str] = []
        lock = threading.Lock()

        def slow(_: int) -> None:
            c = Client(handle.url)
            try:
                status = c.post("/invocations", {"dataframe_records": [{"x": float(SLOW)}]})[0]
            except OSError as e:
                status = type(e).__name__
            finally:
                c.close()
            with lock:
                results.append(status)

        # keep every worker busy with slow requests until both have some in flight
        threads: list[threading.Thread] = []
        deadline = time.monotonic() + 60
        while not all(_in_flight(shared, w) >= 2 for w in workers):
            assert time.monotonic() < deadline, "the slow requests did not reach both workers"
            t = threading.Thread(target=slow, args=(0,))
            t.start()
            threads.append(t)
            time.sleep(0.02)
        victim, survivor = workers
        os.kill(victim, signal.SIGKILL)
        for t in threads:
            t.join(60)
        failed = [r for r in results if r != 200]
        assert len(results) == len(threads) and failed, results
        # a new worker loads its model before it counts: the supervisor gives it WORKER_READY_SECONDS,
        # and on a machine busy with other tests it can need more than the usual 30 s wait
        replacement = wait_until(lambda: len(w := _workers(handle.pid)) == 2 and victim not in w and w,
                            seconds=WORKER_READY_SECONDS + 30, what="a replacement worker")
        assert survivor in replacement
        c = Client(handle.url)
        try:  # the API answers (one of these connections lands on the new worker, most likely)
            assert [c.post("/invocations", ONE)[0] for _ in range(20)] == [200] * 20
        finally:
            c.close()
        lost = wait_until(lambda: metric(_get(handle, "/metrics")[2],
                                     'nbdeploy_requestlog_dropped_total{reason="worker_died"}'),
                     what="the lost records in /metrics")
        # every request the dead worker had in flight is lost; one it had answered just before the kill
        # may be lost too (its record waits up to the flush interval in the worker's memory)
        assert lost >= len(failed)
    finally:
        assert handle.stop() == 0
    base = tmp_path / "requests.jsonl"
    from nbdeploy.serve.compare import read_records

    records = read_records(base)
    # every request is either in the log or counted as lost, never both and never neither
    assert len(records) + lost == len(results) + 20
    err = Path(handle.stderr_path).read_text()
    assert f"worker {victim} was killed by signal 9" in err and f"{int(lost)} request(s)" in err
