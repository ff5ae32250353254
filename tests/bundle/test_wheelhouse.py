"""The bundle's wheelhouse on a small sealed bundle: packed from a local find-links folder,
listed in the manifest, guarded by the seal; a wheel nowhere to be found is one clear line;
verify's environment installs the lock from the wheelhouse alone, as the image does."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from nbdeploy.base.errors import BundleError
from nbdeploy.bundle.deploy_files import dockerfile
from nbdeploy.bundle.manifest import check_files, checksums
from nbdeploy.bundle.repack import _digest, repack_installed
from nbdeploy.bundle.wheelhouse import add_wheelhouse
from nbdeploy.frontends.cli import main
from nbdeploy.serve.errors import ServeError
from nbdeploy.serve.seal import check_seal

WHEEL = "nbdeploy_test_tiny-1.0-py3-none-any.whl"
TEST_WHEEL = "nbdeploy_test_check-1.0-py3-none-any.whl"


def _wheel(folder: Path, module: str = "nbdeploy_test_tiny", value: int = 1) -> Path:
    """A real (if tiny) wheel: one module (``VALUE = value``) and its dist-info."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{module}-1.0-py3-none-any.whl"
    info = f"{module}-1.0.dist-info"
    dist = module.replace("_", "-").encode()
    files = {f"{module}.py": f"VALUE = {value}\n".encode(),
             f"{info}/METADATA": b"Metadata-Version: 2.1\nName: " + dist + b"\nVersion: 1.0\n",
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n"}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(f"{info}/RECORD", "".join(f"{n},sha256={_digest(d)},{len(d)}\n" for n, d in files.items())
                   + f"{info}/RECORD,,\n")
    return path


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A sealed bundle whose lock pins the tiny wheel and whose tests need another, which only
    a local folder holds."""
    _wheel(tmp_path / "local-wheels")
    _wheel(tmp_path / "local-wheels", "nbdeploy_test_check")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "local-wheels"))
    root = tmp_path / "bundle"
    (root / "tests").mkdir(parents=True)
    (root / "requirements.lock").write_text("# the lock\nnbdeploy-test-tiny==1.0\n    # via test\n")
    (root / "tests" / "requirements.txt").write_text("# what the tests need\nnbdeploy-test-check==1.0\n")
    (root / "Dockerfile").write_text(dockerfile("tiny", "1", "3.11.7"))
    (root / "app.txt").write_text("x\n")
    manifest = {"name": "tiny", "version": "1", "python": "3.11.7", "files": checksums(root)}
    (root / "nbdeploy.json").write_text(json.dumps(manifest))
    return root


def test_wheelhouse_is_listed_sealed_and_installed_without_an_index(bundle: Path):
    before = (bundle / "Dockerfile").read_text()
    assert "--no-index" not in before  # bundles without --wheelhouse keep the index install
    packed = add_wheelhouse(bundle, index=False)
    assert packed.wheels == [WHEEL] and packed.from_index == [] and packed.test_wheels == [TEST_WHEEL]
    manifest = json.loads((bundle / "nbdeploy.json").read_text())
    assert f"wheelhouse/{WHEEL}" in manifest["files"] and f"wheelhouse/tests/{TEST_WHEEL}" in manifest["files"]
    assert manifest["wheelhouse"] == {"folder": "wheelhouse", "python": "3.11", "wheels": 1,
                                      "from_installed": [], "from_index": [], "test_wheels": 1}
    assert check_files(bundle, manifest) == []  # sealed again, Dockerfile included
    docker = (bundle / "Dockerfile").read_text()
    assert "pip install --no-index --find-links /tmp/wheelhouse --no-deps -r requirements.lock" in docker
    assert "source=wheelhouse" in docker
    # a second call keeps the sealed wheelhouse
    again = add_wheelhouse(bundle, index=False)
    assert again.wheels == [WHEEL] and again.test_wheels == [TEST_WHEEL]
    # an extra wheel beside the sealed ones could be installed instead: serving refuses the bundle
    (bundle / "wheelhouse" / "nbdeploy_test_tiny-1.0-1-py3-none-any.whl").write_bytes(b"x")
    with pytest.raises(ServeError, match="wheelhouse/nbdeploy_test_tiny-1.0-1-py3-none-any.whl: "
                                         "not in the manifest"):
        check_seal(bundle)


def test_a_wheel_found_nowhere_is_named_in_one_line(bundle: Path, capsys: pytest.CaptureFixture[str],
                                                    ipshell):
    lock = bundle / "requirements.lock"
    lock.write_text(lock.read_text() + "nbdeploy-no-such-package==9.9\n")
    manifest = json.loads((bundle / "nbdeploy.json").read_text())
    manifest["files"] = checksums(bundle)
    (bundle / "nbdeploy.json").write_text(json.dumps(manifest))
    sealed = (bundle / "nbdeploy.json").read_text()
    with pytest.raises(BundleError) as err:
        add_wheelhouse(bundle, index=False)
    assert "no wheel for nbdeploy-no-such-package==9.9 (Python 3.11" in err.value.message
    assert "\n" not in err.value.message and "pip wheel --no-deps nbdeploy-no-such-package==9.9" in (
        err.value.hint or "")
    assert (bundle / "nbdeploy.json").read_text() == sealed and not (bundle / "wheelhouse").exists()
    # the CLI: that line, exit status 2, before any engine is asked to build
    assert main(["image", str(bundle), "--wheelhouse", "--no-index"]) == 2
    err_lines = [line for line in capsys.readouterr().err.splitlines() if "no-such-package" in line]
    assert len(err_lines) >= 1 and "no wheel for nbdeploy-no-such-package==9.9" in err_lines[0]
    # the notebook: one UsageError line
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="no wheel for nbdeploy-no-such-package==9.9"):
        ipshell.run_line_magic("deploy", f"image {bundle} --wheelhouse --no-index")


def test_an_installed_package_is_packed_again_only_while_it_matches_its_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import subprocess
    import sys

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                    str(site), str(_wheel(tmp_path / "w"))], check=True, capture_output=True)
    monkeypatch.syspath_prepend(str(site))
    out = tmp_path / "out"
    out.mkdir()
    wheel = repack_installed("nbdeploy-test-tiny==1.0", "3.11", out)
    assert wheel is not None and wheel.name == WHEEL
    with zipfile.ZipFile(wheel) as z:
        assert z.read("nbdeploy_test_tiny.py") == b"VALUE = 1\n"
        record = z.read("nbdeploy_test_tiny-1.0.dist-info/RECORD").decode()
        assert "nbdeploy_test_tiny.py,sha256=" in record
        assert not any(n.endswith(("/INSTALLER", "/REQUESTED")) for n in z.namelist())
    assert repack_installed("nbdeploy-test-tiny==2.0", "3.11", out) is None  # not that version
    (site / "nbdeploy_test_tiny.py").write_text("VALUE = 2\n")  # changed since the install
    assert repack_installed("nbdeploy-test-tiny==1.0", "3.11", out) is None


def _installed_values(py: Path) -> str:
    import subprocess

    return subprocess.run([str(py), "-c", "import nbdeploy_test_tiny as a, nbdeploy_test_check as b; "
                           "print(a.VALUE, b.VALUE)"], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_verify_installs_the_lock_from_the_wheelhouse_alone(bundle: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, installer: str):
    from nbdeploy.bundle.verify import _uv, create_env

    if installer == "uv" and _uv() is None:
        pytest.fail("uv is one of nbdeploy's dependencies, so it should be here")
    add_wheelhouse(bundle, index=False)
    # the user's sources now hold other builds of the same versions (VALUE = 2), and the index
    # is a port nobody listens on: only the wheelhouse gives VALUE = 1
    other = tmp_path / "other-wheels"
    _wheel(other, value=2)
    _wheel(other, "nbdeploy_test_check", value=2)
    monkeypatch.setenv("PIP_FIND_LINKS", str(other))
    monkeypatch.setenv("UV_FIND_LINKS", str(other))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("UV_INDEX_URL", "http://127.0.0.1:9/simple")
    py, name, source = create_env(bundle, tmp_path / "venv", installer)
    assert name == installer
    assert source == "the bundle's wheelhouse (1 wheels, no index)"
    assert _installed_values(py) == "1 1"
    if installer == "pip":  # --no-wheelhouse: the configured sources, as before
        py, _, source = create_env(bundle, tmp_path / "venv-index", installer, wheelhouse=False)
        assert source == "the configured package sources (--no-wheelhouse)"
        assert _installed_values(py) == "2 2"


def test_a_wheelhouse_that_cannot_install_the_lock_fails_verify_naming_the_pin(
        bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from nbdeploy.base.errors import VerifyError
    from nbdeploy.bundle.verify import create_env, package_sources

    add_wheelhouse(bundle, index=False)
    lock = bundle / "requirements.lock"
    lock.write_text(lock.read_text() + "nbdeploy-test-absent==1.0\n")
    with pytest.raises(VerifyError) as err:
        create_env(bundle, tmp_path / "venv", "pip")
    assert err.value.message.startswith("the bundle's wheelhouse cannot install its lock "
                                        "(nbdeploy-test-absent") and "so its image could not either" in err.value.message
    assert "--no-wheelhouse" in (err.value.hint or "")
    # a wheelhouse packed for another Python is not used, and the report says why
    manifest = json.loads((bundle / "nbdeploy.json").read_text())
    manifest["wheelhouse"]["python"] = "3.99"
    (bundle / "nbdeploy.json").write_text(json.dumps(manifest))
    src = package_sources(bundle, "3.11")
    assert not src.offline and src.lock == []
    assert src.text == "the configured package sources (the wheelhouse is for Python 3.99, this environment runs 3.11)"
    # a test pin without a wheel in wheelhouse/tests: the lock stays offline, the tests' packages do not
    manifest["wheelhouse"]["python"] = "3.11"
    (bundle / "nbdeploy.json").write_text(json.dumps(manifest))
    (bundle / "wheelhouse" / "tests" / TEST_WHEEL).unlink()
    src = package_sources(bundle, "3.11")
    assert src.offline and src.lock[0] == "--no-index" and "--no-index" not in src.tests
    assert src.text.endswith("; the tests' packages from the configured sources")


def test_a_wheelhouse_left_out_as_a_whole_passes_serving_and_fails_verify(bundle: Path):
    """What the image does: installs the wheels, leaves wheelhouse/ out of /app."""
    import shutil

    add_wheelhouse(bundle, index=False)
    docker = (bundle / "Dockerfile").read_text()
    assert "FROM ${BASE} AS bundle\nLABEL nbdeploy.stage=bundle\nCOPY . /app\nRUN rm -rf /app/wheelhouse" in docker
    assert "COPY --from=bundle /app /app" in docker and "\nCOPY . /app\n# load" not in docker
    manifest = json.loads((bundle / "nbdeploy.json").read_text())
    shutil.rmtree(bundle / "wheelhouse")
    check_seal(bundle)  # serving loads nothing from it
    assert check_files(bundle, manifest) == [f"wheelhouse/{WHEEL}: missing",
                                             f"wheelhouse/tests/{TEST_WHEEL}: missing"]
    # one wheel gone while the folder stays is a tampered wheelhouse: refused
    (bundle / "wheelhouse").mkdir()
    with pytest.raises(ServeError, match=f"wheelhouse/{WHEEL}: missing"):
        check_seal(bundle)


def test_a_pin_no_package_source_has_fails_verify_naming_it(bundle: Path, tmp_path: Path):
    """Without a wheelhouse: the lock pins a package neither the index nor the local folder has
    (a library installed from a folder used to end up pinned so). verify says which pin, and what
    to do, not pip's 15 lines."""
    from nbdeploy.bundle.verify import VerifyError, create_env

    lock = bundle / "requirements.lock"
    lock.write_text(lock.read_text() + "nbdeploy-no-such-package==9.9\n")
    with pytest.raises(VerifyError) as err:
        create_env(bundle, tmp_path / "env", "pip")
    assert err.value.message.startswith(
        "the bundle's lock pins nbdeploy-no-such-package==9.9, which the package sources pip uses do not have")
    assert err.value.message.endswith("No matching distribution found for nbdeploy-no-such-package==9.9")
    assert "\n" not in err.value.message and "PIP_INDEX_URL" in (err.value.hint or "")
