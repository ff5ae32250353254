"""The API's bearer token (NBDEPLOY_API_TOKEN) is compared in constant time.

The end-to-end behaviour (401 without it or with a wrong one, probes open, /admin/reload
refused unless a token is configured) is in test_serve_lifecycle.py and test_serve_modes.py;
here, that every comparison goes through ``hmac.compare_digest``, whose time does not depend
on how many leading bytes of a guess are right (``==`` stops at the first difference)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from nbdeploy.serve import app as serve_app
from nbdeploy.serve.errors import RequestError


def test_the_bearer_token_is_compared_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = serve_app.hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(serve_app.hmac, "compare_digest", recording)
    app = SimpleNamespace(_token=b"s3cret")
    app.authorized = lambda headers: serve_app.ServeApp.authorized(app, headers)  # what /health asks too
    serve_app.ServeApp._authorize(app, {b"authorization": b"Bearer s3cret"})
    for guess in (b"Bearer s3creX", b"bearer s", b"Bearer "):
        with pytest.raises(RequestError) as refused:
            serve_app.ServeApp._authorize(app, {b"authorization": guess})
        assert refused.value.status == 401
    assert calls == [(b"s3cret", b"s3cret"), (b"s3creX", b"s3cret"), (b"s", b"s3cret"), (b"", b"s3cret")]
    with pytest.raises(RequestError):  # no header at all
        serve_app.ServeApp._authorize(app, {})
