"""The bundle manifest (``nbdeploy.json``) and its checksums.

``files`` maps every file of the bundle (POSIX relative path) to its sha256;
the manifest itself is the only file not listed. :func:`check_files` is the
first step of ``nbdeploy verify``: a changed, missing or extra file is named.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..capture.hashing import sha256_file
from ..errors import VerifyError

MANIFEST = "nbdeploy.json"
FORMAT = "nbdeploy.bundle/1"
#: caches that running the bundle's tests by hand may leave behind; never part of the bundle
IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}  # made by tools, not content


def bundle_files(root: Path) -> list[str]:
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if p.is_file() and rel.as_posix() != MANIFEST and not IGNORED_PARTS & set(rel.parts):
            out.append(rel.as_posix())
    return sorted(out)


def checksums(root: Path) -> dict[str, str]:
    return {rel: sha256_file(root / rel)[0] for rel in bundle_files(root)}


def read_manifest(root: Path) -> dict:
    path = Path(root) / MANIFEST
    if not Path(root).is_dir():
        raise VerifyError(f"{root} is not a folder", hint="pass the bundle folder")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VerifyError(f"{root} has no {MANIFEST}: not an nbdeploy bundle",
                          hint="build one with `nbdeploy build NOTEBOOK`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VerifyError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
        raise VerifyError(f"{path} has no file list", hint="rebuild the bundle")
    return doc


def check_files(root: Path, manifest: dict) -> list[str]:
    """Problems, one line per file: changed, missing or not in the manifest."""
    root = Path(root)
    listed: dict[str, str] = manifest["files"]
    problems = []
    for rel, digest in sorted(listed.items()):
        p = root / rel
        if not p.is_file():
            problems.append(f"{rel}: missing")
        elif sha256_file(p)[0] != digest:
            problems.append(f"{rel}: changed (sha256 differs from the manifest)")
    for rel in bundle_files(root):
        if rel not in listed:
            problems.append(f"{rel}: not in the manifest")
    return problems
