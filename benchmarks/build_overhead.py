"""What `nbdeploy build` costs on top of running the notebook.

For each example notebook, alternating, after one warm-up of each:

* ``nbdeploy run NB --tracking off``          the notebook's own execution (fresh kernel, capture on)
* ``nbdeploy build NB -o DIR --force --json`` the whole build

Reported: median wall times, the overhead (build - run; target <= 5 s), and the
build's own breakdown from its JSON result (the papermill run including the
export cell, the export cell alone, and the host-side steps).

    .venv/bin/python benchmarks/build_overhead.py [--repeat 3] [--notebooks churn_classifier diabetes_regression]
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
from pathlib import Path

BIN = Path(sys.executable).parent
EXAMPLES = Path(__file__).resolve().parents[1] / "example_notebooks"


def _timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    took = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr[-2000:]}")
    return took, p.stdout


def bench(project: Path, stem: str, repeat: int) -> dict:
    nb = project / f"{stem}.ipynb"
    out = project / f"{stem}-bench-bundle"
    run_cmd = [str(BIN / "nbdeploy"), "run", nb.name, "--tracking", "off"]
    build_cmd = [str(BIN / "nbdeploy"), "build", nb.name, "-o", str(out), "--force", "--json"]
    _timed(run_cmd, project)  # warm-up: caches, kernel spec, the embedded stores
    _timed(build_cmd, project)
    runs, builds, docs = [], [], []
    for _ in range(repeat):
        runs.append(_timed(run_cmd, project)[0])
        took, stdout = _timed(build_cmd, project)
        builds.append(took)
        docs.append(json.loads(stdout))
    run_s, build_s = statistics.median(runs), statistics.median(builds)
    doc = docs[builds.index(sorted(builds)[len(builds) // 2])]
    host = {s["step"]: s["seconds"] for s in doc["steps"]}
    return {"notebook": nb.name, "run_s": run_s, "build_s": build_s, "overhead_s": build_s - run_s,
            "papermill_in_build_s": doc["notebook_seconds"], "export_cell_s": doc["export_seconds"],
            "host_steps_s": {k: v for k, v in host.items() if "clean kernel" not in k}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--notebooks", nargs="+", default=["churn_classifier", "diabetes_regression"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="nbdeploy-bench-build-") as tmp:
        project = Path(tmp) / "examples"
        shutil.copytree(EXAMPLES, project, ignore=shutil.ignore_patterns(".nbdeploy", "*-bundle"))
        results = [bench(project, stem, args.repeat) for stem in args.notebooks]
    print(f"{'notebook':28} {'run':>7} {'build':>7} {'overhead':>9}   (median of {args.repeat}; target <= 5 s)")
    for r in results:
        flag = "ok" if r["overhead_s"] <= 5 else "OVER"
        print(f"{r['notebook']:28} {r['run_s']:6.1f}s {r['build_s']:6.1f}s {r['overhead_s']:8.1f}s  {flag}")
        steps = ", ".join(f"{k.split(' ')[0]} {v:.2f}s" for k, v in r["host_steps_s"].items())
        print(f"  inside the build: papermill run {r['papermill_in_build_s']:.1f}s "
              f"(export cell {r['export_cell_s']:.1f}s); host steps: {steps}")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
