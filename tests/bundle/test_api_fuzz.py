"""Schemathesis against the served API of both example bundles, from the API's own /openapi.json.

Every request schemathesis generates from the document (valid ones and, on purpose, invalid
ones) must get an answer that is not a 5xx and that matches what the document says of that
status: its status code is listed, its content type and its JSON body fit the schema, the
headers it promises are there. A valid request must be accepted and an invalid one refused.

Deterministic: Hypothesis is derandomized (a fixed seed from each test's name), so CI
generates the same requests every run; the database is off, so nothing carries over from an
earlier run. The bundles are the session's example builds (tests/bundle/conftest.py); each is
served by a real ``nbdeploy_serve`` process on 127.0.0.1.

The document is loaded from the running server with ``schemathesis.openapi.from_url`` and each
operation's cases come from ``APIOperation.as_strategy`` under Hypothesis's ``@given``:
``schemathesis.pytest.from_fixture`` (the way to load a schema from a fixture) fails on pytest
9.2, whose items no longer have the ``_nodeid`` it rewrites. Phases: the document's own example
and generation (no shrinking: a failure is reported as generated, which keeps CI short).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from nbdeploy.serve import ServeConfig, launch

pytestmark = [pytest.mark.slow, pytest.mark.fuzz]

#: generated requests per operation and mode (valid, invalid); an operation without inputs has one request
EXAMPLES = 500


@pytest.fixture(scope="module", params=["churn", "diabetes"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    built = request.getfixturevalue(f"{request.param}_build")
    log = tmp_path_factory.mktemp(f"fuzz-{request.param}") / "requests.jsonl"
    handle = launch(built.bundle, ServeConfig(port=0, log_path=str(log)), timeout=180)
    handle.which = request.param
    yield handle
    handle.stop()


#: a request the document calls valid is answered 2xx, or 422 when its values are ones the model
#: cannot take though their types are right (a category its encoder refuses, a number too large
#: for its float32 trees); a 422 names the field. Never 400/415: those would mean the document
#: describes a request the server cannot read.
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "422"]}}})


def _fuzz(operation: Any, mode: GenerationMode, sent: Counter[str]) -> None:
    """``EXAMPLES`` generated requests of ``mode`` to one operation, each response checked."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    def run(case: Any) -> None:
        sent[operation.label] += 1
        case.call_and_validate()

    run()


def _has_inputs(operation: Any) -> bool:
    return bool(operation.body) or any(True for _ in operation.iter_parameters())


def test_api_answers_as_documented(served: Any) -> None:
    """Each operation of the served document: valid and invalid requests, every answer checked
    by schemathesis's checks (no 5xx; status, content type, headers and body as documented;
    valid input accepted, invalid input refused)."""
    api = schemathesis.openapi.from_url(f"{served.url}/openapi.json", config=CONFIG)
    operations = [result.ok() for result in api.get_all_operations()]
    sent: Counter[str] = Counter()
    for operation in operations:
        t0 = time.perf_counter()
        _fuzz(operation, GenerationMode.POSITIVE, sent)
        if _has_inputs(operation):
            _fuzz(operation, GenerationMode.NEGATIVE, sent)
        print(f"{operation.label}: {sent[operation.label]} requests, {time.perf_counter() - t0:.1f} s")
    print(f"\n{served.which}: " + ", ".join(f"{op}: {n}" for op, n in sorted(sent.items())))
    assert {op.label for op in operations} == set(sent)
    posts = {op.label: sent[op.label] for op in operations if op.method.upper() == "POST"}
    # /invocations, V2 infer, V2 /versions/{v}/infer and /feedback (admin/reload: only with a token)
    assert len(posts) == 4, sent
    assert all(n >= 2 * EXAMPLES for n in posts.values()), posts  # at least 1,000 each
