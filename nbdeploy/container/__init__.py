"""Containers: build a bundle's image, run it, test it, and the host set-up that needs.

    detect_engine(preferred)              docker, podman or buildah, the first that works
    build_image(bundle, opts)             bundle/Dockerfile -> ImageResult (tag, digest, size)
    verify_container(bundle, opts)        the bundle's tests against its running container
    build_base_image(tag)                 a Python base image from the host's Debian mirror
    check_host_config / apply_host_config /etc/containers/containers.conf for this host
    k8s_manifests(name, image, K8sOptions) Deployment, Service, HPA, PDB, KServe variant

Importing this package is cheap; each function loads its module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbdeploy.bundle.k8s import K8sOptions, k8s_manifests, write_k8s_manifests
    from nbdeploy.container.base_image import BaseImage, build_base_image
    from nbdeploy.container.config import HostSettings, apply_host_config, check_host_config
    from nbdeploy.container.engine import Engine, detect_engine
    from nbdeploy.container.image import ImageResult, build_image
    from nbdeploy.container.options import ContainerOptions
    from nbdeploy.container.verify import ContainerVerifyResult, verify_container

_WHERE = {
    "BaseImage": "base_image", "build_base_image": "base_image",
    "HostSettings": "config", "apply_host_config": "config", "check_host_config": "config",
    "Engine": "engine", "detect_engine": "engine",
    "ImageResult": "image", "build_image": "image",
    "K8sOptions": "k8s", "k8s_manifests": "k8s", "write_k8s_manifests": "k8s",
    "ContainerOptions": "options",
    "ContainerVerifyResult": "verify", "verify_container": "verify",
}
__all__ = [
    "BaseImage", "ContainerOptions", "ContainerVerifyResult", "Engine", "HostSettings",
    "ImageResult", "K8sOptions", "apply_host_config", "build_base_image", "build_image",
    "check_host_config", "detect_engine", "k8s_manifests", "verify_container",
    "write_k8s_manifests",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
