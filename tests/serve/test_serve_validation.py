"""Every validation error is a 4xx naming the field; soft findings are accepted and flagged."""

from __future__ import annotations

import pytest

GOOD = {"age": 40, "income": 52000.0, "city": "lyon", "member": True}


def _post(client, *rows, **kw):
    return client.post("/invocations", {"dataframe_records": list(rows)}, **kw)


def _errors(doc):
    return {e["field"]: e for e in doc["errors"]}


def test_good_row_passes(classifier_server, client_for):
    status, headers, doc = _post(client_for(classifier_server), GOOD)
    assert status == 200 and len(doc["predictions"]) == 1
    assert "x-nbdeploy-flags" not in headers


def test_missing_column(classifier_server, client_for):
    row = {k: v for k, v in GOOD.items() if k != "city"}
    status, _, doc = _post(client_for(classifier_server), row)
    assert status == 422
    err = _errors(doc)["city"]
    assert err["problem"] == "missing" and "string" in err["expected"]


def test_extra_column(classifier_server, client_for):
    status, _, doc = _post(client_for(classifier_server), {**GOOD, "shoe_size": 43})
    assert status == 422
    assert _errors(doc)["shoe_size"]["problem"] == "unexpected"


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("age", "forty", "integer"),
    ("age", 40.5, "integer"),
    ("income", "lots", "number"),
    ("city", 3, "string"),
    ("member", "yes", "true or false"),
    ("age", True, "integer"),
])
def test_wrong_type(classifier_server, client_for, field, value, expected):
    status, _, doc = _post(client_for(classifier_server), GOOD, {**GOOD, field: value})
    assert status == 422
    err = _errors(doc)[field]
    assert err["problem"] == "wrong_type" and expected in err["expected"] and err["rows"] == [1]


def test_several_fields_named_at_once(classifier_server, client_for):
    row = {"age": "x", "income": 1.0, "member": None, "colour": "red"}
    status, _, doc = _post(client_for(classifier_server), row)
    assert status == 422
    assert {f: e["problem"] for f, e in _errors(doc).items()} == {
        "age": "wrong_type", "city": "missing", "member": "null", "colour": "unexpected"}


def test_null_where_training_had_none(classifier_server, client_for):
    status, _, doc = _post(client_for(classifier_server), {**GOOD, "age": None})
    assert status == 422
    err = _errors(doc)["age"]
    assert err["problem"] == "null" and "no nulls" in err["expected"]


def test_null_where_training_had_nulls_is_accepted(classifier_server, client_for):
    status, _, doc = _post(client_for(classifier_server), {**GOOD, "income": None})
    assert status == 200, doc


def test_integral_float_is_accepted_as_integer(classifier_server, client_for):
    status, _, doc = _post(client_for(classifier_server), {**GOOD, "age": 40.0})
    assert status == 200, doc


def test_out_of_range_and_unseen_category_flagged_in_header(classifier_server, client_for):
    c = client_for(classifier_server)
    status, headers, doc = _post(c, GOOD, {**GOOD, "age": 400, "city": "atlantis"})
    assert status == 200 and len(doc["predictions"]) == 2
    assert "warnings" not in doc  # this server flags in the header only
    flags = set(headers["x-nbdeploy-flags"].split(","))
    assert flags == {"age:out_of_range:1", "city:unseen_category:1"}
    metrics = c.get("/metrics")[2]
    assert 'nbdeploy_out_of_range_total{' in metrics and 'field="age",kind="out_of_range"' in metrics


def test_out_of_range_flagged_in_body_when_configured(regressor_server, client_for):
    status, headers, doc = _post(client_for(regressor_server), {**GOOD, "income": -1e9})
    assert status == 200
    (warning,) = doc["warnings"]
    assert warning["field"] == "income" and warning["kind"] == "out_of_range" and warning["rows"] == [0]
    assert headers["x-nbdeploy-flags"] == "income:out_of_range:1"


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b'"text"'])
def test_malformed_json_is_400(classifier_server, client_for, body):
    status, _, doc = client_for(classifier_server).post("/invocations", body)
    assert status == 400 and doc["error_code"] == "BAD_REQUEST" and doc["message"]


