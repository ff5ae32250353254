"""``nbdeploy verify BUNDLE --container``: the bundle's own tests against its real container.

Build (or reuse) the image, run it with the port published on 127.0.0.1, wait for the
V2 readiness check, run ``BUNDLE/tests`` with ``NBDEPLOY_API_URL`` pointing at the
container, then stop and remove the container, whatever happened.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from nbdeploy.base.errors import ContainerError, VerifyError
from nbdeploy.container.engine import detect_engine
from nbdeploy.container.image import ImageResult, build_image
from nbdeploy.container.options import ContainerOptions
from nbdeploy.container.process import OnLine
from nbdeploy.container.run import running_container


@dataclass(frozen=True)
class ContainerVerifyResult:
    bundle: Path
    image: ImageResult
    url: str
    container: str  # its name; removed by the time this result exists
    ready_seconds: float  # from `run` to the first successful health check
    passed: bool
    summary: str  # pytest's last line, e.g. "12 passed in 3.1s"
    output: str
    seconds: float

    def text(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        return (f"{self.image.text()}\n"
                f"container {self.container} ready in {self.ready_seconds:.2f} s at {self.url} "
                "(removed)\n"
                f"bundle tests against the container: {verdict}: {self.summary}")

    def to_dict(self) -> dict:
        return {"bundle": str(self.bundle), "image": {**self.image.__dict__,
                                                      "saved": str(self.image.saved or "")},
                "url": self.url, "container": self.container, "ready_seconds": self.ready_seconds, "passed": self.passed,
                "summary": self.summary, "seconds": self.seconds}


def run_bundle_tests(bundle: Path, url: str, on_line: OnLine | None = None,
                     python: str | None = None) -> tuple[bool, str, str]:
    """Run ``bundle/tests`` with pytest against ``url``: (passed, summary line, output)."""
    tests = bundle / "tests"
    if not tests.is_dir():
        raise VerifyError(f"{bundle} has no tests/ folder", hint="rebuild the bundle")
    env = {**os.environ, "NBDEPLOY_API_URL": url}
    env.pop("PYTEST_ADDOPTS", None)
    # the same invocation as `nbdeploy verify`: the suite's own pytest.ini, rootdir tests/
    cmd = [python or sys.executable, "-m", "pytest", str(tests), "-q", "-p", "no:cacheprovider",
           "--rootdir", str(tests)]
    if (tests / "pytest.ini").is_file():
        cmd += ["-c", str(tests / "pytest.ini")]
    try:
        proc = subprocess.Popen(cmd, cwd=tests, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
    except OSError as exc:
        raise VerifyError(f"cannot run pytest: {exc}") from None
    lines = []
    assert proc.stdout is not None
    for raw in proc.stdout:
        lines.append(raw.rstrip("\n"))
        if on_line:
            on_line(lines[-1])
    rc = proc.wait()
    summary = next((ln.strip("= ") for ln in reversed(lines)
                    if re.search(r"\b(passed|failed|error|no tests ran)\b", ln)), f"exit {rc}")
    return rc == 0, summary, "\n".join(lines)


def verify_container(bundle: str | Path, opts: ContainerOptions | None = None, *,
                     rebuild: bool = False, health_timeout: float = 120.0,
                     on_line: OnLine | None = None, python: str | None = None
                     ) -> ContainerVerifyResult:
    """Build or reuse the bundle's image, test the running container, remove it."""
    started = time.monotonic()
    bundle = Path(bundle).resolve()
    opts = opts or ContainerOptions.from_env()
    engine = detect_engine(opts.engine)
    image = build_image(bundle, opts, engine=engine, on_line=on_line, reuse=not rebuild)
    if on_line:
        on_line(f"== {'reusing' if image.reused else 'built'} {image.tag}; starting a container")
    runner = engine.runner()
    with running_container(runner, image.tag, health_timeout=health_timeout,
                           run_flags=opts.run_flags, env=opts.env) as c:
        if on_line:
            on_line(f"== container ready in {c.ready_seconds:.2f} s at {c.url}; running "
                    f"{bundle / 'tests'}")
        passed, summary, output = run_bundle_tests(bundle, c.url, on_line, python)
        if not passed:
            output += "\n--- container logs ---\n" + c.logs(100)
    return ContainerVerifyResult(bundle, image, c.url, c.name, c.ready_seconds, passed, summary,
                                 output, time.monotonic() - started)


def first_prediction_seconds(engine_name: str | None, image: str, payload: bytes,
                             path: str = "/invocations", timeout: float = 60.0,
                             run_flags: tuple[str, ...] = ()) -> float:
    """Seconds from ``ENGINE run`` to the first successful prediction (for benchmarks)."""
    import urllib.error
    import urllib.request

    from nbdeploy.container.run import remove_container, start_container

    engine = detect_engine(engine_name).runner()
    c = start_container(engine, image, run_flags=run_flags)
    try:
        while time.monotonic() - c.started < timeout:
            req = urllib.request.Request(c.url + path, data=payload,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    if r.status == 200:
                        return time.monotonic() - c.started
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.02)
        raise ContainerError(f"no successful prediction within {timeout:.0f} s; logs:\n{c.logs()}")
    finally:
        remove_container(c)


__all__ = ["ContainerVerifyResult", "first_prediction_seconds", "run_bundle_tests",
           "verify_container"]
