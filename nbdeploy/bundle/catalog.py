"""The bundles a folder holds, and what ``nbdeploy verify`` last said of each.

A verify outcome is kept beside the bundle (``.nbdeploy/verify/<bundle>.json``), keyed by
the hash of the bundle's manifest: a bundle rebuilt after it was verified is not verified.
The readiness checklist, the panel's bundle list and ``promote`` read it from here. A copy
is kept by that hash too (``.nbdeploy/verify/by-manifest/<sha256>.json``), so ``promote``
still finds the outcome of a version whose folder was rebuilt since (:func:`verify_by_manifest`).
"""

from __future__ import annotations

import json
from pathlib import Path


def load_json(path: Path) -> dict | None:
    """A JSON object from ``path``, or None when the file is missing, unreadable or not an object."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


MANIFEST = "nbdeploy.json"  # a bundle's manifest (see nbdeploy.bundle.manifest)


def find_bundles(folder: str | Path, depth: int = 2) -> list[dict]:
    """Bundles (folders with an ``nbdeploy.json`` manifest) under ``folder``, newest first."""
    folder = Path(folder)
    found = []
    for level in range(1, depth + 1):
        for m in folder.glob("/".join(["*"] * level) + "/" + MANIFEST):
            if any(part.startswith(".") for part in m.relative_to(folder).parts):
                continue
            doc = load_json(m)
            if doc is None or not str(doc.get("format", "")).startswith("nbdeploy.bundle/"):
                continue
            found.append({"path": str(m.parent), "name": doc.get("name"),
                          "version": str(doc.get("version", "")), "created": doc.get("created"),
                          "notebook": (doc.get("source") or {}).get("path"),
                          "verify": verify_result(m.parent)})
    return sorted(found, key=lambda b: b.get("created") or "", reverse=True)


def _verify_path(bundle: Path) -> Path:
    from nbdeploy.base.state import STATE_DIRNAME

    return bundle.parent / STATE_DIRNAME / "verify" / f"{bundle.name}.json"


def _manifest_digest(bundle: Path) -> str | None:
    from nbdeploy.capture.hashing import sha256_file

    try:
        return sha256_file(bundle / MANIFEST)[0]
    except OSError:
        return None


def record_verify(bundle: str | Path, ok: bool, summary: str) -> Path:
    """Remember the outcome of verifying ``bundle`` (beside it, in ``.nbdeploy/verify/``)."""
    import datetime as dt

    from nbdeploy.base.state import atomic_write_json

    bundle = Path(bundle).resolve()
    path = _verify_path(bundle)
    digest = _manifest_digest(bundle)
    doc = {"bundle": str(bundle), "ok": ok, "summary": summary, "manifest_sha256": digest,
           "verified": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    atomic_write_json(path, doc)
    if digest is not None:
        atomic_write_json(path.parent / _BY_MANIFEST / f"{digest}.json", doc)
    return path


_BY_MANIFEST = "by-manifest"


def verify_by_manifest(folder: str | Path, manifest_sha256: str) -> dict | None:
    """The last verify outcome of a bundle whose manifest had this sha256, verified in ``folder``."""
    from nbdeploy.base.state import STATE_DIRNAME

    if not all(c in "0123456789abcdef" for c in manifest_sha256) or len(manifest_sha256) != 64:
        return None
    doc = load_json(Path(folder) / STATE_DIRNAME / "verify" / _BY_MANIFEST / f"{manifest_sha256}.json")
    return doc if doc is not None and doc.get("manifest_sha256") == manifest_sha256 else None


def verify_result(bundle: str | Path) -> dict | None:
    """The last verify outcome of this very bundle (same manifest), or None."""
    bundle = Path(bundle).resolve()
    doc = load_json(_verify_path(bundle))
    if doc is None or doc.get("manifest_sha256") != _manifest_digest(bundle):
        return None
    return doc
