"""The bundle's wheelhouse: the lock's wheels inside the bundle, so its image needs no package index.

An air-gapped host has the bundle and a base image but no index. ``nbdeploy build
--wheelhouse`` (or ``nbdeploy image --wheelhouse`` on a built bundle) puts one wheel per
pin of ``requirements.lock`` in ``wheelhouse/``; the Dockerfile then installs with
``--no-index --find-links`` from there. The wheels are files of the bundle like any
other: listed in the manifest with their sha256, and ``wheelhouse/`` is one of the seal's
loaded folders (an unlisted wheel there could be installed instead of the sealed one).

Wheels come offline first: from the local sources pip is configured with on this
machine (``find-links`` folders, ``file://`` indexes such as a mirror under ``/opt``) and
the wheels pip built into its cache, with pip run ``--isolated`` so no remote index is
asked; then packed again from the packages installed in this environment at the locked
version (:mod:`.repack`). Only the pins none of those hold are downloaded from the
configured index, and the progress says so; ``index=False`` never asks it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nbdeploy.base.errors import BundleError
from nbdeploy.base.progress import Progress, note

FOLDER = "wheelhouse"
LOCK = "requirements.lock"
#: the wheels of what the bundle's tests need besides the lock (pytest ...), for ``nbdeploy verify``
TESTS = "tests"
TEST_REQUIREMENTS = "tests/requirements.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")
_NOT_FOUND = re.compile(r"No matching distribution found for ([A-Za-z0-9._-]+)")


@dataclass(frozen=True)
class Sources:
    """Where pip finds wheels without a network: ``file://`` indexes and local folders."""

    indexes: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    remote: tuple[str, ...] = ()  # the configured indexes that are not local (for messages)

    def text(self) -> str:
        return ", ".join((*self.find_links, *self.indexes)) or "(none configured)"


@dataclass
class Wheelhouse:
    """What was packed: the wheel files, and which pins had to come from the index."""

    python: str
    wheels: list[str] = field(default_factory=list)
    from_index: list[str] = field(default_factory=list)
    #: pins whose wheel was packed again from this environment's installed package (:mod:`.repack`)
    from_installed: list[str] = field(default_factory=list)
    #: the wheels in ``wheelhouse/tests/``: what the bundle's tests need besides the lock
    test_wheels: list[str] = field(default_factory=list)
    sources: Sources = field(default_factory=Sources)

    def record(self) -> dict:
        """The manifest's ``wheelhouse`` entry (the files themselves are in ``files``)."""
        return {"folder": FOLDER, "python": self.python, "wheels": len(self.wheels),
                "from_installed": self.from_installed, "from_index": self.from_index,
                "test_wheels": len(self.test_wheels)}

    def text(self) -> str:
        local = len(self.wheels) - len(self.from_index) - len(self.from_installed)
        where = (f"{local} from local sources"
                 + (f", {len(self.from_installed)} packed from installed packages" if self.from_installed else "")
                 + (f", {len(self.from_index)} from the package index" if self.from_index else ""))
        tests = f"; {len(self.test_wheels)} more for the bundle's tests" if self.test_wheels else ""
        return f"wheelhouse: {len(self.wheels)} wheels for Python {self.python} ({where}){tests}"


def read_pins(lock: Path) -> list[str]:
    """The ``name==version`` lines of a lock, in order (comments and ``# via`` lines skipped)."""
    pins = []
    for line in lock.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not _PIN.match(line):
            raise BundleError(f"{lock}: {line!r} is not a name==version pin, so no wheel can be chosen for it",
                              hint="rebuild the bundle with `nbdeploy build`")
        pins.append(line)
    return pins


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          timeout=900)


def local_sources() -> Sources:
    """The local indexes and folders in pip's configuration (files and ``PIP_*``), plus the
    folders of the wheels pip built into its cache."""
    values: dict[str, list[str]] = {"index-url": [], "extra-index-url": [], "find-links": []}
    for line in _pip("config", "list").stdout.splitlines():
        key, _, value = line.partition("=")
        option = key.rsplit(".", 1)[-1]
        if option in values:
            values[option] += value.strip().strip("'\"").split()
    cached = _pip("cache", "list", "--format=abspath")
    cache_dirs = sorted({str(Path(p).parent) for p in cached.stdout.split() if p.endswith(".whl")}
                        if cached.returncode == 0 else set())
    indexes = [u for u in values["index-url"] + values["extra-index-url"] if _is_local(u)]
    remote = [u for u in values["index-url"] + values["extra-index-url"] if not _is_local(u)]
    if not values["index-url"]:
        remote.insert(0, "https://pypi.org/simple")  # pip's default, asked unless --no-index
    links = [u for u in values["find-links"] if _is_local(u)] + cache_dirs
    return Sources(tuple(dict.fromkeys(indexes)), tuple(dict.fromkeys(links)), tuple(remote))


