"""Values of the right type that the model refuses, each a 422 naming the column and the value
(MLflow JSON, CSV and V2 alike), never the model's 500, whether the compiled program or
scikit-learn answers; a good request in the same batch is answered:

- a category the model never saw, with OneHotEncoder(handle_unknown="error") in its pipeline;
- a finite number that its scaler turns into infinity, which the linear model refuses
  (found by schemathesis against the diabetes example bundle: tests/bundle/test_api_fuzz.py)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import Client, _write_bundle, seal_bundle, start

pytestmark = pytest.mark.slow

ROW = {"age": 40, "income": 51_000.0, "dose": 0.01, "city": "paris", "member": True}
STRICT = {**ROW, "city": "tokyo"}


@pytest.fixture(scope="module")
def strict_bundle(training_frame: Any, tmp_path_factory: Any) -> Path:
    """The serving tests' pipeline with an encoder that refuses unknown categories."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X = training_frame.fillna({"income": 50_000.0})
    X.insert(2, "dose", np.random.default_rng(3).normal(0, 0.05, len(X)))  # a small scale, as in diabetes
    y = (X["age"] > 45).astype(int)
    pre = ColumnTransformer([("num", make_pipeline(StandardScaler()), ["age", "income", "dose"]),
                             ("cat", OneHotEncoder(handle_unknown="error"), ["city", "member"])])
    model = Pipeline([("pre", pre), ("model", LogisticRegression())]).fit(X, y)
    return _write_bundle(tmp_path_factory.mktemp("strict") / "bundle", model, X, "strict",
                         skops_trusted_types=["numpy.dtype"])


@pytest.fixture(scope="module")
def strict_program_bundle(strict_bundle: Path, tmp_path_factory: Any) -> Path:
    """The same bundle with its compiled program (what ``nbdeploy build`` writes)."""
    from nbdeploy.bundle.compiler import write_program
    from nbdeploy.serve.bundle import read_bundle
    from nbdeploy.serve.model import load_model

    root = tmp_path_factory.mktemp("strict-prog") / "bundle"
    shutil.copytree(strict_bundle, root)
    estimator = load_model(read_bundle(root)).predict.__self__
    outcome = write_program(estimator, root / "model", json.loads((root / "profile.json").read_text()))
    assert outcome["compiled"] is True, outcome
    seal_bundle(root, json.loads((root / "nbdeploy.json").read_text()))
    return root


@pytest.fixture(scope="module", params=["program", "library"])
def strict_server(request: pytest.FixtureRequest, strict_bundle: Path, strict_program_bundle: Path,
                  tmp_path_factory: Any) -> Any:
    bundle = strict_program_bundle if request.param == "program" else strict_bundle
    os.environ["NBDEPLOY_PROGRAM"] = "1" if request.param == "program" else "0"
    try:
        handle = start(bundle, tmp_path_factory.mktemp("strict-log"))
    finally:
        del os.environ["NBDEPLOY_PROGRAM"]
    yield handle
    handle.stop()


def _csv(row: dict[str, Any]) -> str:
    return ",".join(row) + "\n" + ",".join(str(v) for v in row.values()) + "\n"


def _v2(row: dict[str, Any]) -> dict[str, Any]:
    kinds = {"age": "INT64", "income": "FP64", "dose": "FP64", "city": "BYTES", "member": "BOOL"}
    return {"inputs": [{"name": k, "shape": [1], "datatype": kinds[k], "data": [v]} for k, v in row.items()]}


def _check_names_city_and_tokyo(status: int, doc: dict[str, Any]) -> None:
    assert status == 422, doc
    message = doc.get("message") or doc.get("error")
    assert "'city'" in message and "tokyo" in message, message
    [error] = doc["errors"]
    assert error["field"] == "city" and error["problem"] == "unknown_category" and "tokyo" in error["got"]
    assert error["rows"] == [0] and "paris" in error["expected"]


def test_unknown_category_is_a_422_naming_column_and_value(strict_server: Any, client_for: Any) -> None:
    c = client_for(strict_server)
    status, _, doc = c.post("/invocations", {"dataframe_records": [ROW]})
    assert status == 200, doc
    _check_names_city_and_tokyo(*c.post("/invocations", {"dataframe_records": [STRICT]})[::2])
    _check_names_city_and_tokyo(*c.post("/invocations", _csv(STRICT), content_type="text/csv")[::2])
    _check_names_city_and_tokyo(*c.post("/v2/models/strict/infer", _v2(STRICT))[::2])
    status, _, doc = c.post("/invocations", {"dataframe_records": [ROW, STRICT, ROW]})
    assert status == 422 and doc["errors"][0]["rows"] == [1], doc


def test_a_good_request_batched_with_an_unknown_category_is_answered(strict_server: Any) -> None:
    """Concurrent requests share one predict call; the one with the new category fails alone."""

    def one(i: int) -> int:
        c = Client(strict_server.url)
        try:
            return c.post("/invocations", {"dataframe_records": [STRICT if i % 4 == 0 else ROW]})[0]
        finally:
            c.close()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(64)))
    assert statuses == [422 if i % 4 == 0 else 200 for i in range(64)]


def test_a_number_the_scaler_turns_into_infinity_is_a_422_naming_the_column(strict_server: Any,
                                                                          client_for: Any) -> None:
    c = client_for(strict_server)
    huge = {**ROW, "dose": 1.7e308}  # finite, but over 1e306 once divided by the scale (~0.05)
    for body in ({"dataframe_records": [ROW, huge]}, _v2(huge)):
        path = "/invocations" if "dataframe_records" in body else "/v2/models/strict/infer"
        status, _, doc = c.post(path, body)
        assert status == 422, doc
        assert "'dose'" in (doc.get("message") or doc.get("error")) and "infinity" in doc["errors"][0]["expected"]
        [error] = doc["errors"]
        assert error["field"] == "dose" and error["problem"] == "out_of_bounds"
        assert error["rows"] == ([1] if path == "/invocations" else [0])
    status, _, doc = c.post("/invocations", _csv(huge), content_type="text/csv")
    assert status == 422 and doc["errors"][0]["field"] == "dose", doc
    assert c.post("/invocations", {"dataframe_records": [{**ROW, "dose": 1e5}]})[0] == 200  # large, finite
