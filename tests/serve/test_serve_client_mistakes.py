"""Client mistakes that once reached the model and came back as 500: each is now a 4xx that
names the field, and the server answers the next request as before.

Every test talks to a real server on 127.0.0.1 (the library-served fixture bundle, and the same
bundle with a compiled program, whose trees compute in float32).
"""

from __future__ import annotations

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
