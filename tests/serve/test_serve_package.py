"""The package is self-contained, runs from a copy named nbdeploy_serve, and its pieces work alone."""

from __future__ import annotations

import ast
import asyncio
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
    "datetime", "hmac", "html", "importlib", "io", "json", "logging", "os", "pathlib", "pickle", "signal",
    "socket", "subprocess", "sys", "tempfile", "threading", "time", "typing", "urllib",
    "numpy", "pandas", "orjson", "uvicorn", "yaml",
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
