"""Secrets end to end: planted keys never reach a file nbdeploy writes.

An AWS-style key, a token and a database password are planted in environment
variables, in notebook parameters (the parameters cell, ``-p``, a batch grid), in a SQL
connection URL and in a ``%pip install --index-url https://user:pass@host/simple`` line.
Then the whole pipeline runs as a user would run it - capture, run, batch, build, verify,
serve (requests carrying the token), score and the container image - and every file
nbdeploy wrote is searched for the planted values (as written, and base64-encoded): the
``.nbdeploy/`` folder (records, the MLflow store's SQLite rows and artifacts), the bundle,
the request log, the scoring output's lineage, and the image's filesystem.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.bundle.conftest import make_notebook

REPO = Path(__file__).resolve().parents[2]

# in the environment of every nbdeploy command (and so of the kernels it starts)
AWS_KEY = "AKIAQ7PLANTX3K9ZT2WF"
AWS_SECRET = "wJalrXUtnF3MI7K7MDENGbPxRfiCYPLANT9KEYq"
TOKEN = "tkn5f2Q9xL7mR3vB8nW1cZ4Plant"
DB_PASSWORD = "pw4Plant9Xq2Lm7Z"
ENV = {"AWS_ACCESS_KEY_ID": AWS_KEY, "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "SERVICE_TOKEN": TOKEN,
       "DB_PASSWORD": DB_PASSWORD, "DATABASE_URL": f"postgresql://app:{DB_PASSWORD}@db.internal:5432/prod"}
# elsewhere only (no environment variable holds them, so only their shape or name can give them away):
# the parameters cell, -p and the batch grid, a SQL URL, the %pip line
PARAM_AWS_KEY = "AKIAW2PARAMZ8Q4LK7NB"
PARAM_TOKEN = "tkn8Hq3ZvR6pL1mX9cW4Param"
PARAM_DB_PASSWORD = "Zq8Param3Lx7Mv2Kp"
PIP_PASSWORD = "PipPass5531plantQ"
DB_URL = f"postgresql://app:{PARAM_DB_PASSWORD}@db.internal:5432/prod"
PLANTED = {"AWS key (env)": AWS_KEY, "AWS secret (env)": AWS_SECRET, "token (env)": TOKEN,
           "database password (env)": DB_PASSWORD, "AWS key (parameter)": PARAM_AWS_KEY,
           "token (parameter)": PARAM_TOKEN, "database password (SQL URL)": PARAM_DB_PASSWORD,
           "pip index password": PIP_PASSWORD}

CELLS = (
    f'api_token = "none"\ndb_url = "sqlite:///local.db"\naws_key = "{PARAM_AWS_KEY}"\nC = 1.0',
    f"%pip install --index-url https://piper:{PIP_PASSWORD}@127.0.0.1:9/simple --retries 0 scikit-learn",
    "import os\nimport pandas as pd\nfrom sklearn.linear_model import LogisticRegression\n"
    'headers = {"Authorization": f"Bearer {api_token}"}\n'
    'print("connecting to", db_url, "with", headers)\n'
    'print("aws", aws_key, os.environ.get("SERVICE_TOKEN"), os.environ.get("DATABASE_URL"))',
    "df = pd.read_csv('data.csv')\nX = df[['a', 'b']]\nmodel = LogisticRegression(C=C).fit(X, df.y)\n"
    "%deploy metric accuracy {model.score(X, df.y)}",
)


def _needles() -> dict[str, bytes]:
    out = {}
    for what, value in PLANTED.items():
        out[what] = value.encode()
        out[f"{what} (base64)"] = base64.b64encode(value.encode())
    return out


def _leaks_in_bytes(data: bytes) -> list[str]:
    return [what for what, needle in _needles().items() if needle in data]


def _leaks_in_tree(root: Path) -> list[str]:
    found = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            try:
                data = p.read_bytes()
            except OSError:
                continue
            found += [f"{p}: {what}" for what in _leaks_in_bytes(data)]
    return found


def _sqlite_rows(db: Path) -> list[str]:
    """Every text value of every table (runs, params, tags, model versions, ...)."""
    found = []
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            for row in con.execute(f'SELECT * FROM "{t}"'):
                text = " ".join(str(v) for v in row).encode()
                found += [f"{db} table {t}: {what}" for what in _leaks_in_bytes(text)]
    finally:
        con.close()
    return found


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _nbdeploy(cwd: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "nbdeploy", *args], cwd=cwd, capture_output=True,
                          text=True, env=_env(), timeout=timeout)
    assert proc.returncode == 0, f"nbdeploy {' '.join(args[:2])} failed:\n{proc.stdout}\n{proc.stderr}"
    # nor on the terminal (CI logs keep it; the panel's event file is the same text)
    _PRINTED.extend(f"nbdeploy {args[0]} printed: {w}" for w in _leaks_in_bytes((proc.stdout + proc.stderr).encode()))
    return proc


_PRINTED: list[str] = []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_and_request(proj: Path, bundle: Path) -> None:
    port = _free_port()
    log = open(proj / "serve.out", "wb")  # noqa: SIM115
    server = subprocess.Popen([sys.executable, "-m", "nbdeploy", "serve", str(bundle), "--port", str(port),
                               "--log-path", str(proj / "requests.jsonl")], cwd=proj, env=_env(),
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, (proj / "serve.out").read_text()
                time.sleep(0.3)
        bodies = [
            {"dataframe_split": {"columns": ["a", "b"], "data": [[0.1, 0.2]]}},
            {"dataframe_split": {"columns": ["a", "b", "api_token"], "data": [[0.1, 0.2, PARAM_TOKEN]]}},
            {"dataframe_records": [{"a": DB_URL, "b": PARAM_AWS_KEY}]},
            {"dataframe_records": [{"a": 0.3, "b": TOKEN}]},  # a client's mistake that echoes values
        ]
        for body in bodies:
            req = urllib.request.Request(
                f"{base}/invocations?api_key={PARAM_TOKEN}", data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {PARAM_TOKEN}",
                         "X-Api-Key": PARAM_AWS_KEY, "Cookie": f"session={PARAM_TOKEN}"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    resp.read()
            except urllib.error.HTTPError as exc:
                exc.read()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _image_leaks(bundle: Path, proj: Path, base: str, ca_bundle: Path | None) -> list[str]:
    args = ["image", str(bundle), "--tag", f"localhost/nbdeploy-secrets-test:{os.getpid()}", "--json",
            "--base", base]
    if ca_bundle is not None:
        args += ["--ca-bundle", str(ca_bundle)]
    done = _nbdeploy(proj, *args, timeout=1800)
    tag = json.loads(done.stdout)["tag"]
    engine = json.loads(done.stdout).get("engine") or "podman"
    archive = proj / "image.tar"
    try:
        subprocess.run([engine, "save", "-o", str(archive), tag], check=True, capture_output=True, timeout=600)
        layers = proj / "image"
        layers.mkdir()
        subprocess.run(["tar", "-xf", str(archive), "-C", str(layers)], check=True, timeout=600)
        found = []
        for i, blob in enumerate(sorted(p for p in layers.rglob("*") if p.is_file())):
            files = proj / "unpacked" / str(i)  # each layer's (or blob's) files
            files.mkdir(parents=True)
            unpacked = subprocess.run(["tar", "-xf", str(blob), "-C", str(files)], capture_output=True)
            found += _leaks_in_tree(files) if unpacked.returncode == 0 else \
                [f"{blob}: {w}" for w in _leaks_in_bytes(blob.read_bytes())]
        return found
    finally:
        subprocess.run([engine, "rmi", "-f", tag], capture_output=True, timeout=300)


@pytest.mark.slow
@pytest.mark.container
def test_planted_secrets_reach_no_file_nbdeploy_writes(tmp_path: Path, base_image: str,
                                                       ca_bundle: Path | None) -> None:
    import numpy as np
    import pandas as pd

    proj = tmp_path / "proj"
    proj.mkdir()
    _PRINTED.clear()
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    df["y"] = (df.a + df.b > 0).astype(int)
    df.to_csv(proj / "data.csv", index=False)
    nb = make_notebook(proj / "nb.ipynb", *CELLS)
    nbj = json.loads(nb.read_text())
    nbj["cells"][0]["metadata"]["tags"] = ["parameters"]
    nb.write_text(json.dumps(nbj))
    (proj / "grid.yaml").write_text(f"grid:\n  C: [0.5, 1.0]\n  api_token: [{PARAM_TOKEN}]\n  db_url: ['{DB_URL}']\n")
    df[["a", "b"]].head(50).to_csv(proj / "to_score.csv", index=False)
    given = ["-p", "api_token", PARAM_TOKEN, "-p", "db_url", DB_URL]

    _nbdeploy(proj, "capture", "nb.ipynb")
    _nbdeploy(proj, "run", "nb.ipynb", *given, "--tracking", "sync")
    _nbdeploy(proj, "batch", "nb.ipynb", "--grid", "grid.yaml", "--workers", "1", "--tracking", "sync")
    _nbdeploy(proj, "build", "nb.ipynb", *given)
    bundle = proj / "nb-bundle"
    _nbdeploy(proj, "verify", str(bundle))
    _serve_and_request(proj, bundle)
    _nbdeploy(proj, "score", str(bundle), "to_score.csv", "-o", "scored.csv", "--workers", "1")

    leaks = _PRINTED + _leaks_in_tree(proj / ".nbdeploy") + _leaks_in_tree(bundle)
    written = [proj / "requests.jsonl", proj / "serve.out", *proj.glob("scored*")]
    leaks += [f"{p.name}: {w}" for p in written if p.is_file() for w in _leaks_in_bytes(p.read_bytes())]
    leaks += _sqlite_rows(proj / ".nbdeploy" / "mlflow.db")
    leaks += _image_leaks(bundle, proj, base_image, ca_bundle)
    assert leaks == [], "planted secrets were written:\n" + "\n".join(leaks)
