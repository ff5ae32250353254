"""Verify end to end: real uv venv from the lock alone, real API process, the bundle's own tests."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from nbdeploy.base.errors import VerifyError
from nbdeploy.bundle import verify_bundle
from nbdeploy.bundle.manifest import checksums

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("which", ["churn", "diabetes"])
def test_verify_example_bundles(which, churn_build, diabetes_build):
    built = churn_build if which == "churn" else diabetes_build
    lines: list[str] = []
    report = verify_bundle(built.bundle, progress=lines.append)
    assert report.ok, report.text()
    # both examples are served by their compiled program, so the model is also loaded through its library
    assert [c.name for c in report.checks] == ["checksums", "environment", "isolation", "library", "api", "tests"]
    assert report.installer == "uv" and report.env_seconds is not None
    assert "5 passed" in report.checks[-1].detail
    # the environment really is isolated: it sees neither this interpreter's packages nor nbdeploy
    assert report.checks[2].detail == "sees only its own site-packages"
    # verify wrote nothing into the bundle (no venv, no request log, no caches)
    assert json.loads((built.bundle / "nbdeploy.json").read_text())["files"] == checksums(built.bundle)
    assert not list(built.bundle.rglob("__pycache__")) and not list(built.bundle.rglob("*.jsonl"))
    # the outcome is recorded beside the bundle, for the panel and %deploy status
    from nbdeploy.bundle.catalog import verify_result

    assert verify_result(built.bundle)["ok"] is True


def test_jupyter_checkpoints_are_not_bundle_content(diabetes_build, tmp_path):
    from nbdeploy.bundle.verify import check_files

    bundle = _copy(diabetes_build.bundle, tmp_path / "copy")
    cp = bundle / ".ipynb_checkpoints"
    cp.mkdir()
    (cp / "README-checkpoint.md").write_text("opened in JupyterLab")
    manifest = json.loads((bundle / "nbdeploy.json").read_text())
    assert check_files(bundle, manifest) == []


def test_isolation_probe_flags_a_leaky_environment(tmp_path):
    """The probe itself: an environment with system site-packages is reported, with nbdeploy."""
    import subprocess
    import sys

    from nbdeploy.bundle.verify import isolation_problems

    env = tmp_path / "leaky"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(env)],
                   check=True)
    # a venv made from a venv's python does not see that venv; point it at ours explicitly
    site = next(p for p in sys.path if p.endswith("site-packages"))
    pth = next((env / "lib").glob("python3*/site-packages")) / "leak.pth"
    pth.write_text(site + "\n")
    problems = isolation_problems(env / "bin" / "python", env)
    assert any(site in p for p in problems) and "can import nbdeploy" in problems


def _copy(bundle: Path, dest: Path) -> Path:
    shutil.copytree(bundle, dest)
    return dest


def test_tampered_file_is_named(churn_build, tmp_path):
    b = _copy(churn_build.bundle, tmp_path / "b")
    golden = b / "tests" / "golden.json"
    golden.write_text(golden.read_text().replace("[", "[ ", 1))
    (b / "extra.txt").write_text("not from the build")
    report = verify_bundle(b)
    assert not report.ok
    assert [c.name for c in report.checks] == ["checksums"]
    detail = report.checks[0].detail
    assert "tests/golden.json: changed" in detail and "extra.txt: not in the manifest" in detail


def test_missing_file_is_named(diabetes_build, tmp_path):
    b = _copy(diabetes_build.bundle, tmp_path / "b")
    (b / "model" / "model.skops").unlink()
    report = verify_bundle(b)
    assert not report.ok and "model/model.skops: missing" in report.checks[0].detail


def test_not_a_bundle(tmp_path):
    with pytest.raises(VerifyError, match="not an nbdeploy bundle"):
        verify_bundle(tmp_path)


def test_module_missing_from_the_lock_fails_verify_by_name(diabetes_build, tmp_path):
    """A builder bug that drops a distribution from the lock: verify fails naming the module."""
    b = _copy(diabetes_build.bundle, tmp_path / "b")
    lock = b / "requirements.lock"
    lock.write_text(re.sub(r"(?m)^scikit-learn==.*\n(    # via.*\n)?", "", lock.read_text()))
    manifest = json.loads((b / "nbdeploy.json").read_text())
    manifest["files"] = checksums(b)  # consistent checksums: only the environment is wrong
    (b / "nbdeploy.json").write_text(json.dumps(manifest))
    report = verify_bundle(b)
    assert not report.ok, report.text()
    assert "sklearn" in report.missing_modules
    assert "'sklearn'" in report.failure and "requirements.lock" in report.failure