def _is_local(url: str) -> bool:
    return url.startswith("file:") or (url.startswith("/") and Path(url).exists())


def pack_wheelhouse(root: Path, python: str, *, index: bool = True,
                    progress: Progress | None = None) -> Wheelhouse:
    """Fill ``root/wheelhouse`` with one wheel per pin of ``root/requirements.lock``, and
    ``root/wheelhouse/tests`` with the wheels of ``tests/requirements.txt`` (what ``nbdeploy
    verify`` installs besides the lock, so it too needs no index; pip's ``--find-links``
    does not look into sub-folders, so the image's install never sees them).

    ``python`` is the bundle's Python (``3.11.7``): wheels are chosen for that X.Y on this
    machine's platform, which is what the image runs. Raises BundleError naming every pin
    of the lock for which no wheel was found, and what to do; a test pin without a wheel is
    a note (verify then asks the index for it).
    """
    root = Path(root)
    say = progress or (lambda _event: None)
    xy = ".".join(python.split(".")[:2])
    pins = read_pins(root / LOCK)
    tests = root / TEST_REQUIREMENTS
    test_pins = read_pins(tests) if tests.is_file() else []
    sources = local_sources()
    result = Wheelhouse(xy, sources=sources)
    with tempfile.TemporaryDirectory(prefix="nbdeploy-wheels-") as tmp:
        dest = Path(tmp)
        missing, result.from_installed, result.from_index = _gather(pins, sources, xy, dest, index, say)
        if missing:
            raise BundleError(
                f"no wheel for {', '.join(missing)} (Python {xy}, this platform) in the local sources "
                f"({sources.text()}), this environment's installed packages"
                + (" or the package index" if index else "; the index was not asked"),
                hint=f"put the wheel in a pip find-links folder (e.g. `pip wheel --no-deps {missing[0]} "
                     "-w /opt/wheels` on a machine that has it, with find-links = /opt/wheels in "
                     "pip.conf), or build without --wheelhouse")
        (dest / TESTS).mkdir()
        absent, _, _ = _gather(test_pins, sources, xy, dest / TESTS, index, say, " for the tests")
        if absent:
            say(note(f"no wheel for {', '.join(absent)} (what the bundle's tests need): `nbdeploy verify` "
                     "will install it from the package index"))
        target = root / FOLDER
        shutil.rmtree(target, ignore_errors=True)
        (target / TESTS).mkdir(parents=True)
        for folder, names in ((dest, result.wheels), (dest / TESTS, result.test_wheels)):
            for whl in sorted(folder.glob("*.whl")):
                shutil.move(str(whl), target / whl.relative_to(dest))
                names.append(whl.name)
    return result


def _gather(pins: list[str], sources: Sources, xy: str, dest: Path, index: bool, say: Progress,
            what: str = "") -> tuple[list[str], list[str], list[str]]:
    """The pins' wheels into ``dest``: from the local sources, else packed again from this
    environment's installed packages, else (``index``) from the package index.
    (pins found nowhere, pins packed from installed packages, pins from the index)."""
    local = ["--isolated"] + (["--index-url", sources.indexes[0]] if sources.indexes else ["--no-index"])
    for url in sources.indexes[1:]:
        local += ["--extra-index-url", url]
    for link in sources.find_links:
        local += ["--find-links", link]
    held = _held_locally(sources)
    absent = [p for p in pins if pin_key(p) not in held]  # no file of that version: not worth asking pip
    missing = absent + _download([p for p in pins if p not in absent], local, xy, dest)
    installed: list[str] = []
    if missing:
        from nbdeploy.bundle.repack import repack_installed

        installed = [p for p in missing if repack_installed(p, xy, dest) is not None]
        missing = [p for p in missing if p not in installed]
        if installed:
            say(note(f"{len(installed)} wheels{what} packed again from the packages installed in this "
                     f"environment ({sys.prefix}), each file checked against its RECORD: {', '.join(installed)}"))
    fetched: list[str] = []
    if missing and index:
        say(note(f"{len(missing)} of {len(pins)} wheels{what} are not in the local sources ({sources.text()}): "
                 f"downloading {', '.join(missing)} from the package index "
                 f"({', '.join(sources.remote) or 'as pip is configured'})"))
        fetched = [p for p in missing if p not in _download(missing, [], xy, dest)]
        missing = [p for p in missing if p not in fetched]
    return missing, installed, fetched


