"""`nbdeploy verify --container`: the bundle's tests against its running container, always cleaned up."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from nbdeploy.base.errors import ContainerError
from nbdeploy.container.engine import Engine
from nbdeploy.container.image import build_image
from nbdeploy.container.options import ContainerOptions
from nbdeploy.container.verify import verify_container
from nbdeploy.frontends.cli import main

from .conftest import containers_named


def test_verify_passes_and_removes_the_container(engine: Engine, opts: ContainerOptions,
                                                 mini_bundle: Path):
    lines: list[str] = []
    result = verify_container(mini_bundle, opts, on_line=lines.append)
    assert result.passed, result.output
    assert result.summary.startswith("2 passed")
    assert result.url.startswith("http://127.0.0.1:")
    assert 0 < result.ready_seconds < 30
    assert result.container not in containers_named(engine, "nbdeploy-verify-")
    assert any("container ready" in line for line in lines)
    # second run reuses the image built from the same files
    again = verify_container(mini_bundle, opts)
    assert again.passed and again.image.reused


def test_failing_tests_fail_verification_with_the_container_logs(engine: Engine,
                                                                 opts: ContainerOptions,
                                                                 mini_bundle: Path):
    (mini_bundle / "tests" / "test_api.py").write_text(
        (mini_bundle / "tests" / "test_api.py").read_text().replace("[3, 7]", "[3, 8]"))
    result = verify_container(mini_bundle, opts)
    assert not result.passed and "1 failed" in result.summary
    assert "--- container logs ---" in result.output and "listening on" in result.output


@pytest.mark.parametrize("mode, why, log_line", [
    ("crash", "stopped", "crashing on purpose"),
    ("never-ready", "did not become healthy within 6 s", "not ready (MINI_MODE=never-ready)"),
])
def test_unhealthy_container_shows_logs_and_is_removed(engine: Engine, opts: ContainerOptions,
                                                       mini_bundle: Path, mode: str, why: str,
                                                       log_line: str):
    build_image(mini_bundle, opts, engine=engine)
    bad = replace(opts, env={"MINI_MODE": mode})
    with pytest.raises(ContainerError) as err:
        verify_container(mini_bundle, bad, health_timeout=6)
    text = str(err.value)
    assert why in text and log_line in text and "the container was removed" in text
    name = re.search(r"container (nbdeploy-verify-[0-9a-f]+)", text).group(1)
    assert name not in containers_named(engine, "nbdeploy-verify-")


def test_cli_verify_container(engine: Engine, opts: ContainerOptions, mini_bundle: Path,
                              capsys: pytest.CaptureFixture[str]):
    argv = ["verify", str(mini_bundle), "--container", "--base", opts.base, "--tag", opts.tag,
            "--ca-bundle", str(opts.ca_bundle), "--run-flag=--memory=512m", "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] and doc["image"]["tag"] == opts.tag


def test_magic_verify_container(ipshell, engine: Engine, opts: ContainerOptions,
                                mini_bundle: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]):
    from nbdeploy.container.image import default_tag, remove_image

    monkeypatch.setenv("NBDEPLOY_CA_BUNDLE", str(opts.ca_bundle))
    try:
        ipshell.run_line_magic("deploy", f"image {mini_bundle} --base {opts.base}")
        ipshell.run_line_magic("deploy", f"verify {mini_bundle} --container --base {opts.base}")
    finally:
        remove_image(engine, default_tag(mini_bundle))
    out = capsys.readouterr().out
    assert f"image {default_tag(mini_bundle)} (built" in out
    assert f"image {default_tag(mini_bundle)} (reused" in out
    assert "bundle tests against the container: PASSED" in out


def test_buildah_builds_and_podman_runs(engine: Engine, opts: ContainerOptions, mini_bundle: Path):
    result = verify_container(mini_bundle, replace(opts, engine="buildah"))
    assert result.passed and result.image.engine == "buildah"
    assert result.image.image_id.startswith("sha256:") and result.image.size_bytes > 50e6
