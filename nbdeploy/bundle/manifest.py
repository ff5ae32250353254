"""The bundle manifest (``nbdeploy.json``) and its checksums.

``files`` maps every file of the bundle (POSIX relative path) to its sha256;
the manifest itself is the only file not listed. :func:`check_files` is the
first step of ``nbdeploy verify``: a changed, missing or extra file is named.
The hashing and the comparison are the serving runtime's own (:mod:`nbdeploy.serve.seal`),
so ``verify`` and ``serve`` can never disagree on what a sealed bundle is.
"""

from __future__ import annotations

import json
from pathlib import Path

from nbdeploy.base.errors import VerifyError
from nbdeploy.base.state import atomic_write_json
from nbdeploy.serve.seal import IGNORED_PARTS, MANIFEST, bundle_files, checksums, compare

FORMAT = "nbdeploy.bundle/1"

__all__ = ["FORMAT", "IGNORED_PARTS", "MANIFEST", "bundle_files", "check_files", "checksums", "read_manifest",
           "reseal"]


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
    return compare(Path(root), manifest["files"]).problems(strict=True)


def reseal(root: Path, changed: list[str]) -> dict:
    """Record the new checksums of ``changed`` (POSIX paths that nbdeploy itself just rewrote).

    Every other file must still match the manifest: a bundle changed by someone else is
    never sealed again behind their back (VerifyError naming the files).
    """
    root = Path(root)
    manifest = read_manifest(root)
    listed = {k: v for k, v in manifest["files"].items() if k not in changed}
    problems = [p for p in compare(root, listed).problems(strict=True)
                if p.split(":", 1)[0] not in changed]
    if problems:
        raise VerifyError(f"{root} does not match its manifest, so it was not sealed again: {'; '.join(problems)}",
                          hint="rebuild the bundle with `nbdeploy build`")
    fresh = checksums(root)
    manifest["files"] = {**listed, **{rel: fresh[rel] for rel in changed if rel in fresh}}
    atomic_write_json(root / MANIFEST, manifest)
    return manifest
