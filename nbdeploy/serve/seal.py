"""The bundle's seal: ``nbdeploy.json`` lists every file with its sha256.

The server checks the seal before it reads a single byte of the model: a changed or
missing file, or a file in ``model/``, ``nbdeploy_serve/`` or ``wheelhouse/`` that the manifest
does not list (code there is imported, unpickled or installed), refuses the bundle with the file's name.
A ``wheelhouse/`` absent as a whole passes the server's check (an image installs its wheels and
leaves the folder out; nothing serving loads it) and fails ``verify``'s.
Other files that are not listed (a request log, a cache someone left) are reported but
do not stop the server: they are never loaded.

``nbdeploy verify`` uses the same functions (through :mod:`nbdeploy.bundle.manifest`),
stricter: there every unlisted file is a problem. The package stays self-contained
(it is copied into every bundle), so the hashing lives here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ServeError

MANIFEST = "nbdeploy.json"
#: made by tools, never content: caches that running the bundle or its tests may leave behind
IGNORED_PARTS = frozenset({"__pycache__", ".pytest_cache", ".ipynb_checkpoints"})
#: folders whose files are executed or unpickled when the model loads, or installed into its image
#: (``wheelhouse/``: pip could pick an extra wheel there over the sealed one): nothing unlisted may sit there
LOADED_FOLDERS = ("model/", "nbdeploy_serve/", "wheelhouse/")
#: the wheels an image installs from; the image itself leaves the folder out (Dockerfile)
WHEELHOUSE = "wheelhouse"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def bundle_files(root: Path) -> list[str]:
    """Every file of the bundle (POSIX relative paths, sorted), except the manifest and tool caches."""
    out = []
    for p in Path(root).rglob("*"):
        rel = p.relative_to(root)
        if p.is_file() and rel.as_posix() != MANIFEST and not IGNORED_PARTS & set(rel.parts):
            out.append(rel.as_posix())
    return sorted(out)


def checksums(root: Path) -> dict[str, str]:
    return {rel: sha256_file(Path(root) / rel)[0] for rel in bundle_files(root)}


@dataclass
class SealReport:
    """What differs between the bundle's files and its manifest."""

    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    checked: int = 0
    #: listed files of a ``wheelhouse/`` folder that is not there at all: an image installs the
    #: wheels and leaves the folder out (nothing serving loads it); missing to ``verify``
    left_out: list[str] = field(default_factory=list)

    def problems(self, *, strict: bool = True) -> list[str]:
        """One line per file; ``strict=False`` lets unlisted files outside the loaded folders pass,
        and a wheelhouse left out as a whole."""
        unlisted = self.unlisted if strict else [u for u in self.unlisted if u.startswith(LOADED_FOLDERS)]
        return ([f"{r}: changed (sha256 differs from the manifest)" for r in self.changed]
                + [f"{r}: missing" for r in (*self.missing, *(self.left_out if strict else ()))]
                + [f"{r}: not in the manifest" for r in unlisted])


def compare(root: Path, listed: dict[str, str]) -> SealReport:
    root = Path(root)
    report = SealReport()
    no_wheelhouse = not (root / WHEELHOUSE).exists()
    for rel, digest in sorted(listed.items()):
        p = root / rel
        if not p.is_file():
            (report.left_out if no_wheelhouse and rel.startswith(f"{WHEELHOUSE}/") else report.missing).append(rel)
            continue
        report.checked += 1
        if sha256_file(p)[0] != digest:
            report.changed.append(rel)
    report.unlisted = [rel for rel in bundle_files(root) if rel not in listed]
    return report


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest of a bundle folder; ServeError when it is missing or not a manifest."""
    path = Path(root) / MANIFEST
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ServeError(f"{root} has no {MANIFEST}: not an nbdeploy bundle, or its manifest was removed",
                         hint="build one with `nbdeploy build NOTEBOOK`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ServeError(f"{path} could not be read as JSON: {exc}", hint="rebuild the bundle") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict) or not doc["files"]:
        raise ServeError(f"{path} has no file list, so nothing in the bundle can be trusted",
                         hint="rebuild the bundle with `nbdeploy build`")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in doc["files"].items()):
        raise ServeError(f"{path}: its file list is not a map of paths to checksums", hint="rebuild the bundle")
    return doc


def check_seal(root: Path) -> tuple[dict[str, Any], SealReport]:
    """Check every file of the bundle in ``root`` before anything of it is loaded.

    Returns the manifest and the report (whose unlisted files outside ``model/`` and
    ``nbdeploy_serve/`` the caller may mention); raises ServeError naming the files when
    a listed file changed or is missing, or an unlisted one sits where code is loaded.
    """
    manifest = read_manifest(root)
    report = compare(root, manifest["files"])
    problems = report.problems(strict=False)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ServeError(
            f"refusing to serve {root}: its files do not match its manifest ({shown})",
            hint="the bundle was changed after it was built: rebuild it, or restore the files "
                 "(`nbdeploy verify BUNDLE` lists every difference)",
        )
    return manifest, report


#: what ``nbdeploy build`` records as the model's serialization -> the loaders that may read it
#: (MLmodel's ``serialization_format`` for scikit-learn-style models, or a library's own format)
_LOADERS = {
    "skops": {"skops"},
    "xgboost ubj": {"xgboost"},
    "lightgbm text": {"lightgbm"},
    "cloudpickle (MLflow pyfunc wrapper)": {"pyfunc"},
    # recorded by hand for a model saved with MLflow's pickle formats: the author vouches for them
    "pickle": {"pickle"},
    "cloudpickle": {"cloudpickle"},
}


def allowed_loaders(manifest: dict[str, Any]) -> frozenset[str]:
    """The loaders the manifest allows for the model: a format it did not record is never read.

    A bundle built by nbdeploy records its serialization (``model.serialization``); one
    that records none (made by hand) allows only formats that cannot run code: skops and
    the libraries' own model files.
    """
    model = manifest.get("model")
    fmt = model.get("serialization") if isinstance(model, dict) else None
    return frozenset(_LOADERS.get(str(fmt), set()) if fmt else {"skops", "xgboost", "lightgbm"})
