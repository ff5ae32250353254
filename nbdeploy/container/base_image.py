"""A Python base image built from the OS's own package mirror, for hosts with no registry.

Many on-prem and air-gapped sites reach a Debian mirror (the one their apt uses) but no
container registry. :func:`build_base_image` debootstraps a minimal Debian from that
mirror, adds ``python3``, ``python3-venv``, ``pip`` and CA certificates, trims caches and
documentation, and imports the tree into the engine as e.g.
``localhost/nbdeploy-python:3.11-bookworm``, so ``nbdeploy image --base`` has something to
point at. The bundle Dockerfile's default base stays the official ``python:3.11-slim``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from nbdeploy.base.errors import ContainerError
from nbdeploy.container.engine import Engine, detect_engine
from nbdeploy.container.options import default_tag, os_codename  # noqa: F401  (their home before)
from nbdeploy.container.process import OnLine, run, stream

PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
APT_SOURCES = Path("/etc/apt")
#: trimmed from the tree before import: nothing a Python service needs at run time
_TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
         "var/cache/apt", "var/lib/apt/lists", "var/log")


@dataclass(frozen=True)
class Mirror:
    uri: str
    suite: str
    components: tuple[str, ...] = ("main",)
    source: str = ""  # the file it was read from


@dataclass(frozen=True)
class BaseImage:
    tag: str
    image_id: str
    size_bytes: int
    python: str
    mirror: Mirror
    seconds: float
    engine: str

    def text(self) -> str:
        return (f"base image {self.tag} ({self.image_id[:12]}, {self.size_bytes / 1e6:.0f} MB, "
                f"python {self.python}) from {self.mirror.uri} {self.mirror.suite} "
                f"in {self.seconds:.0f} s")


def find_mirror(suite: str | None = None, apt_dir: Path = APT_SOURCES) -> Mirror:
    """The first ``deb`` source of the host's apt that serves ``suite`` (one-line or deb822)."""
    suite = suite or os_codename()
    files = [apt_dir / "sources.list"] if (apt_dir / "sources.list").is_file() else []
    files += sorted((apt_dir / "sources.list.d").glob("*.list"))
    files += sorted((apt_dir / "sources.list.d").glob("*.sources"))
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        parse = _parse_deb822 if f.suffix == ".sources" else _parse_one_line
        for types, uris, suites, comps in parse(text):
            if "deb" in types and suite in suites:
                for uri in uris:
                    if uri.startswith(("http://", "https://", "file:/")):
                        return Mirror(uri.rstrip("/"), suite, tuple(comps) or ("main",), str(f))
    raise ContainerError(f"no apt source for {suite!r} in {apt_dir}/sources.list*",
                         hint="pass --mirror URL (a Debian mirror reachable from this host)")


def _parse_one_line(text: str):
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        line = re.sub(r"\[[^\]]*\]", " ", line)  # options like [signed-by=...]
        parts = line.split()
        if len(parts) >= 3:
            yield [parts[0]], [parts[1]], [parts[2]], parts[3:]


def _parse_deb822(text: str):
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in stanza.splitlines():
            if line.startswith("#"):
                continue
            if line[:1].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        yield (fields.get("types", "").split(), fields.get("uris", "").split(),
               fields.get("suites", "").split(), fields.get("components", "").split())


def build_base_image(tag: str | None = None, *, engine: Engine | None = None,
                     mirror: str | None = None, suite: str | None = None,
                     packages: tuple[str, ...] = PACKAGES, workdir: Path | None = None,
                     on_line: OnLine | None = None) -> BaseImage:
    """Debootstrap a minimal Debian with Python from the host's mirror and import it."""
    started = time.monotonic()
    engine = engine or detect_engine()
    if shutil.which("debootstrap") is None:
        raise ContainerError("debootstrap is not installed",
                             hint="install it (Debian/Ubuntu: apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise ContainerError("building a base image with debootstrap needs root",
                             hint="run `nbdeploy base-image` as root (or with sudo)")
    suite = suite or os_codename()
    m = Mirror(mirror.rstrip("/"), suite, ("main",), "--mirror") if mirror else find_mirror(suite)
    say = on_line or (lambda _line: None)
    tmp = Path(tempfile.mkdtemp(prefix="nbdeploy-base-", dir=workdir))
    try:
        rootfs = tmp / "rootfs"
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
               f"--components={','.join(m.components)}", suite, str(rootfs), m.uri]
        say(f"== debootstrap {suite} from {m.uri} ({m.source})")
        res = stream(cmd, on_line)
        if res.returncode != 0:
            log = rootfs / "debootstrap/debootstrap.log"
            detail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise ContainerError(
                f"debootstrap failed (exit status {res.returncode}):\n"
                + "\n".join(res.lines[-20:]) + ("\n" + detail if detail else ""),
                hint="check that the mirror is reachable (pass --mirror URL)")
        python = _python_version(rootfs)
        tag = tag or default_tag(python, suite)
        _trim(rootfs)
        say(f"== importing into {engine.name} as {tag}")
        tarball = tmp / "rootfs.tar"
        run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."],
            "packing the base image tree", timeout=600)
        shutil.rmtree(rootfs, ignore_errors=True)
        image_id = _import(engine, tarball, tag, python, suite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from nbdeploy.container.image import inspect_image

    info = inspect_image(engine, tag)
    return BaseImage(tag, image_id or info.image_id, info.size_bytes, python, m,
                     time.monotonic() - started, engine.name)


def _python_version(rootfs: Path) -> str:
    versions = sorted(p.name[len("python"):] for p in (rootfs / "usr/bin").glob("python3.*")
                      if re.fullmatch(r"python3\.\d+", p.name))
    if not versions:
        raise ContainerError("debootstrap finished but the tree has no python3",
                             hint="check that the mirror serves the python3 package")
    return versions[-1]


def _trim(rootfs: Path) -> None:
    for rel in _TRIM:
        p = rootfs / rel
        if p.is_dir():
            for child in p.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
    for pycache in rootfs.glob("usr/lib/python3*/**/__pycache__"):
        shutil.rmtree(pycache, ignore_errors=True)


_CHANGES = ('ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
            "ENV LANG=C.UTF-8",
            'CMD ["python3"]')


def _import(engine: Engine, tarball: Path, tag: str, python: str, suite: str) -> str:
    labels = [f"LABEL org.opencontainers.image.description=nbdeploy Python {python} on Debian {suite}",
              "LABEL org.opencontainers.image.vendor=nbdeploy"]
    if engine.name in ("podman", "docker"):
        cmd = [engine.path, "import"]
        for change in (*_CHANGES, *labels):
            cmd += ["--change", change]
        out = run([*cmd, str(tarball), tag], f"{engine.name} import", timeout=600)
        return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    ctr = run([engine.path, "from", "scratch"], "buildah from scratch").stdout.strip()
    try:
        run([engine.path, "add", ctr, str(tarball), "/"], "buildah add", timeout=600)
        cfg = [engine.path, "config", "--env", _CHANGES[0][4:], "--env", "LANG=C.UTF-8",
               "--cmd", "python3", "--label", labels[0][6:], "--label", labels[1][6:], ctr]
        run(cfg, "buildah config")
        return run([engine.path, "commit", "--rm", ctr, tag], "buildah commit",
                   timeout=600).stdout.strip().splitlines()[-1]
    except ContainerError:
        run([engine.path, "rm", ctr], "buildah rm", check=False)
        raise
