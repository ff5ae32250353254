"""The OpenAPI document says what the server does: a body the document accepts is answered,
a body it refuses is refused by the server too, and a 405 says which methods a path takes."""

from __future__ import annotations

from typing import Any

import pytest

jsonschema = pytest.importorskip("jsonschema")

ROW = {"age": 30, "income": 52_000.0, "city": "paris", "member": True}
COLUMNS = list(ROW)

SCORING = [  # (body, the server answers it)
    ({}, False),
    ({"inputs": []}, False),
    ({"instances": []}, False),
    ({"inputs": {}}, False),
    ({"inputs": {"age": []}}, False),
    ({"instances": 5}, False),
    ({"dataframe_records": []}, False),
    ({"dataframe_split": {"columns": COLUMNS, "data": []}}, False),
    ({"dataframe_split": {"data": [list(ROW.values())]}}, False),
    ({"dataframe_records": [ROW], "instances": [ROW]}, False),
    ({"dataframe_records": [ROW], "extra": 1}, False),
    ({"dataframe_records": [{**ROW, "extra": 1}]}, False),
    ({"dataframe_records": [ROW]}, True),
    ({"dataframe_records": [ROW], "params": {}}, True),
    ({"dataframe_records": [{**ROW, "income": None}]}, True),
    ({"dataframe_split": {"columns": COLUMNS, "data": [list(ROW.values())]}}, True),
    ({"instances": [ROW, ROW]}, True),
    ({"inputs": {k: [v] for k, v in ROW.items()}}, True),
    # found by schemathesis (tests/bundle/test_api_fuzz.py): rows that do not fit the columns
    ({"dataframe_split": {"columns": COLUMNS, "data": [[30, 52_000.0]]}}, False),
    ({"dataframe_split": {"columns": ["x", "y"], "data": [[]]}}, False),
    ({"instances": [[30]]}, False),
    ({"dataframe_split": {"columns": COLUMNS[::-1], "data": [list(ROW.values())[::-1]]}}, True),
    ({"instances": [list(ROW.values())]}, True),
]

_KINDS = {"age": "INT64", "income": "FP64", "city": "BYTES", "member": "BOOL"}
_TENSORS = [{"name": k, "shape": [1], "datatype": _KINDS[k], "data": [v]} for k, v in ROW.items()]
V2 = [
    ({}, False),
    ({"inputs": []}, False),
    ({"inputs": [{**_TENSORS[0], "shape": [-1]}, *_TENSORS[1:]]}, False),
    ({"inputs": [{**_TENSORS[0], "shape": []}, *_TENSORS[1:]]}, False),
    ({"inputs": [{**_TENSORS[0], "datatype": "INT128"}, *_TENSORS[1:]]}, False),
    ({"inputs": [{k: v for k, v in _TENSORS[0].items() if k != "data"}, *_TENSORS[1:]]}, False),
    ({"inputs": _TENSORS, "outputs": [{}]}, False),
    ({"inputs": _TENSORS}, True),
    ({"inputs": _TENSORS, "id": "r1", "outputs": [{"name": "predict"}]}, True),
    # found by schemathesis: a tensor of no rows, an output the model does not have
    ({"inputs": [{"name": "age", "shape": [0], "datatype": "INT64", "data": []}]}, False),
    ({"inputs": _TENSORS, "outputs": [{"name": "proba"}]}, False),
    ({"inputs": _TENSORS[::-1]}, True),
    ({"inputs": _TENSORS, "id": {"a": 1}}, False),  # found: any id was taken and sent back as its repr
    ({"inputs": _TENSORS, "id": 7}, False),
    ({"inputs": _TENSORS, "id": None}, True),
    ({"inputs": _TENSORS, "parameters": 5}, False),  # found: parameters of any type were ignored
    ({"inputs": [{**_TENSORS[0], "parameters": [1]}, *_TENSORS[1:]]}, False),
    ({"inputs": _TENSORS, "outputs": None, "parameters": None}, True),
]

