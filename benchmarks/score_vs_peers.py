"""nbdeploy score vs MLflow's batch paths vs scikit-learn's predict: same model, same data, one run.

    .venv/bin/python benchmarks/score_vs_peers.py [--rows 1000000 10000000] [--workdir DIR] [--keep]

The model is the churn example's (example_notebooks/churn_classifier.ipynb: the same data,
features, pipeline and parameters), saved as a sealed bundle the way `nbdeploy build` saves
it (MLflow model, training profile, compiled program, manifest). The data: N rows drawn
from the churn data with a unique customer_id, as Parquet (row groups of 250,000 rows).
For each N, each contender runs as its own process over the same Parquet file and writes
customer_id + the prediction (as `nbdeploy score --id customer_id` does):

* scikit-learn: `mlflow.sklearn.load_model` once, then `model.predict` on each 200,000-row
  chunk read with pyarrow (the in-process floor of "just call predict");
* MLflow pyfunc: `mlflow.pyfunc.load_model(...).predict` over the same chunks;
* `mlflow models predict --env-manager local` on the same rows as CSV (1 M rows only);
* `nbdeploy score BUNDLE DATA -o OUT --id customer_id` with --workers 1 and --workers 2 (the
  bundle has a compiled program: one process, 1 or 2 scoring threads, plus a reader thread).

nbdeploy's bytecode is compiled before the runs, as `pip install` compiles an installed
package's (MLflow's and scikit-learn's in the venv are): with PYTHONDONTWRITEBYTECODE set, as
in this project's sessions, a source checkout would compile ~35 modules in every run (0.1-0.2
CPU s, a fifth of a 1 M-row run).

CPU seconds (user + system of the process tree) are printed beside, and the ratios per
CPU second: on a shared machine they move far less with the neighbours than wall times.
Rows/s are rows over the process's whole wall time (interpreter, imports, model load, read,
predict, write; nbdeploy also validates every row, checks the seal and hashes input and
output for lineage). Peak memory is the largest sum of RSS over the process and its
children, sampled every 0.05 s. Prints the table and each target of the issue with the
load average, since the machine is shared. Speed is never asserted in tests.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import CHURN_FEATURES, churn_bundle  # noqa: E402  (the churn model the benchmarks share)

PY = sys.executable
REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "example_notebooks"
CHUNK = 200_000
FEATURES = CHURN_FEATURES


def build_bundle(root: Path) -> None:
    """The churn notebook's model, saved and sealed as `nbdeploy build` saves it."""
    churn_bundle(root)


def make_data(path: Path, n: int, csv: Path | None = None) -> None:
    """n rows drawn from the churn data (customer_id made unique), written 500,000 at a time."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = pd.read_csv(EXAMPLES / "data" / "churn.csv")[FEATURES]
    rng = np.random.default_rng(0)
    writer = None
    done = 0
    while done < n:
        k = min(500_000, n - done)
        part = base.iloc[rng.integers(0, len(base), k)].reset_index(drop=True)
        part.insert(0, "customer_id", [f"C{i:09d}" for i in range(done, done + k)])
        table = pa.Table.from_pandas(part, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=250_000)
        if csv is not None:
            part[FEATURES].to_csv(csv, mode="a" if done else "w", header=not done, index=False)
        done += k
    writer.close()


_IN_PROCESS = r"""
import sys, time
import pyarrow as pa, pyarrow.parquet as pq
kind, model_dir, data, out = sys.argv[1:5]
features = sys.argv[5].split(",")
if kind == "sklearn":
    import mlflow.sklearn
    model = mlflow.sklearn.load_model(model_dir)
else:
    import mlflow.pyfunc
    model = mlflow.pyfunc.load_model(model_dir)
writer = None
predict_s = 0.0
for batch in pq.ParquetFile(data).iter_batches(batch_size=CHUNK):
    df = batch.to_pandas()
    t = time.perf_counter()
    pred = model.predict(df[features])
    predict_s += time.perf_counter() - t
    table = pa.table({"customer_id": batch.column("customer_id"), "prediction": pa.array(pred)})
    writer = writer or pq.ParquetWriter(out, table.schema)
    writer.write_table(table)
