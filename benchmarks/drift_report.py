"""How long a drift report over a big request log takes: target <= 10 s for 1 million logged rows.

Builds a bundle (a scikit-learn pipeline on 6 features: 3 continuous numbers, 1 integer,
1 category, 1 boolean; its profile with the quantile grid and a prediction profile),
writes a request log of ``--rows`` rows the way the server writes it (the server's own
writer, ``--per-request`` rows a request, rotated at 50 MB, the second half shifted), then
times the command a user runs::

    nbdeploy drift BUNDLE --log requests.jsonl --html report.html

(a fresh process: imports, reading every rotated file, SciPy's tests, the page). Prints the
median of ``--repeat`` runs and its ratio to the target.

Peer (optional): Evidently's DataDriftPreset on the same rows, given as a DataFrame (so
without reading the log), run with ``--peer-python`` naming an interpreter that has
evidently installed (it is not a dependency of nbdeploy); skipped with a line otherwise.

    .venv/bin/python benchmarks/drift_report.py [--rows 1000000] [--per-request 1] [--repeat 3]
                                                  [--peer-python /tmp/ev-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 10.0
REPO = Path(__file__).resolve().parents[1]


def _frame(n: int, seed: int, shift: bool = False):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "income": rng.normal(50_000 * (1.2 if shift else 1.0), 12_000, n).round(2),
        "balance": rng.lognormal(7, 1, n).round(2),
        "score": rng.normal(0, 1, n),
        "age": rng.integers(18, 80, n),
        "city": rng.choice(["paris", "lyon", "nice", "lille"], n, p=[0.4, 0.3, 0.2, 0.1]),
        "member": rng.random(n) > 0.5,
    })


def build_bundle(root: Path):
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from nbdeploy.capture.profile import profile_frame
    from nbdeploy.serve.seal import checksums

    X = _frame(50_000, seed=1)
    y = X["income"] / 1000 + X["age"]
    pre = ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "member"])],
                            remainder="passthrough")
    model = Pipeline([("pre", pre), ("model", Ridge())]).fit(X, y)
    mlflow.sklearn.save_model(model, str(root / "model"), signature=infer_signature(X, model.predict(X)),
                              serialization_format="cloudpickle")
    profile = profile_frame(X)
    profile["prediction"] = {"source": "bench", **profile_frame(pd.DataFrame({"prediction": model.predict(X)}))}
    (root / "profile.json").write_text(json.dumps(profile))
    (root / "nbdeploy.json").write_text(json.dumps({"name": "bench", "version": "1",
                                                    "model": {"serialization": "cloudpickle"},
                                                    "files": checksums(root)}))
    return model, X


def write_log(path: Path, model, rows: int, per_request: int):
    """The log as the server writes it: its own writer, rotation at 50 MB."""
    from nbdeploy.serve.requestlog import RequestLog

    half = rows // 2
    served = [_frame(half, seed=2), _frame(rows - half, seed=3, shift=True)]
    log = RequestLog(path, keep_seconds=0)  # keep every rotated file
    n = 0
    for df in served:
        predictions = model.predict(df).tolist()
        data = df.to_numpy(dtype=object).tolist()
        columns = list(df.columns)
        for i in range(0, len(df), per_request):
            part = data[i:i + per_request]
            log.write({"ts": 1.8e9 + n, "id": f"r{n}", "method": "POST", "path": "/invocations",
                       "endpoint": "invocations", "status": 200, "latency_ms": 0.8, "model": "bench",
                       "version": "1", "inputs": {"columns": columns, "data": part}, "rows": len(part),
                       "outputs": predictions[i:i + per_request]})
            n += 1
            if log.full:
                log._wake.set()
                time.sleep(0.01)
    log.close()
    import pandas as pd

    return pd.concat(served, ignore_index=True)


def time_nbdeploy(bundle: Path, log: Path, out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process): on a shared machine the CPU time says more."""
    import resource

    cmd = [sys.executable, "-m", "nbdeploy", "drift", str(bundle), "--log", str(log), "--html", str(out), "--json"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env={"PYTHONPATH": str(REPO),
                                                                  "PATH": "/usr/bin:/bin"})
    took = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode not in (0, 3):
        sys.exit(f"nbdeploy drift failed:\n{p.stderr[-2000:]}")
    doc = json.loads(p.stdout)
    print(f"  {took:.2f} s wall, {cpu:.2f} s CPU: verdict {doc['verdict']}, drifted {doc['drifted']}, "
          f"rows {doc['rows']}", flush=True)
    return took, cpu


PEER = """
import sys, time, pandas as pd
t0 = time.perf_counter()
from evidently import Report
from evidently.presets import DataDriftPreset
ref = pd.read_csv(sys.argv[1]); cur = pd.read_csv(sys.argv[2])
t1 = time.perf_counter()
Report([DataDriftPreset()]).run(reference_data=ref, current_data=cur).save_html(sys.argv[3])
print(f"{time.perf_counter() - t0:.2f} {time.perf_counter() - t1:.2f}")
"""


def time_peer(python: str, reference, current, tmp: Path) -> tuple[float, float] | None:
    ref, cur = tmp / "ref.csv", tmp / "cur.csv"  # CSV: the peer's environment may have another pandas
    reference.to_csv(ref, index=False)
    current.to_csv(cur, index=False)
    p = subprocess.run([python, "-c", PEER, str(ref), str(cur), str(tmp / "evidently.html")],
                       capture_output=True, text=True)
    if p.returncode != 0:
        print(f"  peer failed: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}")
        return None
    total, report = map(float, p.stdout.split())
    return total, report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--per-request", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peer-python", help="an interpreter with evidently installed")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bundle = tmp / "bundle"
        model, train = build_bundle(bundle)
        log = tmp / "requests.jsonl"
        t = time.perf_counter()
        served = write_log(log, model, args.rows, args.per_request)
        size = sum(p.stat().st_size for p in tmp.glob("requests.jsonl*"))
        print(f"log: {args.rows} rows in {args.rows // args.per_request} requests, {size / 1e6:.0f} MB in "
              f"{len(list(tmp.glob('requests.jsonl*')))} files, written in {time.perf_counter() - t:.1f} s", flush=True)
        runs = [time_nbdeploy(bundle, log, tmp / "report.html") for _ in range(args.repeat)]
        best = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        kb = (tmp / "report.html").stat().st_size / 1024
        load = os.getloadavg()[0]
        print(f"nbdeploy drift BUNDLE --log ... --html: median {best:.2f} s wall, {cpu:.2f} s CPU "
              f"(page {kb:.0f} kB; load average {load:.1f} on {os.cpu_count()} CPUs); target {TARGET_S:.0f} s: "
              f"wall {best / TARGET_S:.2f} of it ({'met' if best <= TARGET_S else 'NOT met'}), "
              f"CPU {cpu / TARGET_S:.2f} of it")
        if not args.peer_python:
            print("peer: evidently skipped (not a dependency of nbdeploy; give --peer-python with an interpreter "
                  "that has it, e.g. python -m venv /tmp/ev && /tmp/ev/bin/pip install evidently 'pandas<2.3')")
            return
        peer = time_peer(args.peer_python, train, served, tmp)
        if peer is not None:
            total, report = peer
            print(f"peer: evidently DataDriftPreset on the same rows as DataFrames (no log to read): {total:.2f} s "
                  f"with imports and reading the CSV, {report:.2f} s for the report alone; nbdeploy / evidently = "
                  f"{best / total:.2f}")


if __name__ == "__main__":
    main()
