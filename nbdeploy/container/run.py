"""Run an image as a service container on 127.0.0.1, wait until it is healthy, clean up.

:func:`running_container` is the one way nbdeploy runs a container: the port is
published on the loopback address only, readiness is the V2 health endpoint
(``/v2/health/ready``), a container that exits or never gets ready has its logs put
into the error, and the container is removed however the block ends.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from nbdeploy.base.errors import ContainerError
from nbdeploy.container.engine import Engine
from nbdeploy.container.process import run

CONTAINER_PORT = 8080
READY_PATH = "/v2/health/ready"


@dataclass
class RunningContainer:
    engine: Engine
    name: str
    container_id: str
    url: str  # http://127.0.0.1:PORT
    started: float  # time.monotonic() when `run` was called
    ready_seconds: float = 0.0  # from `run` to the first successful health check

    def logs(self, tail: int = 200) -> str:
        # not `logs --tail N`: podman 4.3 drops lines written in parts (a print's text and its
        # newline arrive as two writes) from --tail output; these containers live briefly
        out = run(self.engine.cmd("logs", self.name), "reading container logs", check=False)
        return "\n".join((out.stdout + out.stderr).strip().splitlines()[-tail:])

    def state(self) -> str:
        out = run(self.engine.cmd("inspect", "--format", "{{.State.Status}}", self.name),
                  "inspecting the container", check=False)
        return out.stdout.strip() or "gone"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_container(engine: Engine, image: str, *, port: int | None = None,
                    run_flags: Sequence[str] = (), env: dict[str, str] | None = None,
                    name: str | None = None) -> RunningContainer:
    port = port or free_port()
    name = name or f"nbdeploy-verify-{secrets.token_hex(4)}"
    # --no-healthcheck: readiness is polled here; podman would otherwise want systemd timers
    cmd = engine.cmd("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:{CONTAINER_PORT}",
                     "--no-healthcheck")
    for k, v in (env or {}).items():
        cmd += ["-e", f"{k}={v}"]
    cmd += [*run_flags, image]
    started = time.monotonic()
    out = run(cmd, f"starting a container from {image}", check=False, timeout=120)
    if out.returncode != 0:
        run(engine.cmd("rm", "-f", name), "removing the container", check=False)
        raise ContainerError(f"`{engine.name} run` failed for {image}: "
                             f"{(out.stderr or out.stdout).strip()[-2000:]}",
                             hint="extra run flags go in --run-flag or NBDEPLOY_RUN_FLAGS")
    return RunningContainer(engine, name, out.stdout.strip().splitlines()[-1],
                            f"http://127.0.0.1:{port}", started)


def wait_healthy(c: RunningContainer, timeout: float = 120.0, interval: float = 0.05) -> float:
    """Poll the V2 readiness endpoint; return seconds from `run` to ready, or raise with logs."""
    deadline = c.started + timeout
    last = "no answer yet"
    checks = 0
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(c.url + READY_PATH, timeout=2) as r:
                if r.status == 200:
                    c.ready_seconds = time.monotonic() - c.started
                    return c.ready_seconds
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(getattr(exc, "reason", exc))
        checks += 1
        if checks % 20 == 0 and c.state() not in ("running", "created", "configured"):
            raise _unhealthy(c, f"the container {c.name} stopped ({c.state()}) before it "
                                "was ready")
        time.sleep(interval)
    raise _unhealthy(c, f"the container {c.name} did not become healthy within {timeout:.0f} s "
                        f"({READY_PATH}: {last})")


def _unhealthy(c: RunningContainer, why: str) -> ContainerError:
    logs = c.logs()
    body = "\n".join("  | " + line for line in logs.splitlines()[-80:]) or "  | (no output)"
    return ContainerError(f"{why}; its logs:\n{body}",
                          hint="the container was removed; fix the error above and verify again")


def remove_container(c: RunningContainer) -> None:
    run(c.engine.cmd("rm", "-f", "-t", "2", c.name) if c.engine.name == "podman"
        else c.engine.cmd("rm", "-f", c.name), "removing the container", check=False, timeout=60)


@contextlib.contextmanager
def running_container(engine: Engine, image: str, *, health_timeout: float = 120.0,
                      **kwargs) -> Iterator[RunningContainer]:
    """A healthy container from ``image``; stopped and removed when the block ends."""
    c = start_container(engine, image, **kwargs)
    try:
        wait_healthy(c, health_timeout)
        yield c
    finally:
        remove_container(c)
