"""`nbdeploy image`: the bundle's own Dockerfile built with the engine, on the debootstrapped base."""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from nbdeploy.base.errors import ContainerError
from nbdeploy.container.engine import Engine
from nbdeploy.container.image import FINGERPRINT_LABEL, build_image, default_tag, inspect_image
from nbdeploy.container.options import ContainerOptions
from nbdeploy.frontends.cli import main


def test_build_reports_tag_digest_size_and_streams_progress(engine: Engine, opts: ContainerOptions,
                                                           mini_bundle: Path, tmp_path: Path):
    lines: list[str] = []
    result = build_image(mini_bundle, opts, engine=engine, on_line=lines.append,
                         save=tmp_path / "mini.oci.tar")
    assert result.tag == opts.tag and not result.reused
    assert result.image_id.startswith("sha256:") and result.digest.startswith("sha256:")
    assert 50e6 < result.size_bytes < 450e6
    assert any(line.startswith("STEP ") and "pip install" in line for line in lines)
    assert inspect_image(engine, opts.tag).labels[FINGERPRINT_LABEL]
    # the OCI archive for air-gapped transfer
    with tarfile.open(result.saved) as tar:
        names = set(tar.getnames())
    assert {"oci-layout", "index.json"} <= {n.lstrip("./") for n in names}
    assert "saved" in result.text() and "digest" in result.text()

    again = build_image(mini_bundle, opts, engine=engine, reuse=True)
    assert again.reused and again.image_id == result.image_id
    (mini_bundle / "app.py").write_text((mini_bundle / "app.py").read_text() + "\n# changed\n")
    changed = build_image(mini_bundle, opts, engine=engine, reuse=True)
    assert not changed.reused and changed.image_id != result.image_id


def test_the_ca_bundle_is_mounted_not_copied(engine: Engine, opts: ContainerOptions,
                                             mini_bundle: Path):
    """The build step sees the CA file read-only with PIP_CERT; the image keeps neither."""
    if opts.ca_bundle is None:
        pytest.fail("no CA bundle on this host (set NBDEPLOY_CA_BUNDLE)")
    marker = "nbdeploy-test-ca-" + opts.tag.rsplit(":", 1)[-1]
    ca = mini_bundle.parent / "ca.pem"
    ca.write_text(Path(opts.ca_bundle).read_text() + f"\n# {marker}\n")
    (mini_bundle / "Dockerfile").write_text(
        "ARG BASE=python:3.11-slim\nFROM ${BASE}\nARG PIP_CERT\n"
        f"RUN grep -q {marker} \"$PIP_CERT\" && ! touch /etc/ssl/certs/ca-certificates.crt\n")
    result = build_image(mini_bundle, replace(opts, ca_bundle=ca), engine=engine)
    out = engine.runner().cmd("run", "--rm", result.tag, "sh", "-c",
                              f"! grep -q {marker} /etc/ssl/certs/ca-certificates.crt "
                              "&& test -z \"$PIP_CERT\"")
    import subprocess

    assert subprocess.run(out, capture_output=True).returncode == 0


def test_failed_build_names_the_step_and_shows_its_output(engine: Engine, opts: ContainerOptions,
                                                          mini_bundle: Path,
                                                          capsys: pytest.CaptureFixture[str]):
    (mini_bundle / "Dockerfile").write_text(
        "ARG BASE=python:3.11-slim\nFROM ${BASE}\n"
        "RUN echo 'nbdeploy-test: resolving the lock' && echo 'no such wheel: fakepkg==9' && exit 7\n"
        "CMD [\"true\"]\n")
    with pytest.raises(ContainerError) as err:
        build_image(mini_bundle, replace(opts, ca_bundle=None), engine=engine)
    text = str(err.value)
    assert "image build failed at STEP 2/4: RUN echo 'nbdeploy-test" in text
    assert "  | no such wheel: fakepkg==9" in text
    # the CLI: progress streamed, then one error naming the step, exit code 2
    argv = ["image", str(mini_bundle), "--base", opts.base, "--tag", opts.tag]
    assert main(argv) == 2
    cap = capsys.readouterr()
    assert "STEP 2/4" in cap.out and "image build failed at STEP 2/4" in cap.err


