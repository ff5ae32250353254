"""Fixtures for job tests: fixture notebooks in tmp_path, free ports, processes killed by pid."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    """A private copy of tests/job/fixtures (tiny.ipynb, magic_params.ipynb, data.csv)."""
    dest = tmp_path / "proj"
    shutil.copytree(FIXTURES, dest, ignore=shutil.ignore_patterns(".nbdeploy", "out.csv"))
    return dest


@pytest.fixture(autouse=True)
def _embedded_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests use the embedded store unless they start a server themselves."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")


@pytest.fixture
def spawn(tmp_path: Path):
    """Start a process in its own group; every one is terminated (by pid) at teardown."""
    procs: list[subprocess.Popen] = []

    def start(*argv: str, env: dict | None = None, name: str = "proc") -> subprocess.Popen:
        log = open(tmp_path / f"{name}-{len(procs)}.log", "wb")  # noqa: SIM115
        p = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path,
                             env={**os.environ, **(env or {})}, start_new_session=True)
        log.close()
        procs.append(p)
        return p

    yield start
    for p in reversed(procs):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)