writer.close()
print("predict_s", predict_s)
""".replace("CHUNK", str(CHUNK))


def measure(cmd: list[str], env: dict | None = None) -> dict:
    """Wall seconds, CPU seconds (user + system of the process and every child it waited for: Dask's
    worker processes too) and peak RSS (the process tree's sum) of a command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    peak = 0
    ps = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            rss = sum(p.memory_info().rss for p in [ps, *ps.children(recursive=True)])
        except psutil.Error:
            rss = 0
        peak = max(peak, rss)
        time.sleep(0.05)
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed ({proc.returncode}):\n{err[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": seconds, "cpu": cpu, "peak_mb": peak / 2**20, "stdout": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="nbdeploy-score-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {work}; load average before: {os.getloadavg()}", flush=True)
    bundle = work / "bundle"
    build_bundle(bundle)
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([PY, "-m", "compileall", "-q", str(REPO / "nbdeploy")], check=True, stdout=subprocess.DEVNULL)
    results: dict[int, dict[str, dict]] = {}
    for n in args.rows:
        data, csv = work / f"data_{n}.parquet", (work / f"data_{n}.csv" if n <= 1_000_000 else None)
        if not data.exists():
            t = time.perf_counter()
            make_data(data, n, csv)
            print(f"generated {n:,} rows in {time.perf_counter() - t:.1f}s ({data.stat().st_size >> 20} MB)",
                  flush=True)
        res: dict[str, dict] = {}
        feats = ",".join(FEATURES)
        for kind in ("sklearn", "pyfunc"):
            res[kind] = measure([PY, "-c", _IN_PROCESS, kind, str(bundle / "model"), str(data),
                                 str(work / f"out_{kind}.parquet"), feats], env)
        if csv is not None:
            res["mlflow models predict"] = measure([str(Path(PY).parent / "mlflow"), "models", "predict", "-m",
                                                    str(bundle / "model"), "-i", str(csv), "-t", "csv",
                                                    "-o", str(work / "out_mlflow.json"), "--env-manager", "local"],
                                                   env)
        for w in (1, 2):
            res[f"nbdeploy score --workers {w}"] = measure(
                [PY, "-m", "nbdeploy", "score", str(bundle), str(data), "-o", str(work / f"out_nb{w}.parquet"),
                 "--id", "customer_id", "--workers", str(w)], env)
        _check_same(work, n)
        results[n] = res
        print(f"\n{n:,} rows (load average now {os.getloadavg()[0]:.2f}):", flush=True)
        for name, r in res.items():
            print(f"  {name:28} {r['seconds']:8.1f} s {n / r['seconds']:12,.0f} rows/s  CPU {r['cpu']:6.1f} s "
                  f"{n / r['cpu']:12,.0f} rows/CPU-s  peak {r['peak_mb']:7.0f} MB", flush=True)
    _targets(results)
    if not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


def _check_same(work: Path, n: int) -> None:
    """Every contender gave the same predictions for the same rows."""
    import pyarrow.parquet as pq

    ref = pq.read_table(work / "out_sklearn.parquet").column("prediction").to_numpy()
    for f in ("out_pyfunc.parquet", "out_nb1.parquet", "out_nb2.parquet"):
        got = pq.read_table(work / f).column("prediction").to_numpy()
        assert len(got) == n and (got == ref).all(), f"{f} differs from scikit-learn's predictions"


def _rate(res: dict, name: str, n: int) -> float:
    return n / res[name]["seconds"]


def _targets(results: dict[int, dict[str, dict]]) -> None:
    print("\ntargets:")
    for n, res in results.items():
        one, two = _rate(res, "nbdeploy score --workers 1", n), _rate(res, "nbdeploy score --workers 2", n)
        best = max(one, two)
        sk = _rate(res, "sklearn", n)
        print(f"  {n:,} rows: nbdeploy score (best of 1/2 workers) vs scikit-learn predict: {best / sk:.2f}x "
              f"(target >= 3x) {'OK' if best / sk >= 3 else 'MISSED'}; per CPU second (--workers 1): "
              f"{res['sklearn']['cpu'] / res['nbdeploy score --workers 1']['cpu']:.2f}x")
        print(f"  {n:,} rows: --workers 2 vs --workers 1: {two / one:.2f}x (target >= 1.6x) "
              f"{'OK' if two / one >= 1.6 else 'MISSED'}")
        if "mlflow models predict" in res:
            ml = _rate(res, "mlflow models predict", n)
            print(f"  {n:,} rows: vs mlflow models predict: {best / ml:.1f}x (target >= 10x) "
                  f"{'OK' if best / ml >= 10 else 'MISSED'}; per CPU second (--workers 1): "
                  f"{res['mlflow models predict']['cpu'] / res['nbdeploy score --workers 1']['cpu']:.2f}x")
        if n >= 10_000_000:
            peak = max(res[f"nbdeploy score --workers {w}"]["peak_mb"] for w in (1, 2))
            print(f"  {n:,} rows: peak memory of nbdeploy score {peak:.0f} MB (target <= 1536 MB) "
                  f"{'OK' if peak <= 1536 else 'MISSED'}")


if __name__ == "__main__":
    main()
