"""``nbdeploy verify BUNDLE``: the proof that the bundle holds everything it needs.

1. every file's sha256 against the manifest (a changed, missing or extra file is named);
2. a fresh virtual environment from the bundle's lock alone (``uv`` when present,
   else ``venv`` + pip), installed with ``--no-deps``, outside the bundle, without
   access to this interpreter's site-packages;
3. the bundle's own API (``python -m nbdeploy_serve``) started from that environment
   on 127.0.0.1;
4. the bundle's own pytest suite against it; the API is stopped whatever happens.

A module the model or the API needs but the lock lacks shows up as a failure
naming the module (from the server's output or the tests' output).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from nbdeploy.base.errors import VerifyError
from nbdeploy.base.progress import Progress, ProgressEvent, note, silent
from nbdeploy.bundle.manifest import check_files, read_manifest

_MISSING = re.compile(r"No module named '([\w.]+)'")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""
    seconds: float = 0.0


@dataclass
class VerifyReport:
    bundle: Path
    checks: list[Check] = field(default_factory=list)
    installer: str = ""
    env_seconds: float | None = None
    packages: str = ""  # where the environment's packages came from (the wheelhouse, or the index)
    missing_modules: list[str] = field(default_factory=list)
    output: str = ""  # the tests' output (and the server's, when it failed)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failure(self) -> str:
        bad = next((c for c in self.checks if not c.ok), None)
        return f"{bad.name}: {bad.detail}" if bad else ""

    def text(self, checks: bool = True) -> str:
        """The report; ``checks=False`` when the checks were already shown as progress."""
        lines = [f"{'ok  ' if c.ok else 'FAIL'} {c.name} ({c.seconds:.1f} s){': ' + c.detail if c.detail else ''}"
                 for c in self.checks] if checks else []
        lines.append(f"bundle {self.bundle}: {'verified' if self.ok else 'NOT verified'}")
        if not self.ok and self.output:
            lines += ["", "output:", *self.output.splitlines()[-40:]]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"bundle": str(self.bundle), "ok": self.ok, "installer": self.installer,
                "env_seconds": self.env_seconds, "packages": self.packages, "missing_modules": self.missing_modules,
                "checks": [c.__dict__ for c in self.checks], "output": self.output}


def _uv() -> str | None:
    exe = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    return exe if Path(exe).is_file() else None


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """An environment that leaks nothing of this interpreter into the bundle's."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR",
            "REQUESTS_CA_BUNDLE", "PIP_CERT", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS",
            "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_CACHE_DIR", "UV_FIND_LINKS",
            "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(extra or {})
    return env


def _run(cmd: list[str], what: str, env: dict[str, str], timeout: float = 900,
         cwd: Path | None = None) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise VerifyError(f"{what} took more than {timeout:.0f} s") from None
    except OSError as exc:
        raise VerifyError(f"{what}: cannot run {cmd[0]}: {exc}") from None
    if p.returncode != 0:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-15:])
        raise VerifyError(f"{what} failed:\n{tail}")
    return p.stdout


@dataclass
class Sources:
    """Where an environment's packages come from: the arguments for pip/uv, and a line for the report."""

    lock: list[str]  # before ``-r requirements.lock``
    tests: list[str]  # before ``-r tests/requirements.txt``
    text: str
    offline: bool  # the lock from the bundle's wheelhouse alone (no index, no other source)


def package_sources(bundle: Path, xy: str, wheelhouse: bool = True) -> Sources:
    """The bundle's own wheelhouse, when it has one for Python ``xy`` (and ``wheelhouse``): the
    lock installed from it with no index, as its image installs it, so verify proves the
    wheelhouse complete; the tests' wheels from ``wheelhouse/tests`` (with the configured
    sources when some are not there). Otherwise the configured sources, as pip/uv find them."""
    from nbdeploy.bundle.wheelhouse import (
        FOLDER,
        TEST_REQUIREMENTS,
        TESTS,
        pin_key,
        read_pins,
        wheel_keys,
    )

    house = bundle / FOLDER
    wheels = sorted(house.glob("*.whl")) if house.is_dir() else []
    if not wheels:
        return Sources([], [], "the configured package sources", False)
    packed = str((read_manifest(bundle).get("wheelhouse") or {}).get("python") or "")
    if not wheelhouse:
        return Sources([], [], "the configured package sources (--no-wheelhouse)", False)
    if packed and packed != xy:
        return Sources([], [], f"the configured package sources (the wheelhouse is for Python {packed}, "
                               f"this environment runs {xy})", False)
    held = wheel_keys(w.name for w in (house / TESTS).glob("*.whl"))
    needed = read_pins(bundle / TEST_REQUIREMENTS) if (bundle / TEST_REQUIREMENTS).is_file() else []
    tests_offline = all(pin_key(p) in held for p in needed)
    tests = ["--find-links", str(house / TESTS), *(["--no-index"] if tests_offline else [])]
    return Sources(["--no-index", "--find-links", str(house)], tests,
                   f"the bundle's wheelhouse ({len(wheels)} wheels, no index)"
                   + ("" if tests_offline else "; the tests' packages from the configured sources"), True)


