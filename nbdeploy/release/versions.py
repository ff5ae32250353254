"""``nbdeploy versions NAME``: every registered version, with what it was built from.

A version's facts come from the registry alone (the tags the build wrote, see
:mod:`nbdeploy.bundle.registry`): aliases, created, the source notebook and its sha256,
parameters, metrics, training data and its hash, the bundle's manifest sha256. Whether
that bundle passed ``verify`` comes from the verify records kept beside bundles
(:func:`nbdeploy.bundle.catalog.verify_by_manifest`).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nbdeploy.base.state import STATE_DIRNAME
from nbdeploy.base.tables import View
from nbdeploy.bundle.registry import TAG_BUNDLE_ARTIFACT, TAG_BUNDLE_PATH, TAG_MANIFEST, unfinished
from nbdeploy.release.store import Registry, open_registry


@dataclass
class VersionInfo:
    name: str
    version: str
    aliases: list[str]
    created: str
    notebook: str
    notebook_sha256: str
    parameters: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    training_data: list[dict] = field(default_factory=list)  # [{path, hash, rows}]
    manifest_sha256: str = ""
    bundle_path: str = ""
    bundle_artifact: str = ""
    verify: dict | None = None  # the last verify outcome of this bundle, if one is on record
    unfinished: bool = False  # registered by a build that has not attached its bundle (running or killed)

    def verified(self) -> str:
        if self.unfinished:
            return "build unfinished (no bundle)"
        if self.verify is None:
            return "not verified"
        return "verified" if self.verify.get("ok") else f"verify failed: {self.verify.get('summary')}"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VersionList:
    name: str
    registry: str
    versions: list[VersionInfo]

    def view(self) -> View:
        def kv(d: dict) -> str:
            return ", ".join(f"{k}={v}" for k, v in d.items())

        rows = [[v.version, ",".join(v.aliases), v.created, f"{v.notebook} {v.notebook_sha256[:12]}",
                 kv(v.parameters), kv(v.metrics),
                 " ".join(f"{d.get('path')} {str(d.get('hash') or '')[:19]}" for d in v.training_data),
                 v.verified()] for v in self.versions]
        return View([(f"{self.name} in {self.registry}",
                      ["version", "alias", "created (UTC)", "notebook sha256", "parameters", "metrics",
                       "training data", "verify"], rows, set())])

    def text(self) -> str:
        return self.view().text()

    def to_dict(self) -> dict:
        return {"name": self.name, "registry": self.registry, "versions": [v.to_dict() for v in self.versions]}


def _json_tag(tags: dict, key: str) -> Any:
    try:
        return json.loads(tags.get(key) or "null")
    except ValueError:
        return None


def cache_dir(registry: Registry, name: str) -> Path:
    """Where bundles downloaded from the registry are kept: ``.nbdeploy/models/NAME/VERSION``."""
    return registry.project_dir / STATE_DIRNAME / "models" / name


def verify_record(registry: Registry, mv: Any) -> dict | None:
    """The last verify outcome of this version's bundle (by its manifest sha256), or None."""
    from nbdeploy.bundle.catalog import verify_by_manifest, verify_result

    tags = mv.tags or {}
    digest = tags.get(TAG_MANIFEST)
    if not digest:
        return None
    folders = [cache_dir(registry, mv.name)]
    if tags.get(TAG_BUNDLE_PATH):
        folders.insert(0, Path(tags[TAG_BUNDLE_PATH]).parent)
    found = [doc for f in folders if (doc := verify_by_manifest(f, digest)) is not None]
    if tags.get(TAG_BUNDLE_PATH):  # a record written before outcomes were also kept by hash
        last = verify_result(tags[TAG_BUNDLE_PATH])
        found += [last] if last is not None and last.get("manifest_sha256") == digest else []
    return max(found, key=lambda d: d.get("verified") or "") if found else None


def version_info(registry: Registry, mv: Any, aliases: dict[str, str]) -> VersionInfo:
    tags = mv.tags or {}
    data = _json_tag(tags, "nbdeploy.training_data")
    training = [data] if isinstance(data, dict) and "truncated" not in data else (
        data if isinstance(data, list) else [])
    created = dt.datetime.fromtimestamp(mv.creation_timestamp / 1000, dt.UTC)
    return VersionInfo(
        name=mv.name, version=str(mv.version),
        aliases=sorted(a for a, v in aliases.items() if str(v) == str(mv.version)),
        created=created.isoformat(timespec="seconds").replace("+00:00", "Z"),
        notebook=tags.get("nbdeploy.notebook", ""), notebook_sha256=tags.get("nbdeploy.notebook_sha256", ""),
        parameters=_json_tag(tags, "nbdeploy.parameters") or {},
        metrics=_json_tag(tags, "nbdeploy.metrics") or {},
        training_data=[{"path": d.get("relative_path") or d.get("path"), "hash": d.get("hash"),
                        "rows": d.get("rows")} for d in training if isinstance(d, dict)],
        manifest_sha256=tags.get(TAG_MANIFEST, ""), bundle_path=tags.get(TAG_BUNDLE_PATH, ""),
        bundle_artifact=tags.get(TAG_BUNDLE_ARTIFACT, ""), verify=verify_record(registry, mv),
        unfinished=unfinished(tags))


def list_versions(name: str, project_dir: str | Path | None = None) -> VersionList:
    """Every version of ``name``, newest first, with its aliases and what it was built from."""
    registry = open_registry(project_dir)
    aliases = registry.aliases(name)
    return VersionList(name, registry.shown, [version_info(registry, mv, aliases)
                                             for mv in registry.versions(name)])
