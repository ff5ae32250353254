"""``nbdeploy promote`` and ``nbdeploy rollback``: move an alias, and say so in the history.

``champion`` names the version that is live, ``challenger`` the one being tried. Promote
moves an alias to a version only when that version's bundle has a passing ``verify`` on
record for its manifest's sha256 (``force=True`` overrides, and the history says it was
forced). Rollback moves the alias back to the version that held it before the current one,
walking back one move per rollback. Each move is written to the registry as a history tag
(:mod:`nbdeploy.release.history`).
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from nbdeploy.base.errors import PromoteError, RegistryError
from nbdeploy.bundle.registry import TAG_MANIFEST, unfinished
from nbdeploy.release import history
from nbdeploy.release.history import Move
from nbdeploy.release.store import CHAMPION, check_alias, open_registry
from nbdeploy.release.versions import verify_record


def current_user() -> str:
    """Who is moving the alias: ``NBDEPLOY_USER`` (a front end serving several people), else the login."""
    try:
        return os.environ.get("NBDEPLOY_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _why_not_verified(name: str, mv: object, record: dict | None) -> str | None:
    tags = getattr(mv, "tags", None) or {}
    version = getattr(mv, "version", "?")
    where = f"models:/{name}/{version}"
    if unfinished(tags):
        return (f"{name} version {version} has no bundle: its build registered it and has not attached the "
                f"bundle (still running, or killed; the next build of {name} deletes it)")
    if not tags.get(TAG_MANIFEST):
        return f"{name} version {version} has no bundle on record in the registry (built before nbdeploy " \
               f"attached bundles)"
    if record is None:
        return (f"{name} version {version} has no passing verify on record for its bundle (manifest sha256 "
                f"{tags[TAG_MANIFEST][:12]}); run `nbdeploy verify {where}` first")
    if not record.get("ok"):
        return (f"{name} version {version} failed verify ({record.get('summary')}); fix it and run "
                f"`nbdeploy verify {where}` again")
    return None


def promote(name: str, version: str, *, alias: str = CHAMPION, force: bool = False,
            project_dir: str | Path | None = None, user: str | None = None) -> Move:
    """Move ``alias`` of ``name`` to ``version``, which must have passed verify unless ``force``."""
    alias = check_alias(alias)
    if not str(version).isdigit():
        raise RegistryError(f"{version!r} is not a version number of {name}",
                            hint=f"list them with `nbdeploy versions {name}`")
    registry = open_registry(project_dir)
    mv = registry.version(name, str(version))
    current = registry.aliases(name).get(alias)
    record = verify_record(registry, mv)
    why = _why_not_verified(name, mv, record)
    if why is not None and not force:
        raise PromoteError(f"refusing to promote: {why}",
                           hint="or pass --force to promote it anyway; the history records that it was forced")
    move = Move(name, alias, "promote", current, str(mv.version), user or current_user(), history.now(),
                forced=why is not None, verified=(record or {}).get("verified", "") if why is None else "")
    if current == move.to_version:
        return move  # already there: nothing moves, nothing is recorded
    registry.client.set_registered_model_alias(name, alias, move.to_version)
    history.record(registry.client, move)
    return move


def rollback(name: str, *, alias: str = CHAMPION, project_dir: str | Path | None = None,
             user: str | None = None) -> Move:
    """Move ``alias`` of ``name`` back to the version that held it before the current one."""
    alias = check_alias(alias)
    registry = open_registry(project_dir)
    current = registry.aliases(name).get(alias)
    target = history.read(registry.model(name)).previous(alias, current)
    if target is None:
        now = f"version {current}" if current else "no version"
        raise PromoteError(f"cannot roll back {name}@{alias}: it holds {now} and no earlier version held it",
                           hint=f"see `nbdeploy history {name}`; move it with `nbdeploy promote {name} VERSION`")
    registry.version(name, target)  # still in the registry (RegistryError if deleted since)
    move = Move(name, alias, "rollback", current, target, user or current_user(), history.now())
    registry.client.set_registered_model_alias(name, alias, target)
    history.record(registry.client, move)
    return move


def read_history(name: str, project_dir: str | Path | None = None) -> history.History:
    """``nbdeploy history NAME``: which version held which alias when, and who moved it."""
    return history.read(open_registry(project_dir).model(name))