#: package sources a user's environment may name; dropped when the lock comes from the wheelhouse
_SOURCE_VARS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "UV_INDEX_URL",
                "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS", "UV_INDEX", "UV_DEFAULT_INDEX")


def create_env(bundle: Path, env_dir: Path, installer: str, python: str | None = None,
               wheelhouse: bool = True) -> tuple[Path, str, str]:
    """A virtual environment with the bundle's lock (and its tests' needs) only:
    (python, installer, where the packages came from: :func:`package_sources`)."""
    python = python or sys.executable
    lock = ["-r", str(bundle / "requirements.lock")]
    tests = ["-r", str(bundle / "tests" / "requirements.txt")] if (bundle / "tests" / "requirements.txt").is_file() else []
    env = clean_env()
    uv = _uv() if installer in ("auto", "uv") else None
    if installer == "uv" and uv is None:
        raise VerifyError("uv is not installed", hint="install uv, or verify with --pip")
    py = env_dir / "bin" / "python"
    if uv:
        _run([uv, "venv", "--quiet", "--python", python, str(env_dir)], "creating the environment (uv venv)", env)
        install = [uv, "pip", "install", "--quiet", "--python", str(py), "--no-deps"]
        name, command = "uv", "uv pip install"
    else:
        _run([python, "-m", "venv", str(env_dir)], "creating the environment (python -m venv)", env)
        install = [str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile"]
        name, command = "pip", "pip install"
    xy = _run([str(py), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
              "asking the environment's Python its version", env).strip()
    src = package_sources(bundle, xy, wheelhouse)
    if not src.offline:
        try:
            _run([*install, *lock, *tests], f"installing the bundle's lock ({command})", env)
        except VerifyError as exc:
            missing = _not_found(exc.message)
            if missing is None:
                raise
            raise VerifyError(
                f"the bundle's lock pins {missing}, which the package sources {name} uses do not have, so no "
                f"environment can be built from the lock: {_last_line(exc.message)}",
                hint="if it is a private package, give its index (PIP_INDEX_URL / PIP_EXTRA_INDEX_URL, or uv's "
                     "UV_INDEX_URL); if it is your own code installed from a folder, build the bundle again "
                     "with this nbdeploy, which ships such code with the model instead of pinning it") from None
        return py, name, src.text
    # from the wheelhouse alone: no index, and none of the user's configured sources either
    sealed = {k: v for k, v in env.items() if k not in _SOURCE_VARS}
    alone = ["--no-config"] if uv else ["--isolated"]
    try:
        _run([*install, *alone, *src.lock, *lock], f"installing the bundle's lock from its wheelhouse ({name}, "
                                                   "no index)", sealed)
    except VerifyError as exc:
        found = _not_found(exc.message)
        what = f" ({found})" if found else ""
        raise VerifyError(f"the bundle's wheelhouse cannot install its lock{what} for Python {xy} on this "
                          f"platform, so its image could not either: {_last_line(exc.message)}",
                          hint="pack it again on a machine like the image's (`nbdeploy image BUNDLE --wheelhouse`), "
                               "or verify against the package index with --no-wheelhouse") from None
    if tests:
        _run([*install, *src.tests, *tests], f"installing what the bundle's tests need ({command})",
             env if "--no-index" not in src.tests else sealed)
    return py, name, src.text


def _not_found(output: str) -> str | None:
    """The requirement pip or uv could not find in any package source (``name==version``), if that failed."""
    found = re.search(r"(?:No matching distribution found for|Because|no version of) ([A-Za-z0-9._-]+(?:==\S+)?)",
                      output)
    return found.group(1) if found else None


def isolation_problems(py: Path, env_dir: Path, cwd: Path | None = None) -> list[str]:
    """Paths on the environment's sys.path that belong to another installation, and nbdeploy if importable.

    Probed as the API runs: with ``cwd`` (the bundle) as the working directory.
    """
    probe = ("import json, sys, importlib.util as u; "
             "print(json.dumps({'path': sys.path, 'nbdeploy': u.find_spec('nbdeploy') is not None, "
             "'base': sys.base_prefix}))")
    out = json.loads(_run([str(py), "-c", probe], "probing the environment", clean_env(), cwd=cwd))
    base = Path(out["base"]).resolve()
    problems = []
    allowed = [env_dir.resolve(), base] + ([cwd.resolve()] if cwd else [])
    for p in out["path"]:
        rp = Path(p or cwd or ".").resolve()
        if "site-packages" in rp.parts and not rp.is_relative_to(env_dir.resolve()):
            problems.append(f"sees {p}")
        elif not any(rp == a or rp.is_relative_to(a) for a in allowed):
            problems.append(f"sees {p}")
    if out["nbdeploy"]:
        problems.append("can import nbdeploy")
    return problems


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Server:
    process: subprocess.Popen
    url: str
    log: Path

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_api(bundle: Path, py: Path, work: Path, timeout: float = 120.0) -> _Server:
    """``python -m nbdeploy_serve BUNDLE`` from the environment, on 127.0.0.1; wait for /health."""
    port = free_port()
    log = work / "server.log"
    env = clean_env({"NBDEPLOY_LOG_PATH": str(work / "requests.jsonl")})
    with log.open("wb") as fh:
        proc = subprocess.Popen([str(py), "-m", "nbdeploy_serve", str(bundle), "--host", "127.0.0.1",
                                 "--port", str(port)], cwd=bundle, env=env, stdin=subprocess.DEVNULL,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    server = _Server(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise _ServerDied(server)
        try:
            with urllib.request.urlopen(server.url + "/health", timeout=2) as r:
                if r.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise _ServerDied(server, f"no answer on {server.url}/health within {timeout:.0f} s")
        time.sleep(0.1)


class _ServerDied(Exception):
    def __init__(self, server: _Server, why: str | None = None) -> None:
        super().__init__(why or f"the API exited with code {server.process.returncode}")
        self.server = server


def run_tests(bundle: Path, py: Path, url: str) -> tuple[bool, str, str]:
    env = clean_env({"NBDEPLOY_API_URL": url})
    cmd = [str(py), "-m", "pytest", str(bundle / "tests"), "-q", "-p", "no:cacheprovider",
           "-c", str(bundle / "tests" / "pytest.ini"), "--rootdir", str(bundle / "tests")]
    p = subprocess.run(cmd, cwd=bundle / "tests", env=env, capture_output=True, text=True, timeout=900)
    out = p.stdout + p.stderr
    summary = next((ln.strip("= ") for ln in reversed(out.splitlines())
                    if re.search(r"\b(passed|failed|error|no tests ran)\b", ln)), f"exit {p.returncode}")
    return p.returncode == 0, summary, out


def missing_modules(*texts: str) -> list[str]:
    found: list[str] = []
    for t in texts:
        for m in _MISSING.findall(t):
            if m not in found:
                found.append(m)
    return found


def verify_bundle(bundle: str | Path, *, installer: str = "auto", progress: Progress | None = None,
                  keep_env: bool = False, python: str | None = None, wheelhouse: bool = True) -> VerifyReport:
    """Verify ``bundle``; the report says what passed. Raises VerifyError only for a non-bundle.

    The outcome is recorded beside the bundle (:func:`nbdeploy.bundle.readiness.record_verify`), so
    the panel and ``%deploy status`` show it whichever front end ran the check.
    """
    from nbdeploy.bundle.catalog import record_verify

    report = _verify(bundle, installer=installer, progress=progress, keep_env=keep_env,
                     python=python, wheelhouse=wheelhouse)
    record_verify(report.bundle, report.ok, report.failure or "verified")
    return report


def _verify(bundle: str | Path, *, installer: str, progress: Progress | None,
            keep_env: bool, python: str | None, wheelhouse: bool) -> VerifyReport:
    say = progress or silent
    root = Path(bundle).resolve()
    manifest = read_manifest(root)
    report = VerifyReport(root)
    has_program = (root / "model" / "nbdeploy_program").is_dir()
    steps = ["checksums", "environment", "isolation", *(["library"] if has_program else []), "api", "tests"]
    titles = {"checksums": "check every file against the manifest",
              "environment": "create a virtual environment from requirements.lock alone",
              "isolation": "check that it sees only its own packages",
              "library": "load the model through its own library from that environment",
              "api": "start the bundle's API from that environment",
              "tests": "run the bundle's tests against it"}

    def begin(name: str) -> float:
        say(ProgressEvent(titles[name], "started", steps.index(name) + 1, len(steps)))
        return time.perf_counter()

    def check(name: str, ok: bool, detail: str, t0: float) -> bool:
        took = time.perf_counter() - t0
        report.checks.append(Check(name, ok, detail, round(took, 3)))
        say(ProgressEvent(titles[name], "ok" if ok else "failed", steps.index(name) + 1, len(steps),
                          f"{name}: {detail}", took))
        return ok

    say(note(f"verifying {manifest.get('name')} v{manifest.get('version')} in {root}"))
    t0 = begin("checksums")
    problems = check_files(root, manifest)
    if not check("checksums", not problems, "; ".join(problems) or f"{len(manifest['files'])} files match", t0):
        return report
    work = Path(tempfile.mkdtemp(prefix="nbdeploy-verify-"))
    env_dir = work / "venv"
    server = None
    try:
        t0 = begin("environment")
        wanted = str(manifest.get("python") or "")
        if python is None and wanted and wanted != platform.python_version() and installer != "pip" and _uv():
            python = wanted  # uv finds (or fetches) the Python the model was trained with
        try:
            py, report.installer, report.packages = create_env(root, env_dir, installer, python, wheelhouse)
        except VerifyError as exc:
            report.output = exc.message
            check("environment", False, exc.message.splitlines()[0], t0)
            return report
        report.env_seconds = round(time.perf_counter() - t0, 3)
        check("environment", True, f"{report.installer}, {report.env_seconds:.1f} s, outside the bundle, "
                                   f"from {report.packages}", t0)
        t0 = begin("isolation")
        leaks = isolation_problems(py, env_dir, root)
        if not check("isolation", not leaks, "; ".join(leaks) or "sees only its own site-packages", t0):
            return report
        if has_program:
            # the API will answer from the compiled program (numpy only); the lock must still carry
            # everything the model itself needs, for NBDEPLOY_PROGRAM=0 and for rebuilding it
            t0 = begin("library")
            lib = subprocess.run([str(py), "-m", "nbdeploy_serve", str(root), "--check"], cwd=root,
                                 env=clean_env({"NBDEPLOY_PROGRAM": "0", "NBDEPLOY_LOG_PATH": ""}),
                                 capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
            if lib.returncode != 0:
                out = lib.stdout + lib.stderr
                check("library", False, _failed(report, out, _last_line(out)), t0)
                return report
            check("library", True, "the model loads and predicts its example without the compiled program", t0)
        t0 = begin("api")
        try:
            server = start_api(root, py, work)
        except _ServerDied as exc:
            out = exc.server.output()
            check("api", False, _failed(report, out, f"{exc}: {_last_line(out)}"), t0)
            return report
        check("api", True, f"{server.url} (pid {server.process.pid})", t0)
        t0 = begin("tests")
        passed, summary, out = run_tests(root, py, server.url)
        server.stop()
        report.output = out
        report.missing_modules = missing_modules(out, server.output())
        if not passed and report.missing_modules:
            summary += f"; module {report.missing_modules[0]!r} is not in the bundle's lock"
        check("tests", passed, summary, t0)
        return report
    finally:
        if server is not None:
            server.stop()
        if keep_env:
            say(note(f"environment kept at {env_dir}"))
        else:
            shutil.rmtree(work, ignore_errors=True)


def _failed(report: VerifyReport, out: str, otherwise: str) -> str:
    """Keep a failed step's output; the module it lacked, named, or ``otherwise``."""
    report.output = out
    report.missing_modules = missing_modules(out)
    if report.missing_modules:
        return f"module {report.missing_modules[0]!r} is not in the bundle's lock (requirements.lock)"
    return otherwise


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"
