"""How long `nbdeploy verify` takes to create the bundle's environment: uv vs pip, same run.

Builds the churn example bundle once (or takes ``--bundle DIR``), then creates the
lock-only virtual environment the way verify does, alternating uv and pip
(``--repeat`` times each, fresh folder each time, warm package caches after one
warm-up each). Reported: median seconds for each, and uv / pip (target <= 1/3).

verify installs without compiling bytecode with either installer; ``--pip-compile``
also times pip's default (compiling), for reference.

    .venv/bin/python benchmarks/verify_env.py [--repeat 3] [--bundle DIR] [--pip-compile]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "example_notebooks"


def _bundle(tmp: Path) -> Path:
    from nbdeploy.bundle import build_bundle

    project = tmp / "examples"
    shutil.copytree(EXAMPLES, project, ignore=shutil.ignore_patterns(".nbdeploy", "*-bundle"))
    return build_bundle(project / "churn_classifier.ipynb").bundle


def _time_env(bundle: Path, installer: str, where: Path) -> float:
    from nbdeploy.bundle.verify import create_env

    if where.exists():
        shutil.rmtree(where)
    t = time.perf_counter()
    create_env(bundle, where, installer)
    return time.perf_counter() - t


def _pip_compiled(bundle: Path, where: Path) -> float:
    from nbdeploy.bundle.verify import clean_env

    if where.exists():
        shutil.rmtree(where)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, env=clean_env())
    subprocess.run([str(where / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
                    "-r", str(bundle / "requirements.lock"), "-r", str(bundle / "tests" / "requirements.txt")],
                   check=True, env=clean_env(), capture_output=True)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bundle", type=Path)
    ap.add_argument("--pip-compile", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nbdeploy-bench-verify-") as tmp_s:
        tmp = Path(tmp_s)
        bundle = args.bundle.resolve() if args.bundle else _bundle(tmp)
        env = tmp / "venv"
        _time_env(bundle, "uv", env)  # warm-ups: both package caches hold every wheel
        _time_env(bundle, "pip", env)
        uv, pip, pipc = [], [], []
        for _ in range(args.repeat):
            uv.append(_time_env(bundle, "uv", env))
            pip.append(_time_env(bundle, "pip", env))
            if args.pip_compile:
                pipc.append(_pip_compiled(bundle, env))
    lock = [ln for ln in (bundle / "requirements.lock").read_text().splitlines() if "==" in ln]
    res = {"bundle": str(bundle), "packages": len(lock), "uv_s": statistics.median(uv),
           "pip_s": statistics.median(pip), "ratio": statistics.median(uv) / statistics.median(pip),
           "pip_compiling_s": statistics.median(pipc) if pipc else None, "uv_all": uv, "pip_all": pip}
    print(f"environment from the lock ({res['packages']} packages), median of {args.repeat}:")
    print(f"  uv  {res['uv_s']:6.1f} s")
    print(f"  pip {res['pip_s']:6.1f} s   (--no-compile, as verify runs it)")
    if pipc:
        print(f"  pip {res['pip_compiling_s']:6.1f} s   (pip's default: compiling bytecode)")
    print(f"  uv / pip = {res['ratio']:.2f}  ({'ok' if res['ratio'] <= 1 / 3 else 'OVER'}: target <= 0.33)")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