_HEADER = ",".join(COLUMNS)
CSV = [  # (body, the server answers it)
    ("", False),
    (_HEADER + "\n", False),
    (_HEADER + "\n30,52000.0,paris\n", False),
    ("age,income\n30,52000.0\n", False),
    (_HEADER + "\n30,52000.0,paris,true\n", True),
    (_HEADER + "\r\n30,,lyon,false\r\n41,61000.5,nice,true", True),
]


def _validator(doc: dict[str, Any], schema: str) -> Any:
    """A JSON Schema 2020-12 validator (what OpenAPI 3.1 uses) for one of the document's schemas."""
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{schema}", "components": doc["components"]})


def _request_schema(doc: dict[str, Any], path: str) -> str:
    ref = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return ref.rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def document(classifier_server: Any) -> dict[str, Any]:
    from conftest import Client

    c = Client(classifier_server.url)
    try:
        status, _, doc = c.get("/openapi.json")
    finally:
        c.close()
    assert status == 200
    return doc


@pytest.mark.parametrize(("body", "answered"), SCORING)
def test_the_document_accepts_an_invocations_body_exactly_when_the_server_does(
        classifier_server: Any, client_for: Any, document: dict[str, Any], body: Any, answered: bool) -> None:
    validator = _validator(document, _request_schema(document, "/invocations"))
    status, _, reply = client_for(classifier_server).post("/invocations", body)
    assert (status == 200) is answered, reply
    assert validator.is_valid(body) is answered, list(validator.iter_errors(body))


@pytest.mark.parametrize(("body", "answered"), V2)
def test_the_document_accepts_a_v2_body_exactly_when_the_server_does(
        classifier_server: Any, client_for: Any, document: dict[str, Any], body: Any, answered: bool) -> None:
    path = "/v2/models/churn/infer"
    validator = _validator(document, _request_schema(document, path))
    status, _, reply = client_for(classifier_server).post(path, body)
    assert (status == 200) is answered, reply
    assert validator.is_valid(body) is answered, list(validator.iter_errors(body))


@pytest.mark.parametrize(("body", "answered"), CSV)
def test_the_document_accepts_a_csv_body_exactly_when_the_server_does(
        classifier_server: Any, client_for: Any, document: dict[str, Any], body: str, answered: bool) -> None:
    schema = document["paths"]["/invocations"]["post"]["requestBody"]["content"]["text/csv"]["schema"]
    status, _, reply = client_for(classifier_server).post("/invocations", body, content_type="text/csv")
    assert (status == 200) is answered, reply
    assert jsonschema.Draft202012Validator(schema).is_valid(body) is answered


def test_a_405_says_which_methods_the_path_takes(classifier_server: Any, client_for: Any,
                                                 document: dict[str, Any]) -> None:
    c = client_for(classifier_server)
    status, headers, body = c.get("/invocations")
    assert status == 405 and headers["allow"] == "POST" and "use POST" in body["message"]
    status, headers, body = c.post("/health", {})
    assert status == 405 and headers["allow"] == "GET, HEAD"
    status, headers, _ = c.request("DELETE", "/v2/models/churn/infer")
    assert status == 405 and headers["allow"] == "POST"
    assert c.get("/health")[0] == 200  # the connection and the server carry on
    documented = document["paths"]["/invocations"]["post"]["responses"]["405"]
    assert "Allow" in documented["headers"]


FEEDBACK = [  # (body, the server answers it); the request ids need not be known (they are counted)
    ({}, False),
    ([], False),
    ("x", False),
    ({"request_id": "r1"}, False),
    ({"label": 1}, False),
    ({"request_id": "", "label": 1}, False),
    ({"request_id": "   ", "label": 1}, False),
    ({"request_id": "r" * 129, "label": 1}, False),
    ({"request_id": 7, "label": 1}, False),
    ({"request_id": "r1", "label": None}, False),
    ({"request_id": "r1", "label": {"a": 1}}, False),
    ({"request_id": "r1", "label": []}, False),
    ({"request_id": "r1", "label": [1, None]}, False),
    ({"request_id": "r1", "label": [[1]]}, False),
    ({"request_id": "r1", "label": 1, "weight": 2}, False),
    ([{"request_id": "r1", "label": 1}] * 10_001, False),  # over the 10,000 items a request: a 422
    ([{"request_id": "r1", "label": 1}, 5], False),
    ({"request_id": "r1", "label": 1}, True),
    ({"request_id": "r1", "label": "yes"}, True),
    ({"request_id": "r1", "label": True}, True),
    ({"request_id": "r1", "label": 2.5}, True),
    ({"request_id": "r1", "label": [1, 0, 1]}, True),
    ([{"request_id": "r1", "label": 1}, {"request_id": "r2", "label": 0}], True),
]


