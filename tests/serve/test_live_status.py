"""``nbdeploy.bundle.live.live_status`` (the panel's live view, ``nbdeploy live``) against real servers.

It lives beside the serving-mode tests because it reads their fixtures (bundles of two
versions of one model): a canary server and a shadow server answer real requests, and the
status read from their endpoints must say what those requests did.
"""

from __future__ import annotations

import socket
import time

import pytest
import test_serve_modes
from conftest import Client, start

pytestmark = pytest.mark.slow
ROWS = test_serve_modes.ROWS
classifier_v4 = test_serve_modes.classifier_v4  # the fixture: another model under the bundle's name, version 4


def _ask(url: str, rows: list[dict]) -> list[str]:
    """The version that answered each row (one request a row)."""
    c = Client(url)
    try:
        out = []
        for row in rows:
            status, headers, doc = c.post("/invocations", {"dataframe_records": [row]})
            assert status == 200, doc
            out.append(headers["x-model-version"])
        return out
    finally:
        c.close()


def test_live_status_of_a_canary(classifier_bundle, classifier_v4, tmp_path) -> None:
    from nbdeploy.bundle.live import live_status

    handle = start(classifier_bundle, tmp_path, canary=str(classifier_v4), canary_percent=50)
    try:
        versions = _ask(handle.url, ROWS[:60])
        c = Client(handle.url)
        status, _, _ = c.post("/invocations", {"dataframe_records": [{"age": "old"}]})
        c.close()
        assert 400 <= status < 500
        s = live_status(handle.url)
    finally:
        handle.stop()
    assert s.up and (s.name, s.version, s.workers) == ("churn", "3", 1)
    assert (s.requests, s.errors) == (61, 1)
    assert s.canary is not None and (s.canary.version, s.canary.percent) == ("4", 50.0)
    assert s.canary.answered == versions.count("4") and 0 < s.canary.answered < 60
    assert s.canary.share == pytest.approx(versions.count("4") / 60)
    assert s.shadow is None
    assert "canary: v4 answers 50%" in s.text()


def test_live_status_of_a_shadow_and_of_no_api(classifier_bundle, classifier_v4, tmp_path) -> None:
    from nbdeploy.bundle.live import live_status

    handle = start(classifier_bundle, tmp_path, shadow=str(classifier_v4))
    try:
        assert set(_ask(handle.url, ROWS[:30])) == {"3"}
        deadline = time.monotonic() + 60
        while (s := live_status(handle.url)).shadow is None or s.shadow.requests < 30:
            assert time.monotonic() < deadline, s
            time.sleep(0.2)
        report = Client(handle.url).get("/shadow")[2]
    finally:
        handle.stop()
    assert s.shadow.version == "4" and s.shadow.rows == 30 and s.canary is None
    assert s.shadow.agreement == report["agreement"] and 0 < s.shadow.agreement < 1  # the versions differ on some
    assert s.requests == 30 and s.errors == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = live_status(f"http://127.0.0.1:{port}")
    assert not down.up and "refused" in (down.error or "").lower() and "not answering" in down.text()
