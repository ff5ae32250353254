"""Where a build stages its bundle, and how the finished bundle takes the target's place.

A build can be killed at any moment (SIGKILL, a closed laptop, an OOM killer), so nothing
here relies on cleanup code running. The bundle is written in a hidden sibling folder
``.NAME.partial-PID-XXXX`` and swapped into place with one atomic ``renameat2(EXCHANGE)``:
at every instant the target is either the previous bundle or the new one, whole. Staging
folders carry their builder's pid, so the next build removes those whose builder is gone
(and never one a concurrent build is still writing); hidden folders are never taken for
bundles (:func:`nbdeploy.bundle.catalog.find_bundles` skips them).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from nbdeploy.base.errors import BundleError
from nbdeploy.serve.logfiles import pid_alive

_KINDS = ("partial", "old")
_OWNED = re.compile(r"-(\d+)-[^-]+$")
#: a staging folder without a pid (written by an older nbdeploy) is stale after this long
_LEGACY_STALE_SECONDS = 3600
WORK_PREFIX = "nbdeploy-build-"


def staging_dir(target: Path, kind: str = "partial") -> Path:
    """A new hidden folder beside ``target`` that names this process as its owner."""
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.{kind}-{os.getpid()}-", dir=target.parent))


def work_dir() -> tempfile.TemporaryDirectory[str]:
    """The build's scratch folder (the notebook run, its export), also named after its owner."""
    return tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{os.getpid()}-")


def _abandoned(path: Path, prefix: str, legacy: bool = True) -> bool:
    rest = path.name[len(prefix):]
    owner = _OWNED.match("-" + rest) if rest else None
    if owner:
        return not pid_alive(int(owner.group(1)))
    if not legacy:
        return False
    try:
        return time.time() - path.stat().st_mtime > _LEGACY_STALE_SECONDS
    except OSError:
        return False


def sweep(target: Path) -> list[Path]:
    """Clear what killed builds of ``target`` left; the paths removed (or restored).

    A previous bundle set aside by a build killed mid-swap (only where the atomic exchange
    is not available) is put back when the target is missing, never deleted.
    """
    touched: list[Path] = []
    if not target.parent.is_dir():
        return touched
    for kind in ("old", "partial"):  # restore before removing anything
        prefix = f".{target.name}.{kind}-"
        for path in sorted(target.parent.glob(f"{glob_escape(prefix)}*")):
            if not path.is_dir() or not _abandoned(path, prefix):
                continue
            if kind == "old" and not target.exists() and (path / "nbdeploy.json").is_file():
                path.rename(target)
            else:
                shutil.rmtree(path, ignore_errors=True)
            touched.append(path)
    scratch = Path(tempfile.gettempdir())
    for path in scratch.glob(f"{WORK_PREFIX}*"):
        if path.is_dir() and _abandoned(path, WORK_PREFIX, legacy=False):  # shared: only ours
            shutil.rmtree(path, ignore_errors=True)
    return touched


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where not supported."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this filesystem or kernel cannot
        return False
    raise OSError(err, os.strerror(err), str(b))


def move_into_place(partial: Path, target: Path, force: bool) -> None:
    """Put the finished bundle ``partial`` at ``target``; with ``force``, replacing the old one
    in one atomic swap, so no instant exists at which ``target`` is missing or half-written."""
    if not target.exists():
        try:
            partial.rename(target)
        except OSError as exc:
            raise BundleError(f"cannot move the bundle into {target}: {exc.strerror}",
                              hint="pass --force to replace an existing folder") from None
        return
    if not force:
        raise BundleError(f"{target} already exists", hint="pass --force to replace it")
    if _exchange(partial, target):
        shutil.rmtree(partial, ignore_errors=True)  # now the old bundle; killed here, sweep() ends it
        return
    old = staging_dir(target, "old")
    old.rmdir()
    target.rename(old)  # killed between these two renames, the next build's sweep() restores it
    try:
        partial.rename(target)
    except OSError:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)
