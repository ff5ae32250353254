"""Air-gapped end to end: a bundle built with --wheelhouse verifies with no index (its lock
and its tests' packages from the wheelhouse alone), becomes an image with no network at all
in the build (``--network=none``) on the local base, and its container predicts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from nbdeploy.container.engine import Engine
from nbdeploy.container.image import inspect_image, remove_image
from nbdeploy.container.run import running_container
from nbdeploy.frontends.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.container
def test_wheelhouse_bundle_builds_offline_and_predicts(engine: Engine, base_image: str,
                                                       tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]):
    from nbdeploy.bundle import build_bundle

    shutil.copytree(REPO / "example_notebooks", tmp_path / "examples",
                    ignore=shutil.ignore_patterns(".nbdeploy", "__pycache__", "scored_test.csv",
                                                  "*-bundle"))
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)  # the embedded store beside the copy
    try:
        result = build_bundle(tmp_path / "examples" / "churn_classifier.ipynb",
                              output=tmp_path / "churn-bundle", wheelhouse=True,
                              wheelhouse_index=False)  # local sources and installed packages only
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    bundle = Path(result.bundle)
    wheels = sorted(p.name for p in (bundle / "wheelhouse").glob("*.whl"))
    lock = [line for line in (bundle / "requirements.lock").read_text().splitlines()
            if line and not line.lstrip().startswith("#")]
    assert len(wheels) == len(lock) and all(f"wheelhouse/{w}" in result.manifest["files"] for w in wheels)
    assert any(p.name.startswith("pytest-") for p in (bundle / "wheelhouse" / "tests").glob("*.whl"))

    # verify with every index a dead port: the environment comes from the wheelhouse alone
    dead = "http://127.0.0.1:9/simple"
    with pytest.MonkeyPatch.context() as mp:
        for var in ("PIP_INDEX_URL", "UV_INDEX_URL", "UV_DEFAULT_INDEX"):
            mp.setenv(var, dead)
        mp.delenv("PIP_FIND_LINKS", raising=False)
        assert main(["verify", str(bundle)]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert f"from the bundle's wheelhouse ({len(wheels)} wheels, no index)" in out
    assert "tests: " in out and " passed" in out

    tag = f"localhost/nbdeploy-test-wheelhouse:{os.getpid()}"
    try:
        # no network in any build step: pip can only read the bundle's wheelhouse
        argv = ["image", str(bundle), "--base", base_image, "--tag", tag, "--wheelhouse",
                "--build-flag=--network=none"]
        assert main(argv) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert "--no-index --find-links /tmp/wheelhouse" in out  # the step that ran
        assert inspect_image(engine, tag).size_bytes > 0
        # the wheels were installed, not shipped: /app holds the bundle without its wheelhouse,
        # and the seal check inside the image (at build, and at start below) lets that pass
        probe = subprocess.run(engine.runner().cmd(
            "run", "--rm", tag, "python", "-c",
            "import os; print(sorted(os.listdir('/app')))"), capture_output=True, text=True, timeout=120)
        listed = probe.stdout.strip()
        assert probe.returncode == 0 and "'model'" in listed and "'wheelhouse'" not in listed, probe
        # and the first stage's image (bundle and wheelhouse, ~80 MB) is not left in the engine's cache
        stages = subprocess.run(engine.cmd("images", "-q", "--filter", "dangling=true", "--filter",
                                           "label=nbdeploy.stage=bundle"), capture_output=True, text=True)
        assert stages.returncode == 0 and stages.stdout.split() == [], stages
        with running_container(engine.runner(), tag) as c:
            golden = json.loads((bundle / "tests" / "golden.json").read_text())
            body = json.dumps({"dataframe_split": {"columns": golden["columns"],
                                                   "data": golden["data"][:3]}}).encode()
            req = urllib.request.Request(c.url + "/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                assert json.loads(r.read())["predictions"] == golden["predictions"][:3]
    finally:
        remove_image(engine, tag)
