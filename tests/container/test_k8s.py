"""k8s/ manifests for spiky load, validated offline against the Kubernetes schemas."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from nbdeploy.base.errors import BundleError
from nbdeploy.bundle.k8s import (
    K8sOptions,
    complete_deployment,
    inference_service,
    k8s_manifests,
    k8s_name,
    write_k8s_manifests,
)

K8S = "1.30.0"
IMAGE = "registry.example/churn-classifier:3"


def _schema_dir() -> Path:
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    return sorted(root.glob("v*-local-strict"))[-1]


def _validate_container(c: dict) -> None:
    """A container spec against the strict core/v1 Container schema of kubernetes-validate."""
    folder = _schema_dir()
    schema = json.loads((folder / "container-v1.json").read_text())
    store = {"_definitions.json": json.loads((folder / "_definitions.json").read_text())}
    resolver = jsonschema.RefResolver(base_uri=f"{folder.as_uri()}/", referrer=schema,
                                      store={f"{folder.as_uri()}/{k}": v for k, v in store.items()})
    jsonschema.Draft7Validator(schema, resolver=resolver).validate(c)


def test_every_manifest_is_valid_kubernetes():
    docs = k8s_manifests("Churn Classifier", IMAGE, K8sOptions())
    assert set(docs) == {"deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml", "jobs/score-job.yaml"}
    for doc in docs.values():
        kubernetes_validate.validate(doc, K8S, strict=True)


def test_probes_resources_hpa_and_pdb_fit_together():
    opts = K8sOptions(min_replicas=3, max_replicas=20, cpu_target_percent=60, min_available=2)
    docs = k8s_manifests("churn", IMAGE, opts)
    c = docs["deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    hpa = docs["hpa.yaml"]["spec"]
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 20)
    assert hpa["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0  # spikes: scale at once
    assert hpa["scaleTargetRef"]["name"] == docs["deployment.yaml"]["metadata"]["name"]
    pdb = docs["pdb.yaml"]["spec"]
    assert pdb["minAvailable"] == 2 < hpa["minReplicas"]  # a drain can always proceed
    labels = docs["deployment.yaml"]["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert docs["service.yaml"]["spec"]["selector"].items() <= labels.items()


def test_kserve_variant_with_canary():
    docs = k8s_manifests("churn", IMAGE, K8sOptions(canary_traffic_percent=10))
    isvc = docs["kserve/inferenceservice.yaml"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    pred = isvc["spec"]["predictor"]
    assert pred["canaryTrafficPercent"] == 10
    assert pred["scaleMetric"] == "cpu" and pred["scaleTarget"] == 70
    # its metadata is valid ObjectMeta (checked on a core object carrying it)
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap",
                                  "metadata": isvc["metadata"], "data": {}}, K8S, strict=True)
    for c in pred["containers"]:
        _validate_container(c)
        assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert "kserve/inferenceservice.yaml" not in k8s_manifests("churn", IMAGE, K8sOptions())
    assert "kserve/inferenceservice.yaml" in k8s_manifests("churn", IMAGE, K8sOptions(), kserve=True)
    with pytest.raises(BundleError, match="between 0 and 100"):
        inference_service("churn", IMAGE, K8sOptions(canary_traffic_percent=150))


def test_complete_deployment_keeps_what_is_set():
    bare = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "m"},
            "spec": {"selector": {"matchLabels": {"app": "m"}},
                     "template": {"metadata": {"labels": {"app": "m"}}, "spec": {"containers": [
                         {"name": "api", "image": IMAGE, "ports": [{"containerPort": 9000}],
                          "resources": {"requests": {"cpu": "1"}}}]}}}}
    done = complete_deployment(bare)
    c = done["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"] == {"requests": {"cpu": "1"}}  # kept
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 9000}
    assert "startupProbe" in c and "readinessProbe" in c
    assert "livenessProbe" not in bare["spec"]["template"]["spec"]["containers"][0]
    kubernetes_validate.validate(done, K8S, strict=True)


def test_write_into_a_bundle_k8s_folder(tmp_path: Path):
    k8s = tmp_path / "k8s"
    k8s.mkdir()
    (k8s / "service.yaml").write_text("# the bundle's own\n" + yaml.safe_dump(
        k8s_manifests("churn", IMAGE)["service.yaml"]))
    written = write_k8s_manifests(k8s, "churn", IMAGE, K8sOptions(canary_traffic_percent=20))
    names = {p.relative_to(k8s).as_posix() for p in written}
    assert names == {"deployment.yaml", "hpa.yaml", "pdb.yaml", "kserve/inferenceservice.yaml", "jobs/score-job.yaml"}
    assert (k8s / "service.yaml").read_text().startswith("# the bundle's own")
    for p in k8s.rglob("*.yaml"):
        doc = yaml.safe_load(p.read_text())
        if doc["kind"] != "InferenceService":
            kubernetes_validate.validate(doc, K8S, strict=True)


def test_the_score_job_runs_the_bundles_own_scoring_from_its_image():
    job = k8s_manifests("churn", IMAGE)["jobs/score-job.yaml"]
    kubernetes_validate.validate(job, K8S, strict=True)
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == IMAGE
    assert c["command"][:5] == ["python", "-m", "nbdeploy_serve", "score", "/app"]
    assert {e["name"] for e in c["env"]} >= {"NBDEPLOY_SCORE_INPUT", "NBDEPLOY_SCORE_OUTPUT"}
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_names_are_dns_labels():
    assert k8s_name("Churn Classifier v2!") == "churn-classifier-v2"
    assert k8s_name("3d model") == "m-3d-model"
    assert len(k8s_name("x" * 100)) == 63


def test_cli_points_a_bundles_k8s_at_a_registry_image(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]):
    from nbdeploy.bundle.deploy_files import k8s_files
    from nbdeploy.bundle.manifest import check_files, checksums
    from nbdeploy.frontends.cli import main

    bundle = tmp_path / "bundle"
    (bundle / "k8s").mkdir(parents=True)
    for rel, text in k8s_files("churn-classifier", "4", 5 << 20).items():
        (bundle / "k8s" / rel).parent.mkdir(parents=True, exist_ok=True)
        (bundle / "k8s" / rel).write_text(text)
    (bundle / "README.md").write_text("the bundle's own\n")
    (bundle / "nbdeploy.json").write_text(json.dumps({"name": "churn-classifier", "version": "4",
                                                      "files": checksums(bundle)}))
    image = "registry.example/ml/churn-classifier:4"
    assert main(["k8s", str(bundle), "--image", image, "--canary", "10", "--max-replicas", "30",
                 "--min-available", "50%"]) == 0
    out = capsys.readouterr().out
    assert "pdb.yaml" in out and "sealed" in out
    manifest = json.loads((bundle / "nbdeploy.json").read_text())
    assert check_files(bundle, manifest) == [] and "k8s/kserve/inferenceservice.yaml" in manifest["files"]

    # a change nbdeploy did not make is never sealed: k8s refuses and writes nothing
    (bundle / "README.md").write_text("edited by hand\n")
    before = (bundle / "k8s" / "hpa.yaml").read_text()
    assert main(["k8s", str(bundle), "--image", "other:1"]) != 0
    assert "README.md: changed" in capsys.readouterr().err
    assert (bundle / "k8s" / "hpa.yaml").read_text() == before
    assert json.loads((bundle / "nbdeploy.json").read_text()) == manifest
    docs = {p.relative_to(bundle / "k8s").as_posix(): yaml.safe_load(p.read_text())
            for p in (bundle / "k8s").rglob("*.yaml")}
    dep = docs["deployment.yaml"]
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == image and "startupProbe" in c
    assert c["securityContext"]["readOnlyRootFilesystem"]  # the bundle's own settings are kept
    assert docs["hpa.yaml"]["spec"]["maxReplicas"] == 30
    assert docs["pdb.yaml"]["spec"]["minAvailable"] == "50%"
    isvc = docs["kserve/inferenceservice.yaml"]
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert isvc["spec"]["predictor"]["containers"][0]["image"] == image
    for rel, doc in docs.items():
        if not rel.startswith("kserve/"):
            kubernetes_validate.validate(doc, K8S, strict=True)
