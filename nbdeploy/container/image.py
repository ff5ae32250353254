"""Build a bundle's own Dockerfile into an image; inspect it; save it as an OCI archive."""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

from nbdeploy.base.errors import ContainerError
from nbdeploy.container.engine import Engine, detect_engine
from nbdeploy.container.options import CA_TARGET, ContainerOptions
from nbdeploy.container.process import OnLine, run, stream

#: label holding a fingerprint of the bundle's files, so an unchanged bundle reuses its image
FINGERPRINT_LABEL = "io.nbdeploy.bundle.fingerprint"
# "STEP 5/9: RUN ..." (podman, buildah) and "#8 [4/6] RUN ..." (docker BuildKit, plain progress)
_STEP = re.compile(r"^(?:STEP \d+(?:/\d+)?: .+|#\d+ \[[^\]]*\d+/\d+\] .+)$")


@dataclass(frozen=True)
class ImageInfo:
    tag: str
    image_id: str
    digest: str
    size_bytes: int
    labels: dict[str, str]


@dataclass(frozen=True)
class ImageResult:
    tag: str
    image_id: str
    digest: str
    size_bytes: int
    engine: str
    seconds: float  # build time; 0 when an existing image was reused
    reused: bool = False
    saved: Path | None = None
    #: the image it was built FROM: --base, the Dockerfile's, or the local one when that cannot be pulled
    base: str = ""

    def text(self) -> str:
        how = "reused" if self.reused else f"built in {self.seconds:.1f} s"
        lines = [f"image {self.tag} ({how} with {self.engine})",
                 *([f"  base   {self.base}"] if self.base else []),
                 f"  id     {self.image_id}",
                 f"  digest {self.digest or '(none)'}",
                 f"  size   {self.size_bytes / 1e6:.0f} MB"]
        if self.saved:
            lines.append(f"  saved  {self.saved} (OCI archive)")
        return "\n".join(lines)


def bundle_dockerfile(bundle: Path) -> Path:
    bundle = Path(bundle)
    dockerfile = bundle / "Dockerfile"
    if not bundle.is_dir():
        raise ContainerError(f"{bundle} is not a folder", hint="pass a bundle folder")
    if not dockerfile.is_file():
        raise ContainerError(f"{bundle} has no Dockerfile",
                             hint="build the bundle with `nbdeploy build NOTEBOOK -o DIR`")
    return dockerfile


def default_tag(bundle: Path) -> str:
    """``localhost/nbdeploy-NAME:VERSION`` from the bundle's manifest (or its folder name)."""
    name, version = Path(bundle).resolve().name, "latest"
    manifest = Path(bundle) / "nbdeploy.json"
    if manifest.is_file():
        try:
            doc = json.loads(manifest.read_text())
            name, version = str(doc.get("name") or name), str(doc.get("version") or version)
        except (OSError, ValueError):
            pass
    name = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._") or "bundle"
    version = re.sub(r"[^A-Za-z0-9._-]+", "-", version)[:128] or "latest"
    return f"localhost/nbdeploy-{name}:{version}"


def bundle_fingerprint(bundle: Path) -> str:
    """sha256 over the bundle's file names and contents (what the build context holds)."""
    h = hashlib.sha256()
    root = Path(bundle)
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if not p.is_file() or "__pycache__" in rel or rel.startswith(".pytest_cache"):
            continue
        h.update(rel.encode() + b"\0")
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def build_command(engine: Engine, bundle: Path, tag: str, opts: ContainerOptions,
                  fingerprint: str) -> list[str]:
    verb = ["build"] if engine.name != "docker" else ["build", "--progress=plain"]
    cmd = engine.cmd(*verb, "-f", str(bundle_dockerfile(bundle)), "-t", tag,
                     "--label", f"{FINGERPRINT_LABEL}={fingerprint}")
    if engine.name != "docker":
        cmd += ["--layers", "--format", "docker"]  # docker format keeps HEALTHCHECK
    if opts.base:
        cmd += ["--build-arg", f"BASE={opts.base}"]
    if opts.ca_bundle:
        ca = Path(opts.ca_bundle).resolve()
        if not ca.is_file():
            raise ContainerError(f"CA bundle {ca} does not exist",
                                 hint="pass --ca-bundle FILE (e.g. /etc/ssl/certs/ca-certificates.crt)")
        if engine.name == "docker":
            raise ContainerError("docker build cannot mount the host's CA bundle into build steps",
                                 hint="use --engine podman or buildah, or configure the proxy's "
                                      "CA in the Docker daemon instead of --ca-bundle")
        cmd += ["-v", f"{ca}:{CA_TARGET}:ro"]
        if opts.pip_cert:
            cmd += ["--build-arg", f"PIP_CERT={CA_TARGET}"]
    return [*cmd, *opts.build_flags, str(Path(bundle).resolve())]


