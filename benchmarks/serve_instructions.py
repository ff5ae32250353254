"""CPU instructions per request: nbdeploy serve against the bare-ASGI HTTP floor, under callgrind.

    .venv/bin/python benchmarks/serve_instructions.py [--seconds 20] [--concurrency 64] [--bundle DIR]

The floor ratio of benchmarks/serve_vs_mlflow.py divides two request rates, and on a
shared machine a core's speed can change by half within minutes, so that ratio moves
with the neighbours. Instructions do not: valgrind's callgrind counts every instruction
the server process executes (all its threads), whatever else runs on the machine.

Both servers (the same floor app as serve_vs_mlflow_floor.py, and `nbdeploy serve` on the
same bundle, with its request log on) start under callgrind with instrumentation off; once
they answer, it is switched on, wrk sends 1-row bodies at the given concurrency
for --seconds, and it is switched off again. Instructions per request are the
collected total divided by the requests wrk completed. Under callgrind the servers are
~50× slower, so at c=64 nbdeploy's batches are full, as they are under real load.

The printed ratio (floor instructions / nbdeploy instructions per request) is what the
throughput ratio would be if both ran at the same instructions per cycle; it is a
steadier judge of the server's own cost, not the issue's measure itself. Needs valgrind
and wrk (Debian: apt-get install valgrind wrk). Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve_vs_mlflow as bench  # noqa: E402  (same bundle, body, ports and wrk driver)
from serving import v2_body  # noqa: E402

ROOT = bench.ROOT


def _collected(out_file: Path) -> int:
    """The instructions (Ir) in one callgrind dump file."""
    text = out_file.read_text(errors="replace")
    m = re.search(r"^totals:\s+(\d+)", text, re.M) or re.search(r"^summary:\s+(\d+)", text, re.M)
    if not m:
        raise SystemExit(f"no instruction total in {out_file}")
    return int(m.group(1))


def measure(name: str, cmd: list[str], port: int, body: Path, work: Path, seconds: int, c: int,
            path: str = "/invocations") -> dict:
    out = work / f"{name}.callgrind"
    vg = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p",
          "--dump-instr=no", "--dump-line=no"]
    print(f"-- {name} under callgrind: {' '.join(cmd)}", flush=True)
    url = f"http://127.0.0.1:{port}{path}"
    proc, launch = bench.start([*vg, *cmd], url, body.read_bytes(), work / f"{name}.log",
                               {"PYTHONPATH": str(ROOT)})
    try:
        print(f"   answering after {launch:.1f} s", flush=True)
        bench.wrk(url, body, c, 3, timeout=60)  # warm: first-call costs out of the count
        before = _batches(port)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
        run = bench.wrk(url, body, c, seconds, timeout=60)  # under callgrind, on a busy machine: slow
        subprocess.run(["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        after = _batches(port)
        time.sleep(0.5)
    finally:
        bench.stop(proc)
    requests = round(run["rps"] * seconds)
    if run["non2xx"] or run["socket_errors"] or requests == 0:
        raise SystemExit(f"{name}: the load did not go through cleanly: {run}")
    dumps = sorted(work.glob(f"{name}.callgrind.*"))
    instructions = sum(_collected(f) for f in dumps if f.stat().st_size)
    per = instructions / requests
    rows = None
    if before and after and after[1] > before[1]:
        rows = (after[0] - before[0]) / (after[1] - before[1])
    print(f"   {requests} requests, {instructions / 1e9:.2f} G instructions: {per / 1e3:.1f} k per request"
          + (f"; {rows:.1f} rows per batch" if rows else ""), flush=True)
    return {"requests": requests, "instructions": instructions, "per_request": per, "rows_per_batch": rows}


def _batches(port: int) -> tuple[float, float] | None:
    """(rows, batches) so far, from nbdeploy's /metrics (None for the floor, which has none)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            text = r.read().decode()
    except (OSError, ValueError):
        return None
    found = dict(re.findall(r"^nbdeploy_batch_rows_(sum|count) (\S+)$", text, re.M))
    return (float(found["sum"]), float(found["count"])) if len(found) == 2 else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=20, help="seconds of load under callgrind (default 20)")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--bundle", help="a bundle folder (default: build the benchmark's bundle)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (callgrind files, logs)")
    ap.add_argument("--no-floor", action="store_true", help="measure nbdeploy only (to compare its settings)")
    ap.add_argument("--serve-args", default="", help="more `nbdeploy serve` options, e.g. '--log-path \"\"'")
    ap.add_argument("--protocol", choices=("invocations", "v2"), default="invocations",
                    help="the route nbdeploy is driven on: /invocations (dataframe_split) or the V2 infer route "
                         "(V2 JSON, one tensor per column; the floor parses the same body)")
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args()
    for tool in ("valgrind", "callgrind_control", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (Debian: apt-get install valgrind wrk)")
    work = Path(tempfile.mkdtemp(prefix="nbdeploy-instr-"))
    if args.keep:
        print(f"work folder (kept): {work}", flush=True)
    try:
        if args.bundle:
            bundle = Path(args.bundle)
            example = json.loads((bundle / "model" / "input_example.json").read_text())
            row = {"columns": example["columns"], "data": example["data"][:1]}
        else:
            bundle = work / "bundle"
            bundle.mkdir()
            _, X = bench.build_bundle(bundle)
            row = {"columns": list(X.columns), "data": X.head(1).astype(object).values.tolist()}
        body = work / "body1.json"
        path = "/invocations"
        if args.protocol == "v2":
            import pandas as pd

            name = json.loads((bundle / "nbdeploy.json").read_text())["name"]
            path = f"/v2/models/{name}/infer"
            body.write_text(json.dumps(v2_body(pd.DataFrame(row["data"], columns=row["columns"])), default=str))
        else:
            body.write_text(json.dumps({"dataframe_split": row}, default=str))
        pf, pn = bench.free_port(), bench.free_port()
        floor = None if args.no_floor else measure("floor", [bench.PY, str(ROOT / "benchmarks" / "serve_vs_mlflow_floor.py"), str(pf)], pf,
                        body, work, args.seconds, args.concurrency, path)
        nb = measure("nbdeploy", [bench.PY, "-m", "nbdeploy.serve", str(bundle), "--port", str(pn),
                                  "--log-path", str(work / "requests.jsonl"), *shlex.split(args.serve_args)], pn, body, work, args.seconds,
                     args.concurrency, path)
        if floor is None:
            return
        ratio = floor["per_request"] / nb["per_request"]
        print(f"\n1-row bodies on {path}, c={args.concurrency}: instructions per request floor "
              f"{floor['per_request'] / 1e3:.1f} k, nbdeploy {nb['per_request'] / 1e3:.1f} k; "
              f"ratio {ratio:.0%} (the throughput ratio at equal instructions per cycle; the issue asks >= 70 % of the floor in throughput)")
        if args.out:
            Path(args.out).write_text(json.dumps({"floor": floor, "nbdeploy": nb, "ratio": ratio}, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
