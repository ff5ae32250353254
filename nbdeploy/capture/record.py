"""Assemble the capture record: the JSON document ``nbdeploy capture --json`` prints.

Top-level keys (``format`` = ``nbdeploy.capture/2``; ``/1`` records, whose lineage
entries carry a bare ``sha256`` instead of ``hash``, are still read):

``notebook``      path, name, sha256 of the notebook file
``session``       id, mode (interactive | job), started, status
``dependencies``  [{name, version, found_by: [...], modules: [...], cells: [...]}]
``requirements``  ["name==version", ...] (the direct dependencies)
``lock``          [{name, version, required_by}] (transitive, from installed metadata)
``project_modules`` [{module, path, relative_path, sha256}] local code to ship
``pip_installs``  [{requirement, cell, installed}]
``unresolved``    [{module, reason, cells}]
``environment``   see :mod:`.environment`
``lineage``       [{path, relative_path, role, kind, function, hash ("blake3:<hex>"), bytes, rows,
                    columns: [{name, dtype}], cells, query, connection, profile}]
``metrics``, ``model``, ``parameters``, ``updated``
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict

from packaging.requirements import InvalidRequirement, Requirement

from nbdeploy._version import __version__
from nbdeploy.capture.deps import ImportSite, canonical, module_root, project_files, resolve
from nbdeploy.capture.hashing import sha256_file
from nbdeploy.capture.lock import Lock, build_lock

if TYPE_CHECKING:
    from nbdeploy.capture.deps import Resolution
    from nbdeploy.capture.lineage import LineageRecorder


class CaptureSession(Protocol):
    """What the record is assembled from: the live session of :mod:`.session` (which
    imports this module, so the record names only the attributes it reads)."""

    id: str
    mode: SessionMode
    status: SessionStatus
    started: str
    notebook: Path
    project_dir: Path
    sites: list[ImportSite]
    resolutions: dict[str, Resolution]
    failed_imports: dict[str, int | None]
    metrics: dict[str, dict]
    model: dict | None
    parameters: dict[str, Any]
    params_cell: int | None
    environment: dict
    lineage: LineageRecorder
    lock_cache: tuple[frozenset, Any] | None

    def scan_file(self, path: Path, found_by: str) -> None: ...

FORMAT = "nbdeploy.capture/2"

SessionMode = Literal["interactive", "job"]
SessionStatus = Literal["running", "completed", "failed"]


class NotebookRef(TypedDict):
    path: str
    name: str
    sha256: str | None


class SessionInfo(TypedDict):
    id: str
    mode: SessionMode
    started: str
    status: SessionStatus


class CaptureRecord(TypedDict):
    """The capture record (``.nbdeploy/<notebook>/capture.json``): what the later stages read."""

    format: str
    nbdeploy_version: str
    notebook: NotebookRef
    session: SessionInfo
    updated: str
    dependencies: list[dict[str, Any]]  # name, version, found_by, modules, cells
    requirements: list[str]
    lock: list[dict[str, Any]]
    lock_missing: list[dict[str, Any]]
    project_modules: list[dict[str, Any]]  # module, path, relative_path, sha256
    pip_installs: list[dict[str, Any]]
    unresolved: list[dict[str, Any]]  # module, reason, cells
    environment: dict[str, Any]
    lineage: list[dict[str, Any]]  # LineageEntry.to_dict()
    metrics: dict[str, dict[str, Any]]
    model: dict[str, Any] | None
    parameters: dict[str, Any]
    parameters_cell: int | None


def _resolve_all(session: CaptureSession) -> list[ImportSite]:
    """Resolve every import site, following local helper modules until nothing new appears."""
    done = 0
    while True:
        sites = list(session.sites)
        for site in sites[done:]:
            if site.module not in session.resolutions:
                session.resolutions[site.module] = resolve(site.module, session.project_dir)
            res = session.resolutions[site.module]
            if res.kind == "project" and res.path:
                root = module_root(res.path)
                for p in project_files(res.path):  # a package ships whole: every file's imports count
                    session.scan_file(p, found_by=f"helper {p.relative_to(root).as_posix()}")
        done = len(sites)
        if len(session.sites) == done:
            return sites


def _pip_dependency(req_text: str) -> tuple[str | None, set[str], str | None]:
    try:
        req = Requirement(req_text)
    except InvalidRequirement:
        return None, set(), None
    try:
        dist = md.distribution(req.name)
    except md.PackageNotFoundError:
        return req.name, set(req.extras), None
    return dist.metadata["Name"], set(req.extras), dist.version


def assemble(session: CaptureSession, sites: list[ImportSite], pip: list[dict]) -> tuple[CaptureRecord, Lock]:
    sites = _resolve_all(session)
    deps: dict[str, dict] = {}
    extras: dict[str, set[str]] = {}
    project: dict[str, dict] = {}
    unresolved: dict[str, dict] = {}

    def add_dep(name: str, version: str, how: str, module: str | None, cell: int | None) -> dict:
        d = deps.setdefault(canonical(name), {"name": name, "version": version, "found_by": [],
                                               "modules": [], "cells": []})
        if how not in d["found_by"]:
            d["found_by"].append(how)
        if module and module.split(".")[0] not in d["modules"]:
            d["modules"].append(module.split(".")[0])
        if cell is not None and cell not in d["cells"]:
            d["cells"].append(cell)
        return d

    for site in sites:
        res = session.resolutions[site.module]
        if res.kind == "distribution":
            add_dep(res.distribution or "", res.version or "", site.found_by, site.module, site.cell)
        elif res.kind == "project" and res.path:
            top = site.module.split(".")[0]
            if top not in project:
                p = Path(res.path)
                rel = p.relative_to(module_root(p)).as_posix()  # as imported: from its sys.path folder
                digest = sha256_file(p)[0] if p.is_file() else None
                project[top] = {"module": top, "path": str(p), "relative_path": rel, "sha256": digest}
        elif res.kind == "unresolved":
            top = site.module.split(".")[0]
            u = unresolved.setdefault(top, {"module": top, "reason": res.reason, "cells": []})
            if site.cell is not None and site.cell not in u["cells"]:
                u["cells"].append(site.cell)
    for name, cell in session.failed_imports.items():
        top = name.split(".")[0]
        if top not in unresolved:
            unresolved[top] = {"module": top, "cells": [cell] if cell is not None else [],
                               "reason": f"module {top!r} is imported but not installed in this kernel"}
    pip_records = []
    for item in pip:
        dist_name, req_extras, version = _pip_dependency(item["requirement"])
        pip_records.append({**item, "installed": version})
        if dist_name and version:
            add_dep(dist_name, version, "%pip install", None, item["cell"])
            extras.setdefault(canonical(dist_name), set()).update(req_extras)
        elif dist_name:
            unresolved.setdefault(dist_name, {"module": dist_name, "cells": [item["cell"]], "reason":
                f"`pip install {item['requirement']}` ran but {dist_name} is not installed in this kernel"})
    direct = {d["name"]: extras.get(key, set()) for key, d in deps.items()}
    cache_key = frozenset((k, frozenset(v)) for k, v in direct.items())
    if session.lock_cache is None or session.lock_cache[0] != cache_key:
        session.lock_cache = (cache_key, build_lock(direct))
    lock = session.lock_cache[1]
    nb = session.notebook
    record: CaptureRecord = {
        "format": FORMAT,
        "nbdeploy_version": __version__,
        "notebook": {"path": str(nb), "name": nb.name,
                     "sha256": sha256_file(nb)[0] if nb.is_file() else None},
        "session": {"id": session.id, "mode": session.mode, "started": session.started,
                    "status": session.status},
        "updated": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "dependencies": sorted(deps.values(), key=lambda d: d["name"].lower()),
        "requirements": sorted((f"{d['name']}=={d['version']}" for d in deps.values()), key=str.lower),
        "lock": lock.to_list(),
        "lock_missing": lock.missing,
        "project_modules": sorted(project.values(), key=lambda p: p["module"]),
        "pip_installs": pip_records,
        "unresolved": sorted(unresolved.values(), key=lambda u: u["module"]),
        "environment": session.environment,
        "lineage": session.lineage.snapshot(),
        "metrics": dict(session.metrics),
        "model": session.model,
        "parameters": session.parameters,
        "parameters_cell": session.params_cell,
    }
    return record, lock


def summary(record: dict) -> dict[str, Any]:
    """Counts for a one-line status."""
    return {
        "dependencies": len(record.get("dependencies", [])),
        "locked": len(record.get("lock", [])),
        "unresolved": len(record.get("unresolved", [])),
        "reads": sum(1 for e in record.get("lineage", []) if e["role"] == "read"),
        "writes": sum(1 for e in record.get("lineage", []) if e["role"] == "write"),
    }