def build_image(bundle: str | Path, opts: ContainerOptions | None = None, *,
                engine: Engine | None = None, on_line: OnLine | None = None,
                reuse: bool = False, save: str | Path | None = None) -> ImageResult:
    """Build ``bundle/Dockerfile``; with ``reuse`` keep an image built from identical files."""
    bundle = Path(bundle)
    opts = opts or ContainerOptions.from_env()
    engine = engine or detect_engine(opts.engine)
    bundle_dockerfile(bundle)
    tag = opts.tag or default_tag(bundle)
    fingerprint = bundle_fingerprint(bundle)
    if reuse:
        info = find_image(engine, tag)
        if info is not None and info.labels.get(FINGERPRINT_LABEL) == fingerprint:
            result = ImageResult(tag, info.image_id, info.digest, info.size_bytes, engine.name,
                                 0.0, reused=True)
            return _saved(engine, result, save)
    base = opts.base or dockerfile_base(bundle)
    started = time.monotonic()
    res = stream(build_command(engine, bundle, tag, opts, fingerprint), on_line)
    if res.returncode != 0 and not opts.base and _pull_failed(res.lines):
        local = local_base(engine, base)
        if local is not None:  # air-gapped: the base `nbdeploy base-image` built here
            if on_line:
                on_line(f"== the Dockerfile's base {base} cannot be pulled; building FROM the local base "
                        f"{local} (made by `nbdeploy base-image`)")
            base, opts = local, replace(opts, base=local)
            res = stream(build_command(engine, bundle, tag, opts, fingerprint), on_line)
    seconds = time.monotonic() - started
    _drop_stages(engine, bundle)
    if res.returncode != 0:
        raise _build_failure(engine, res.lines, res.returncode)
    info = inspect_image(engine, tag)
    result = ImageResult(tag, info.image_id, info.digest, info.size_bytes, engine.name, seconds, base=base)
    return _saved(engine, result, save)


def _drop_stages(engine: Engine, bundle: Path) -> None:
    """Remove the untagged images of the Dockerfile's first stage (a bundle with a wheelhouse:
    the bundle copied and its wheelhouse removed, ~80 MB each), which an engine keeps in its
    build cache after the build; only those the label marks, never another untagged image.
    One in use by a build still running stays (its removal fails, and is let fail). A
    Dockerfile without that stage asks the engine nothing."""
    from nbdeploy.bundle.deploy_files import STAGE_LABEL

    if f"LABEL {STAGE_LABEL}=bundle" not in bundle_dockerfile(bundle).read_text(encoding="utf-8"):
        return
    found = run(engine.cmd("images", "-q", "--filter", "dangling=true", "--filter", f"label={STAGE_LABEL}=bundle"),
                "listing the build's stage images", check=False)
    for image_id in dict.fromkeys(found.stdout.split()) if found.returncode == 0 else ():
        run(engine.cmd("rmi", image_id), f"removing the build's stage image {image_id}", check=False)


def dockerfile_base(bundle: Path) -> str:
    """The Dockerfile's default ``BASE`` (``docker.io/library/python:3.11-slim``), or ""."""
    m = re.search(r"^ARG BASE=(\S+)", bundle_dockerfile(bundle).read_text(encoding="utf-8"), re.M)
    return m.group(1) if m else ""


def _pull_failed(lines: list[str]) -> bool:
    """Whether the build stopped because the base image could not be pulled."""
    return any(re.search(r"pull|registry|manifest unknown|resolve .*image|dial tcp|no such host", line, re.I)
               for line in lines[-40:])


