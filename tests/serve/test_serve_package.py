"""The package is self-contained, runs from a copy named nbdeploy_serve, and its pieces work alone."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Client

import nbdeploy.serve

PACKAGE = Path(nbdeploy.serve.__file__).parent
ALLOWED = {
    "__future__", "argparse", "asyncio", "bisect", "collections", "concurrent", "csv", "dataclasses",
    "calendar", "contextlib", "contextvars", "ctypes", "datetime", "gc", "glob", "gzip", "hashlib", "heapq",
    "hmac", "html", "http", "importlib", "io", "itertools", "json", "logging", "math", "mmap", "os",
    "pathlib", "pickle", "py_compile", "queue", "random", "re", "shutil", "signal", "socket", "stat",
    "struct", "subprocess", "sys", "tempfile", "threading", "time", "types", "typing", "urllib",
    "zlib",
    "numpy", "pandas", "orjson", "uvicorn", "httptools", "yaml",
    "pyarrow", "fsspec",  # batch scoring only (score, score_io), imported lazily: neither is in the API's lock
    "scipy",  # the drift report's tests, imported lazily (it comes with scikit-learn; without it: PSI only)
    "sklearn", "skops", "cloudpickle", "xgboost", "lightgbm", "mlflow",
}


def test_imports_only_itself_the_stdlib_and_allowed_libraries():
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in ALLOWED, f"{path.name} imports {name}"


def test_import_is_cheap():
    code = "import sys, nbdeploy.serve; print(sorted(m for m in ('pandas','sklearn','mlflow','uvicorn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


_TABLE = """
import json, sys
from nbdeploy.serve.model import import_skops_io
sio = import_skops_io()
t = sys.modules["skops.io._trusted_types"]
print(json.dumps({"doc": t.__doc__, "names": {k: v for k, v in vars(t).items() if k.endswith("_TYPE_NAMES")},
                  "default": sio.get_untrusted_types(file=sys.argv[1])}))
