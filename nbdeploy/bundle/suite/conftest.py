"""Fixtures for the bundle's API tests: the live API URL, the manifest, the golden rows.

Run against a running API (stdlib only besides pytest)::

    NBDEPLOY_API_URL=http://127.0.0.1:8080 python -m pytest tests
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BUNDLE = HERE.parent


class Response:
    def __init__(self, status: int, body: bytes, headers: dict) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Api:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.token = os.environ.get("NBDEPLOY_API_TOKEN")

    def call(self, method: str, path: str, doc=None) -> Response:
        data = json.dumps(doc).encode() if doc is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return Response(r.status, r.read(), dict(r.headers))
        except urllib.error.HTTPError as e:
            return Response(e.code, e.read(), dict(e.headers))

    def get(self, path: str) -> Response:
        return self.call("GET", path)

    def post(self, path: str, doc) -> Response:
        return self.call("POST", path, doc)


@pytest.fixture(scope="session")
def api() -> Api:
    url = os.environ.get("NBDEPLOY_API_URL")
    if not url:
        pytest.fail("set NBDEPLOY_API_URL to the URL of the running API, e.g. http://127.0.0.1:8080")
    return Api(url)


@pytest.fixture(scope="session")
def manifest() -> dict:
    return json.loads((BUNDLE / "nbdeploy.json").read_text())


@pytest.fixture(scope="session")
def golden() -> dict:
    return json.loads((HERE / "golden.json").read_text())
