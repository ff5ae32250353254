"""nbdeploy serve vs the servers users pick for speed: BentoML, Seldon's MLServer, LitServe.

    .venv/bin/python benchmarks/serve_vs_peers.py [--quick] [--duration 10] [--launches 3]
        [--only nbdeploy,bentoml,...] [--cache DIR] [--no-pin] [--out FILE]

One run, one machine, one model: the churn example's (example_notebooks/churn_classifier.ipynb,
built as `nbdeploy build` builds it; the peers load the same fitted pipeline with joblib).
Each peer runs from its own virtual environment, made by this script under --cache (default
~/.cache/nbdeploy/bench-peers) and reused by later runs, with the scikit-learn and numpy of
this one so that the pickle loads; a peer that cannot be installed (no network) is skipped
with one line saying so.

* BentoML 1.4: a service whose API is batchable (adaptive batching on), one worker; the body
  is the rows as records. (A `pd.DataFrame` argument cannot be batched in BentoML 1.4.40: its
  batch size is taken as the frame's shape, a tuple, and every request times out.)
* MLServer 1.7 with its scikit-learn runtime, adaptive batching on (max_batch_size 64,
  max_batch_time 2 ms), default settings otherwise (one inference worker process); the body is
  the V2 JSON one, one tensor per column, decoded as a pandas frame. uvloop < 0.22, which
  MLServer 1.7 was released with: its inference worker does not start with uvloop 0.22.
* LitServe: a LitAPI with its defaults (no batching), the body as MLflow's dataframe_split.
* nbdeploy serve on /invocations (dataframe_split) and on the V2 route (the same V2 JSON body
  as MLServer's); and the bare-ASGI HTTP floor of serve_vs_mlflow_floor.py.

Every server is pinned to the last CPU and wrk to the others (taskset; --no-pin to turn it
off), as the servers would share nothing with the load generator. For each: launch to first
prediction (the median of --launches starts), wrk at c=1, 8, 64 with 1-row and 100-row
bodies (req/s, p50, p99), resident memory of the process tree after the load, and the load
average beside each run: on a shared machine throughput moves with the neighbours
(benchmarks/serve_instructions.py gives the steadier instruction counts). Prints the table,
then each target of the issue with its ratio. The two ratio targets (V2 against /invocations,
nbdeploy against the floor) are judged by --pairs alternating rounds run at the end: the floor
and one nbdeploy server up at once, 1-row runs at c=64 taking turns a few seconds apart (the
table's runs of two servers are minutes apart, and a shared machine's speed moves in minutes);
the table's ratio is printed beside. --quick: 2 s runs, one launch each, two rounds.
Needs wrk (Debian: apt-get install wrk); only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serving  # noqa: E402  (what the serving benchmarks share)
from serving import CHURN_FEATURES, PY, ROOT, ROWS, free_port, load_average, v2_body  # noqa: E402

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nbdeploy" / "bench-peers"


@dataclass
class Peer:
    name: str
    requirements: list[str]
    #: the body a request sends: "split" (MLflow's dataframe_split), "v2" or "records"
    body: str
    path: str
    files: dict[str, str] = field(default_factory=dict)


BENTO_SERVICE = '''
import os
import typing as t

import bentoml
import joblib
import pandas as pd


@bentoml.service(workers=1)
class Churn:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["CHURN_MODEL"])

    @bentoml.api(batchable=True, max_batch_size=1024, max_latency_ms=1000)
    def predict(self, rows: list[dict[str, t.Any]]) -> list[int]:
        return self.model.predict(pd.DataFrame.from_records(rows)).tolist()
'''

LITSERVE_SERVER = '''
import os
import sys

import joblib
import litserve as ls
import pandas as pd


class Churn(ls.LitAPI):
    def setup(self, device):
        self.model = joblib.load(os.environ["CHURN_MODEL"])

    def decode_request(self, request):
        split = request["dataframe_split"]
        return pd.DataFrame(split["data"], columns=split["columns"])

    def predict(self, x):
        return self.model.predict(x)

    def encode_response(self, output):
        return {"predictions": output.tolist()}


if __name__ == "__main__":
    ls.LitServer(Churn(), accelerator="cpu").run(host="127.0.0.1", port=int(sys.argv[1]),
                                                  generate_client_file=False)
'''

PEERS = {
    "bentoml": Peer("bentoml", ["bentoml>=1.4,<1.5"], "records", "/predict", {"service.py": BENTO_SERVICE}),
    "mlserver": Peer("mlserver", ["mlserver>=1.7,<1.8", "mlserver-sklearn>=1.7,<1.8", "uvloop<0.22"], "v2",
                     "/v2/models/churn/infer"),
    "litserve": Peer("litserve", ["litserve"], "split", "/predict", {"server.py": LITSERVE_SERVER}),
}


def peer_env(peer: Peer, cache: Path) -> Path | None:
    """The peer's virtual environment (made on first use, then reused); None, with the reason
    printed, when it cannot be installed."""
    import numpy
    import sklearn

    reqs = [*peer.requirements, f"scikit-learn=={sklearn.__version__}", f"numpy=={numpy.__version__}",
            "pandas", "joblib"]
    tag = hashlib.sha256("\n".join(reqs).encode()).hexdigest()[:10]
    env = cache / f"{peer.name}-{tag}"
    if (env / ".ready").exists():
        return env
    print(f"-- installing {peer.name} into {env}: {' '.join(reqs)}", flush=True)
    shutil.rmtree(env, ignore_errors=True)
    env.parent.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    uv = shutil.which("uv", path=str(serving.BIN)) or shutil.which("uv")
    override = env.parent / f"{peer.name}-{tag}.override.txt"
    override.write_text(f"scikit-learn=={sklearn.__version__}\nnumpy=={numpy.__version__}\n")
    if uv:  # the override keeps this scikit-learn even where a runtime's bounds lag behind it
        steps = [[uv, "venv", "-q", "--python", base, str(env)],
                 [uv, "pip", "install", "-q", "--python", str(env / "bin" / "python"), "--override", str(override),
                  *reqs]]
    else:
        steps = [[base, "-m", "venv", str(env)],
                 [str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", *reqs]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
            print(f"   SKIPPED {peer.name}: it could not be installed ({' '.join(step[:3])} exited "
                  f"{done.returncode}: {why[0][:300]}); the comparison goes on without it", flush=True)
            shutil.rmtree(env, ignore_errors=True)
            return None
    (env / ".ready").write_text("\n".join(reqs) + "\n")
    return env


def peer_command(peer: Peer, env: Path, work: Path, port: int, model: Path) -> tuple[list[str], dict[str, str]]:
    """The command that serves the model with this peer, run in its own folder, and its environment."""
    folder = work / peer.name
    folder.mkdir(exist_ok=True)
    for name, text in peer.files.items():
        (folder / name).write_text(text)
    bin_ = env / "bin"
    base = {"CHURN_MODEL": str(model), "PATH": f"{bin_}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(env), "PYTHONPATH": ""}
    if peer.name == "bentoml":
        return ([str(bin_ / "bentoml"), "serve", "service:Churn", "--host", "127.0.0.1", "--port", str(port),
                 "--working-dir", str(folder)],
                {**base, "BENTOML_HOME": str(folder / "home"), "BENTOML_DO_NOT_TRACK": "true"})
    if peer.name == "mlserver":
        (folder / "churn").mkdir(exist_ok=True)
        (folder / "settings.json").write_text(json.dumps({
            "host": "127.0.0.1", "http_port": port, "grpc_port": free_port(), "metrics_port": free_port(),
        }))
        (folder / "churn" / "model-settings.json").write_text(json.dumps({
            "name": "churn", "implementation": "mlserver_sklearn.SKLearnModel",
            "max_batch_size": 64, "max_batch_time": 0.002, "parameters": {"uri": str(model)},
        }))
        return [str(bin_ / "mlserver"), "start", str(folder)], base
    return [str(bin_ / "python"), str(folder / "server.py"), str(port)], base


def write_bodies(X: Any, work: Path) -> dict[str, dict[int, Path]]:
    """The same rows in each body format, 1 and 100 rows."""
    out: dict[str, dict[int, Path]] = {"split": {}, "v2": {}, "records": {}}
    for rows in ROWS:
        df = X.head(rows)
        values = json.loads(df.to_json(orient="values"))
        docs = {
            "split": {"dataframe_split": {"columns": list(df.columns), "data": values}},
            "v2": v2_body(df),
            "records": {"rows": json.loads(df.to_json(orient="records"))},
        }
        for kind, doc in docs.items():
            path = work / f"{kind}{rows}.json"
            path.write_text(json.dumps(doc))
            out[kind][rows] = path
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a sanity run: 2 s per wrk run, one launch each")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    ap.add_argument("--launches", type=int, default=3, help="starts timed to the first prediction (median)")
    ap.add_argument("--only", default="", help="comma-separated: floor,nbdeploy,bentoml,mlserver,litserve")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the peers' environments are kept")
    ap.add_argument("--no-pin", action="store_true", help="do not pin the servers and wrk to separate CPUs")
    ap.add_argument("--pairs", type=int, default=7,
                    help="alternating rounds for the two ratio targets (floor, /invocations, V2; 0: none)")
    ap.add_argument("--pair-seconds", type=int, default=4, help="seconds per wrk run in those rounds (default 4)")
    ap.add_argument("--out", help="also write the results as JSON here")
    ap.add_argument("--report", metavar="JSON", help="print the table and targets of an earlier run's --out file")
    args = ap.parse_args()
    if args.report:
        report(json.loads(Path(args.report).read_text()))
        return
    if args.quick:
        args.duration, args.launches, args.pairs, args.pair_seconds = 2, 1, 2, 2
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: install it (Debian/Ubuntu: apt-get install -y wrk) and run again")
    only = set(filter(None, args.only.split(","))) or {"floor", "nbdeploy", *PEERS}
    pin = serving.pinning(not args.no_pin)
    print(f"pinning: servers {' '.join(pin[0]) or 'not pinned'}; wrk {' '.join(pin[1]) or 'not pinned'}; "
          f"{os.cpu_count()} CPUs; load average {load_average()}", flush=True)
    envs = {name: peer_env(peer, args.cache) for name, peer in PEERS.items() if name in only}
    work = Path(tempfile.mkdtemp(prefix="nbdeploy-peers-"))
    try:
        res = run(args, only, envs, pin, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(res)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))


def run(args: argparse.Namespace, only: set[str], envs: dict[str, Path | None], pin: Any, work: Path) -> dict:
    import joblib

    bundle = work / "bundle"
    print(f"building the churn model in {bundle} ...", flush=True)
    model, X = serving.churn_bundle(bundle)
    X = X[CHURN_FEATURES]
    joblib.dump(model, work / "model.joblib")
    bodies = write_bodies(X, work)
    res: dict[str, Any] = {"conditions": {"cpus": os.cpu_count(), "pinned": bool(pin[0]),
                                          "duration_s": args.duration, "launches": args.launches,
                                          "load_before": load_average()}}
    nb_env = {"PYTHONPATH": str(ROOT)}

    def url(port: int, path: str) -> str:
        return f"http://127.0.0.1:{port}{path}"

    common = {"work": work, "duration": args.duration, "pin": pin}
    if "floor" in only:
        p = free_port()
        res["floor"] = serving.measure("floor", [PY, str(ROOT / "benchmarks" / "serve_vs_mlflow_floor.py"), str(p)],
                                       url(p, "/invocations"), bodies["split"], env=nb_env, **common)
    if "nbdeploy" in only:
        for proto, path, kind in (("invocations", "/invocations", "split"),
                                  ("v2", "/v2/models/churn_classifier/infer", "v2")):
            p = free_port()
            res[f"nbdeploy_{proto}"] = serving.measure(
                f"nbdeploy {path}", [PY, "-m", "nbdeploy.serve", str(bundle), "--port", str(p),
                                     "--log-path", str(work / f"{proto}.jsonl")],
                url(p, path), bodies[kind], env=nb_env, launch_count=args.launches, **common)
    for name, env in envs.items():
        if env is None:
            res[name] = {"skipped": "could not be installed"}
            continue
        peer, p = PEERS[name], free_port()
        cmd, penv = peer_command(peer, env, work, p, work / "model.joblib")
        res[name] = serving.measure(name, cmd, url(p, peer.path), bodies[peer.body], env=penv,
                                    launch_count=args.launches, **common)
    if args.pairs and {"floor", "nbdeploy"} <= only:
        res["paired"] = paired(args, bundle, bodies, work, pin, nb_env)
    res["conditions"]["load_after"] = load_average()
    return res


def paired(args: argparse.Namespace, bundle: Path, bodies: dict[str, dict[int, Path]], work: Path, pin: Any,
           env: dict[str, str]) -> dict[str, list[float]]:
    """The two ratio targets measured side by side: the floor and one nbdeploy server run at once,
    and 1-row wrk runs at c=64 alternate floor, /invocations, V2 for ``--pairs`` rounds. The
    table's runs are minutes apart, and on a shared machine a core's speed moves by a third
    within minutes (benchmarks/serve_instructions.py); a ratio of runs seconds apart, on the same
    server for both protocols, is the steadier judge. Each round's req/s, by target."""
    print(f"-- paired rounds: {args.pairs} x (floor, /invocations, V2), {args.pair_seconds} s each, c=64", flush=True)
    pf, pn = free_port(), free_port()
    one = {k: v[1] for k, v in bodies.items()}
    floor, _ = serving.start([*pin[0], PY, str(ROOT / "benchmarks" / "serve_vs_mlflow_floor.py"), str(pf)],
                             f"http://127.0.0.1:{pf}/invocations", one["split"].read_bytes(), work / "pair-floor.log", env)
    try:
        nb, _ = serving.start([*pin[0], PY, "-m", "nbdeploy.serve", str(bundle), "--port", str(pn),
                               "--log-path", str(work / "paired.jsonl")],
                              f"http://127.0.0.1:{pn}/invocations", one["split"].read_bytes(), work / "pair-nb.log", env)
        try:
            out: dict[str, list[float]] = {"floor": [], "invocations": [], "v2": []}
            runs = (("floor", f"http://127.0.0.1:{pf}/invocations", one["split"]),
                    ("invocations", f"http://127.0.0.1:{pn}/invocations", one["split"]),
                    ("v2", f"http://127.0.0.1:{pn}/v2/models/churn_classifier/infer", one["v2"]))
            for r in range(args.pairs):
                for key, u, body in runs:
                    w = serving.wrk(u, body, 64, args.pair_seconds, pin[1])
                    if w["non2xx"]:
                        raise SystemExit(f"paired round {r + 1}: {key} answered {w['non2xx']} requests with errors")
                    out[key].append(w["rps"])
                print(f"   round {r + 1}: floor {out['floor'][-1]:.0f}, /invocations {out['invocations'][-1]:.0f}, "
                      f"V2 {out['v2'][-1]:.0f} req/s  (load {load_average().split()[0]})", flush=True)
            return out
        finally:
            serving.stop(nb)
    finally:
        serving.stop(floor)


