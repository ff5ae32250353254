"""Client mistakes that once reached the model and came back as 500: each is now a 4xx that
names the field, and the server answers the next request as before.

Every test talks to a real server on 127.0.0.1 (the library-served fixture bundle, and the same
bundle with a compiled program, whose trees compute in float32).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

ROW = {"age": 30, "income": 52_000.0, "city": "paris", "member": True}
V2 = "/v2/models/churn/infer"


def _v2(**values: Any) -> dict[str, Any]:
    row = {**ROW, **values}
    kinds = {"age": "INT64", "income": "FP64", "city": "BYTES", "member": "BOOL"}
    return {"inputs": [{"name": k, "shape": [1], "datatype": kinds[k], "data": [v]} for k, v in row.items()]}


def _still_answers(c: Any) -> None:
    status, _, body = c.post("/invocations", {"dataframe_records": [ROW]})
    assert status == 200 and len(body["predictions"]) == 1
    status, _, body = c.post(V2, _v2())
    assert status == 200 and body["outputs"][0]["shape"] == [1]


def _message(body: dict[str, Any]) -> str:
    return body.get("message") or body["error"]


@pytest.fixture(scope="module")
def program_bundle(classifier_bundle: Path, tmp_path_factory: Any) -> Path:
    """The classifier bundle with a compiled program, as ``nbdeploy build`` writes it."""
    from conftest import seal_bundle

    from nbdeploy.bundle.compiler import write_program
    from nbdeploy.serve.bundle import read_bundle
    from nbdeploy.serve.model import load_model

    root = tmp_path_factory.mktemp("mistakes-prog") / "bundle"
    shutil.copytree(classifier_bundle, root)
    estimator = load_model(read_bundle(root)).predict.__self__
    outcome = write_program(estimator, root / "model", json.loads((root / "profile.json").read_text()))
    assert outcome["compiled"] is True
    seal_bundle(root, json.loads((root / "nbdeploy.json").read_text()))
    return root


@pytest.fixture(scope="module")
def program_server(program_bundle: Path, tmp_path_factory: Any) -> Any:
    from conftest import start

    handle = start(program_bundle, tmp_path_factory.mktemp("mistakes-prog-log"))
    yield handle
    handle.stop()


# -- an integer past int64 ---------------------------------------------------------


@pytest.mark.parametrize("value", [2**63, 2**64 + 5, -(2**64), 1e39])
def test_an_integer_past_int64_is_a_422_naming_the_column(classifier_server: Any, client_for: Any,
                                                          value: Any) -> None:
    c = client_for(classifier_server)
    status, _, body = c.post("/invocations", {"dataframe_records": [ROW, {**ROW, "age": value}]})
    assert status == 422, body
    assert "'age'" in body["message"] and "9223372036854775807" in body["message"]
    (error,) = body["errors"]
    assert error["field"] == "age" and error["problem"] == "out_of_bounds" and error["rows"] == [1]
    assert error["allowed_range"] == [-(2**63), 2**63 - 1]
    _still_answers(c)


def test_an_integer_past_int64_is_a_422_over_v2(classifier_server: Any, client_for: Any) -> None:
    c = client_for(classifier_server)
    status, _, body = c.post(V2, _v2(age=2**63))
    assert status == 422, body
    assert "'age'" in body["error"] and body["errors"][0]["field"] == "age"
    _still_answers(c)


def test_one_clients_huge_integer_does_not_fail_its_batchmates(classifier_server: Any) -> None:
    import concurrent.futures

    from conftest import Client

    def one(i: int) -> int:
        client = Client(classifier_server.url)
        try:
            age = 2**63 if i % 4 == 0 else 20 + i
            status, _, _ = client.post("/invocations", {"dataframe_records": [{**ROW, "age": age}]})
            return status
        finally:
            client.close()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(32)))
    assert statuses == [422 if i % 4 == 0 else 200 for i in range(32)]


# -- CSV with a bare carriage return -------------------------------------------------


@pytest.mark.parametrize(("body", "where"), [
    (b"age,income,city,member\n30,1.0,pa\rris,true\n", "line 2, column 3 ('city')"),
    (b"age,income,city,member\r30,1.0,paris,true\n", "line 1, column 4 ('member')"),
])
def test_a_bare_carriage_return_in_csv_is_a_400_naming_where(classifier_server: Any, client_for: Any,
                                                             body: bytes, where: str) -> None:
    c = client_for(classifier_server)
    status, _, doc = c.post("/invocations", body, content_type="text/csv")
    assert status == 400, doc
    assert where in doc["message"] and "carriage return" in doc["message"]
    status, _, doc = c.post("/invocations", b"age,income,city,member\r\n30,1.0,paris,true\r\n",
                            content_type="text/csv")
    assert status == 200 and len(doc["predictions"]) == 1  # CRLF line ends are fine
    _still_answers(c)


# -- a V2 datatype that is not a string -----------------------------------------------


@pytest.mark.parametrize("datatype", [{"type": "INT64"}, ["INT64"], 64, None])
def test_a_v2_datatype_that_is_not_a_string_is_a_400(classifier_server: Any, client_for: Any,
                                                     datatype: Any) -> None:
    c = client_for(classifier_server)
    doc = _v2()
    doc["inputs"][0]["datatype"] = datatype
    status, _, body = c.post(V2, doc)
    assert status == 400, body
    assert "inputs[0] (age): datatype must be one of" in body["error"]
    _still_answers(c)


# -- a V2 input given twice -------------------------------------------------------------


def test_a_v2_input_given_twice_is_a_400_naming_it(classifier_server: Any, client_for: Any) -> None:
    """The later tensor silently replaced the earlier one (found by the API fuzz test: the
    document allows one tensor per column)."""
    c = client_for(classifier_server)
    doc = _v2()
    doc["inputs"].append({"name": "age", "shape": [1], "datatype": "INT64", "data": [99]})
    status, _, body = c.post(V2, doc)
    assert status == 400, body
    assert "input 'age' is given twice" in body["error"]
    _still_answers(c)


# -- a finite number the float32 trees see as infinity ---------------------------------


def test_a_number_too_large_for_the_float32_trees_is_a_422_with_the_range(program_server: Any,
                                                                          client_for: Any) -> None:
    c = client_for(program_server)
    status, _, meta = c.get("/metadata")
    assert meta["program"]["used"] is True  # the compiled program, whose trees cast to float32
    for value in (1.1e16, 1e30):  # large, but within float32 after scaling: answered
        status, _, body = c.post("/invocations", {"dataframe_records": [{**ROW, "income": value}]})
        assert status == 200, body
    status, _, body = c.post("/invocations", {"dataframe_records": [ROW, ROW, {**ROW, "income": 1e300}]})
    assert status == 422, body
    assert "'income'" in body["message"] and "float32" in body["message"]
    (error,) = body["errors"]
    assert error["field"] == "income" and error["problem"] == "out_of_bounds" and error["rows"] == [2]
    lo, hi = error["allowed_range"]
    assert lo < -1e38 and 1e38 < hi < 1e300  # the income that the scaler keeps within float32
    # the range is the model's: just inside it is answered, just outside it is refused
    status, _, body = c.post("/invocations", {"dataframe_records": [{**ROW, "income": hi * 0.999}]})
    assert status == 200, body
    status, _, body = c.post("/invocations", {"dataframe_records": [{**ROW, "income": hi * 1.001}]})
    assert status == 422 and body["errors"][0]["field"] == "income"
    status, _, body = c.post(V2, _v2(income=-1e300))
    assert status == 422 and body["errors"][0]["field"] == "income"
    _still_answers(c)


def test_a_float32_column_refuses_what_float32_cannot_hold() -> None:
    """A signature ``float`` column is cast to float32 before the model sees it."""
    from nbdeploy.serve.bundle import Column
    from nbdeploy.serve.errors import RequestError
    from nbdeploy.serve.predictor import build_table

    col = Column("ratio", "float", True)
    table = build_table([col], {"ratio": [1.5, 3e38]})
    assert table.columns[0].dtype.name == "float32" and table.columns[0].tolist()[0] == 1.5
    with pytest.raises(RequestError) as caught:
        build_table([col], {"ratio": [1.5, 1e39, -1e39]})
    assert caught.value.status == 422
    (error,) = caught.value.errors
    assert error["field"] == "ratio" and error["rows"] == [1, 2] and error["count"] == 2
    assert error["allowed_range"][1] == pytest.approx(3.4028235e38)


def test_a_number_too_large_for_the_library_models_float32_trees_is_a_422(classifier_server: Any,
                                                                         client_for: Any) -> None:
    """Served by scikit-learn itself (no compiled program), whose trees also cast to float32."""
    c = client_for(classifier_server)
    status, _, meta = c.get("/metadata")
    assert meta["program"]["used"] is False
    rows = [ROW, {**ROW, "income": 1e300}, ROW, {**ROW, "income": -1e299}]
    status, _, body = c.post("/invocations", {"dataframe_records": rows})
    assert status == 422, body
    assert "'income'" in body["message"] and "float32" in body["message"]
    (error,) = body["errors"]
    assert error["field"] == "income" and error["problem"] == "out_of_bounds" and error["rows"] == [1, 3]
    status, _, body = c.post(V2, _v2(income=1e300))
    assert status == 422 and body["errors"][0]["field"] == "income"
    _still_answers(c)
