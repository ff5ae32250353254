"""Which container engine builds and runs images: docker, podman or buildah.

Auto-detection tries them in that order and takes the first that *works*, not the
first that is installed: a ``docker`` client without a reachable daemon is skipped.
``buildah`` builds but does not run services; when it is chosen, containers run with
``podman`` (they share the same image storage) where podman exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from nbdeploy.base.errors import ContainerError

ENGINES = ("docker", "podman", "buildah")

_INSTALL_HINT = ("install podman and buildah (Debian/Ubuntu: apt-get install podman buildah runc; "
                 "then `nbdeploy container-setup`), or install Docker and start its daemon")


@dataclass(frozen=True)
class Engine:
    name: str  # docker, podman or buildah
    path: str  # the executable
    version: str = ""

    @property
    def can_run(self) -> bool:
        return self.name in ("docker", "podman")

    def cmd(self, *args: str) -> list[str]:
        return [self.path, *args]

    def runner(self) -> Engine:
        """The engine that runs containers from images this engine built."""
        if self.can_run:
            return self
        try:
            return _probe("podman")
        except ContainerError as exc:
            raise ContainerError(
                "buildah builds images but cannot run a service container, and podman is "
                f"not usable: {exc.message}",
                hint="install podman (Debian/Ubuntu: apt-get install podman)") from None


def _probe(name: str) -> Engine:
    """The engine ``name`` if it works here; ContainerError saying why not otherwise."""
    path = shutil.which(name)
    if path is None:
        raise ContainerError(f"{name}: not installed")
    check = {"docker": ["info", "--format", "{{.ServerVersion}}"],
             "podman": ["version", "--format", "{{.Client.Version}}"],
             "buildah": ["version", "--json"]}[name]
    try:
        proc = subprocess.run([path, *check], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ContainerError(f"{name}: {exc}") from None
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout).strip().splitlines()
        reason = why[-1] if why else f"exit status {proc.returncode}"
        if name == "docker":
            reason = f"daemon not reachable ({reason})"
        raise ContainerError(f"{name}: {reason}")
    version = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
    if name == "buildah":
        version = _buildah_version(proc.stdout)
    return Engine(name, path, version)


def _buildah_version(out: str) -> str:
    import json

    try:
        return str(json.loads(out).get("version", ""))
    except ValueError:
        return ""


def detect_engine(preferred: str | None = None) -> Engine:
    """The chosen engine (``preferred``, else ``$NBDEPLOY_ENGINE``), or the first that works.

    Raises :class:`ContainerError` naming what was tried and what to install.
    """
    preferred = preferred or os.environ.get("NBDEPLOY_ENGINE") or None
    if preferred:
        if preferred not in ENGINES:
            raise ContainerError(f"unknown container engine {preferred!r}",
                                 hint=f"choose one of {', '.join(ENGINES)}")
        try:
            return _probe(preferred)
        except ContainerError as exc:
            raise ContainerError(f"container engine {exc.message}", hint=_INSTALL_HINT) from None
    tried = []
    for name in ENGINES:
        try:
            return _probe(name)
        except ContainerError as exc:
            tried.append(exc.message)
    raise ContainerError("no container engine available (" + "; ".join(tried) + ")",
                         hint=_INSTALL_HINT)
