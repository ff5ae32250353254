"""Build the example notebooks end to end (real papermill) and check what the bundle holds."""

from __future__ import annotations

import importlib.metadata as md
import json
from pathlib import Path

import pytest
import yaml

from nbdeploy.bundle.assemble import suite_lock
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
    # the example notebooks run `%load_ext nbdeploy` and its magics: rebuilding them needs the tool
    notebook = (built.bundle / "notebook-requirements.txt").read_text().splitlines()
    assert f"nbdeploy=={md.version('nbdeploy')}" in notebook
    direct = (built.bundle / "requirements.txt").read_text()
    assert all("==" in line for line in direct.splitlines())
    tests_lock = (built.bundle / "tests" / "requirements.txt").read_text().lower()
    pins = dict(ln.split("==") for ln in tests_lock.splitlines() if "==" in ln and not ln.startswith(" "))
    assert pins["pytest"] == md.version("pytest")  # from nbdeploy's own environment
    assert not set(pins) & names  # installed together with --no-deps: one pin per name


def test_tests_lock_comes_from_nbdeploys_environment_and_leaves_serving_pins_alone():
    """Issue 15: a kernel without pytest gave an empty tests/requirements.txt; this environment
    has pytest (a dependency of nbdeploy), and the serving lock's own pins win."""
    alone = {p["name"].lower(): p["version"] for p in suite_lock([])}
    assert alone["pytest"] == md.version("pytest") and alone["pluggy"] == md.version("pluggy")
    assert "packaging" in alone  # pytest needs it
    serving = [{"name": "Packaging", "version": "0.0"}]
    assert "packaging" not in {p["name"].lower() for p in suite_lock(serving)}


def test_profile_covers_the_model_inputs(built):
    profile = json.loads((built.bundle / "profile.json").read_text())
    golden = json.loads((built.bundle / "tests" / "golden.json").read_text())
    assert set(profile["columns"]) == set(golden["columns"])
    assert profile["source"]["hash"].startswith("blake3:")
    numeric = [s for s in profile["columns"].values() if s["kind"] == "numeric"]
    assert numeric and all(len(s["quantile_grid"]) == 201 for s in numeric)  # for KS in drift reports
    # the model's predictions on its training rows, what `nbdeploy drift` compares served predictions with
    predicted = profile["prediction"]
    assert predicted["rows"] == min(profile["rows"], 20_000) and "training rows" in predicted["source"]
    assert predicted["columns"]["prediction"]["kind"] in ("numeric", "categorical", "boolean")


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
                   "papermill", "## Lineage", "## Metrics", "requirements.lock", "POST /feedback",
                   "GET /performance"):
        assert needle in readme, needle
    # the rebuild says where the training data lives: read as (relative) and its source path
    manifest = json.loads((built.bundle / "nbdeploy.json").read_text())
    training = manifest["training_data"]
    row = next(line for line in readme.splitlines() if line.startswith("| read |"))
    assert f"`{training['relative_path']}`" in row and f"`{training['path']}`" in row


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


def test_keys_written_in_a_cell_never_reach_the_bundle(fixture_dir: Path) -> None:
    """docs/bundle.md: every text file passes the secret scrubber; the build says what it took out."""
    import nbformat

    from nbdeploy.bundle import build_bundle

    from .conftest import READ, make_notebook

    sk = "sk-live-" + "4eC39HqLyjWDarjtT1zdp7dc"  # made up, in the shape of a live API key
    aws_id, aws_secret = "AKIAZ7Q2MXH4RT5KPL3N", "q8Vd2LkR/3mXzT9wYpB1+nHc6fGjE4sUaK7oN0iW"
    nb = make_notebook(
        fixture_dir / "keys.ipynb", READ,
        f'api_key = "{sk}"\nAWS_ACCESS_KEY_ID = "{aws_id}"\naws_secret_access_key = "{aws_secret}"\n'
        'print("using", api_key, AWS_ACCESS_KEY_ID)',  # the executed copy has them in its output too
        "from sklearn.linear_model import LinearRegression\nm = LinearRegression().fit(X, df['t'])")
    lines: list[str] = []
    result = build_bundle(nb, output=fixture_dir / "keys-bundle", progress=lambda e: lines.append(e.text()))

    secrets = [s.encode() for s in (sk, aws_id, aws_secret)]
    files = [p for p in result.bundle.rglob("*") if p.is_file()]
    assert any(p.name == "keys.executed.ipynb" for p in files)
    for path in files:
        data = path.read_bytes()
        assert not [s for s in secrets if s in data], f"a key reached {path.relative_to(result.bundle)}"
    kept = nbformat.read(result.bundle / "notebook" / "keys.ipynb", as_version=4)
    assert "m = LinearRegression().fit(X, df['t'])" in kept.cells[2].source  # still the notebook, code intact

    found = {(s["file"], s["kind"]) for s in result.scrubbed}
    copy = "notebook/keys.ipynb"
    assert {(copy, "API key (sk-...)"), (copy, "AWS access key id"), (copy, "secret assigned to a name")} <= found
    # the executed copy was scrubbed when the run wrote it (job/execute.py): masked there, not merely absent
    executed = next(p for p in files if p.name == "keys.executed.ipynb").read_text()
    assert executed.count("***") >= 3
    report = "\n".join(lines) + result.text() + json.dumps(result.to_dict())
    assert "secrets scrubbed from notebook/keys.ipynb: " in "\n".join(lines)
    assert "secrets scrubbed from notebook/keys.ipynb: " in result.text()
    assert not [s for s in secrets if s.decode() in report]  # kind and file, never the value


def test_a_project_package_is_copied_through_the_scrubber(tmp_path: Path) -> None:
    from nbdeploy.base.redact import recording
    from nbdeploy.bundle.assemble import _copy_project_modules

    pkg = tmp_path / "src" / "helpers"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "client.py").write_text('API_KEY = "sk-live-4eC39HqLyjWDarjtT1zdp7dc"\ndef f():\n    return 1\n')
    (pkg / "weights.bin").write_bytes(b"\x00\x01sk-live-4eC39HqLyjWDarjtT1zdp7dc")  # not text: copied as it is
    record = {"project_modules": [{"path": str(pkg), "relative_path": "helpers"}]}
    with recording() as found:
        _copy_project_modules(record, tmp_path / "out")
    copied = (tmp_path / "out" / "helpers" / "client.py").read_text()
    assert "sk-live-" not in copied and copied.endswith("def f():\n    return 1\n")
    assert (tmp_path / "out" / "helpers" / "weights.bin").read_bytes() == (pkg / "weights.bin").read_bytes()
    assert [f["kind"] for f in found] == ["API key (sk-...)"]
    assert found[0]["where"].endswith("helpers/client.py")
