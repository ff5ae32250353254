"""The real thing: the churn example's bundle, built into an image on the debootstrapped base,
answering its own test suite from the running container."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest

from nbdeploy.container.engine import Engine
from nbdeploy.container.image import remove_image
from nbdeploy.container.options import ContainerOptions
from nbdeploy.container.run import running_container
from nbdeploy.container.verify import verify_container

REPO = Path(__file__).resolve().parents[2]
SIZE_TARGET = 450e6  # bytes, for the scikit-learn example


@pytest.fixture(scope="module")
def churn_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nbdeploy.bundle import build_bundle

    work = tmp_path_factory.mktemp("container-example")
    shutil.copytree(REPO / "example_notebooks", work / "examples",
                    ignore=shutil.ignore_patterns(".nbdeploy", "__pycache__", "scored_test.csv",
                                                  "*-bundle"))
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)  # the embedded store beside the copy
    try:
        result = build_bundle(work / "examples" / "churn_classifier.ipynb",
                              output=work / "churn-bundle")
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    return Path(result.bundle)


def test_churn_bundle_container_passes_its_own_tests(engine: Engine, base_image: str,
                                                     ca_bundle: Path | None, churn_bundle: Path):
    tag = f"localhost/nbdeploy-test-churn:{os.getpid()}"
    opts = ContainerOptions(base=base_image, tag=tag, ca_bundle=ca_bundle)
    try:
        result = verify_container(churn_bundle, opts, on_line=print)
        assert result.passed, result.output
        assert result.image.size_bytes <= SIZE_TARGET, f"{result.image.size_bytes / 1e6:.0f} MB"
        assert result.ready_seconds < 30
        # the image's own settings: non-root, the lock in /opt/venv, nothing from the build's CA
        with running_container(engine.runner(), tag) as c:
            golden = json.loads((churn_bundle / "tests" / "golden.json").read_text())
            body = json.dumps({"dataframe_split": {"columns": golden["columns"],
                                                   "data": golden["data"][:3]}}).encode()
            req = urllib.request.Request(c.url + "/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                preds = json.loads(r.read())["predictions"]
            assert preds == golden["predictions"][:3]
    finally:
        remove_image(engine, tag)
