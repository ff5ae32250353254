"""Soak: nbdeploy serve under wrk for a minute, once with one worker and once with --workers 2.

    .venv/bin/python benchmarks/load_soak.py [--duration 60] [--connections 64] [--log-max-bytes 16777216]
                                            [--workers 1 2] [--out FILE]

The bundle is the one serve_vs_mlflow.py builds (a scikit-learn GradientBoosting pipeline over six
columns, saved with MLflow and compiled as `nbdeploy build` does); each request is one row. For each
worker count: start `python -m nbdeploy.serve` with a request log, drive it with wrk (one thread,
--connections, --duration s), sample the resident memory of the server's whole process tree every
second, then read /metrics and /health, stop the server with SIGTERM and count the records of its
log - the current files and every rotated .gz file of every worker. Targets (issue 17):

- zero errors: no socket errors and no non-2xx answers in wrk's count;
- resident memory growth <= 10 % between the 10th and the last second of the load;
- request-log records == requests the server answered (nbdeploy_requests_total, read after the
  load), after a clean shutdown (exit code 0), and no record dropped;
- (for information) records - wrk's completed requests: requests answered after wrk stopped
  reading, at most one per connection.

Prints a table with each figure against its target. Needs `wrk` (Debian: apt-get install wrk).
Only 127.0.0.1 is used. The figures depend on the machine and what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve_vs_mlflow as bench  # noqa: E402  (same bundle and helpers)

ROOT = bench.ROOT
MEMORY_GROWTH_TARGET = 0.10


def soak(bundle: Path, body: Path, work: Path, workers: int, duration: int, connections: int,
         log_max_bytes: int) -> dict:
    port = bench.free_port()
    logdir = work / f"logs-w{workers}"
    logdir.mkdir()
    log = logdir / "requests.jsonl"
    cmd = [sys.executable, "-m", "nbdeploy.serve", str(bundle), "--port", str(port), "--workers", str(workers),
           "--log-path", str(log), "--log-max-bytes", str(log_max_bytes)]
    print(f"-- {workers} worker(s): {' '.join(cmd[1:])}", flush=True)
    proc, launch = bench.start(cmd, port, body.read_bytes(), work / f"server-w{workers}.log",
                               {"PYTHONPATH": str(ROOT)})
    base = f"http://127.0.0.1:{port}"
    try:
        if workers > 1:  # every worker loaded and answering before the clock starts
            deadline = time.monotonic() + 120
            while _metric(_get(base + "/metrics"), "nbdeploy_workers") != workers:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the {workers} workers did not all start; see {work}")
                bench.post(base + "/invocations", body.read_bytes())
                time.sleep(0.5)
        warm = _metric(_get(base + "/metrics"), 'nbdeploy_requests_total{endpoint="invocations",status="200"}')
        samples: list[tuple[float, float]] = []
        done = threading.Event()

        def sample() -> None:
            t0 = time.monotonic()
            while not done.wait(1.0):
                samples.append((time.monotonic() - t0, bench.tree_rss_mb(proc.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out = _wrk(base + "/invocations", body, connections, duration)
        done.set()
        sampler.join()
        time.sleep(2.5)  # in-flight requests end; every worker shares its counts (once a second)
        metrics = _get(base + "/metrics")
        health = json.loads(_get(base + "/health"))
    finally:
        code = _stop(proc)
    served = sum(v for k, v in _series(metrics, "nbdeploy_requests_total").items() if 'endpoint="invocations"' in k)
    ok = _metric(metrics, 'nbdeploy_requests_total{endpoint="invocations",status="200"}')
    dropped = {k: v for k, v in _series(metrics, "nbdeploy_requestlog_dropped_total").items()}
    from nbdeploy.serve.logfiles import count_lines, family_files

    files = family_files(log)
    records = sum(count_lines(f) for f in files)
    at10 = _at(samples, 10.0)
    last = samples[-1] if samples else (0.0, 0.0)
    return {
        "workers": workers, "launch_s": round(launch, 2), "wrk": out, "served": served, "served_ok": ok,
        "warm_up_requests": warm, "records": records, "files": len(files),
        "gz_files": sum(f.name.endswith(".gz") for f in files),
        "gz_bytes": sum(f.stat().st_size for f in files if f.name.endswith(".gz")),
        "dropped": dropped, "health": health.get("status"), "exit_code": code,
        "rss_mb_at_10s": at10, "rss_mb_last": last[1], "rss_last_s": round(last[0], 1),
        "rss_growth": (last[1] - at10) / at10 if at10 else None,
        "rss_samples": [(round(t, 1), round(m, 1)) for t, m in samples],
    }


def _seal(root: Path) -> None:
    """The manifest with every file's checksum, as `nbdeploy build` writes it (the server refuses a bundle
    without one; serve_vs_mlflow.build_bundle predates that)."""
    from nbdeploy.serve.seal import checksums

    manifest = json.loads((root / "nbdeploy.json").read_text())
    (root / "nbdeploy.json").write_text(json.dumps({**manifest, "files": checksums(root)}))


def _wrk(url: str, body: Path, c: int, duration: int) -> dict:
    lua = body.with_suffix(".lua")
    lua.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                   f'local f = io.open("{body}", "rb")\nwrk.body = f:read("*a")\nf:close()\n')
    cmd = ["wrk", "-t1", f"-c{c}", f"-d{duration}s", "--latency", "--timeout", "10s", "-s", str(lua), url]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"wrk exited {done.returncode}: {(done.stderr or done.stdout).strip()[-500:]}")
    text = done.stdout
    completed = int(re.search(r"(\d+) requests in", text).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    pct = {m.group(1): bench._ms(m.group(2)) for m in re.finditer(r"^\s+(50|99)%\s+(\S+)", text, re.M)}
    return {"completed": completed, "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
            "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": sum(int(x) for x in errors.groups()) if errors else 0,
            "p50_ms": pct.get("50"), "p99_ms": pct.get("99")}


def _stop(proc: subprocess.Popen) -> int | None:
    """SIGTERM to the server (the supervisor with several workers), and its exit code."""
    try:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        bench.stop(proc)
        return None


def _at(samples: list[tuple[float, float]], t: float) -> float:
    """The memory sampled nearest to second ``t``."""
    if not samples:
        return 0.0
    return min(samples, key=lambda s: abs(s[0] - t))[1]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def _series(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def _metric(text: str, series: str) -> float:
    return _series(text, series.split("{")[0]).get(series, 0.0)


def table(results: list[dict], connections: int, duration: int) -> str:
    rows = [("figure", "measured", "target", "met")]
    for r in results:
        w = r["wrk"]
        tag = f"w={r['workers']}"
        errors = w["non2xx"] + w["socket_errors"]
        rows += [
            (f"{tag} requests/s (c={connections}, {duration} s)", f"{w['rps']:.0f}", "-", ""),
            (f"{tag} p50 / p99 latency", f"{w['p50_ms']:.2f} / {w['p99_ms']:.2f} ms", "-", ""),
            (f"{tag} errors (non-2xx + socket)", str(errors), "0", _yes(errors == 0)),
            (f"{tag} RSS at 10 s -> {r['rss_last_s']:.0f} s", f"{r['rss_mb_at_10s']:.1f} -> {r['rss_mb_last']:.1f} MiB",
             "", ""),
            (f"{tag} RSS growth", f"{100 * r['rss_growth']:+.1f} %", "<= +10 %",
             _yes(r["rss_growth"] is not None and r["rss_growth"] <= MEMORY_GROWTH_TARGET)),
            (f"{tag} log records / requests served", f"{r['records']} / {r['served']:.0f}", "equal",
             _yes(r["records"] == r["served"])),
            (f"{tag} records - wrk completed", f"{r['records'] - r['warm_up_requests'] - w['completed']:.0f}",
             f"0..{connections}", ""),
            (f"{tag} records dropped", json.dumps({k.split('"')[1]: int(v) for k, v in r["dropped"].items()}), "all 0",
             _yes(not any(r["dropped"].values()))),
            (f"{tag} log files (rotated .gz)", f"{r['files']} ({r['gz_files']}, {r['gz_bytes'] / 2**20:.1f} MiB)",
             "", ""),
            (f"{tag} /health, exit code after SIGTERM", f"{r['health']}, {r['exit_code']}", "ok, 0",
             _yes(r["health"] == "ok" and r["exit_code"] == 0)),
        ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    return "\n".join("  ".join(str(c).ljust(widths[i]) for i, c in enumerate(row)).rstrip() for row in rows)


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=60)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--log-max-bytes", type=int, default=16 * 2**20,
                   help="rotation size (smaller than the default 50 MiB, so that a minute rotates and compresses)")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="nbdeploy-soak-"))
    try:
        bundle = work / "bundle"
        bundle.mkdir()
        _, X = bench.build_bundle(bundle)
        _seal(bundle)
        row = X.head(1)
        body = work / "body.json"
        body.write_text(json.dumps({"dataframe_split": {"columns": list(row.columns),
                                                        "data": json.loads(row.to_json(orient="values"))}}))
        results = [soak(bundle, body, work, w, args.duration, args.connections, args.log_max_bytes)
                   for w in args.workers]
    finally:
        if not os.environ.get("NBDEPLOY_KEEP_SOAK"):
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"nbdeploy serve soak, {os.cpu_count()} CPUs (shared with other work while measured)")
    print(table(results, args.connections, args.duration))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
