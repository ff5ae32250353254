"""API paths <-> files, confined to the server's root directory.

Clients name files the way Jupyter's contents API does: relative to the root,
with ``/`` separators. Anything that resolves outside the root (``../``,
absolute paths, symlinks pointing out) is refused before a file is touched.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from nbdeploy.base.errors import NbdeployError


class PathError(NbdeployError):
    """A path outside the server's root directory, or one that does not exist."""

    status = 403


class NotFoundError(NbdeployError):
    status = 404


class Root:
    def __init__(self, root_dir: str | os.PathLike[str]) -> None:
        self.path = Path(os.path.realpath(os.path.expanduser(root_dir)))

    def resolve(self, api_path: str | None, *, must_exist: bool = True) -> Path:
        """The file an API path names; raise PathError when it is outside the root."""
        if api_path is None or not isinstance(api_path, str) or not api_path.strip():
            raise NbdeployError("missing `path`", hint="give a path relative to the Jupyter root")
        raw = api_path.strip()
        if "\x00" in raw:
            raise NbdeployError("invalid path")
        if raw.startswith(("/", "\\")) or PurePosixPath(raw).is_absolute() or (
                len(raw) > 1 and raw[1] == ":"):
            if not self._inside(Path(os.path.realpath(raw))):
                raise PathError(f"{api_path!r} is outside the Jupyter root directory")
            raise PathError(f"{api_path!r} is an absolute path",
                            hint="give a path relative to the Jupyter root")
        full = Path(os.path.realpath(self.path / raw))
        if not self._inside(full):
            raise PathError(f"{api_path!r} is outside the Jupyter root directory")
        if must_exist and not full.exists():
            raise NotFoundError(f"no such file: {api_path}")
        return full

    def relative(self, path: str | os.PathLike[str] | None) -> str | None:
        """The API path of a file, or None when it is outside the root."""
        if not path:
            return None
        full = Path(os.path.realpath(path))
        if not self._inside(full):
            return None
        return full.relative_to(self.path).as_posix() if full != self.path else ""

    def _inside(self, full: Path) -> bool:
        return full == self.path or full.is_relative_to(self.path)
