"""Build the example notebooks end to end (real papermill) and check what the bundle holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from nbdeploy.bundle.manifest import checksums

pytestmark = pytest.mark.slow

EXPECTED = ["nbdeploy.json", "model/MLmodel", "model/input_example.json",
            "model/serving_input_example.json", "requirements.txt", "requirements.lock",
            "notebook-requirements.txt", "notebook-requirements.lock", "environment.json",
            "lineage.json", "profile.json", "openapi.json", "README.md", "Dockerfile", ".dockerignore",
            "k8s/deployment.yaml", "k8s/service.yaml", "k8s/hpa.yaml", "tests/test_api.py",
            "tests/conftest.py", "tests/golden.json", "tests/requirements.txt",
            "nbdeploy_serve/__main__.py"]


@pytest.fixture(params=["churn", "diabetes"])
def built(request, churn_build, diabetes_build):
    return churn_build if request.param == "churn" else diabetes_build


def test_layout_and_manifest(built):
    root = built.bundle
    for rel in EXPECTED:
        assert (root / rel).is_file(), rel
    m = json.loads((root / "nbdeploy.json").read_text())
    assert m["name"] == built.name and m["version"] == built.version
    assert m["source"]["sha256"] and len(m["source"]["sha256"]) == 64
    assert m["files"] == checksums(root)
    assert "nbdeploy.json" not in m["files"]
    assert m["metrics"] and m["parameters"]
    assert m["model"]["flavor"] == "sklearn" and m["model"]["serialization"] == "skops"
    nb = m["source"]["notebook"]
    assert (root / "notebook" / nb).is_file()
    assert (root / "notebook" / nb.replace(".ipynb", ".executed.ipynb")).is_file()
    # nothing of the build is left beside the bundle
    assert not [p for p in root.parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_progress_is_shown_step_by_step(built):
    starts = [e for e in built.progress if e.outcome == "started"]
    ends = [e for e in built.progress if e.outcome == "ok"]
    assert [(e.step, e.steps) for e in starts] == [(i, 5) for i in range(1, 6)] == [(e.step, e.steps) for e in ends]
    assert [e.text().split("]")[0] for e in starts] == ["[1/5", "[2/5", "[3/5", "[4/5", "[5/5"]
    assert [e.title for e in ends] == [step for step, _ in built.steps] and all(e.seconds >= 0 for e in ends)


def test_churn_ships_its_helper_module(churn_build):
    root = churn_build.bundle
    assert (root / "notebook" / "features.py").is_file()
    assert "notebook/features.py" in json.loads((root / "nbdeploy.json").read_text())["files"]


def test_model_is_mlflow_format_and_predicts_the_golden_rows(built):
    import mlflow.pyfunc
    import numpy as np

    from nbdeploy.bundle.mlmodel import example_frame

    root = built.bundle
    mlmodel = yaml.safe_load((root / "model" / "MLmodel").read_text())
    sk = mlmodel["flavors"]["sklearn"]
    assert sk["serialization_format"] == "skops"
    assert mlmodel["signature"]["inputs"]
    golden = json.loads((root / "tests" / "golden.json").read_text())
    if built.name.startswith("churn"):  # a tree model: skops needs Tree trusted, explicitly
        assert sk["skops_trusted_types"] == ["sklearn.tree._tree.Tree"]
    model = mlflow.pyfunc.load_model(str(root / "model"))
    export = {"example": {"columns": golden["columns"], "data": golden["data"]},
              "dtypes": {}}
    preds = np.asarray(model.predict(example_frame(export).astype(
        {c: "float64" for c, t in golden["types"].items() if t == "double"})))
    np.testing.assert_allclose(preds.astype(float), np.asarray(golden["predictions"], dtype=float),
                               rtol=1e-6)


def test_registered_in_the_local_registry(built):
    from mlflow import MlflowClient

    m = json.loads((built.bundle / "nbdeploy.json").read_text())
    reg = m["registry"]
    assert reg["tracking_uri"].startswith("sqlite:///")
    client = MlflowClient(tracking_uri=reg["tracking_uri"], registry_uri=reg["tracking_uri"])
    mv = client.get_model_version(reg["name"], reg["version"])
    assert mv.run_id == reg["run_id"]


def test_serving_lock_is_lean_and_complete(built):
    lock = (built.bundle / "requirements.lock").read_text().lower()
    names = {line.split("==")[0] for line in lock.splitlines() if "==" in line and not line.startswith(" ")}
    assert {"scikit-learn", "skops", "numpy", "pandas", "orjson", "uvicorn", "pyyaml"} <= names
    assert not names & {"nbdeploy", "mlflow", "jupyter", "notebook", "ipykernel", "papermill"}
    direct = (built.bundle / "requirements.txt").read_text()
    assert all("==" in line for line in direct.splitlines())
    assert "pytest==" in (built.bundle / "tests" / "requirements.txt").read_text()


def test_profile_covers_the_model_inputs(built):
    profile = json.loads((built.bundle / "profile.json").read_text())
    golden = json.loads((built.bundle / "tests" / "golden.json").read_text())
    assert set(profile["columns"]) == set(golden["columns"])
    assert profile["source"]["hash"].startswith("blake3:")


def test_dockerfile(built):
    text = (built.bundle / "Dockerfile").read_text()
    python = json.loads((built.bundle / "nbdeploy.json").read_text())["python"]
    assert f"ARG BASE=docker.io/library/python:{python}-slim" in text
    assert "pip install --no-deps -r requirements.lock" in text
    assert "USER 10001" in text and "HEALTHCHECK" in text and "EXPOSE 8080" in text
    assert '"-m", "nbdeploy_serve"' in text


def test_k8s_manifests_are_valid(built):
    import kubernetes_validate

    for f in ("deployment.yaml", "service.yaml", "hpa.yaml", "jobs/score-job.yaml"):
        doc = yaml.safe_load((built.bundle / "k8s" / f).read_text())
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    dep = yaml.safe_load((built.bundle / "k8s" / "deployment.yaml").read_text())
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"] and c["livenessProbe"] and c["resources"]["limits"]


def test_openapi_and_readme(built):
    doc = json.loads((built.bundle / "openapi.json").read_text())
    assert "/invocations" in doc["paths"] and f"/v2/models/{built.name}/infer" in doc["paths"]
    readme = (built.bundle / "README.md").read_text()
    golden = json.loads((built.bundle / "tests" / "golden.json").read_text())
    for col in golden["columns"]:
        assert f"`{col}`" in readme
    for needle in ("curl", "/invocations", "/v2/models/", "podman build", "nbdeploy build",
                   "papermill", "## Lineage", "## Metrics", "requirements.lock"):
        assert needle in readme, needle


def test_target_exists_is_refused_unless_force(churn_build):
    from nbdeploy.base.errors import BundleError
    from nbdeploy.bundle import build_bundle

    nb = Path(json.loads((churn_build.bundle / "nbdeploy.json").read_text())["source"]["path"])
    with pytest.raises(BundleError, match="already exists"):
        build_bundle(nb, output=churn_build.bundle)


def test_the_model_is_served_by_its_compiled_program(built):
    """The build proves the program in the kernel, before MLflow writes the signature; the
    program in the bundle must be the one the server loads, and give the golden predictions."""
    import numpy as np

    from nbdeploy.serve.bundle import read_bundle
    from nbdeploy.serve.model import load_model
    from nbdeploy.serve.predictor import build_table

    root = built.bundle
    doc = json.loads((root / "model" / "nbdeploy_program" / "program.json").read_text())
    assert doc["checked_rows"] > 1000
    bundle = read_bundle(root)
    loaded = load_model(bundle)
    assert loaded.program is not None, loaded.program_note
    golden = json.loads((root / "tests" / "golden.json").read_text())
    merged = {c: [row[i] for row in golden["data"]] for i, c in enumerate(golden["columns"])}
    got = loaded.program.predict(build_table(bundle.columns, merged))
    np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(golden["predictions"], dtype=float),
                               rtol=1e-9)
