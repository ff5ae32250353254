"""The Python base image from the host's own Debian mirror (no registry involved)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nbdeploy.base.errors import ContainerError
from nbdeploy.container.base_image import find_mirror, os_codename
from nbdeploy.container.engine import Engine
from nbdeploy.container.image import inspect_image


def _apt(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_mirror_from_deb822_sources(tmp_path: Path):
    apt = _apt(tmp_path, {"sources.list.d/debian.sources": (
        "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
        "URIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main contrib\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n")})
    m = find_mirror("bookworm", apt)
    assert (m.uri, m.suite, m.components) == ("http://mirror.example/debian", "bookworm",
                                              ("main", "contrib"))


def test_mirror_from_one_line_sources_skips_disabled_and_deb_src(tmp_path: Path):
    apt = _apt(tmp_path, {
        "sources.list": "# deb http://old.example/debian bookworm main\n"
                        "deb-src http://src.example/debian bookworm main\n"
                        "deb [arch=amd64 signed-by=/k.gpg] https://apt.example/debian bookworm main\n",
        "sources.list.d/x.sources": "Enabled: no\nTypes: deb\nURIs: http://off.example/\n"
                                    "Suites: bookworm\nComponents: main\n"})
    assert find_mirror("bookworm", apt).uri == "https://apt.example/debian"


def test_no_mirror_for_the_suite(tmp_path: Path):
    apt = _apt(tmp_path, {"sources.list": "deb http://deb.example/debian bullseye main\n"})
    with pytest.raises(ContainerError, match="no apt source for 'bookworm'") as err:
        find_mirror("bookworm", apt)
    assert "--mirror" in str(err.value)


def test_this_hosts_mirror():
    m = find_mirror()
    assert m.suite == os_codename() and m.uri.startswith(("http", "file"))


def test_base_image_has_python_venv_pip_and_cas(engine: Engine, base_image: str):
    info = inspect_image(engine, base_image)
    assert info.size_bytes < 200e6, "the base should stay small (docs, caches, apt lists trimmed)"
    script = ("python3 -m venv /tmp/v && /tmp/v/bin/python -m pip --version >/dev/null && "
              "test -s /etc/ssl/certs/ca-certificates.crt && "
              "test ! -e /var/lib/apt/lists/lock -o -z \"$(ls /var/lib/apt/lists)\" && "
              "python3 -c 'import sys, ssl; print(sys.version_info[:2])'")
    out = subprocess.run(engine.runner().cmd("run", "--rm", base_image, "sh", "-c", script),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(3, 11)"  # bookworm's python3, the captured version here


@pytest.mark.parametrize("engine_name", ["podman", "buildah"])
def test_import_of_a_tree_sets_env_cmd_and_labels(engine_name: str, tmp_path: Path):
    """The import step alone, on a one-file tree, with each engine's own import path."""
    import os
    import tarfile

    from nbdeploy.container.base_image import _import
    from nbdeploy.container.engine import detect_engine
    from nbdeploy.container.image import remove_image

    engine = detect_engine(engine_name)
    (tmp_path / "tree" / "etc").mkdir(parents=True)
    (tmp_path / "tree" / "etc" / "marker").write_text("x")
    tarball = tmp_path / "tree.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(tmp_path / "tree", arcname=".")
    tag = f"localhost/nbdeploy-test-import-{engine_name}:{os.getpid()}"
    try:
        image_id = _import(engine, tarball, tag, "3.11", "bookworm")
        assert image_id
        runner = engine.runner()
        doc = subprocess.run(runner.cmd("image", "inspect", tag), capture_output=True, text=True,
                             check=True).stdout
        import json

        config = json.loads(doc)[0]["Config"]
        assert "LANG=C.UTF-8" in config["Env"] and config["Cmd"] == ["python3"]
        assert config["Labels"]["org.opencontainers.image.vendor"] == "nbdeploy"
    finally:
        remove_image(engine, tag)
