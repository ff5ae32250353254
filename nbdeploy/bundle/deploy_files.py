"""The bundle's deployment recipes: Dockerfile, .dockerignore and Kubernetes manifests.

The image installs ``requirements.lock`` only (``--no-deps``: nothing the lock
does not name can sneak in), runs as a non-root user, and starts the bundle's
own copy of the server (``python -m nbdeploy_serve``), the same command
``nbdeploy verify`` runs in its lock-only virtual environment.
"""

from __future__ import annotations

import re

import yaml

PORT = 8080
UID = 10001

DOCKERIGNORE = """\
# the build context is the bundle; keep local clutter out of the image
**/__pycache__
**/*.pyc
.pytest_cache
.venv
*.jsonl
.git
"""


_INSTALL = "RUN python -m pip install --no-deps -r requirements.lock \\\n"
#: no index: every wheel comes from the bundle's wheelhouse/ (the seal lists each one)
_INSTALL_WHEELHOUSE = ("RUN --mount=type=bind,source=wheelhouse,target=/tmp/wheelhouse \\\n"
                       "    python -m pip install --no-index --find-links /tmp/wheelhouse --no-deps "
                       "-r requirements.lock \\\n")

#: the label of that first stage's image: only an input of the final one, which ``nbdeploy image``
#: removes after the build (:func:`nbdeploy.container.image.build_image`)
STAGE_LABEL = "nbdeploy.stage"
#: the bundle without its wheelhouse: the wheels are installed from it above, not shipped twice
#: (the churn example's are 79 MB); the seal lets a wheelhouse absent as a whole pass at start
_BUNDLE_STAGE = ("FROM ${BASE} AS bundle\n"
                 f"LABEL {STAGE_LABEL}=bundle\n"
                 "COPY . /app\n"
                 "RUN rm -rf /app/wheelhouse\n\n")


def k8s_name(name: str) -> str:
    """A DNS-1123 label (what Kubernetes accepts as a resource name)."""
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63] or "model"


def dockerfile(name: str, version: str, python_version: str, *, wheelhouse: bool = False) -> str:
    """The recipe; with ``wheelhouse`` the lock is installed from the bundle's own wheels
    (``wheelhouse/``, bind-mounted for that step only) with no package index at all, and the
    bundle reaches ``/app`` through a first stage that leaves the wheelhouse out."""
    return f"""\
# {name} v{version}: the model API of an nbdeploy handoff bundle.
#   podman build -t {k8s_name(name)}:{version} .      (or docker build)
#   podman run --rm -p {PORT}:{PORT} {k8s_name(name)}:{version}
# BASE defaults to the official slim image of the Python the model was trained with.
ARG BASE=docker.io/library/python:{python_version}-slim
{_BUNDLE_STAGE if wheelhouse else ""}FROM ${{BASE}}

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1 \\
    NBDEPLOY_HOST=0.0.0.0 \\
    NBDEPLOY_PORT={PORT} \\
    NBDEPLOY_LOG_PATH=/app/logs/requests.jsonl \\
    NBDEPLOY_CACHE_DIR=/opt/nbdeploy-cache

WORKDIR /app
# PIP_CERT: a CA bundle path for pip during the build only (`nbdeploy image --ca-bundle`)
ARG PIP_CERT
# a virtual environment, so the same steps work on the official python image and on a
# Debian python3 base (`nbdeploy base-image`; PEP 668 forbids pip into its system Python)
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# the lock only, without resolving anything else: what verify proved is what runs
COPY requirements.lock ./
# (test suites shipped inside wheels are never imported by the API: dropped to keep the image small)
{_INSTALL_WHEELHOUSE if wheelhouse else _INSTALL}    && find /opt/venv/lib -depth -type d -name tests -prune -exec rm -rf {{}} +

RUN groupadd --gid {UID} app \\
    && useradd --uid {UID} --gid {UID} --no-create-home --home-dir /app --shell /usr/sbin/nologin app \\
    && mkdir -p /app/logs && chown {UID}:{UID} /app/logs
{"COPY --from=bundle /app /app" if wheelhouse else "COPY . /app"}
# load the model once, here: proves it loads and predicts in this image, fills the start-up
# cache (skops' trusted types) and writes the bytecode of every module the API imports that
# has none (a Debian base ships no .pyc), so a container's first request comes sooner
RUN python -m nbdeploy_serve /app --check --compile --log-path ""
USER {UID}:{UID}

EXPOSE {PORT}
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \\
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{PORT}/health', timeout=4).status == 200 else 1)"]
CMD ["python", "-m", "nbdeploy_serve", "/app", "--host", "0.0.0.0", "--port", "{PORT}"]
"""