@pytest.mark.parametrize(("body", "answered"), FEEDBACK)
def test_the_document_accepts_a_feedback_body_exactly_when_the_server_does(
        classifier_server: Any, client_for: Any, document: dict[str, Any], body: Any, answered: bool) -> None:
    import json

    validator = _validator(document, _request_schema(document, "/feedback"))
    status, _, reply = client_for(classifier_server).post("/feedback", json.dumps(body))
    assert (status == 200) is answered, reply
    assert status < 500, reply
    assert validator.is_valid(body) is answered, list(validator.iter_errors(body))


def test_every_endpoint_is_documented_and_reload_needs_the_admin_token(document: dict[str, Any],
                                                                      classifier_bundle: Any) -> None:
    from nbdeploy.serve.protocol import ROUTES

    undocumented = set(ROUTES) - set(document["paths"]) - {"/ping"}  # /ping: an alias of /health
    # this server has no shadow and no admin token: its document leaves /shadow and /admin/reload out
    assert undocumented == {"/shadow", "/admin/reload"}
    versioned = document["paths"]["/v2/models/churn/versions/{version}/infer"]["post"]
    assert versioned["parameters"][0]["name"] == "version" and "404" in versioned["responses"]
    # the one version this server answers for is the parameter's only value: a valid request is served
    assert versioned["parameters"][0]["schema"]["enum"] == [document["info"]["version"]]
    from nbdeploy.serve.openapi import openapi_document

    full = openapi_document(classifier_bundle)  # the bundle's own document: every route
    assert {"/shadow", "/admin/reload"} <= set(full["paths"])
    reload = full["paths"]["/admin/reload"]["post"]
    assert reload["security"] == [{"adminToken": []}] and "requestBody" not in reload
    assert document["components"]["securitySchemes"]["adminToken"] == {
        **document["components"]["securitySchemes"]["adminToken"], "type": "http", "scheme": "bearer"}
    for path in ("/feedback", "/performance", "/drift"):
        assert path in document["paths"]
    for schema in ("FeedbackResponse", "PerformanceReport", "ShadowReport", "ReloadResponse"):
        jsonschema.Draft202012Validator.check_schema(document["components"]["schemas"][schema])


def test_feedback_and_performance_answers_match_their_documented_schemas(
        classifier_server: Any, client_for: Any, document: dict[str, Any]) -> None:
    c = client_for(classifier_server)
    status, headers, reply = c.post("/invocations", {"dataframe_records": [ROW, ROW]})
    assert status == 200, reply
    status, _, answer = c.post("/feedback", [{"request_id": headers["x-request-id"], "label": [1, 0]},
                                             {"request_id": "unknown-id", "label": 1}])
    assert status == 200 and answer["joined"] == 1 and answer["unknown"] == 1
    _validator(document, "FeedbackResponse").validate(answer)
    status, _, report = c.get("/performance")
    assert status == 200 and report["joined"] >= 1
    _validator(document, "PerformanceReport").validate(report)


def test_every_status_the_server_gives_is_documented(tripwire_server: Any, client_for: Any) -> None:
    """/drift of a model without a training profile is a 404, and with a token every operation
    but the probes can be a 401: both are in the document."""
    c = client_for(tripwire_server)
    status, _, doc = c.get("/openapi.json")
    status, _, _ = c.get("/drift")
    assert status == 404 and "404" in doc["paths"]["/drift"]["get"]["responses"]
    probes = {"/health", "/v2/health/live", "/v2/health/ready"}
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert ("401" in op["responses"]) is (path not in probes), path
