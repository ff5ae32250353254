"""%deploy serve / --stop: a real API process for a notebook's bundle, found again by its handle."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import yaml
from IPython.core.error import UsageError


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory) -> Path:
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    from nbdeploy.capture.profile import profile_frame

    X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0.5, 0.1, 0.9, 0.3]})
    y = 2 * X["a"] - X["b"]
    model = LinearRegression().fit(X, y)
    root = tmp_path_factory.mktemp("srv") / "bundle"
    mlflow.sklearn.save_model(model, str(root / "model"),
                              signature=infer_signature(X, model.predict(X)), input_example=X.head(2))
    (root / "profile.json").write_text(json.dumps(profile_frame(X)))
    from nbdeploy.serve.seal import checksums

    fmt = yaml.safe_load((root / "model" / "MLmodel").read_text())["flavors"]["sklearn"]["serialization_format"]
    (root / "nbdeploy.json").write_text(json.dumps({"name": "lin", "version": "1", "model": {"serialization": fmt},
                                                    "files": checksums(root)}))
    return root


def _post(url: str, doc: dict) -> dict:
    req = urllib.request.Request(url, json.dumps(doc).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_serve_start_reuse_and_stop(ipshell, tmp_path, small_bundle, capsys):
    from nbdeploy.bundle import servers

    (tmp_path / "nb.ipynb").write_text("{}")
    ipshell.run_line_magic("deploy", "init")
    ipshell.run_line_magic("deploy", f"serve {small_bundle}")
    out = capsys.readouterr().out
    assert "serving bundle at http://127.0.0.1:" in out and "curl -X POST" in out
    handle = servers.running(tmp_path / "nb.ipynb")
    assert handle is not None and handle.alive()
    saved = json.loads((tmp_path / ".nbdeploy" / "nb" / "server.json").read_text())
    assert saved["pid"] == handle.pid
    pred = _post(f"{handle.url}/invocations",
                 {"dataframe_split": {"columns": ["a", "b"], "data": [[10.0, 1.0]]}})
    assert pred["predictions"][0] == pytest.approx(19.0)
    again = servers.start(tmp_path / "nb.ipynb", small_bundle)
    assert again.pid == handle.pid  # a live server of the same bundle is reused
    ipshell.run_line_magic("deploy", "serve --stop")
    assert "stopped" in capsys.readouterr().out
    assert not handle.alive()
    assert servers.running(tmp_path / "nb.ipynb") is None
    assert not (tmp_path / ".nbdeploy" / "nb" / "server.json").exists()


def test_serve_without_a_bundle_is_one_line(ipshell, tmp_path):
    (tmp_path / "nb.ipynb").write_text("{}")
    ipshell.run_line_magic("deploy", "init")
    with pytest.raises(UsageError, match="is not a bundle"):
        ipshell.run_line_magic("deploy", f"serve {tmp_path}")


def test_drift_from_the_notebook_and_the_cli(ipshell, tmp_path, small_bundle, capsys):
    import subprocess
    import sys

    (tmp_path / "nb.ipynb").write_text("{}")
    ipshell.run_line_magic("deploy", "init")
    with pytest.raises(UsageError, match="no API of this notebook is running"):
        ipshell.run_line_magic("deploy", "drift")
    ipshell.run_line_magic("deploy", f"serve {small_bundle}")
    from nbdeploy.bundle import servers

    handle = servers.running(tmp_path / "nb.ipynb")
    try:
        rows = [[50.0 + i, 0.5] for i in range(120)]  # "a" far above its training range 1..4
        _post(f"{handle.url}/invocations", {"dataframe_split": {"columns": ["a", "b"], "data": rows}})
        capsys.readouterr()
        report = ipshell.run_line_magic("deploy", "drift")  # shown inline as HTML
        assert report.verdict == "drift" and "a" in report.doc["drifted"]
        assert 'data-field="a" data-verdict="drift"' in report._repr_html_()
        ipshell.run_line_magic("deploy", "drift --text")
        out = capsys.readouterr().out
        assert out.startswith("drift of the last 120 rows the API of lin v1 served: drift (drifted: a")
        cli = subprocess.run([sys.executable, "-m", "nbdeploy", "drift", handle.url, "--json", "--fail-on", "drift"],
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 3, cli.stderr
        doc = json.loads(cli.stdout)
        assert doc["url"] == handle.url and doc["rows"] == 120 and "a" in doc["drifted"]
    finally:
        ipshell.run_line_magic("deploy", "serve --stop")
    gone = subprocess.run([sys.executable, "-m", "nbdeploy", "drift", handle.url],
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode == 2
    assert gone.stderr.startswith(f"nbdeploy: error: no API answers at {handle.url}")
    assert "Traceback" not in gone.stderr
