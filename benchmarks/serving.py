"""What the serving benchmarks share: starting a server and timing its first prediction,
stopping it with everything it spawned, driving it with wrk, its resident memory, the
churn example's model as a bundle, and the load average to print beside the figures.

Used by serve_vs_mlflow.py, serve_vs_peers.py and serve_instructions.py. A server can be
pinned to some CPUs and wrk to the others (``taskset``), so that on a small machine the
load generator does not take the server's core; on a machine with one core nothing is pinned.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
BIN = Path(PY).parent
EXAMPLES = ROOT / "example_notebooks"
CONCURRENCY = (1, 8, 64)
ROWS = (1, 100)


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, to print beside figures taken on a shared machine."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def pinning(enabled: bool = True) -> tuple[list[str], list[str]]:
    """``taskset`` prefixes (server, wrk): the server on the last CPU, wrk on the others.
    Empty when pinning is off, taskset is missing or there is a single CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    if not enabled or len(cpus) < 2 or shutil.which("taskset") is None:
        return [], []
    server, client = cpus[-1:], cpus[:-1]
    return (["taskset", "-c", ",".join(map(str, server))], ["taskset", "-c", ",".join(map(str, client))])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes, timeout: float = 2.0, content_type: str = "application/json") -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        r.read()
        return r.status


def start(cmd: list[str], url: str, body: bytes, log: Path, env: dict | None = None,
          timeout: float = 180) -> tuple[subprocess.Popen, float]:
    """Start a server; return it and the seconds from launch to its first 200 answer to ``body``
    POSTed to ``url``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})},
                            cwd=log.parent)
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"{cmd[0]} exited early; see {log}:\n{log.read_text()[-2000:]}")
        try:
            if post(url, body) == 200:
                return proc, time.perf_counter() - t0
        except OSError:
            time.sleep(0.02)
    stop(proc)
    raise SystemExit(f"no prediction from {' '.join(cmd)} within {timeout:.0f} s; see {log}")


def stop(proc: subprocess.Popen) -> None:
    """End the server and every process of its group (mlflow's uvicorn child outlives the CLI)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 30
    while True:  # until nothing of the group is left to answer on the port
        try:
            os.killpg(proc.pid, signal.SIGKILL if time.monotonic() > deadline else 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            status = (p / "status").read_text()
        except OSError:
            continue
        ppid = int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))
        m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        rss[int(p.name)] = int(m.group(1)) if m else 0
        children.setdefault(ppid, []).append(int(p.name))
    total, todo = 0, [pid]
    while todo:
        q = todo.pop()
        total += rss.get(q, 0)
        todo += children.get(q, [])
    return total / 1024


