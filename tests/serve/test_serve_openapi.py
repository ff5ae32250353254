"""A 405 says which methods a path takes."""

from __future__ import annotations

from typing import Any


def test_a_405_says_which_methods_the_path_takes(classifier_server: Any, client_for: Any) -> None:
    c = client_for(classifier_server)
    status, headers, body = c.get("/invocations")
    assert status == 405 and headers["allow"] == "POST" and "use POST" in body["message"]
    status, headers, body = c.post("/health", {})
    assert status == 405 and headers["allow"] == "GET, HEAD"
    status, headers, _ = c.request("DELETE", "/v2/models/churn/infer")
    assert status == 405 and headers["allow"] == "POST"
    assert c.get("/health")[0] == 200  # the connection and the server carry on
