"""Options for building and running bundle images, from arguments or the environment.

Each option has an environment variable, so a host's needs (a proxy's CA bundle, a
network mode, a runtime flag) are set once, e.g. in CI or a shell profile:

=====================  ==========================  =========================================
option                 environment                 meaning
=====================  ==========================  =========================================
``engine``             ``NBDEPLOY_ENGINE``         docker, podman or buildah (else detected)
``base``               ``NBDEPLOY_BASE_IMAGE``     ``--build-arg BASE=`` for the Dockerfile
``ca_bundle``          ``NBDEPLOY_CA_BUNDLE``      host CA file mounted read-only in the build
``build_flags``        ``NBDEPLOY_BUILD_FLAGS``    extra flags for ``build`` (shell words)
``run_flags``          ``NBDEPLOY_RUN_FLAGS``      extra flags for ``run`` (shell words)
=====================  ==========================  =========================================
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nbdeploy.base.errors import ContainerError

#: where the CA bundle is mounted in the build; Debian and the python images read it here
CA_TARGET = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(frozen=True)
class ContainerOptions:
    engine: str | None = None
    base: str | None = None
    tag: str | None = None
    ca_bundle: Path | None = None
    #: also pass ``PIP_CERT`` (for bases whose pip reads certifi's bundle, not the system's)
    pip_cert: bool = True
    build_flags: tuple[str, ...] = ()
    run_flags: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)  # extra -e for the container

    @classmethod
    def from_env(cls, **given: object) -> ContainerOptions:
        """Options from ``NBDEPLOY_*`` variables, overridden by ``given`` values that are set."""
        e = os.environ
        ca = e.get("NBDEPLOY_CA_BUNDLE")
        opts = cls(
            engine=e.get("NBDEPLOY_ENGINE") or None,
            base=e.get("NBDEPLOY_BASE_IMAGE") or None,
            ca_bundle=Path(ca) if ca else None,
            build_flags=tuple(shlex.split(e.get("NBDEPLOY_BUILD_FLAGS", ""))),
            run_flags=tuple(shlex.split(e.get("NBDEPLOY_RUN_FLAGS", ""))),
        )
        # the given options, each of its field's type (flags: any iterable of strings)
        set_: dict[str, Any] = {k: v for k, v in given.items() if v not in (None, (), [])}
        for k in ("build_flags", "run_flags"):
            if k in set_:
                set_[k] = getattr(opts, k) + tuple(set_[k])
        if "ca_bundle" in set_:
            set_["ca_bundle"] = Path(str(set_["ca_bundle"]))
        return replace(opts, **set_)


def add_arguments(p: argparse.ArgumentParser, *, tag: bool = True) -> None:
    """The shared build/run options, for the CLI's ``image`` and ``verify --container``."""
    g = p.add_argument_group("container options (each also read from NBDEPLOY_* variables)")
    g.add_argument("--engine", choices=["docker", "podman", "buildah"],
                   help="container engine (default: $NBDEPLOY_ENGINE, else the first that works "
                        "of docker, podman, buildah)")
    g.add_argument("--base", metavar="IMAGE",
                   help="base image for the Dockerfile's BASE (default: $NBDEPLOY_BASE_IMAGE, "
                        "else the Dockerfile's python:X.Y-slim)")
    if tag:
        g.add_argument("--tag", help="image tag (default: localhost/nbdeploy-NAME:VERSION)")
    g.add_argument("--ca-bundle", metavar="FILE",
                   help="host CA bundle mounted read-only into build steps, with PIP_CERT "
                        "(default: $NBDEPLOY_CA_BUNDLE); nothing is written into the image")
    g.add_argument("--build-flag", action="append", default=[], metavar="FLAG",
                   help="extra flag for the engine's build, e.g. --build-flag=--network=host "
                        "(repeatable; also $NBDEPLOY_BUILD_FLAGS)")
    g.add_argument("--run-flag", action="append", default=[], metavar="FLAG",
                   help="extra flag for the engine's run (repeatable; also $NBDEPLOY_RUN_FLAGS)")


def from_args(args: argparse.Namespace) -> ContainerOptions:
    return ContainerOptions.from_env(
        engine=args.engine, base=args.base, tag=getattr(args, "tag", None),
        ca_bundle=args.ca_bundle,
        build_flags=tuple(f for flag in args.build_flag for f in shlex.split(flag)),
        run_flags=tuple(f for flag in args.run_flag for f in shlex.split(flag)))


# -- the base `nbdeploy base-image` builds (named here: image.py falls back to it) --
def default_tag(python: str, suite: str) -> str:
    return f"localhost/nbdeploy-python:{python}-{suite}"


def os_codename(root: Path = Path("/")) -> str:
    """The Debian/Ubuntu release codename of the host (``bookworm``)."""
    try:
        text = (root / "etc/os-release").read_text()
    except OSError:
        text = ""
    m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?$", text, re.M)
    if not m:
        raise ContainerError("cannot tell the Debian release of this host (no VERSION_CODENAME "
                             "in /etc/os-release)", hint="pass --suite, e.g. --suite bookworm")
    return m.group(1)