def _download(pins: list[str], source_args: list[str], xy: str, dest: Path) -> list[str]:
    """``pip download`` the pins' wheels into ``dest``; the pins no source had (pip stops at
    the first one it cannot find, so each is set aside and the rest asked again)."""
    todo, missing = list(pins), []
    by_name = {_canonical(p.split("==")[0]): p for p in pins}
    while todo:
        res = _pip("download", "--no-deps", "--only-binary=:all:", "--python-version", xy,
                   "--disable-pip-version-check", "--progress-bar", "off", "-d", str(dest),
                   *source_args, *todo)
        if res.returncode == 0:
            break
        m = _NOT_FOUND.search(res.stderr)
        pin = by_name.get(_canonical(m.group(1).split("==")[0])) if m else None
        if pin is None or pin not in todo:
            last = [line for line in res.stderr.splitlines() if line.strip()][-1:] or ["(no output)"]
            raise BundleError(f"pip could not download the lock's wheels: {last[0].strip()}",
                              hint="check pip's configuration (`pip config list`) and the sources it names")
        todo.remove(pin)
        missing.append(pin)
    return missing


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pin_key(pin: str) -> tuple[str, str]:
    """(canonical name, normalised version) of a ``name==version`` pin, as :func:`wheel_keys` gives a wheel's."""
    from packaging.version import InvalidVersion, Version

    name, _, version = pin.partition("==")
    try:
        return _canonical(name), str(Version(version))
    except InvalidVersion:
        return _canonical(name), version


def _held_locally(sources: Sources) -> set[tuple[str, str]]:
    """(name, version) of every wheel file the local sources list: a pin none of them has is
    known missing without one ``pip download`` per pin (each costs seconds)."""
    from urllib.parse import unquote, urlparse

    names: list[str] = []
    for link in sources.find_links:
        folder = Path(unquote(urlparse(link).path) if link.startswith("file:") else link)
        if folder.is_dir():
            names += [p.name for p in folder.iterdir()]
    for index in sources.indexes:
        root = Path(unquote(urlparse(index).path) if index.startswith("file:") else index)
        if root.is_dir():
            for page in root.glob("*/index.html"):
                names += re.findall(r">\s*([^<>\s]+\.whl)\s*<", page.read_text(errors="replace"))
    return wheel_keys(names)


def wheel_keys(filenames: Iterable[str]) -> set[tuple[str, str]]:
    """(canonical name, version) of each wheel file name (names that are not a wheel's skipped)."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    held = set()
    for name in filenames:
        try:
            dist, version, _build, _tags = parse_wheel_filename(name)
        except (InvalidWheelFilename, ValueError):
            continue
        held.add((str(dist), str(version)))
    return held


def add_wheelhouse(bundle: Path, *, index: bool = True, progress: Progress | None = None) -> Wheelhouse:
    """Give a built bundle a wheelhouse: pack it, write the Dockerfile that installs from it,
    record it in the manifest and seal the bundle again.

    Refuses a bundle whose files no longer match its manifest (nothing is sealed behind
    someone's back), and keeps a wheelhouse that is already there and sealed.
    """
    from nbdeploy.base.state import atomic_write_json, atomic_write_text
    from nbdeploy.bundle.deploy_files import dockerfile
    from nbdeploy.bundle.manifest import MANIFEST, check_files, read_manifest, reseal

    root = Path(bundle)
    manifest = read_manifest(root)
    problems = [p for p in check_files(root, manifest) if not p.startswith(f"{FOLDER}/")]
    if problems:
        raise BundleError(f"{root} does not match its manifest ({'; '.join(problems[:3])}): not adding "
                          "a wheelhouse", hint="rebuild the bundle with `nbdeploy build --wheelhouse`")
    python = str(manifest.get("python") or "")
    if not python:
        raise BundleError(f"{root / MANIFEST} records no Python version, so no wheels can be chosen",
                          hint="rebuild the bundle with `nbdeploy build --wheelhouse`")
    listed = sorted(k for k in manifest["files"] if k.startswith(f"{FOLDER}/"))
    if listed and not check_files(root, manifest):
        before = manifest.get("wheelhouse") or {}
        tests = f"{FOLDER}/{TESTS}/"
        return Wheelhouse(".".join(python.split(".")[:2]),
                          [k.split("/", 1)[1] for k in listed if not k.startswith(tests)],
                          list(before.get("from_index") or []), list(before.get("from_installed") or []),
                          [k[len(tests):] for k in listed if k.startswith(tests)])
    result = pack_wheelhouse(root, python, index=index, progress=progress)
    atomic_write_text(root / "Dockerfile", dockerfile(str(manifest.get("name")), str(manifest.get("version")),
                                                     python, wheelhouse=True))
    manifest["wheelhouse"] = result.record()
    manifest["files"] = {k: v for k, v in manifest["files"].items() if not k.startswith(f"{FOLDER}/")}
    atomic_write_json(root / MANIFEST, manifest)
    reseal(root, ["Dockerfile", *(f"{FOLDER}/{w}" for w in result.wheels),
                  *(f"{FOLDER}/{TESTS}/{w}" for w in result.test_wheels)])
    return result