@pytest.mark.parametrize("body", [
    {"rows": [GOOD]},
    {"dataframe_records": [GOOD], "instances": [GOOD]},
    {"dataframe_split": {"data": [[1]]}},
    {"dataframe_split": {"columns": ["age"], "data": [[1, 2]]}},
    {"dataframe_records": [1, 2]},
    {"dataframe_records": []},
    {"instances": [[1, 2]]},
])
def test_wrong_payload_shape_is_400(classifier_server, client_for, body):
    status, _, doc = client_for(classifier_server).post("/invocations", body)
    assert status == 400, doc
    assert doc["message"]


def test_body_over_limit_is_413(classifier_server, client_for):
    big = {"dataframe_records": [GOOD] * 2000}  # about 130 kB; this server allows 64 kB
    status, _, doc = client_for(classifier_server).post("/invocations", big)
    assert status == 413 and "limit" in doc["message"]


def test_chunked_body_over_limit_is_413(classifier_server, client_for):
    import json

    c = client_for(classifier_server)
    body = json.dumps({"dataframe_records": [GOOD] * 2000}).encode()
    chunks = (body[i:i + 8192] for i in range(0, len(body), 8192))
    c.conn.request("POST", "/invocations", body=chunks, headers={"Content-Type": "application/json"},
                   encode_chunked=True)
    r = c.conn.getresponse()
    r.read()
    assert r.status == 413


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None, "application/json; charset=latin-1"])
def test_wrong_content_type_is_415(classifier_server, client_for, content_type):
    status, _, doc = client_for(classifier_server).post(
        "/invocations", {"dataframe_records": [GOOD]}, content_type=content_type)
    assert status == 415 and doc["error_code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_csv_errors(classifier_server, client_for):
    c = client_for(classifier_server)
    status, _, doc = c.post("/invocations", "age,income,city,member\nold,1.0,lyon,true\n", content_type="text/csv")
    assert status == 422 and _errors(doc)["age"]["problem"] == "wrong_type"
    status, _, doc = c.post("/invocations", "age,income,city,member\n1,2\n", content_type="text/csv")
    assert status == 400


def test_v2_errors(classifier_server, client_for):
    c = client_for(classifier_server)
    base = [
        {"name": "age", "shape": [1], "datatype": "INT64", "data": [40]},
        {"name": "income", "shape": [1], "datatype": "FP64", "data": [1.0]},
        {"name": "city", "shape": [1], "datatype": "BYTES", "data": ["lyon"]},
        {"name": "member", "shape": [1], "datatype": "BOOL", "data": [True]},
    ]
    assert c.post("/v2/models/churn/infer", {"inputs": base})[0] == 200
    wrong = [dict(base[0], datatype="BYTES", data=["40"]), *base[1:]]
    status, _, doc = c.post("/v2/models/churn/infer", {"inputs": wrong})
    assert status == 422 and doc["errors"][0]["field"] == "age" and doc["errors"][0]["expected"] == "INT64"
    status, _, doc = c.post("/v2/models/churn/infer", {"inputs": base[:3]})
    assert status == 422 and _errors(doc)["member"]["problem"] == "missing"
    status, _, doc = c.post("/v2/models/churn/infer", {"inputs": [dict(base[0], shape=[2])] + base[1:]})
    assert status == 400 and "shape" in doc["error"]
    assert c.post("/v2/models/churn/infer", b"{")[0] == 400
    assert c.post("/v2/models/churn/infer", {"inputs": base}, content_type="text/csv")[0] == 415
    assert c.post("/v2/models/other/infer", {"inputs": base})[0] == 404
    assert c.post("/v2/models/churn/versions/9/infer", {"inputs": base})[0] == 404


def test_unknown_path_and_method(classifier_server, client_for):
    c = client_for(classifier_server)
    assert c.get("/nope")[0] == 404
    assert c.get("/invocations")[0] == 405
    assert c.post("/health", {})[0] == 405


def test_client_mistakes_are_counted(classifier_server, client_for):
    c = client_for(classifier_server)
    _post(c, {**GOOD, "age": "x"})
    metrics = c.get("/metrics")[2]
    assert 'nbdeploy_validation_failures_total{' in metrics and 'field="age",problem="wrong_type"' in metrics
