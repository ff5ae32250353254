"""``models:/NAME@ALIAS`` and ``models:/NAME/VERSION``: from the registry to a sealed bundle folder.

The build tagged each version with its manifest's sha256 and logged the sealed bundle as the
run's artifact ``bundle`` (:mod:`nbdeploy.bundle.registry`). A version resolves to the first
folder whose manifest has that very sha256: the folder it was built into, when it still holds
that build; else a copy downloaded before into ``.nbdeploy/models/NAME/VERSION``; else a fresh
download of the artifact. Every file is then checked against the manifest, so what is served
is what the registry recorded, byte for byte.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nbdeploy.base.errors import RegistryError
from nbdeploy.bundle.manifest import MANIFEST, check_files, read_manifest
from nbdeploy.bundle.registry import BUNDLE_ARTIFACT, TAG_BUNDLE_PATH, TAG_MANIFEST
from nbdeploy.capture.hashing import sha256_file
from nbdeploy.release.store import check_alias, open_registry
from nbdeploy.release.versions import cache_dir

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[^/@]+))$")


Source = Literal["build folder", "download cache", "downloaded"]


@dataclass
class ResolvedBundle:
    uri: str
    name: str
    version: str
    bundle: Path
    source: Source

    def text(self) -> str:
        return f"{self.uri} is {self.name} version {self.version}: {self.bundle} ({self.source}, checksums match)"

    def to_dict(self) -> dict:
        return {"uri": self.uri, "name": self.name, "version": self.version, "bundle": str(self.bundle),
                "source": self.source}


def is_models_uri(text: str | Path) -> bool:
    return str(text).startswith("models:/")


def parse(uri: str) -> tuple[str, str]:
    """(name, version number or alias) of a ``models:/`` URI."""
    m = _URI.match(uri)
    if m is None:
        raise RegistryError(f"{uri!r} is not a model URI",
                            hint="write models:/NAME@ALIAS (e.g. models:/churn@champion) or models:/NAME/VERSION")
    ref = m["version"] or check_alias(m["alias"])
    return m["name"], ref


def _digest(folder: Path) -> str | None:
    try:
        return sha256_file(folder / MANIFEST)[0]
    except OSError:
        return None


def _download(registry: Any, mv: Any, dest: Path) -> Path:
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.download-", dir=dest.parent))
    try:
        got = Path(download_artifacts(run_id=mv.run_id, artifact_path=BUNDLE_ARTIFACT, dst_path=str(work),
                                      tracking_uri=registry.uri))
        if dest.exists():
            shutil.rmtree(dest)
        got.rename(dest)
    except MlflowException as exc:
        raise RegistryError(f"cannot download the bundle of {mv.name} version {mv.version} from "
                            f"{registry.shown}: {exc.message}",
                            hint="check that the registry's artifact store is reachable") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def resolve(uri: str, project_dir: str | Path | None = None) -> ResolvedBundle:
    """The sealed bundle folder of ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``."""
    name, ref = parse(uri)
    registry = open_registry(project_dir)
    mv = registry.version(name, ref)
    tags = mv.tags or {}
    digest = tags.get(TAG_MANIFEST)
    if not digest:
        raise RegistryError(f"{name} version {mv.version} has no bundle attached in {registry.shown} "
                            "(it was registered before nbdeploy attached bundles)",
                            hint="rebuild it with `nbdeploy build NOTEBOOK`")
    cached = cache_dir(registry, name) / str(mv.version)
    candidates: list[tuple[Path, Source]] = [(cached, "download cache")]
    if tags.get(TAG_BUNDLE_PATH):
        candidates.insert(0, (Path(tags[TAG_BUNDLE_PATH]), "build folder"))
    found = next(((p, how) for p, how in candidates if _digest(p) == digest), None)
    folder, source = found if found else (_download(registry, mv, cached), "downloaded")
    if _digest(folder) != digest:
        raise RegistryError(f"the bundle artifact of {name} version {mv.version} does not have the manifest "
                            f"the registry recorded (sha256 {digest[:12]})",
                            hint="the artifact store was changed after the build: rebuild the version")
    problems = check_files(folder, read_manifest(folder))
    if problems:
        raise RegistryError(f"the bundle of {name} version {mv.version} in {folder} does not match its "
                            f"manifest: {'; '.join(problems[:5])}",
                            hint="rebuild the version, or remove that folder so the registry's copy "
                                 "is downloaded again")
    return ResolvedBundle(uri, name, str(mv.version), folder, source)

