"""Image size, build time and run-to-first-prediction for the example bundle's container.

    python benchmarks/container_image.py [--bundle DIR] [--base IMAGE] [--ca-bundle FILE]
                                         [--runs 3] [--keep]

Without ``--bundle`` the churn example notebook is built into a bundle in a temporary
folder first (``nbdeploy build``). Without ``--base``, a base image is made with
``nbdeploy base-image`` (debootstrap from the host's Debian mirror) unless the default one
already exists. The image is always built from scratch (``--no-cache``), so the build
time includes every pip install. Targets: image <= 450 MB, run -> first prediction <= 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZE_TARGET_MB, FIRST_PREDICTION_TARGET_S = 450, 3.0


def _example_bundle(work: Path) -> Path:
    src = REPO / "example_notebooks"
    nb_dir = work / "examples"
    shutil.copytree(src, nb_dir, ignore=shutil.ignore_patterns(".nbdeploy", "__pycache__",
                                                               "scored_test.csv", "*-bundle"))
    out = work / "churn-bundle"
    subprocess.run([sys.executable, "-m", "nbdeploy", "build", "churn_classifier.ipynb", "-o",
                    str(out)], cwd=nb_dir, check=True, stdout=subprocess.DEVNULL)
    return out


def _payload(bundle: Path) -> bytes:
    """The first golden rows of the bundle's tests, as an MLflow ``dataframe_split`` request."""
    golden = json.loads((bundle / "tests" / "golden.json").read_text())
    rows = golden.get("data") or golden.get("rows")
    return json.dumps({"dataframe_split": {"columns": golden["columns"],
                                           "data": rows[:5]}}).encode()


def _first_prediction(engine, tag: str, payload: bytes, run_flags: tuple[str, ...]
                      ) -> tuple[float, float]:
    """(wall seconds from `run` to the first successful prediction, CPU seconds the server
    used until then). The CPU time does not depend on what else the host is running."""
    import urllib.request

    from nbdeploy.container.process import run
    from nbdeploy.container.run import remove_container, start_container

    c = start_container(engine, tag, run_flags=run_flags)
    try:
        while time.monotonic() - c.started < 120:
            req = urllib.request.Request(c.url + "/invocations", data=payload,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    if r.status == 200:
                        wall = time.monotonic() - c.started
                        break
            except OSError:
                time.sleep(0.02)
        else:
            raise RuntimeError(f"no prediction within 120 s; logs:\n{c.logs()}")
        pid = run(engine.cmd("inspect", "--format", "{{.State.Pid}}", c.name), "pid").stdout.strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        return wall, cpu
    finally:
        remove_container(c)


def main(argv: list[str] | None = None) -> int:
    from nbdeploy.container.base_image import build_base_image, default_tag
    from nbdeploy.container.engine import detect_engine
    from nbdeploy.container.image import build_image, find_image, remove_image
    from nbdeploy.container.options import ContainerOptions

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle")
    p.add_argument("--base")
    p.add_argument("--engine")
    p.add_argument("--ca-bundle", default="/etc/ssl/certs/ca-certificates.crt")
    p.add_argument("--runs", type=int, default=3, help="container starts to time")
    p.add_argument("--keep", action="store_true", help="keep the image")
    p.add_argument("--image", help="time this existing image of --bundle instead of building")
    args = p.parse_args(argv)

    engine = detect_engine(args.engine)
    work = Path(tempfile.mkdtemp(prefix="nbdeploy-bench-"))
    try:
        bundle = Path(args.bundle) if args.bundle else _example_bundle(work)
        base = args.base or default_tag("3.11", "bookworm")
        if not args.base and find_image(engine, base) is None:
            print(f"building {base} ...", flush=True)
            print(build_base_image(base, engine=engine).text())
        ca = Path(args.ca_bundle) if args.ca_bundle and Path(args.ca_bundle).is_file() else None
        tag = "localhost/nbdeploy-bench:latest"
        opts = ContainerOptions.from_env(engine=engine.name, base=base, tag=tag, ca_bundle=ca)
        opts = replace(opts, build_flags=(*opts.build_flags, "--no-cache"))
        if args.image:  # startup timings only
            from nbdeploy.container.image import ImageResult, inspect_image

            info = inspect_image(engine, args.image)
            tag, args.keep = args.image, True
            image = ImageResult(tag, info.image_id, info.digest, info.size_bytes, engine.name, 0.0,
                                reused=True)
        else:
            image = build_image(bundle, opts, engine=engine)
        payload = _payload(bundle)
        runner = engine.runner()
        timings = [_first_prediction(runner, tag, payload, opts.run_flags)
                   for _ in range(args.runs)]
        starts = [w for w, _ in timings]
        size_mb = image.size_bytes / 1e6
        first = statistics.median(starts)
        print(json.dumps({
            "engine": f"{engine.name} {engine.version}", "base": base, "image": tag,
            "size_mb": round(size_mb, 1), "size_target_mb": SIZE_TARGET_MB,
            "build_seconds": round(image.seconds, 1),
            "run_to_first_prediction_s": [round(s, 2) for s in starts],
            "run_to_first_prediction_median_s": round(first, 2),
            "server_cpu_s_until_first_prediction": [round(c, 2) for _, c in timings],
            "host_load_average_1m": round(os.getloadavg()[0], 2), "host_cpus": os.cpu_count(),
            "first_prediction_target_s": FIRST_PREDICTION_TARGET_S,
            "size_ok": size_mb <= SIZE_TARGET_MB, "first_prediction_ok": first <= FIRST_PREDICTION_TARGET_S,
        }, indent=2))
        if not args.keep:
            remove_image(engine, tag)
        return 0 if size_mb <= SIZE_TARGET_MB and first <= FIRST_PREDICTION_TARGET_S else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