def wrk(url: str, body_file: Path, c: int, duration: int, prefix: list[str] | None = None,
        timeout: int = 10) -> dict:
    """One wrk run (one thread, ``c`` connections) POSTing the file's bytes as JSON;
    ``prefix``: e.g. a taskset command to pin wrk; ``timeout``: seconds before wrk gives up
    on a request."""
    lua = body_file.with_suffix(".lua")
    lua.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
    )
    cmd = [*(prefix or []), "wrk", "-t1", f"-c{c}", f"-d{duration}s", "--latency", "--timeout", f"{timeout}s",
           "-s", str(lua), url]
    for _ in range(2):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode == 0:
            break
        print(f"   wrk exited {done.returncode}: {(done.stderr or done.stdout).strip()[-500:]}", flush=True)
        time.sleep(1)
    else:
        raise SystemExit(f"wrk failed twice against {url}")
    out = done.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = {m.group(1): _ms(m.group(2)) for m in re.finditer(r"^\s+(50|99)%\s+(\S+)", out, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": pct["50"], "p99": pct["99"], "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else ""}


def _ms(s: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", s)
    v, unit = float(m.group(1)), m.group(2)
    return v * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def measure(name: str, cmd: list[str], url: str, bodies: dict[int, Path], work: Path, duration: int,
            env: dict | None = None, cases=None, launch_count: int = 1,
            pin: tuple[list[str], list[str]] = ([], []), timeout: float = 180) -> dict:
    """Launch to first prediction (the median of ``launch_count`` starts), then wrk at each
    (rows, concurrency) case against ``url``, then the server's resident memory after the load."""
    server_prefix, wrk_prefix = pin
    cmd = [*server_prefix, *cmd]
    print(f"-- {name}: {' '.join(cmd)}", flush=True)
    launches = []
    for i in range(launch_count):  # a single start is a noisy sample: the median of several is reported
        proc, seconds = start(cmd, url, bodies[1].read_bytes(), work / f"{_slug(name)}.log", env, timeout)
        launches.append(seconds)
        if i < launch_count - 1:
            stop(proc)
    launch = statistics.median(launches)
    print(f"   launch to first prediction: {launch:.2f} s (median of {', '.join(f'{x:.2f}' for x in launches)})",
          flush=True)
    results = {"launch_s": launch, "launches_s": launches, "runs": {}}
    try:
        for rows, c in cases or [(r, c) for r in ROWS for c in CONCURRENCY]:
            r = wrk(url, bodies[rows], c, duration, wrk_prefix)
            r["load"] = load_average()
            results["runs"][f"{rows}x{c}"] = r
            print(f"   rows={rows:<3} c={c:<2} {r['rps']:9.1f} req/s  p50 {r['p50']:8.2f} ms  p99 {r['p99']:8.2f} ms"
                  + (f"  non-2xx {r['non2xx']}" if r["non2xx"] else "") + f"  (load {r['load']})", flush=True)
        results["rss_mb"] = tree_rss_mb(proc.pid)
    finally:
        stop(proc)
    return results


def _slug(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", name).strip("-")[:60]


def v2_body(df: Any) -> dict[str, Any]:
    """An Open Inference Protocol request, one tensor per column, asking for a pandas frame
    (MLServer's content types; nbdeploy reads the tensors by name and ignores them)."""
    inputs = []
    for name in df.columns:
        values = json.loads(df[name].to_json(orient="values"))
        kind = df[name].dtype.kind
        tensor: dict[str, Any] = {"name": name, "shape": [len(df)],
                                  "datatype": {"i": "INT64", "f": "FP64", "b": "BOOL"}.get(kind, "BYTES"),
                                  "data": values}
        if tensor["datatype"] == "BYTES":
            tensor["parameters"] = {"content_type": "str"}
        inputs.append(tensor)
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


CHURN_FEATURES = ["tenure_months", "monthly_charges", "total_charges", "support_calls", "senior",
                  "contract", "internet_service", "payment_method"]


def churn_bundle(root: Path):
    """The churn notebook's model (example_notebooks/churn_classifier.ipynb: the same data,
    features, pipeline and parameters), saved and sealed as `nbdeploy build` saves it (MLflow
    model, training profile, compiled program, manifest). Returns (model, test features)."""
    import pandas as pd
    from mlflow.models import infer_signature
    from mlflow.sklearn import save_model
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from nbdeploy.bundle.compiler import write_program
    from nbdeploy.capture.profile import profile_frame
    from nbdeploy.serve.seal import checksums

    sys.path.insert(0, str(EXAMPLES))
    from features import CATEGORICAL, NUMERIC, split_xy

    X, y = split_xy(pd.read_csv(EXAMPLES / "data" / "churn.csv"))
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=42, stratify=y)
    clf = Pipeline([
        ("preprocess", ColumnTransformer([("num", StandardScaler(), NUMERIC),
                                          ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)])),
        ("model", GradientBoostingClassifier(n_estimators=60, learning_rate=0.1, max_depth=3, random_state=42)),
    ]).fit(X_train, y_train)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    save_model(clf, str(root / "model"), signature=infer_signature(X_test, clf.predict(X_test)),
               input_example=X_test.head(20), skops_trusted_types=["sklearn.tree._tree.Tree", "numpy.dtype"])
    (root / "profile.json").write_text(json.dumps(profile_frame(X_train)))
    outcome = write_program(clf, root / "model", json.loads((root / "profile.json").read_text()))
    print(f"compiled program: {outcome}", flush=True)
    manifest = {"name": "churn_classifier", "version": "1", "model": {"serialization": "skops"}}
    (root / "nbdeploy.json").write_text(json.dumps({**manifest, "files": checksums(root)}))
    return clf, X_test