def test_missing_dockerfile(engine: Engine, tmp_path: Path):
    with pytest.raises(ContainerError, match="has no Dockerfile"):
        build_image(tmp_path, ContainerOptions(), engine=engine)


def test_cli_json(engine: Engine, opts: ContainerOptions, mini_bundle: Path,
                  capsys: pytest.CaptureFixture[str]):
    argv = ["image", str(mini_bundle), "--base", opts.base, "--tag", opts.tag,
            "--ca-bundle", str(opts.ca_bundle), "--build-flag=--pull=never", "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["tag"] == opts.tag and doc["engine"] == engine.name and doc["size_bytes"] > 0


def test_default_tag_from_manifest(tmp_path: Path):
    (tmp_path / "nbdeploy.json").write_text(json.dumps({"name": "Churn Classifier", "version": 3}))
    assert default_tag(tmp_path) == "localhost/nbdeploy-churn-classifier:3"


def test_buildah_saves_an_oci_archive(opts: ContainerOptions, mini_bundle: Path, tmp_path: Path):
    from nbdeploy.container.engine import detect_engine

    buildah = detect_engine("buildah")
    result = build_image(mini_bundle, opts, engine=buildah, save=tmp_path / "mini.oci.tar")
    with tarfile.open(result.saved) as tar:
        names = {n.lstrip("./") for n in tar.getnames()}
    assert {"oci-layout", "index.json"} <= names


def test_unreachable_base_points_at_base_image(engine: Engine, mini_bundle: Path):
    opts = ContainerOptions(base="localhost/nbdeploy-no-such-base:0",
                            tag=f"localhost/nbdeploy-test-nobase:{os.getpid()}")
    with pytest.raises(ContainerError) as err:
        build_image(mini_bundle, opts, engine=engine)
    assert "failed at STEP 1/" in err.value.message and "FROM" in err.value.message
    assert "nbdeploy base-image" in (err.value.hint or "")


def test_air_gapped_the_local_base_is_used_when_the_dockerfiles_cannot_be_pulled(
        engine: Engine, opts: ContainerOptions, mini_bundle: Path):
    """No --base: the Dockerfile's python:3.11-slim. Where no registry answers (this host), the
    build falls back to the base `nbdeploy base-image` made for Python 3.11 and says so."""
    import subprocess

    from nbdeploy.container.base_image import default_tag as base_tag
    from nbdeploy.container.base_image import os_codename
    from nbdeploy.container.image import dockerfile_base, find_image

    local = base_tag("3.11", os_codename())
    made = find_image(engine, local) is None
    if made:  # the session's test base under the name `nbdeploy base-image` gives its own
        subprocess.run(engine.cmd("tag", opts.base or "", local), check=True, capture_output=True)
    lines: list[str] = []
    try:
        result = build_image(mini_bundle, replace(opts, base=None), engine=engine, on_line=lines.append)
    finally:
        if made:  # drop the extra name only, never the session's base
            # (podman untag IMAGE without a name would strip every name the image has)
            subprocess.run(engine.cmd("untag", local, local) if engine.name == "podman"
                           else engine.cmd("rmi", local), capture_output=True)
    registry = dockerfile_base(mini_bundle)
    assert registry == "python:3.11-slim"
    pulled = not any("cannot be pulled" in line for line in lines)
    print("fell back to the local base" if not pulled else "pulled the registry base")
    if pulled:  # a registry answered: the Dockerfile's own base, named
        assert result.base == registry
    else:
        assert result.base == local and f"base   {local}" in result.text()
        assert any(f"base {registry} cannot be pulled; building FROM the local base {local}" in line
                   for line in lines)
