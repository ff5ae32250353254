"""``%deploy versions/promote/rollback/history`` in an in-process shell: this notebook's model by default.

Two real builds of the fixture notebook; the passing verify of version 2 is recorded with
:func:`nbdeploy.bundle.catalog.record_verify` (what is tested is the magics' parsing and output).
"""

from __future__ import annotations

import os

import pytest
from IPython.core.error import UsageError

from tests.release.conftest import NAME, build_two_versions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    from nbdeploy.bundle.catalog import record_verify

    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    folder = tmp_path_factory.mktemp("magics") / "proj"
    v1, v2 = build_two_versions(folder)
    record_verify(v2, True, "verified")
    yield folder
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved


@pytest.fixture
def shell(ipshell, built, monkeypatch):
    monkeypatch.setenv("NBDEPLOY_NOTEBOOK", str(built / "tiny_ridge.ipynb"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return ipshell


def test_versions_promote_rollback_history_from_the_notebook(shell, built, capsys):
    view = shell.run_line_magic("deploy", "versions")
    assert "scale=10.0" in view.text() and "verified" in view.text()
    with pytest.raises(UsageError, match=r"^%deploy promote: refusing to promote: tiny-ridge version 1 .*--force"):
        shell.run_line_magic("deploy", "promote 1")
    shell.run_line_magic("deploy", "promote 1 --force")
    shell.run_line_magic("deploy", f"promote {NAME} 2")
    shell.run_line_magic("deploy", "promote 2 --as challenger")
    out = capsys.readouterr().out
    assert "no version -> version 1" in out and "version 1 -> version 2" in out and "@challenger" in out
    shell.run_line_magic("deploy", "rollback")
    assert "version 2 -> version 1 (rollback" in capsys.readouterr().out
    history = shell.run_line_magic("deploy", "history")
    rows = history.sections[0][2]
    assert [(r[1], r[2], r[3], r[4], r[6]) for r in rows] == [
        ("champion", "-", "1", "promote", "yes"), ("champion", "1", "2", "promote", ""),
        ("challenger", "-", "2", "promote", ""), ("champion", "2", "1", "rollback", "")]
    assert "<table>" in history._repr_html_()


def test_usage_errors_are_one_line(shell):
    with pytest.raises(UsageError, match="give \\[NAME\\] VERSION"):
        shell.run_line_magic("deploy", "promote a 1 2")
    with pytest.raises(UsageError, match="no registered model 'nope'"):
        shell.run_line_magic("deploy", "history nope")
    with pytest.raises(UsageError, match="'champion!' cannot be an alias"):
        shell.run_line_magic("deploy", "promote 1 --as champion!")


def test_serve_a_registered_version_in_the_background(shell, built, capsys):
    import json
    import urllib.request

    from nbdeploy.bundle import servers

    shell.run_line_magic("deploy", "serve models:/tiny-ridge/2")
    try:
        out = capsys.readouterr().out
        assert "models:/tiny-ridge/2 is tiny-ridge version 2" in out
        handle = servers.running(built / "tiny_ridge.ipynb")
        assert handle is not None and handle.url in out
        body = json.dumps({"dataframe_records": [{"a": 0.0, "b": 0.0, "c": 0.0}]}).encode()
        req = urllib.request.Request(f"{handle.url}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert len(json.loads(resp.read())["predictions"]) == 1
    finally:
        shell.run_line_magic("deploy", "serve --stop")
    assert "stopped" in capsys.readouterr().out
