"""A full transitive lock from installed metadata (no network, no resolver).

Starting from the direct distributions, walk each one's ``Requires-Dist``,
evaluate environment markers (with the extras that were asked for) in this
interpreter, and pin every reached distribution to its installed version.
"""

from __future__ import annotations

import importlib.metadata as md
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement

from nbdeploy.capture.deps import canonical

if TYPE_CHECKING:
    from collections.abc import Mapping
    from collections.abc import Set as AbstractSet


@dataclass
class Locked:
    name: str
    version: str
    required_by: list[str] = field(default_factory=list)  # canonical names; empty = direct


@dataclass
class Lock:
    packages: dict[str, Locked] = field(default_factory=dict)  # canonical name -> pin
    missing: list[dict] = field(default_factory=list)  # required but not installed

    def requirements_lines(self) -> list[str]:
        return [f"{p.name}=={p.version}" for _, p in sorted(self.packages.items())]

    def to_text(self, header: str = "") -> str:
        lines = [f"# {h}" for h in header.splitlines()] if header else []
        for _, p in sorted(self.packages.items()):
            lines.append(f"{p.name}=={p.version}")
            if p.required_by:
                lines.append(f"    # via {', '.join(sorted(p.required_by))}")
        return "\n".join(lines) + "\n"

    def to_list(self) -> list[dict]:
        return [{"name": p.name, "version": p.version, "required_by": sorted(p.required_by)}
                for _, p in sorted(self.packages.items())]


def _dist(name: str) -> md.Distribution | None:
    try:
        return md.distribution(name)
    except md.PackageNotFoundError:
        return None


def _applies(req: Requirement, extras: set[str], env: Mapping[str, Any]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**env, "extra": e}) for e in (extras or {""}) | {""})


def build_lock(direct: dict[str, set[str]], exclude: AbstractSet[str] = frozenset()) -> Lock:
    """Lock ``direct`` ({distribution name: extras}) and everything it needs.

    ``exclude`` names distributions (canonical) that are never added, such as
    nbdeploy itself when a serving lock is built.
    """
    env = default_environment()
    lock = Lock()
    seen_extras: dict[str, set[str]] = {}
    queue: deque[tuple[str, set[str], str | None]] = deque(
        (name, set(extras), None) for name, extras in direct.items()
    )
    while queue:
        name, extras, parent = queue.popleft()
        key = canonical(name)
        if key in exclude:
            continue
        dist = _dist(name)
        if dist is None:
            lock.missing.append({"name": name, "required_by": parent})
            continue
        entry = lock.packages.get(key)
        if entry is None:
            entry = lock.packages[key] = Locked(dist.metadata["Name"], dist.version)
        if parent and parent not in entry.required_by:
            entry.required_by.append(parent)
        new_extras = extras - seen_extras.get(key, set())
        if key in seen_extras and not new_extras:
            continue
        seen_extras.setdefault(key, set()).update(extras)
        for raw in dist.requires or []:
            try:
                req = Requirement(raw)
            except InvalidRequirement:
                continue
            if _applies(req, extras, env):
                queue.append((req.name, set(req.extras), key))
    return lock