def _labels(name: str, version: str) -> dict:
    return {"app.kubernetes.io/name": k8s_name(name), "app.kubernetes.io/version": str(version),
            "app.kubernetes.io/managed-by": "nbdeploy"}


def deployment(name: str, version: str, model_bytes: int) -> dict:
    # the model is held in memory once per worker; leave room for pandas and requests
    mem_mi = max(512, 256 + 4 * (model_bytes >> 20))
    labels = _labels(name, version)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": k8s_name(name), "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": k8s_name(name)}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
                                        "fsGroup": UID},
                    "containers": [{
                        "name": "api",
                        "image": f"{k8s_name(name)}:{version}",
                        "imagePullPolicy": "IfNotPresent",
                        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
                        "env": [{"name": "NBDEPLOY_LOG_PATH", "value": "/app/logs/requests.jsonl"}],
                        "resources": {"requests": {"cpu": "250m", "memory": f"{mem_mi}Mi"},
                                      "limits": {"cpu": "1", "memory": f"{2 * mem_mi}Mi"}},
                        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"},
                                           "initialDelaySeconds": 5, "periodSeconds": 10,
                                           "timeoutSeconds": 3, "failureThreshold": 3},
                        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"},
                                          "initialDelaySeconds": 20, "periodSeconds": 20,
                                          "timeoutSeconds": 3, "failureThreshold": 3},
                        "securityContext": {"allowPrivilegeEscalation": False,
                                            "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "logs", "mountPath": "/app/logs"},
                                         {"name": "tmp", "mountPath": "/tmp"}],
                    }],
                    "volumes": [{"name": "logs", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def service(name: str, version: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": k8s_name(name), "labels": _labels(name, version)},
        "spec": {"type": "ClusterIP",
                 "selector": {"app.kubernetes.io/name": k8s_name(name)},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
    }


def autoscaler(name: str, version: str) -> dict:
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": k8s_name(name), "labels": _labels(name, version)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": k8s_name(name)},
            "minReplicas": 2, "maxReplicas": 10,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}],
        },
    }


def k8s_files(name: str, version: str, model_bytes: int) -> dict[str, str]:
    docs = {"deployment.yaml": deployment(name, version, model_bytes),
            "service.yaml": service(name, version),
            "hpa.yaml": autoscaler(name, version)}
    # completed for spiky load by nbdeploy.bundle.k8s: a startup probe, HPA scaling
    # behaviour, a PodDisruptionBudget, and the optional KServe variant (k8s/kserve/, not
    # applied by `kubectl apply -f k8s/`)
    from nbdeploy.bundle import k8s as spiky

    n, image = k8s_name(name), f"{k8s_name(name)}:{version}"
    docs["deployment.yaml"] = spiky.complete_deployment(docs["deployment.yaml"])
    docs["hpa.yaml"]["spec"]["behavior"] = spiky.hpa(n)["spec"]["behavior"]
    docs["pdb.yaml"] = spiky.pod_disruption_budget(n)
    docs["kserve/inferenceservice.yaml"] = spiky.inference_service(n, image)
    docs["jobs/score-job.yaml"] = spiky.score_job(n, image)  # batch scoring from the image
    return {f: yaml.safe_dump(d, sort_keys=False) for f, d in docs.items()}
