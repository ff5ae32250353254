"""The ``.nbdeploy/`` state folder beside a notebook.

The kernel writes capture records here, and the CLI and the server extension
read them without a kernel. Every write is atomic (temporary file in the same
folder, fsync, rename), so a crash never leaves half a record, and every JSON
document passes through :func:`nbdeploy.base.redact.scrub` on its way to disk.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbdeploy.base.errors import StateError
from nbdeploy.base.redact import scrub, scrubbing

STATE_DIRNAME = ".nbdeploy"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with scrubbing(str(path)):
        clean = scrub(text)
    atomic_write_bytes(path, clean.encode("utf-8"))


def atomic_write_json(path: Path, doc: Any) -> None:
    with scrubbing(str(path)):
        clean = scrub(doc)
    text = json.dumps(clean, indent=2, sort_keys=False, default=str, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StateError(f"no such record: {path}") from None
    except IsADirectoryError:
        raise StateError(f"{path} is a folder, not a record", hint="move it aside") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StateError(f"{path} is damaged (not JSON: {exc})",
                         hint="nbdeploy rewrites it: capture the notebook again (`nbdeploy capture NB`, or "
                              "`%deploy init` in the notebook), or move it aside with `nbdeploy doctor --repair`") from None


@dataclass(frozen=True)
class NotebookState:
    """Where the records of one notebook live: ``<dir>/.nbdeploy/<notebook stem>/``."""

    notebook: Path
    root: Path

    @classmethod
    def for_notebook(cls, notebook: str | os.PathLike[str]) -> NotebookState:
        nb = Path(notebook).resolve()
        return cls(nb, nb.parent / STATE_DIRNAME / nb.stem)

    @property
    def capture_path(self) -> Path:
        return self.root / "capture.json"

    @property
    def openlineage_path(self) -> Path:
        return self.root / "openlineage.json"

    @property
    def requirements_path(self) -> Path:
        return self.root / "requirements.txt"

    @property
    def lock_path(self) -> Path:
        return self.root / "requirements.lock"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def model_path(self) -> Path:
        return self.root / "model.json"

    def read_capture(self) -> dict:
        if not self.capture_path.exists():
            raise StateError(
                f"nothing captured yet for {self.notebook.name}",
                hint=f"run `%deploy init` in the notebook or `nbdeploy capture {self.notebook.name}`",
            )
        return read_json(self.capture_path)


def default_bundle_dir(notebook: Path) -> Path:
    """Where ``nbdeploy build NB`` puts the bundle when no ``-o`` is given: ``NB-bundle`` beside it."""
    return Path(notebook).parent / f"{Path(notebook).stem}-bundle"
