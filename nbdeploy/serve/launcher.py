"""Start the server as a background process and keep a handle to stop it later.

The handle is plain JSON (``to_dict``/``from_dict``), so ``%deploy serve --stop`` in
another process can stop a server started by ``%deploy serve``.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ServeConfig
from .errors import ServeError

_PACKAGE_ROOT = Path(__file__).resolve().parent


@dataclass
class ServerHandle:
    url: str
    pid: int
    host: str
    port: int
    bundle_dir: str
    stderr_path: str
    log_path: str
    #: process start time (clock ticks since boot, /proc/PID/stat): guards against pid reuse
    start_ticks: int | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if not f.name.startswith("_")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerHandle:
        names = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        return cls(**{k: v for k, v in data.items() if k in names})

    def alive(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        stat = _proc_stat(self.pid)
        if stat is None:
            return False
        state, ticks = stat
        return state != "Z" and (self.start_ticks is None or ticks == self.start_ticks)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (finish in-flight requests, flush the log), wait, then SIGKILL.

        Returns the exit code when this process started the server, else None.
        """
        if not self.alive():
            return self._process.returncode if self._process is not None else None
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            if self._process is not None:
                self._process.wait(5)
        return self._process.wait() if self._process is not None else None

    def stderr_tail(self, lines: int = 30) -> str:
        return _tail(Path(self.stderr_path), lines)


def launch(
    bundle_dir: str | Path,
    config: ServeConfig | None = None,
    python: str = sys.executable,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
) -> ServerHandle:
    """Start ``python -m <this package> BUNDLE`` in the background and wait for /health.

    ``config.port == 0`` picks a free port. Raises ServeError with the server's stderr
    tail if it exits or does not answer within ``timeout`` seconds.
    """
    config = dataclasses.replace(config) if config is not None else ServeConfig.from_env()
    bundle = Path(bundle_dir).resolve()
    if not bundle.is_dir():
        raise ServeError(f"{bundle} is not a folder", hint="pass a bundle folder")
    if config.port == 0:
        config.port = free_port(config.host)
    child_env = dict(os.environ if env is None else env)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "token":
            if value:
                child_env["NBDEPLOY_API_TOKEN"] = value
            continue
        child_env[f"NBDEPLOY_{f.name.upper()}"] = str(value)
    root = str(_PACKAGE_ROOT.parent)
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, child_env.get("PYTHONPATH")) if p)
    fd, stderr_path = tempfile.mkstemp(prefix="nbdeploy-serve-", suffix=".log")
    package = __package__ or "nbdeploy.serve"
    with os.fdopen(fd, "wb") as err:
        process = subprocess.Popen(
            # the path as given (made absolute, not resolved): a reload follows a symlink anew
            [python, "-m", package, os.path.abspath(bundle_dir)],
            stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=child_env, start_new_session=True,
        )
    host = config.host if ":" not in config.host else f"[{config.host}]"
    url = f"http://{host}:{config.port}"
    stat = _proc_stat(process.pid)
    handle = ServerHandle(
        url=url, pid=process.pid, host=config.host, port=config.port, bundle_dir=str(bundle),
        stderr_path=stderr_path, log_path=str(Path(config.log_path).resolve()) if config.log_path else "",
        start_ticks=stat[1] if stat else None, _process=process,
    )
    _wait_healthy(handle, process, timeout)
    return handle


def _wait_healthy(handle: ServerHandle, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            raise ServeError(
                f"the server for {handle.bundle_dir} exited with code {code} before answering /health",
                hint="its output ends with:\n" + handle.stderr_tail(),
            )
        try:
            with urllib.request.urlopen(handle.url + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            handle.stop(timeout=5)
            raise ServeError(
                f"the server for {handle.bundle_dir} did not answer {handle.url}/health within {timeout:.0f} s",
                hint="its output ends with:\n" + handle.stderr_tail(),
            )
        time.sleep(0.05)


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in ticks) of a process, or None when it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return ("R", 0) if not Path("/proc").is_dir() else None
    fields = raw[raw.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"