def _paired_ratio(res: dict, top: str, bottom: str) -> tuple[float, list[float]] | None:
    """The median over the paired rounds of top/bottom, and each round's; None without rounds."""
    pairs = res.get("paired")
    if not pairs or not pairs.get(top):
        return None
    each = [a / b for a, b in zip(pairs[top], pairs[bottom], strict=True)]
    return statistics.median(each), each


SERVERS = [("nbdeploy /invocations", "nbdeploy_invocations"), ("nbdeploy V2 JSON", "nbdeploy_v2"),
           ("BentoML", "bentoml"), ("MLServer", "mlserver"), ("LitServe", "litserve"), ("HTTP floor", "floor")]


def report(res: dict) -> None:
    have = [(label, key) for label, key in SERVERS if key in res and "runs" in res[key]]
    print("\n| server | body | c | req/s | p50 ms | p99 ms | errors | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, key in have:
        for k, r in res[key]["runs"].items():
            rows, c = k.split("x")
            latency = f"{r['p50']:.2f} | {r['p99']:.2f}" if r["rps"] > 0 else "no answer | no answer"
            errors = ", ".join(filter(None, [f"{r['non2xx']} non-2xx" if r["non2xx"] else "",
                                             _socket_errors(r["socket_errors"])])) or "-"
            print(f"| {label} | {rows} row{'s' if rows != '1' else ''} | {c} | {r['rps']:.0f} | {latency} "
                  f"| {errors} | {r['load'].split()[0]} |")
    print("\n| server | launch to first prediction s | RSS after the load MiB |")
    print("|---|---|---|")
    for label, key in have:
        print(f"| {label} | {res[key]['launch_s']:.2f} | {res[key]['rss_mb']:.0f} |")
    for key in ("bentoml", "mlserver", "litserve"):
        if res.get(key, {}).get("skipped"):
            print(f"{key}: skipped ({res[key]['skipped']})")
    c = res["conditions"]
    print(f"\nconditions: {c['cpus']} CPUs, servers {'pinned to one, wrk to the other' if c['pinned'] else 'not pinned'}"
          f", {c['duration_s']} s per run; load average before {c['load_before']}, after {c.get('load_after')}")
    targets(res)


def _socket_errors(text: str) -> str:
    """wrk's socket errors without the zero counts ("timeout 4"), or ""."""
    return ", ".join(f"{kind} {count}" for kind, count in re.findall(r"(\w+) (\d+)", text) if count != "0")


def targets(res: dict) -> None:
    peers = [k for k in ("bentoml", "mlserver", "litserve") if "runs" in res.get(k, {})]
    nb = [k for k in ("nbdeploy_invocations", "nbdeploy_v2") if k in res]
    if not nb:
        return
    print("\ntargets:")

    def line(ok: bool, text: str) -> None:
        print(f"  [{'met' if ok else 'MISSED'}] {text}")

    r64 = "1x64"
    if peers:
        best = max(peers, key=lambda k: res[k]["runs"][r64]["rps"])
        for k in nb:
            ratio = res[k]["runs"][r64]["rps"] / res[best]["runs"][r64]["rps"]
            line(ratio >= 10, f"{k}: 1-row req/s at c=64 vs the fastest peer ({best}): {ratio:.1f}x (target >= 10x)")
    if len(nb) == 2:
        ratio = res["nbdeploy_v2"]["runs"][r64]["rps"] / res["nbdeploy_invocations"]["runs"][r64]["rps"]
        pairs = _paired_ratio(res, "v2", "invocations")
        line(_judged(ratio, pairs) >= 0.8, f"V2 JSON 1-row req/s at c=64 vs /invocations: {_told(ratio, pairs)} "
                                           "(target >= 80%)")
    if peers:
        for k in nb:
            # a peer run that completed no request has no p99 (wrk prints 0): it does not count as lower
            worse = [f"{case} vs {p} ({res[k]['runs'][case]['p99']:.2f} vs {res[p]['runs'][case]['p99']:.2f} ms)"
                     for case in res[k]["runs"] for p in peers
                     if case in res[p]["runs"] and res[p]["runs"][case]["rps"] > 0
                     and res[k]["runs"][case]["p99"] >= res[p]["runs"][case]["p99"]]
            line(not worse, f"{k}: p99 lower than every peer's in every case"
                 + (f"; not in {', '.join(worse)}" if worse else ""))
        for k in nb:
            fastest = min(peers, key=lambda p: res[p]["launch_s"])
            line(res[k]["launch_s"] < res[fastest]["launch_s"],
                 f"{k}: the fastest cold start: {res[k]['launch_s']:.2f} s vs {fastest}'s {res[fastest]['launch_s']:.2f} s")
    if "floor" in res:
        for k in nb:
            ratio = res[k]["runs"][r64]["rps"] / res["floor"]["runs"][r64]["rps"]
            pairs = _paired_ratio(res, k.removeprefix("nbdeploy_"), "floor")
            line(_judged(ratio, pairs) >= 0.7, f"{k}: 1-row req/s at c=64 vs the bare-ASGI HTTP floor: "
                                               f"{_told(ratio, pairs)} (target >= 70%; the floor parses /invocations JSON)")


def _judged(table: float, pairs: tuple[float, list[float]] | None) -> float:
    """What a ratio target is judged by: the paired rounds' median when there are rounds, else the table's."""
    return pairs[0] if pairs else table


def _told(table: float, pairs: tuple[float, list[float]] | None) -> str:
    """The ratio as printed: the paired rounds' median and each round's, the table's beside."""
    if not pairs:
        return f"{table:.0%}"
    return (f"{pairs[0]:.0%} median of {len(pairs[1])} paired rounds ({', '.join(f'{x:.0%}' for x in pairs[1])}); "
            f"{table:.0%} in the table's runs, minutes apart")


if __name__ == "__main__":
    main()