def local_base(engine: Engine, registry_base: str) -> str | None:
    """The image ``nbdeploy base-image`` builds for the same Python (X.Y) on this host's Debian
    release, when it exists here; None otherwise (or when the base is no python image)."""
    from nbdeploy.container.options import default_tag, os_codename

    m = re.search(r"(?:^|/)python:(\d+\.\d+)", registry_base)
    if not m:
        return None
    tag = default_tag(m.group(1), os_codename())
    return tag if find_image(engine, tag) is not None else None


def _build_failure(engine: Engine, lines: list[str], rc: int) -> ContainerError:
    step_at = max((i for i, line in enumerate(lines) if _STEP.match(line)), default=None)
    if step_at is None:
        step, output = "(before the first step)", lines[-40:]
    else:
        step, output = lines[step_at], lines[step_at + 1:][-40:]
    hint = None
    if re.search(r"\bFROM\b", step) and any(re.search(r"pull|registry|manifest unknown", line, re.I)
                                             for line in output):
        hint = ("no registry reachable for the base image? Build one from the host's Debian "
                "mirror with `nbdeploy base-image`, then pass --base IMAGE (or set "
                "NBDEPLOY_BASE_IMAGE)")
    return ContainerError(
        f"image build failed at {step} ({engine.name} exit status {rc}); fix that step or its "
        "inputs in the bundle and build again. The step's output:\n"
        + "\n".join("  | " + line for line in output), hint=hint)


def _saved(engine: Engine, result: ImageResult, save: str | Path | None) -> ImageResult:
    if not save:
        return result
    path = Path(save).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    if engine.name == "podman":
        cmd = engine.cmd("save", "--format", "oci-archive", "-o", str(path), result.tag)
    elif engine.name == "buildah":
        cmd = engine.cmd("push", result.tag, f"oci-archive:{path}:{result.tag}")
    else:
        cmd = engine.cmd("save", "-o", str(path), result.tag)  # Docker >= 25 writes OCI layout
    run(cmd, f"saving {result.tag} to {path}", timeout=900)
    return ImageResult(**{**result.__dict__, "saved": path})


def find_image(engine: Engine, tag: str) -> ImageInfo | None:
    try:
        return inspect_image(engine, tag)
    except ContainerError:
        return None


def inspect_image(engine: Engine, tag: str) -> ImageInfo:
    """Id, digest, size and labels of a local image; ContainerError when there is none."""
    if engine.name == "buildah":
        out = run(engine.cmd("inspect", "--type", "image", tag), f"inspecting image {tag}")
        doc = json.loads(out.stdout)
        image_id = doc.get("FromImageID", "")
        sizes = run(engine.cmd("images", "--json", "--noheading", image_id),
                    f"inspecting image {tag}").stdout
        size = _size(json.loads(sizes)[0].get("size", 0)) if sizes.strip() else 0
        labels = (doc.get("OCIv1") or {}).get("config", {}).get("Labels") or {}
        image_id = image_id if image_id.startswith("sha256:") else f"sha256:{image_id}"
        return ImageInfo(tag, image_id, doc.get("FromImageDigest", ""), size, labels)
    out = run(engine.cmd("image", "inspect", tag), f"inspecting image {tag}")
    doc = json.loads(out.stdout)[0]
    digest = doc.get("Digest") or next(iter(doc.get("RepoDigests") or []), "")
    labels = (doc.get("Config") or {}).get("Labels") or doc.get("Labels") or {}
    image_id = doc.get("Id", "")
    if not image_id.startswith("sha256:"):
        image_id = f"sha256:{image_id}"
    return ImageInfo(tag, image_id, digest, _size(doc.get("Size", 0)), labels)


def _size(value: object) -> int:
    if isinstance(value, int | float):
        return int(value)
    m = re.match(r"([\d.]+)\s*([kKMG]?B)", str(value))
    if not m:
        return 0
    return int(float(m.group(1)) * {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9}[m.group(2)])


def remove_image(engine: Engine, tag: str) -> None:
    run(engine.cmd("rmi", "-f", tag), f"removing image {tag}", check=False)
