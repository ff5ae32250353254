"""Engine detection: the first engine that works, a chosen one, or a message naming what to install."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbdeploy.base.errors import ContainerError
from nbdeploy.container.engine import ENGINES, detect_engine
from nbdeploy.frontends.cli import main


def test_detects_a_working_engine():
    engine = detect_engine()
    assert engine.name in ENGINES and Path(engine.path).is_file()
    assert engine.runner().can_run


def test_chosen_engine_and_environment(monkeypatch: pytest.MonkeyPatch):
    assert detect_engine("podman").name == "podman"
    monkeypatch.setenv("NBDEPLOY_ENGINE", "buildah")
    b = detect_engine()
    assert b.name == "buildah" and not b.can_run
    assert b.runner().name == "podman"  # buildah builds, podman runs: one image store


def test_unknown_engine():
    with pytest.raises(ContainerError, match="unknown container engine 'rkt'"):
        detect_engine("rkt")


def test_no_engine_names_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no engine on it
    monkeypatch.delenv("NBDEPLOY_ENGINE", raising=False)
    with pytest.raises(ContainerError) as err:
        detect_engine()
    text = str(err.value)
    for name in ENGINES:
        assert f"{name}: not installed" in text
    assert "apt-get install podman buildah runc" in text
    assert main(["image", str(tmp_path)]) == 2
    assert "no container engine available" in capsys.readouterr().err


def test_docker_without_a_daemon_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A docker client whose daemon is unreachable is not taken as the engine."""
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert detect_engine().name != "docker"
    with pytest.raises(ContainerError, match="docker: daemon not reachable"):
        detect_engine("docker")
