"""Kubernetes manifests for a bundle's API under spiky load.

Generators return plain dicts (one Kubernetes object each) and :func:`k8s_manifests`
returns the whole set by file name, so the bundle builder writes them into ``BUNDLE/k8s/``:

* ``deployment.yaml`` - resources (requests and limits), and probes on the Open
  Inference Protocol (V2) health endpoints: startup and readiness on
  ``/v2/health/ready``, liveness on ``/v2/health/live``;
* ``service.yaml`` - ClusterIP on port 80 -> 8080;
* ``hpa.yaml`` - autoscaling/v2 on CPU utilization, scaling up fast (no stabilization,
  doubling every 15 s) and down slowly (5 minute window), for bursts of requests;
* ``pdb.yaml`` - a PodDisruptionBudget keeping ``min_available`` pods through node drains;
* ``kserve/inferenceservice.yaml`` (optional) - a KServe ``InferenceService`` running the
  same image as a custom predictor, with ``canaryTrafficPercent`` for a canary rollout.

:func:`complete_deployment` fills resources and probes into a Deployment written
elsewhere, leaving whatever is already set.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PORT = 8080
READY, LIVE = "/v2/health/ready", "/v2/health/live"


@dataclass(frozen=True)
class K8sOptions:
    replicas: int = 2
    min_replicas: int = 2
    max_replicas: int = 10
    cpu_target_percent: int = 70
    cpu_request: str = "500m"
    cpu_limit: str = "2"
    memory_request: str = "512Mi"
    memory_limit: str = "1Gi"
    min_available: int | str = 1  # for the PodDisruptionBudget: a count or "50%"
    canary_traffic_percent: int | None = None  # set -> the KServe variant is written too
    namespace: str | None = None


def k8s_name(name: str) -> str:
    """A DNS-1035 label from a bundle name (lowercase, digits and '-', starts with a letter)."""
    n = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    n = n if n[:1].isalpha() else f"m-{n}".rstrip("-")
    return n[:63].rstrip("-") or "model"


def _meta(name: str, opts: K8sOptions, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": labels(name)}
    if opts.namespace:
        meta["namespace"] = opts.namespace
    meta.update(extra)
    return meta


def labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "nbdeploy"}


def resources(opts: K8sOptions = K8sOptions()) -> dict[str, Any]:
    return {"requests": {"cpu": opts.cpu_request, "memory": opts.memory_request},
            "limits": {"cpu": opts.cpu_limit, "memory": opts.memory_limit}}


def probes(port: int = PORT) -> dict[str, Any]:
    """startup/readiness on the V2 ready endpoint, liveness on the V2 live endpoint."""
    def get(path: str) -> dict[str, Any]:
        return {"path": path, "port": port}

    return {
        # allows up to 60 s for the model to load before liveness applies
        "startupProbe": {"httpGet": get(READY), "periodSeconds": 2, "failureThreshold": 30,
                         "timeoutSeconds": 2},
        "readinessProbe": {"httpGet": get(READY), "periodSeconds": 5, "failureThreshold": 2,
                           "timeoutSeconds": 2},
        "livenessProbe": {"httpGet": get(LIVE), "periodSeconds": 10, "failureThreshold": 3,
                          "timeoutSeconds": 2},
    }


def container(name: str, image: str, opts: K8sOptions = K8sOptions()) -> dict[str, Any]:
    return {
        "name": "api",
        "image": image,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "resources": resources(opts),
        **probes(),
        "securityContext": {"allowPrivilegeEscalation": False},
    }


def deployment(name: str, image: str, opts: K8sOptions = K8sOptions()) -> dict[str, Any]:
    sel = {"app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, opts),
        "spec": {
            "replicas": opts.replicas,
            "selector": {"matchLabels": sel},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels(name)},
                "spec": {"containers": [container(name, image, opts)],
                         "terminationGracePeriodSeconds": 30},
            },
        },
    }


def complete_deployment(doc: dict[str, Any], opts: K8sOptions = K8sOptions()) -> dict[str, Any]:
    """A copy of a Deployment whose first container has resources and V2 probes where unset."""
    doc = copy.deepcopy(doc)
    containers = doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
    if containers:
        c = containers[0]
        port = next((p.get("containerPort") for p in c.get("ports") or []), PORT)
        c.setdefault("resources", resources(opts))
        for key, probe in probes(port).items():
            c.setdefault(key, probe)
    return doc


def service(name: str, opts: K8sOptions = K8sOptions()) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, opts),
        "spec": {"type": "ClusterIP", "selector": {"app.kubernetes.io/name": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
    }


def hpa(name: str, opts: K8sOptions = K8sOptions()) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(name, opts),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": opts.min_replicas,
            "maxReplicas": opts.max_replicas,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": opts.cpu_target_percent}}}],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                    {"type": "Percent", "value": 100, "periodSeconds": 15},
                    {"type": "Pods", "value": 4, "periodSeconds": 15}]},
                "scaleDown": {"stabilizationWindowSeconds": 300, "policies": [
                    {"type": "Percent", "value": 50, "periodSeconds": 60}]},
            },
        },
    }


def pod_disruption_budget(name: str, opts: K8sOptions = K8sOptions()) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name, opts),
        "spec": {"minAvailable": opts.min_available,
                 "selector": {"matchLabels": {"app.kubernetes.io/name": name}}},
    }


def inference_service(name: str, image: str, opts: K8sOptions = K8sOptions()) -> dict[str, Any]:
    """KServe ``InferenceService`` (serving.kserve.io/v1beta1) with a custom predictor.

    The image speaks the V2 protocol itself, so it runs as a custom container
    (``kserve-container``); ``canaryTrafficPercent`` sends that share of traffic to
    this revision while the previous one keeps the rest.
    """
    c = container(name, image, opts)
    c["name"] = "kserve-container"
    c["ports"] = [{"containerPort": PORT, "protocol": "TCP"}]
    c.pop("startupProbe")  # Knative allows readiness and liveness probes only
    predictor: dict[str, Any] = {
        "minReplicas": opts.min_replicas,
        "maxReplicas": opts.max_replicas,
        "scaleMetric": "cpu",
        "scaleTarget": opts.cpu_target_percent,
        "containers": [c],
    }
    if opts.canary_traffic_percent is not None:
        if not 0 <= opts.canary_traffic_percent <= 100:
            from nbdeploy.base.errors import BundleError

            raise BundleError(f"canary traffic percent {opts.canary_traffic_percent} "
                              "is not between 0 and 100")
        predictor["canaryTrafficPercent"] = opts.canary_traffic_percent
    meta = _meta(name, opts, annotations={"serving.kserve.io/deploymentMode": "Serverless"})
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": meta, "spec": {"predictor": predictor}}


def score_job(name: str, image: str, opts: K8sOptions = K8sOptions()) -> dict[str, Any]:
    """A Job that scores files with the bundle in its own image (``python -m nbdeploy_serve score``).

    Input and output are read from and written to ``/data`` (a PersistentVolumeClaim named
    ``NAME-score-data``; or give ``s3://``/``gs://`` URLs when the image has fsspec and the
    filesystem's package). Edit ``NBDEPLOY_SCORE_INPUT`` / ``NBDEPLOY_SCORE_OUTPUT``, then
    ``kubectl create -f k8s/jobs/score-job.yaml``. Kept out of ``kubectl apply -f k8s/``.
    The image needs pyarrow, which the API's lock leaves out (see docs/score.md).
    """
    c = {
        "name": "score",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", "nbdeploy_serve", "score", "/app", "$(NBDEPLOY_SCORE_INPUT)",
                    "-o", "$(NBDEPLOY_SCORE_OUTPUT)", "--chunk-rows", "$(NBDEPLOY_SCORE_CHUNK_ROWS)"],
        "env": [{"name": "NBDEPLOY_SCORE_INPUT", "value": "/data/input.parquet"},
                {"name": "NBDEPLOY_SCORE_OUTPUT", "value": "/data/scored.parquet"},
                {"name": "NBDEPLOY_SCORE_CHUNK_ROWS", "value": "200000"}],
        "resources": {"requests": {"cpu": "1", "memory": opts.memory_limit},
                      "limits": {"cpu": "1", "memory": "2Gi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": _meta(f"{name}-score", opts),
        "spec": {
            "backoffLimit": 2,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": {**labels(name), "app.kubernetes.io/component": "batch-score"}},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                        "fsGroup": 10001},
                    "containers": [c],
                    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": f"{name}-score-data"}},
                                {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def k8s_manifests(name: str, image: str, opts: K8sOptions = K8sOptions(), *,
                  kserve: bool | None = None) -> dict[str, dict[str, Any]]:
    """Every manifest by its path under ``k8s/``; the KServe variant when asked for or when a
    canary percentage is set."""
    name = k8s_name(name)
    out = {
        "deployment.yaml": deployment(name, image, opts),
        "service.yaml": service(name, opts),
        "hpa.yaml": hpa(name, opts),
        "pdb.yaml": pod_disruption_budget(name, opts),
        "jobs/score-job.yaml": score_job(name, image, opts),
    }
    if kserve or (kserve is None and opts.canary_traffic_percent is not None):
        out["kserve/inferenceservice.yaml"] = inference_service(name, image, opts)
    return out


def write_k8s_manifests(folder: str | Path, name: str, image: str,
                        opts: K8sOptions = K8sOptions(), *, kserve: bool | None = None,
                        overwrite: bool = False) -> list[Path]:
    """Write :func:`k8s_manifests` into ``folder``; existing files are kept unless ``overwrite``,
    except ``deployment.yaml``, which is completed (resources, probes) in place."""
    import yaml

    folder = Path(folder)
    written = []
    for rel, doc in k8s_manifests(name, image, opts, kserve=kserve).items():
        path = folder / rel
        if path.exists() and not overwrite:
            if rel != "deployment.yaml":
                continue
            doc = complete_deployment(yaml.safe_load(path.read_text()) or doc, opts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        written.append(path)
    return written


def write_bundle_k8s(bundle: str | Path, *, image: str | None = None,
                     opts: K8sOptions = K8sOptions(), kserve: bool | None = None) -> list[Path]:
    """Point ``BUNDLE/k8s/`` at ``image`` (e.g. the pushed registry reference) with ``opts``.

    The bundle's Deployment keeps its own settings (security context, volumes, sizing) and
    gets the image, the replica count and any missing probes; the HPA, PDB and KServe
    variant are written from ``opts``; the Service is kept. The manifest is sealed again
    with the new files' checksums (only when every other file still matches it), so the
    bundle still verifies and serves.
    """
    import json

    import yaml

    from nbdeploy.base.errors import BundleError

    root = Path(bundle)
    try:
        doc = json.loads((root / "nbdeploy.json").read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{root} is not a bundle: {exc}", hint="pass a bundle folder") from None
    name = k8s_name(str(doc.get("name") or root.name))
    image = image or f"{name}:{doc.get('version') or 'latest'}"
    folder = root / "k8s"
    docs = k8s_manifests(name, image, opts, kserve=kserve)
    dep_path = folder / "deployment.yaml"
    if dep_path.is_file():
        dep = yaml.safe_load(dep_path.read_text()) or {}
        containers = dep.get("spec", {}).get("template", {}).get("spec", {}).get("containers")
        if containers:
            containers[0]["image"] = image
            dep["spec"]["replicas"] = opts.replicas
            docs["deployment.yaml"] = complete_deployment(dep, opts)
    if (folder / "service.yaml").is_file():
        docs.pop("service.yaml")
    from nbdeploy.bundle.manifest import check_files, read_manifest, reseal

    rels = [f"k8s/{rel}" for rel in docs]
    untouched = {k: v for k, v in read_manifest(root)["files"].items() if k not in rels}
    problems = [p for p in check_files(root, {"files": untouched}) if p.split(":", 1)[0] not in rels]
    if problems:  # before writing anything: never seal someone else's change
        raise BundleError(f"{root} does not match its manifest ({'; '.join(problems[:3])}): not changing it",
                          hint="rebuild the bundle with `nbdeploy build`, then run `nbdeploy k8s` again")
    written = []
    for rel, doc in docs.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        written.append(path)
    reseal(root, rels)
    return written
