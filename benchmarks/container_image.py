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
import shutil
import statistics
import subprocess
import sys
import tempfile
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


def main(argv: list[str] | None = None) -> int:
    from nbdeploy.container.base_image import build_base_image, default_tag
    from nbdeploy.container.engine import detect_engine
    from nbdeploy.container.image import build_image, find_image, remove_image
    from nbdeploy.container.options import ContainerOptions
    from nbdeploy.container.verify import first_prediction_seconds

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle")
    p.add_argument("--base")
    p.add_argument("--engine")
    p.add_argument("--ca-bundle", default="/etc/ssl/certs/ca-certificates.crt")
    p.add_argument("--runs", type=int, default=3, help="container starts to time")
    p.add_argument("--keep", action="store_true", help="keep the image")
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
        image = build_image(bundle, opts, engine=engine)
        payload = _payload(bundle)
        starts = [first_prediction_seconds(engine.name, tag, payload, run_flags=opts.run_flags)
                  for _ in range(args.runs)]
        size_mb = image.size_bytes / 1e6
        first = statistics.median(starts)
        print(json.dumps({
            "engine": f"{engine.name} {engine.version}", "base": base, "image": tag,
            "size_mb": round(size_mb, 1), "size_target_mb": SIZE_TARGET_MB,
            "build_seconds": round(image.seconds, 1),
            "run_to_first_prediction_s": [round(s, 2) for s in starts],
            "run_to_first_prediction_median_s": round(first, 2),
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
