"""A 16-run grid: `nbdeploy batch --workers 2` vs a sequential loop over papermill.

Both run the same small notebook (the one of ``run_overhead.py``) over the same
16 parameter sets, each from a fresh Python process (a script with the loop; the
``nbdeploy batch`` command). The batch is timed end to end as a user runs it (the
``nbdeploy batch`` command: Python start-up, a LocalCluster of 2 workers, capture
in every run, run records, results CSV); MLflow logging happens afterwards in a
detached process and is reported separately.

    .venv/bin/python benchmarks/batch_vs_papermill.py [--runs 16] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from run_overhead import make_notebook  # noqa: E402

BIN = Path(sys.executable).parent


def _cpu() -> float:
    """CPU seconds used so far by this process and every finished descendant (kernels too)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    import papermill as pm
    import yaml

    with tempfile.TemporaryDirectory(prefix="nbdeploy-bench-") as tmp:
        nb = make_notebook(Path(tmp))
        sets = [{"alpha": 0.1 * i, "seed": i} for i in range(args.runs)]
        grid = Path(tmp) / "grid.yaml"
        grid.write_text(yaml.safe_dump({"runs": sets}))
        pm.execute_notebook(str(nb), str(Path(tmp) / "out" / "warm.ipynb"), cwd=tmp,
                            progress_bar=False)  # warm caches for both sides

        print(f"load average before: {os.getloadavg()[0]:.1f} (other processes share the 2 cores)")
        # the loop runs as a fresh script, as the batch does (both pay their imports)
        loop = (f"import papermill as pm, yaml\n"
                f"for i, values in enumerate(yaml.safe_load(open({str(grid)!r}))['runs']):\n"
                f"    pm.execute_notebook({str(nb)!r}, {tmp!r} + f'/out/seq-{{i}}.ipynb',\n"
                f"                        parameters=values, cwd={tmp!r}, progress_bar=False)\n")
        c, t = _cpu(), time.perf_counter()
        subprocess.run([sys.executable, "-c", loop], cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sequential, seq_cpu = time.perf_counter() - t, _cpu() - c
        print(f"sequential papermill loop, {args.runs} runs: {sequential:.1f}s "
              f"({seq_cpu:.1f} CPU s)", flush=True)

        c, t = _cpu(), time.perf_counter()
        proc = subprocess.run([str(BIN / "nbdeploy"), "batch", str(nb), "--grid", str(grid),
                               "--workers", str(args.workers)], cwd=tmp, capture_output=True,
                              text=True)
        batch, batch_cpu = time.perf_counter() - t, _cpu() - c
        if proc.returncode != 0:
            sys.exit(f"nbdeploy batch failed:\n{proc.stdout}\n{proc.stderr}")
        print(f"nbdeploy batch --workers {args.workers}, {args.runs} runs: {batch:.1f}s "
              f"({batch_cpu:.1f} CPU s) -> {sequential / batch:.2f}x faster", flush=True)
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        print("  " + proc.stdout.strip().splitlines()[-1])

        t = time.perf_counter()
        runs = list((Path(tmp) / ".nbdeploy" / "bench" / "runs").iterdir())
        while not all((r / "tracking.json").exists() for r in runs):
            time.sleep(0.5)
            if time.perf_counter() - t > 900:
                break
        logged = sum((r / "tracking.json").exists() for r in runs)
        print(f"  detached MLflow logger: {logged}/{len(runs)} runs logged "
              f"{time.perf_counter() - t:.1f}s after the command returned")


if __name__ == "__main__":
    main()
