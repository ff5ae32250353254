"""Session fixtures for container tests: a real engine, a debootstrapped base, cleanup.

Nothing is skipped: without a working engine (or debootstrap, for the base image) the
tests fail with the message that says what to install. The base image is built once per
session from the host's Debian mirror under a test tag and removed at the end;
``NBDEPLOY_TEST_REUSE_BASE=1`` keeps and reuses it between local runs (CI never sets it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nbdeploy.container.engine import Engine, detect_engine
from nbdeploy.container.image import find_image, remove_image
from nbdeploy.container.options import ContainerOptions

collect_ignore = ["fixtures"]  # the fixture bundle's own suite runs against its container

HERE = Path(__file__).resolve().parent
MINI = HERE / "fixtures" / "mini_bundle"
BASE_TAG = "localhost/nbdeploy-python-test:3.11-bookworm"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture(scope="session")
def engine() -> Engine:
    return detect_engine()  # raises ContainerError naming what to install


@pytest.fixture(scope="session")
def base_image(engine: Engine) -> str:
    reuse = os.environ.get("NBDEPLOY_TEST_REUSE_BASE") == "1"
    if reuse and find_image(engine, BASE_TAG) is not None:
        yield BASE_TAG
        return
    from nbdeploy.container.base_image import build_base_image

    remove_image(engine, BASE_TAG)  # a stale one would stay behind untagged
    result = build_base_image(BASE_TAG, engine=engine)
    assert result.tag == BASE_TAG and result.python.startswith("3.")
    yield BASE_TAG
    if not reuse:
        remove_image(engine, BASE_TAG)


@pytest.fixture(scope="session")
def ca_bundle() -> Path | None:
    """The host CA bundle: HTTPS from build steps may go through a proxy only it trusts."""
    env = os.environ.get("NBDEPLOY_CA_BUNDLE")
    if env:
        return Path(env)
    return HOST_CA if HOST_CA.is_file() else None


@pytest.fixture(scope="session")
def layer_cache(engine: Engine, base_image: str, ca_bundle: Path | None) -> str:
    """The fixture bundle built once and kept for the session, so that later builds of the
    same steps come from the engine's layer cache instead of pip-installing again."""
    from nbdeploy.container.image import build_image

    tag = f"localhost/nbdeploy-test-cache:{os.getpid()}"
    build_image(MINI, ContainerOptions(base=base_image, tag=tag, ca_bundle=ca_bundle),
                engine=engine)
    yield tag
    remove_image(engine, tag)


@pytest.fixture
def opts(engine: Engine, base_image: str, ca_bundle: Path | None, layer_cache: str,
         request: pytest.FixtureRequest):
    """Options for a test image under a unique tag, removed after the test."""
    import re

    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    tag = f"localhost/nbdeploy-test-{name}:{os.getpid()}"
    yield ContainerOptions(base=base_image, tag=tag, ca_bundle=ca_bundle)
    remove_image(engine, tag)


@pytest.fixture
def mini_bundle(tmp_path: Path) -> Path:
    dest = tmp_path / "mini_bundle"
    shutil.copytree(MINI, dest)
    return dest


def containers_named(engine: Engine, prefix: str) -> list[str]:
    out = subprocess.run(engine.runner().cmd("ps", "-a", "--format", "{{.Names}}"),
                         capture_output=True, text=True, check=True).stdout
    return [n for n in out.split() if n.startswith(prefix)]