"""


def test_skops_trusted_types_from_the_cache_are_what_skops_builds(classifier_bundle, tmp_path):
    model = str(next(Path(classifier_bundle).rglob("model.skops")))

    def table(cache_dir: str) -> dict:
        out = subprocess.run([sys.executable, "-c", _TABLE, model], capture_output=True, text=True, check=True,
                             env={**os.environ, "NBDEPLOY_CACHE_DIR": cache_dir}).stdout
        return json.loads(out)

    cache = tmp_path / "cache"
    built = table(str(cache))  # no cache yet: skops builds its table, nbdeploy stores it
    assert built["doc"] != "type names cached by nbdeploy"
    (stored,) = cache.glob("skops-trusted-types-*.json")
    cached = table(str(cache))  # from the cache: skops gets a stand-in module with the same lists
    assert cached["doc"] == "type names cached by nbdeploy"
    uncached = table("")  # cache turned off
    assert cached["names"] == built["names"] == uncached["names"]
    assert {"SKLEARN_ESTIMATOR_TYPE_NAMES", "NUMPY_UFUNC_TYPE_NAMES"} <= set(cached["names"])
    assert "sklearn.ensemble._forest.RandomForestClassifier" in cached["names"]["SKLEARN_ESTIMATOR_TYPE_NAMES"]
    assert cached["default"] == uncached["default"]  # the same types need trusting explicitly

    table_json = json.loads(stored.read_text())
    del table_json["NUMPY_DTYPE_TYPE_NAMES"]  # a skops that needs a name the cache lacks
    stored.write_text(json.dumps(table_json))
    assert table(str(cache))["names"] == uncached["names"]
    stored.write_text("{not json")  # a damaged cache is rebuilt, never trusted
    assert table(str(cache))["names"] == uncached["names"]
    assert json.loads(stored.read_text()) == {k: v for k, v in uncached["names"].items()}


def test_runs_from_a_copy_named_nbdeploy_serve(regressor_bundle, tmp_path):
    pkgs = tmp_path / "pkgs"
    shutil.copytree(PACKAGE, pkgs / "nbdeploy_serve", ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(pkgs))
    try:
        from nbdeploy_serve import ServeConfig, launch
        from nbdeploy_serve.launcher import _PACKAGE_ROOT

        assert _PACKAGE_ROOT == pkgs / "nbdeploy_serve"
        handle = launch(regressor_bundle, ServeConfig(port=0, log_path=str(tmp_path / "r.jsonl")), timeout=180)
    finally:
        sys.path.remove(str(pkgs))
    try:
        body = {"dataframe_records": [{"age": 40, "income": 1.0, "city": "nice", "member": False}]}
        status, _, doc = Client(handle.url).post("/invocations", body)
        assert status == 200 and len(doc["predictions"]) == 1
    finally:
        handle.stop()


def test_launch_reports_a_server_that_dies(tmp_path):
    from nbdeploy.serve import ServeConfig, ServeError, launch

    (tmp_path / "empty").mkdir()
    with pytest.raises(ServeError) as info:
        launch(tmp_path / "empty", ServeConfig(port=0), timeout=60)
    assert "exited with code 2" in info.value.message
    assert "no MLmodel file" in info.value.hint


def test_openapi_document_from_a_folder(classifier_bundle):
    from nbdeploy.serve import openapi_document

    doc = openapi_document(classifier_bundle)
    row = doc["components"]["schemas"]["Row"]
    assert row["required"] == ["age", "city", "member"]  # MLflow marks a column with nulls optional
    assert row["properties"]["age"]["type"] == "integer"
    assert row["properties"]["income"]["type"] == ["number", "null"]  # training had nulls
    assert row["properties"]["city"]["x-training-values"] == ["lyon", "nice", "paris"]
    assert "example" in doc["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]


def test_config_from_env():
    from nbdeploy.serve import ServeConfig, ServeError

    cfg = ServeConfig.from_env({"NBDEPLOY_PORT": "9000", "NBDEPLOY_API_TOKEN": "t", "NBDEPLOY_LOG_PAYLOADS": "false",
                                "NBDEPLOY_MAX_WAIT_MS": "0.5"}, workers=3, host=None)
    assert (cfg.port, cfg.token, cfg.log_payloads, cfg.max_wait_ms, cfg.workers) == (9000, "t", False, 0.5, 3)
    assert "token" not in repr(cfg)
    with pytest.raises(ServeError, match="NBDEPLOY_PORT"):
        ServeConfig.from_env({"NBDEPLOY_PORT": "eighty"})
    with pytest.raises(ServeError, match="flag_out_of_range"):
        ServeConfig(flag_out_of_range="loud")


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_accepted_connections_have_tcp_nodelay(loop_name):
    """The socket we bind makes the event loop turn Nagle off (uvicorn issue 3149)."""
    from nbdeploy.serve.server import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP
    seen: list[int] = []

    class Probe(asyncio.Protocol):
        def connection_made(self, transport):
            s = transport.get_extra_info("socket")
            seen.append(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Probe, sock=sock)
        port = sock.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()

    if loop_name == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
    assert seen and seen[0] != 0


def test_check_loads_and_predicts_the_example_or_names_the_problem(classifier_bundle, tmp_path):
    def check(bundle: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nbdeploy.serve", str(bundle), "--check"],
                              capture_output=True, text=True, timeout=300)

    ok = check(classifier_bundle)
    assert ok.returncode == 0, ok.stderr
    assert "sklearn model loaded and predicted its input example" in ok.stdout

    broken = tmp_path / "broken"
    shutil.copytree(classifier_bundle, broken)
    example = broken / "model" / "input_example.json"
    doc = json.loads(example.read_text())
    doc["columns"] = [c if c != "age" else "years" for c in doc["columns"]]  # a column the model lacks
    example.write_text(json.dumps(doc))
    from conftest import seal_bundle

    seal_bundle(broken, json.loads((broken / "nbdeploy.json").read_text()))  # a consistent, wrong bundle
    bad = check(broken)
    assert bad.returncode == 2
    assert "could not predict its input example" in bad.stderr and "Traceback" not in bad.stderr


def test_compile_writes_bytecode_only_for_imported_modules_that_have_none(tmp_path):
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "used_here.py").write_text("VALUE = 41 + 1\n")
    (mods / "never_imported.py").write_text("VALUE = 0\n")
    code = ("import used_here, sys; from nbdeploy.serve.server import compile_loaded_modules; "
            "print(compile_loaded_modules(), compile_loaded_modules())")
    env = {**os.environ, "PYTHONPATH": str(mods), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    first, second = map(int, out.stdout.split())
    assert first >= 1 and second == 0  # the second call finds nothing left to write
    assert [p.name for p in (mods / "__pycache__").iterdir()] == [
        f"used_here.{sys.implementation.cache_tag}.pyc"]
    check = subprocess.run([sys.executable, "-c", "import used_here; print(used_here.VALUE)"],
                           capture_output=True, text=True, check=True, env=env)
    assert check.stdout.strip() == "42"


def test_check_passes_a_tensor_model_it_cannot_warm_up(tmp_path):
    import mlflow.sklearn
    import numpy as np
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    X = np.arange(12, dtype="float64").reshape(6, 2)
    model = LinearRegression().fit(X, X.sum(axis=1))
    mlflow.sklearn.save_model(model, str(tmp_path / "m"), signature=infer_signature(X, model.predict(X)),
                              input_example=X[:2])
    assert (tmp_path / "m" / "input_example.json").is_file()  # an example, but no named columns
    out = subprocess.run([sys.executable, "-m", "nbdeploy.serve", str(tmp_path / "m"), "--check"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "no prediction: no input_example.json with named columns" in out.stdout
