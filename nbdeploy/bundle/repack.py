"""A wheel made again from a package installed in this environment, for the wheelhouse.

A machine without a package index often has the lock's packages installed (the kernel
that trained the model ran on them) but no wheel file of them anywhere. An installed
package still holds everything its wheel held under ``site-packages``, its ``WHEEL``
file with the original tags, and its ``RECORD`` with each file's sha256. So the wheel
can be packed again, after every file was checked against that ``RECORD`` (a file
changed since the install, or one RECORD gives no sha256 for, refuses the package). Installer files (``INSTALLER``,
``REQUESTED``, ``direct_url.json``), bytecode and files installed outside
``site-packages`` (console scripts, which pip writes again from ``entry_points.txt``)
are left out; editable installs are never repacked.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import re
import sys
import zipfile
from pathlib import Path

_INSTALLER_FILES = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}


def repack_installed(pin: str, python: str, dest: Path) -> Path | None:
    """The wheel of ``name==version`` rebuilt from this environment into ``dest``, or None when
    it is not installed at that version, is editable, has no RECORD, a file differs from its
    RECORD, or its tags are for another Python than ``python`` (X.Y)."""
    name, _, version = pin.partition("==")
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        return None
    if dist.version != version or dist.files is None or '"editable": true' in (
            dist.read_text("direct_url.json") or "").replace("'", '"'):
        return None
    tags = re.findall(r"^Tag:\s*(\S+)$", dist.read_text("WHEEL") or "", re.M)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not tags or (here != python and not all(t.endswith("-none-any") for t in tags)):
        return None
    site = Path(str(dist.locate_file("")))
    members: list[tuple[str, Path]] = []
    for f in dist.files:
        rel = f.as_posix()
        parts = rel.split("/")
        if rel.startswith("../") or "__pycache__" in parts or rel.endswith(".pyc"):
            continue
        if parts[0].endswith(".dist-info") and parts[-1] in _INSTALLER_FILES:
            continue
        path = site / rel
        if not path.is_file():
            return None
        if f.hash is None or f.hash.mode != "sha256" or _digest(path.read_bytes()) != f.hash.value:
            return None  # unverifiable, or changed since the install: not the package the lock names
        members.append((rel, path))
    if not any(rel.endswith(".dist-info/WHEEL") for rel, _ in members):
        return None
    wheel = Path(dest) / f"{_wheel_name(dist)}-{dist.version}-{_tag_string(tags)}.whl"
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for rel, path in members:
            data = path.read_bytes()
            z.writestr(rel, data)
            record.append(f"{rel},sha256={_digest(data)},{len(data)}")
        info = next(rel.split("/")[0] for rel, _ in members if rel.endswith(".dist-info/WHEEL"))
        record.append(f"{info}/RECORD,,")
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _wheel_name(dist: md.Distribution) -> str:
    return re.sub(r"[-_.]+", "_", dist.metadata["Name"]).lower()


def _tag_string(tags: list[str]) -> str:
    """``cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64`` from the WHEEL's Tag lines."""
    parts: list[list[str]] = [[], [], []]
    for tag in tags:
        for i, piece in enumerate(tag.split("-", 2)):
            if piece not in parts[i]:
                parts[i].append(piece)
    return "-".join(".".join(p) for p in parts)
