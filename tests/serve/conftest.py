"""Fixture bundles (trained here, saved with MLflow) and real server processes on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def _training_frame(n: int = 400):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    income = rng.normal(50_000, 12_000, n).round(2)
    income[rng.random(n) < 0.05] = np.nan  # training had nulls in income, none elsewhere
    return pd.DataFrame({
        "age": rng.integers(18, 80, n).astype("int64"),
        "income": income,
        "city": rng.choice(["paris", "lyon", "nice"], n),
        "member": rng.random(n) > 0.5,
    })


def _pipeline(estimator: Any):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "income"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "member"]),
    ])
    return Pipeline([("pre", pre), ("model", estimator)])


def _write_bundle(root: Path, model: Any, X: Any, name: str, **save_kwargs: Any) -> Path:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from nbdeploy.capture.profile import profile_frame

    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    mlflow.sklearn.save_model(
        model, str(root / "model"), signature=infer_signature(X, model.predict(X)),
        input_example=X.head(3), **save_kwargs,
    )
    (root / "profile.json").write_text(json.dumps(profile_frame(X)))
    seal_bundle(root, {"name": name, "version": "3", "summary": {"trained_on": len(X)},
                       "model": {"serialization": save_kwargs.get("serialization_format", "skops")}})
    return root


def seal_bundle(root: Path, manifest: dict) -> None:
    """Write the manifest with every file's checksum, as ``nbdeploy build`` does: the server
    refuses a bundle whose files do not match it."""
    from nbdeploy.serve.seal import checksums

    (root / "nbdeploy.json").write_text(json.dumps({**manifest, "files": checksums(root)}))


@pytest.fixture(scope="session")
def training_frame():
    return _training_frame()


@pytest.fixture(scope="session")
def classifier_bundle(tmp_path_factory, training_frame) -> Path:
    from sklearn.ensemble import GradientBoostingClassifier

    X = training_frame
    y = ((X["age"] > 45) ^ (X["city"] == "nice")).astype(int)
    model = _pipeline(GradientBoostingClassifier(n_estimators=15, random_state=0)).fit(X, y)
    # GradientBoosting holds sklearn Tree objects, which skops only loads when trusted
    return _write_bundle(tmp_path_factory.mktemp("clf") / "bundle", model, X, "churn",
                         skops_trusted_types=["sklearn.tree._tree.Tree", "numpy.dtype"])


@pytest.fixture(scope="session")
def compiled_classifier_bundle(classifier_bundle, tmp_path_factory) -> Path:
    """The classifier bundle with its compiled program, written and sealed as ``nbdeploy build`` does."""
    from nbdeploy.bundle.compiler import write_program
    from nbdeploy.serve.bundle import read_bundle
    from nbdeploy.serve.model import load_model

    root = tmp_path_factory.mktemp("clf-compiled") / "bundle"
    shutil.copytree(classifier_bundle, root)
    estimator = load_model(read_bundle(root)).predict.__self__  # the library model: no program yet
    assert write_program(estimator, root / "model", json.loads((root / "profile.json").read_text()))["compiled"]
    seal_bundle(root, json.loads((root / "nbdeploy.json").read_text()))
    return root


@pytest.fixture(scope="session")
def regressor_bundle(tmp_path_factory, training_frame) -> Path:
    from sklearn.linear_model import Ridge

    X = training_frame
    y = X["age"] * 3.0 + (X["city"] == "lyon") * 10
    model = _pipeline(Ridge()).fit(X, y)
    return _write_bundle(tmp_path_factory.mktemp("reg") / "bundle", model, X, "spend",
                         skops_trusted_types=["numpy.dtype"])


@pytest.fixture(scope="session")
def tripwire_model(tmp_path_factory) -> Path:
    """A bare MLflow model folder (no profile, no manifest) saved with cloudpickle + code_paths."""
    import mlflow.sklearn
    import pandas as pd
    from fixture_models import Tripwire
    from mlflow.models import infer_signature

    X = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    model = Tripwire().fit(X)
    path = tmp_path_factory.mktemp("trip") / "tripwire"
    mlflow.sklearn.save_model(
        model, str(path), signature=infer_signature(X, model.predict(X)),
        serialization_format="cloudpickle", code_paths=[str(HERE / "fixture_models.py")],
    )
    return path


def start(bundle: Path, tmp_path: Path, **config: Any):
    from nbdeploy.serve import ServeConfig, launch

    cfg = ServeConfig(port=0, log_path=str(tmp_path / "requests.jsonl"), **config)
    return launch(bundle, cfg, timeout=180)


@pytest.fixture(scope="session")
def classifier_server(classifier_bundle, tmp_path_factory) -> Iterator[Any]:
    handle = start(classifier_bundle, tmp_path_factory.mktemp("clf-log"), max_body_bytes=64 * 1024)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def regressor_server(regressor_bundle, tmp_path_factory) -> Iterator[Any]:
    handle = start(regressor_bundle, tmp_path_factory.mktemp("reg-log"), flag_out_of_range="both")
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def tripwire_server(tripwire_model, tmp_path_factory) -> Iterator[Any]:
    handle = start(tripwire_model, tmp_path_factory.mktemp("trip-log"))
    yield handle
    handle.stop()


class Client:
    """A keep-alive HTTP/1.1 client for one thread."""

    def __init__(self, url: str, token: str | None = None) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.token = token

    def request(self, method: str, path: str, body: Any = None, content_type: str | None = "application/json",
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        h = dict(headers or {})
        if content_type:
            h["Content-Type"] = content_type
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        data = body if isinstance(body, bytes | str) or body is None else json.dumps(body)
        self.conn.request(method, path, body=data, headers=h)
        r = self.conn.getresponse()
        raw = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        kind = hdrs.get("content-type", "")
        parsed = (json.loads(raw) if kind.startswith("application/json")
                  else raw if kind == "application/octet-stream" else raw.decode())
        return r.status, hdrs, parsed

    def post(self, path: str, body: Any, **kw: Any) -> tuple[int, dict[str, str], Any]:
        return self.request("POST", path, body, **kw)

    def get(self, path: str, **kw: Any) -> tuple[int, dict[str, str], Any]:
        return self.request("GET", path, None, content_type=None, **kw)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def client_for():
    clients: list[Client] = []

    def make(handle: Any, token: str | None = None) -> Client:
        c = Client(handle.url, token)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Every record of the log ``path``: its rotated (gzipped) files, oldest first, then the file."""
    from nbdeploy.serve.logfiles import log_files, read_lines

    return [json.loads(line) for f in log_files(path) for line in read_lines(f) if line.strip()]


def metric(text: str, series: str) -> float | None:
    """The value of one series (name and labels, as written) in a /metrics text, or None."""
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return None


def wait_until(condition, seconds: float = 30.0, what: str = "the condition"):
    """``condition()``'s first true value, asked every 0.1 s; fails the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
