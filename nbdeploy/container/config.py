"""Host settings for podman and buildah: ``/etc/containers/containers.conf``.

Many real hosts need a few engine settings before a container can run at all:

* ``crun`` fails on mixed cgroup v1/v2 hosts, so the OCI runtime is ``runc``;
* without systemd as the cgroup manager, ``cgroupfs``, and events go to a ``file``;
* raising resource limits is not permitted in many sandboxes, so the containers'
  default ulimits are the host's *current hard limits* rather than podman's defaults.

:func:`check_host_config` reports what differs; :func:`apply_host_config` writes the
settings, keeping every other setting in the file. Nothing here runs implicitly: the
``nbdeploy container-setup`` command or ``.ci/setup`` applies it.
"""

from __future__ import annotations

import resource
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbdeploy.base.errors import ContainerError

CONTAINERS_CONF = Path("/etc/containers/containers.conf")

#: ulimit name in containers.conf -> resource module constant
_ULIMITS = {"nofile": resource.RLIMIT_NOFILE, "nproc": resource.RLIMIT_NPROC}


@dataclass(frozen=True)
class HostSettings:
    """The settings nbdeploy recommends; every field is a command-line option."""

    runtime: str = "runc"
    cgroup_manager: str = "cgroupfs"
    events_logger: str = "file"
    ulimits: dict[str, int] = field(default_factory=lambda: host_hard_limits())

    def as_toml_tables(self) -> dict[str, dict[str, Any]]:
        return {
            "containers": {"default_ulimits": [f"{k}={v}:{v}" for k, v in self.ulimits.items()]},
            "engine": {"runtime": self.runtime, "cgroup_manager": self.cgroup_manager,
                       "events_logger": self.events_logger},
        }


@dataclass(frozen=True)
class HostConfigReport:
    path: Path
    #: "table.key" -> (current value or None, wanted value)
    differences: dict[str, tuple[Any, Any]]
    written: bool = False

    @property
    def ok(self) -> bool:
        return not self.differences

    def text(self) -> str:
        if self.written:
            lines = [f"wrote {len(self.differences)} setting(s) to {self.path}:"]
        elif self.ok:
            return f"{self.path}: container settings are in place"
        else:
            lines = [f"{self.path}: {len(self.differences)} setting(s) differ "
                     "(apply with `nbdeploy container-setup`):"]
        lines += [f"  {k} = {want!r} (was {have!r})" for k, (have, want) in self.differences.items()]
        return "\n".join(lines)


def host_hard_limits() -> dict[str, int]:
    """The hard limits a container may ask for here, as containers.conf ulimit values.

    That is this process's hard limit, lowered to what podman itself runs with where it
    runs with less (podman 4 lowers its own ``nproc`` limit, e.g. to 32768, and a
    container cannot raise above that).
    """
    out = {}
    engine = _podman_limits()
    for name, rlim in _ULIMITS.items():
        hard = resource.getrlimit(rlim)[1]
        if name in engine:
            hard = engine[name] if hard == resource.RLIM_INFINITY else min(hard, engine[name])
        if hard != resource.RLIM_INFINITY:
            out[name] = hard
    return out


_PROC_LIMITS = {"nofile": "Max open files", "nproc": "Max processes"}


def _podman_limits() -> dict[str, int]:
    """Hard limits of a running podman process (read from /proc), {} without podman."""
    import subprocess
    import tempfile
    import time

    podman = shutil.which("podman")
    if podman is None:
        return {}
    with tempfile.TemporaryDirectory(prefix="nbdeploy-limits-") as tmp:
        try:
            proc = subprocess.Popen([podman, "system", "service", "--time=5", f"unix://{tmp}/s"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            return {}
        try:
            out: dict[str, int] = {}
            for _ in range(50):  # podman sets its limits early; wait until its socket exists
                time.sleep(0.1)
                if Path(tmp, "s").exists() or proc.poll() is not None:
                    break
            text = Path(f"/proc/{proc.pid}/limits").read_text() if proc.poll() is None else ""
            for name, label in _PROC_LIMITS.items():
                for line in text.splitlines():
                    if line.startswith(label) and line.split()[-2].isdigit():
                        out[name] = int(line.split()[-2])
            return out
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ContainerError(f"cannot read {path}: {exc}",
                             hint="fix or move the file, then run `nbdeploy container-setup`"
                             ) from None


def check_host_config(settings: HostSettings | None = None,
                      path: Path = CONTAINERS_CONF) -> HostConfigReport:
    """Compare ``path`` with ``settings`` (the recommended ones by default)."""
    settings = settings or HostSettings()
    have = _read(path)
    diffs: dict[str, tuple[Any, Any]] = {}
    for table, values in settings.as_toml_tables().items():
        for key, want in values.items():
            cur = (have.get(table) or {}).get(key)
            if cur != want:
                diffs[f"{table}.{key}"] = (cur, want)
    return HostConfigReport(path, diffs)


def apply_host_config(settings: HostSettings | None = None,
                      path: Path = CONTAINERS_CONF) -> HostConfigReport:
    """Write ``settings`` into ``path``, keeping the file's other settings."""
    settings = settings or HostSettings()
    if settings.runtime and not shutil.which(settings.runtime):
        raise ContainerError(f"the OCI runtime {settings.runtime!r} is not installed",
                             hint=f"install it (Debian/Ubuntu: apt-get install {settings.runtime})")
    report = check_host_config(settings, path)
    if report.ok:
        return report
    doc = _read(path)
    for table, values in settings.as_toml_tables().items():
        doc.setdefault(table, {}).update(values)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_dump_toml(doc))
    except OSError as exc:
        raise ContainerError(f"cannot write {path}: {exc}",
                             hint="run as root, or write the settings shown by "
                                  "`nbdeploy container-setup --check` yourself") from None
    return HostConfigReport(path, report.differences, written=True)


def _dump_toml(doc: dict[str, Any]) -> str:
    """Just enough TOML for containers.conf: tables (nested too) of scalars and lists."""
    lines = ["# written by nbdeploy container-setup; other settings are kept"]
    _dump_table(doc, "", lines)
    return "\n".join(lines) + "\n"


def _dump_table(values: dict[str, Any], name: str, lines: list[str]) -> None:
    scalars = {k: v for k, v in values.items() if not isinstance(v, dict)}
    if name:
        lines += ["", f"[{name}]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in scalars.items()]
    for key, sub in values.items():
        if isinstance(sub, dict):
            _dump_table(sub, f"{name}.{key}" if name else key, lines)


def _toml_value(value: Any) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))
