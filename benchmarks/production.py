"""What the production modes cost: a shadow, a canary, a reload. One script, one run, same machine.

    .venv/bin/python benchmarks/production.py [--duration 3] [--rounds 3] [--reloads 3] [--bundle DIR ...]

The model is the churn example's (example_notebooks/churn_classifier.ipynb), saved, compiled
and sealed as `nbdeploy build` saves it (benchmarks/score_vs_peers.py builds it); version 2
is the same bundle sealed again as version 2 (a candidate that costs what the live one does).
Three servers run side by side (an idle one costs nothing; --pin pins them to one CPU and
wrk to the others): v1 alone, v1 with v2 as
`--shadow`, v1 with v2 as a 10 % `--canary`. wrk (one thread, the 1-row body of
benchmarks/serve_vs_mlflow.py, c=64) drives them in turn for --duration seconds:
plain, shadow, canary, plain, shadow, canary, ..., plain. Each shadow and canary run is
compared with the mean of the plain runs just before and after it, so that the drift of a
shared machine cancels out; the median ratio is reported. The shadow's GET /shadow says how
many of its requests it compared and how many it dropped (behind by max_pending).

Reload: a server with a token serves a symlink to v1; the symlink is moved to v2 (then back)
and POST /admin/reload is timed from the request to the first prediction answered by the new
version, --reloads times (the median is reported); --bundle DIR adds other built bundles
(each reloaded onto a copy of itself sealed as another version). Short runs on purpose: the
machine is shared. Speed is never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from score_vs_peers import EXAMPLES, FEATURES, build_bundle  # noqa: E402
from serving import load_average, pinning, wrk  # noqa: E402  (what the serving benchmarks share)

TOKEN = "bench-token"
TARGETS = (("throughput with a shadow candidate >= 0.8x without (req/s, alternating runs)", "shadow", 0.8, ">="),
           ("the same by the server's CPU per request (plain's / shadow's)", "shadow_cpu", 0.8, ">="),
           ("throughput with a 10 % canary >= 0.95x without (costs <= 5 %; req/s)", "canary", 0.95, ">="),
           ("the same by the server's CPU per request (plain's / canary's)", "canary_cpu", 0.95, ">="),
           ("reload to serving the new version <= 1 s", "reload", 1.0, "<="))


def second_version(bundle: Path, dest: Path, version: str) -> Path:
    """A copy of ``bundle`` sealed as ``version``: what a reload or a candidate loads."""
    from nbdeploy.serve.seal import checksums

    shutil.copytree(bundle, dest)
    manifest = json.loads((dest / "nbdeploy.json").read_text())
    manifest.pop("files", None)
    manifest["version"] = version
    (dest / "nbdeploy.json").write_text(json.dumps({**manifest, "files": checksums(dest)}))
    return dest


def one_row_body(bundle: Path, work: Path) -> Path:
    import pandas as pd

    example = json.loads((bundle / "model" / "input_example.json").read_text())
    frame = pd.DataFrame(example["data"], columns=example["columns"]).head(1)
    body = work / f"body-{bundle.name}.json"
    body.write_text(json.dumps({"dataframe_split": {"columns": list(frame.columns),
                                                    "data": json.loads(frame.to_json(orient="values"))}}))
    return body


SERVER_CPUS: list[str] = []
WRK: list[str] = []


def serve(bundle: Path, work: Path, name: str, **config):
    """A server of ``bundle`` started as `nbdeploy serve` starts it (its handle: url, stop()), pinned
    to the last CPU while wrk runs on the others (as benchmarks/serving.py pins them)."""
    from nbdeploy.serve import ServeConfig, launch

    handle = launch(bundle, ServeConfig(port=0, log_path=str(work / f"{name}.jsonl"), **config), timeout=180)
    if SERVER_CPUS:
        os.sched_setaffinity(handle.pid, {int(c) for c in SERVER_CPUS[-1].split(",")})
    return handle


def modes(v1: Path, v2: Path, body: Path, work: Path, duration: int, rounds: int) -> dict:
    servers = {"plain": serve(v1, work, "plain"), "shadow": serve(v1, work, "shadow", shadow=str(v2)),
               "canary": serve(v1, work, "canary", canary=str(v2), canary_percent=10.0)}
    try:
        runs: dict[str, list[float]] = {k: [] for k in servers}
        cpu: dict[str, list[float]] = {k: [] for k in servers}
        for i in range(rounds + 1):
            order = ["plain"] if i == rounds else ["plain", "shadow", "canary"]
            for name in order:
                proc = psutil.Process(servers[name].pid)
                before = sum(proc.cpu_times()[:2])
                r = wrk(f"{servers[name].url}/invocations", body, 64, duration, WRK)
                cpu_ms = (sum(proc.cpu_times()[:2]) - before) / (r["rps"] * duration) * 1000
                runs[name].append(r["rps"])
                cpu[name].append(cpu_ms)
                print(f"   round {i + 1} {name:7} {r['rps']:8.0f} req/s  p50 {r['p50']:6.2f} ms  "
                      f"p99 {r['p99']:6.2f} ms  server CPU {cpu_ms * 1000:5.0f} us/request"
                      + (f"  non-2xx {r['non2xx']}" if r["non2xx"] else ""), flush=True)
        with urllib.request.urlopen(f"{servers['shadow'].url}/shadow", timeout=30) as resp:
            shadow = json.loads(resp.read())
    finally:
        for handle in servers.values():
            handle.stop()
    plain = runs["plain"]
    ratios = {name: [x / ((plain[i] + plain[i + 1]) / 2) for i, x in enumerate(runs[name])]
              for name in ("shadow", "canary")}
    # CPU seconds a request costs the server: what bounds its throughput on a saturated machine,
    # and far steadier than wall-clock rates when neighbours share the CPUs
    cpu_ratios = {name: [statistics.median(cpu["plain"]) / x for x in cpu[name]] for name in ("shadow", "canary")}
    return {"runs": runs, "ratios": ratios, "cpu_ms": cpu, "cpu_ratios": cpu_ratios, "shadow_report": {k: shadow.get(k) for k in (
        "requests", "dropped", "errors", "agreement", "pending")}}


def reloads(bundle: Path, body: Path, work: Path, times: int) -> list[float]:
    """Seconds from POST /admin/reload to the first answer of the new version, ``times`` times."""
    name = bundle.name
    a = second_version(bundle, work / f"{name}-a", "101")
    b = second_version(bundle, work / f"{name}-b", "102")
    link = work / f"{name}-live"
    link.symlink_to(a)
    handle = serve(link, work, f"reload-{name}", token=TOKEN)
    url = handle.url
    out = []
    try:
        for i in range(times):
            target, version = (b, "102") if i % 2 == 0 else (a, "101")
            tmp = work / f"{name}-next"
            tmp.symlink_to(target)
            os.replace(tmp, link)  # the symlink moves in one step, as a deploy script would move it
            t0 = time.perf_counter()
            req = urllib.request.Request(f"{url}/admin/reload", data=b"", method="POST",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(req, timeout=60) as resp:
                answer = json.loads(resp.read())
            while True:
                req = urllib.request.Request(f"{url}/invocations", data=body.read_bytes(),
                                             headers={"Content-Type": "application/json",
                                                      "Authorization": f"Bearer {TOKEN}"})
                with urllib.request.urlopen(req, timeout=30) as resp:
                    if resp.headers["x-model-version"] == version:
                        break
            out.append(time.perf_counter() - t0)
            print(f"   reload {name} v{answer.get('previous')} -> v{answer.get('version')}: "
                  f"{out[-1]:.3f} s to the first answer of v{version} (the server's own count "
                  f"{answer.get('seconds')} s)", flush=True)
    finally:
        handle.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=3, help="seconds per wrk run (default 3)")
    ap.add_argument("--rounds", type=int, default=3, help="plain/shadow/canary rounds (default 3)")
    ap.add_argument("--reloads", type=int, default=3, help="reloads timed per bundle (default 3)")
    ap.add_argument("--bundle", action="append", default=[], help="another built bundle to time reloads of")
    ap.add_argument("--pin", action="store_true",
                    help="pin the servers to the last CPU and wrk to the others (benchmarks/serving.py); off by "
                         "default: on a shared machine the neighbours' load on that one CPU inflates every figure")
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args()
    if args.pin:
        server, client = pinning()
        SERVER_CPUS.extend(server)
        WRK.extend(client)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: install it (Debian/Ubuntu: apt-get install -y wrk) and run again")
    work = Path(tempfile.mkdtemp(prefix="nbdeploy-production-"))
    try:
        v1 = work / "churn_classifier"
        print(f"building the churn example's bundle in {v1} (features {', '.join(FEATURES[:3])}, ... "
              f"from {EXAMPLES}) ...", flush=True)
        build_bundle(v1)
        v2 = second_version(v1, work / "churn_classifier-v2", "2")
        body = one_row_body(v1, work)
        print(f"-- shadow and canary against plain, 1 row, c=64, {args.rounds} rounds of {args.duration} s", flush=True)
        res = {"modes": modes(v1, v2, body, work, args.duration, args.rounds), "reload": {}}
        print("-- reload", flush=True)
        for bundle in [v1, *map(Path, args.bundle)] if args.reloads > 0 else []:
            res["reload"][str(bundle)] = reloads(bundle.resolve(), one_row_body(bundle, work), work, args.reloads)
        report(res)
        if args.out:
            Path(args.out).write_text(json.dumps(res, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(res: dict) -> None:
    m = res["modes"]
    print(f"\nload average {load_average()} on {os.cpu_count()} CPUs (a shared machine: short runs); "
          f"servers pinned to CPU {SERVER_CPUS[-1] if SERVER_CPUS else '-'}, wrk to {WRK[-1] if WRK else '-'}")
    for name in ("shadow", "canary"):
        rs, cs = m["ratios"][name], m["cpu_ratios"][name]
        print(f"{name}: {', '.join(f'{r:.0%}' for r in rs)} of plain's req/s (median {statistics.median(rs):.0%}); "
              f"plain's CPU per request / {name}'s: {', '.join(f'{r:.0%}' for r in cs)} "
              f"(median {statistics.median(cs):.0%})")
    s = m["shadow_report"]
    print(f"the shadow compared {s['requests']} requests, dropped {s['dropped']} (behind), errors {s['errors']}")
    worst_reload = max((statistics.median(v) for v in res["reload"].values()), default=math.nan)
    for bundle, times in res["reload"].items():
        print(f"reload {Path(bundle).name}: {', '.join(f'{t:.3f}' for t in times)} s "
              f"(median {statistics.median(times):.3f} s)")
    values = {"shadow": statistics.median(m["ratios"]["shadow"]), "canary": statistics.median(m["ratios"]["canary"]),
              "shadow_cpu": statistics.median(m["cpu_ratios"]["shadow"]),
              "canary_cpu": statistics.median(m["cpu_ratios"]["canary"]), "reload": worst_reload}
    print("\ntargets:")
    for text, key, limit, op in TARGETS:
        if math.isnan(values[key]):
            continue
        ok = values[key] >= limit if op == ">=" else values[key] <= limit
        print(f"  [{'met' if ok else 'MISSED'}] {text}: {values[key]:.3g} (target {op} {limit:.3g})")


if __name__ == "__main__":
    main()
