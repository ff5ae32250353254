"""nbdeploy serve vs mlflow models serve: one script, one run, same model, same machine.

    .venv/bin/python benchmarks/serve_vs_mlflow.py [--duration 10] [--launches 3] [--pairs 5] [--out FILE]

Trains a scikit-learn GradientBoosting pipeline, saves it with MLflow into a bundle and
compiles it (as `nbdeploy build` does), then for each server (the HTTP floor, `mlflow models
serve --env-manager local`, `nbdeploy serve`) measures launch-to-first-prediction (for mlflow
and nbdeploy the median of --launches starts) and drives it with wrk (one wrk thread, a Lua
script for the POST body) for --duration seconds at concurrency 1, 8 and 64 with a 1-row and a
100-row body. Prints requests/s, p50 and p99, the ratios and the targets of the serving issue;
also the in-process predict time (the model's and the compiled program's), resident memory
after the load, nbdeploy with NBDEPLOY_PROGRAM=0, a c=1 check with 2 workers (uvicorn issue
3149: Nagle left on), and the floor ratio from alternating runs (--pairs). Only
127.0.0.1 is used. Needs `wrk` (Debian: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import (  # noqa: E402  (what the serving benchmarks share)
    BIN,
    CONCURRENCY,
    PY,
    ROOT,
    ROWS,
    free_port,
    start,
    stop,
    wrk,
)
from serving import measure as _measure  # noqa: E402


def build_bundle(root: Path):
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from mlflow.sklearn import save_model
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from nbdeploy.capture.profile import profile_frame

    rng = np.random.default_rng(0)
    n = 5000
    X = pd.DataFrame({
        "age": rng.integers(18, 90, n), "income": rng.normal(50_000, 15_000, n).round(2),
        "tenure": rng.exponential(5, n).round(2), "city": rng.choice(["paris", "lyon", "nice", "lille"], n),
        "plan": rng.choice(["basic", "plus", "pro"], n), "member": rng.random(n) > 0.4,
    })
    y = ((X.age > 50) ^ (X.city == "nice") | (X.tenure > 9)).astype(int)
    pre = ColumnTransformer([("num", StandardScaler(), ["age", "income", "tenure"]),
                             ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan", "member"])])
    model = Pipeline([("pre", pre), ("gb", GradientBoostingClassifier(n_estimators=100, random_state=0))]).fit(X, y)
    save_model(model, str(root / "model"), signature=infer_signature(X, model.predict(X)),
               input_example=X.head(3), skops_trusted_types=["sklearn.tree._tree.Tree"])
    (root / "profile.json").write_text(json.dumps(profile_frame(X)))
    # what `nbdeploy build` does after saving: compile the model, prove it equal, keep it in the bundle,
    # seal every file in the manifest (the server refuses a bundle without its file list)
    from nbdeploy.bundle.compiler import write_program
    from nbdeploy.serve.seal import checksums

    outcome = write_program(model, root / "model", json.loads((root / "profile.json").read_text()))
    print(f"compiled program: {outcome}", flush=True)
    manifest = {"name": "bench", "version": "1", "model": {"serialization": "skops"}}
    (root / "nbdeploy.json").write_text(json.dumps({**manifest, "files": checksums(root)}))
    return model, X


def model_floor(model, X, bundle: Path) -> dict[str, dict[int, float]]:
    """Median in-process predict time (ms) of 1 and 100 rows: the scikit-learn model on a DataFrame
    (what the issue calls in-process predict) and, when there is one, the compiled program on the
    columns the server builds from a request."""
    from nbdeploy.serve.bundle import read_bundle
    from nbdeploy.serve.predictor import build_table
    from nbdeploy.serve.program import PROGRAM_DIR, Program

    calls = {"sklearn": lambda df: (lambda: model.predict(df))}
    folder = bundle / "model" / PROGRAM_DIR
    if folder.is_dir():
        program, columns = Program.load(folder), read_bundle(bundle).columns
        def program_call(df):
            table = build_table(columns, {c: df[c].tolist() for c in df.columns})
            return lambda: program.predict(table)

        calls["program"] = program_call
    out: dict[str, dict[int, float]] = {}
    for name, make in calls.items():
        out[name] = {}
        for rows in ROWS:
            call = make(X.head(rows))
            for _ in range(20):
                call()
            times = []
            for _ in range(200):
                t = time.perf_counter()
                call()
                times.append(time.perf_counter() - t)
            out[name][rows] = statistics.median(times) * 1000
    return out


def measure(name: str, cmd: list[str], port: int, bodies: dict[int, Path], work: Path, duration: int,
            env: dict | None = None, cases=None, launch_count: int = 1) -> dict:
    return _measure(name, cmd, f"http://127.0.0.1:{port}/invocations", bodies, work, duration, env, cases,
                    launch_count)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--out", help="also write the results as JSON here")
    ap.add_argument("--pairs", type=int, default=5,
                    help="alternating 4 s runs of the floor and nbdeploy (1 row, c=64) for the paired ratio")
    ap.add_argument("--launches", type=int, default=3,
                    help="starts of mlflow and nbdeploy timed to the first prediction; the median is reported")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: install it (Debian/Ubuntu: apt-get install -y wrk) and run again")
    work = Path(tempfile.mkdtemp(prefix="nbdeploy-bench-"))
    bundle = work / "bundle"
    bundle.mkdir()
    print(f"building the model in {bundle} ...", flush=True)
    model, X = build_bundle(bundle)
    floors = model_floor(model, X, bundle)
    for name, ms in floors.items():
        print(f"in-process predict ({name}): 1 row {ms[1]:.2f} ms, 100 rows {ms[100]:.2f} ms", flush=True)
    bodies = {}
    for rows in ROWS:
        df = X.head(rows)
        doc = {"dataframe_split": {"columns": list(df.columns), "data": json.loads(df.to_json(orient="values"))}}
        bodies[rows] = work / f"body{rows}.json"
        bodies[rows].write_text(json.dumps(doc))

    res = {"predict_ms": floors["sklearn"], "program_predict_ms": floors.get("program")}
    p = free_port()
    res["floor"] = measure("floor", [PY, str(ROOT / "benchmarks" / "serve_vs_mlflow_floor.py"), str(p)], p, bodies,
                           work, args.duration, env={"PYTHONPATH": str(ROOT)})
    p = free_port()
    res["mlflow"] = measure("mlflow", [str(BIN / "mlflow"), "models", "serve", "-m", str(bundle / "model"),
                                       "--env-manager", "local", "-h", "127.0.0.1", "-p", str(p)], p, bodies, work,
                            args.duration, launch_count=args.launches)
    p = free_port()
    res["nbdeploy"] = measure("nbdeploy", [PY, "-m", "nbdeploy.serve", str(bundle), "--port", str(p),
                                           "--log-path", str(work / "requests.jsonl")], p, bodies, work,
                              args.duration, env={"PYTHONPATH": str(ROOT)}, launch_count=args.launches)
    c1 = [(1, 1)]
    p = free_port()
    res["nbdeploy_library"] = measure("nbdeploy, NBDEPLOY_PROGRAM=0 (the model through scikit-learn)",
                                      [PY, "-m", "nbdeploy.serve", str(bundle), "--port", str(p),
                                       "--log-path", str(work / "lib.jsonl")], p, bodies, work, args.duration,
                                      env={"PYTHONPATH": str(ROOT), "NBDEPLOY_PROGRAM": "0"},
                                      cases=[(1, 1), (1, 64)])
    p = free_port()
    res["nbdeploy_w2"] = measure("nbdeploy-2-workers", [PY, "-m", "nbdeploy.serve", str(bundle), "--port", str(p),
                                                        "--workers", "2", "--log-path", str(work / "w2.jsonl")],
                                 p, bodies, work, args.duration, env={"PYTHONPATH": str(ROOT)}, cases=c1)
    p = free_port()
    res["mlflow_w2"] = measure("mlflow-2-workers", [str(BIN / "mlflow"), "models", "serve", "-m", str(bundle / "model"),
                                                    "--env-manager", "local", "-h", "127.0.0.1", "-p", str(p),
                                                    "-w", "2"], p, bodies, work, args.duration, cases=c1)
    res["paired"] = paired_floor(bundle, bodies[1], work, args.pairs)
    report(res)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    shutil.rmtree(work, ignore_errors=True)


def paired_floor(bundle: Path, body: Path, work: Path, pairs: int) -> dict:
    """The floor ratio, measured so that the machine's drift cancels out.

    On a shared machine the speed of a core can change by a third from one minute to the
    next, which the 10 s runs above (minutes apart) cannot tell from a real difference. Here
    both servers run side by side (the idle one costs nothing) and 4 s runs alternate:
    floor, nbdeploy, floor, nbdeploy, ... Each nbdeploy run is compared with the mean of
    the floor runs just before and after it; the median of those ratios is reported.
    """
    pf, pn = free_port(), free_port()
    floor, _ = start([PY, str(ROOT / "benchmarks" / "serve_vs_mlflow_floor.py"), str(pf)],
                     f"http://127.0.0.1:{pf}/invocations", body.read_bytes(),
                     work / "paired-floor.log", {"PYTHONPATH": str(ROOT)})
    nb, _ = start([PY, "-m", "nbdeploy.serve", str(bundle), "--port", str(pn), "--log-path",
                   str(work / "paired.jsonl")], f"http://127.0.0.1:{pn}/invocations", body.read_bytes(), work / "paired-nbdeploy.log",
                  {"PYTHONPATH": str(ROOT)})
    try:
        f_runs, n_runs = [], []
        for i in range(pairs + 1):
            f_runs.append(wrk(f"http://127.0.0.1:{pf}/invocations", body, 64, 4)["rps"])
            if i < pairs:
                n_runs.append(wrk(f"http://127.0.0.1:{pn}/invocations", body, 64, 4)["rps"])
    finally:
        stop(floor)
        stop(nb)
    ratios = [n / ((f_runs[i] + f_runs[i + 1]) / 2) for i, n in enumerate(n_runs)]
    print(f"-- paired, 1 row, c=64: floor {', '.join(f'{x:.0f}' for x in f_runs)} req/s; "
          f"nbdeploy {', '.join(f'{x:.0f}' for x in n_runs)} req/s; ratios "
          f"{', '.join(f'{r:.0%}' for r in ratios)}", flush=True)
    return {"floor_rps": f_runs, "nbdeploy_rps": n_runs, "ratios": ratios, "median": statistics.median(ratios)}


def report(res: dict) -> None:
    m, n, f = res["mlflow"], res["nbdeploy"], res["floor"]
    print("\n| body | c | mlflow req/s | nbdeploy req/s | floor req/s | nbdeploy/mlflow | nbdeploy/floor "
          "| mlflow p50 / p99 ms | nbdeploy p50 / p99 ms | floor p50 / p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for rows in ROWS:
        for c in CONCURRENCY:
            k = f"{rows}x{c}"
            a, b, fl = m["runs"][k], n["runs"][k], f["runs"][k]
            print(f"| {rows} row{'s' if rows > 1 else ''} | {c} | {a['rps']:.0f} | {b['rps']:.0f} | {fl['rps']:.0f} "
                  f"| {b['rps'] / a['rps']:.1f}x | {b['rps'] / fl['rps']:.0%} | {a['p50']:.2f} / {a['p99']:.2f} "
                  f"| {b['p50']:.2f} / {b['p99']:.2f} | {fl['p50']:.2f} / {fl['p99']:.2f} |")
    w2n, w2m = res["nbdeploy_w2"]["runs"]["1x1"], res["mlflow_w2"]["runs"]["1x1"]
    print(f"\n2 workers, 1 row, c=1: mlflow {w2m['rps']:.0f} req/s (p50 {w2m['p50']:.2f} ms), "
          f"nbdeploy {w2n['rps']:.0f} req/s (p50 {w2n['p50']:.2f} ms)")
    print(f"launch to first prediction: mlflow {m['launch_s']:.2f} s, nbdeploy {n['launch_s']:.2f} s, "
          f"floor {f['launch_s']:.2f} s")
    print(f"resident memory after the load: mlflow {m['rss_mb']:.0f} MiB, nbdeploy {n['rss_mb']:.0f} MiB")
    print(f"in-process predict: 1 row {res['predict_ms'][1]:.2f} ms, 100 rows {res['predict_ms'][100]:.2f} ms")
    prog = res.get("program_predict_ms")
    if prog:
        print(f"in-process compiled program: 1 row {prog[1]:.3f} ms, 100 rows {prog[100]:.3f} ms; "
              f"nbdeploy p50 at c=1 is that + {n['runs']['1x1']['p50'] - prog[1]:.2f} ms")
    lib = res.get("nbdeploy_library")
    if lib:
        print(f"nbdeploy with NBDEPLOY_PROGRAM=0: launch {lib['launch_s']:.2f} s, 1 row c=1 "
              f"{lib['runs']['1x1']['rps']:.0f} req/s (p50 {lib['runs']['1x1']['p50']:.2f} ms), c=64 "
              f"{lib['runs']['1x64']['rps']:.0f} req/s (p99 {lib['runs']['1x64']['p99']:.2f} ms), "
              f"{lib['rss_mb']:.0f} MiB")
    r64, r1 = "1x64", "1x1"
    checks = [
        ("1-row throughput at c=64 >= 15x mlflow", n["runs"][r64]["rps"] / m["runs"][r64]["rps"], 15, ">="),
        ("1-row throughput at c=64 >= 50% of the HTTP floor (the table's runs)",
         n["runs"][r64]["rps"] / f["runs"][r64]["rps"], 0.5, ">="),
        ("1-row throughput at c=64 >= 50% of the HTTP floor (median of the paired runs)",
         res["paired"]["median"], 0.5, ">="),
        ("p50 at c=1 <= in-process predict + 1 ms", n["runs"][r1]["p50"], res["predict_ms"][1] + 1, "<="),
        ("p99 at c=64 <= 1/10 of mlflow's", n["runs"][r64]["p99"] / m["runs"][r64]["p99"], 0.1, "<="),
        ("launch to first prediction <= 1/5 of mlflow's", n["launch_s"] / m["launch_s"], 0.2, "<="),
        ("resident memory after the load <= mlflow's", n["rss_mb"] / m["rss_mb"], 1.0, "<="),
    ]
    print("\ntargets:")
    for text, value, limit, op in checks:
        ok = value >= limit if op == ">=" else value <= limit
        print(f"  [{'met' if ok else 'MISSED'}] {text}: {value:.3g} (target {op} {limit:.3g})")


if __name__ == "__main__":
    main()
