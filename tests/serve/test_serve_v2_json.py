"""The V2 JSON fast path: every request it takes reads as the general path reads it, every
other one (mistakes included) goes to the general path, and one-row requests are batched
like /invocations rows."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from nbdeploy.serve.bundle import read_bundle
from nbdeploy.serve.errors import RequestError
from nbdeploy.serve.payload import (
    Frame,
    Tensor,
    _v2_json_columns,
    _v2_tensors,
    parse_mlflow,
    parse_v2,
)

AGE = {"name": "age", "shape": [1], "datatype": "INT64", "data": [40]}
INCOME = {"name": "income", "shape": [1], "datatype": "FP64", "data": [1.5]}
CITY = {"name": "city", "shape": [1], "datatype": "BYTES", "data": ["lyon"]}
MEMBER = {"name": "member", "shape": [1], "datatype": "BOOL", "data": [True]}
ROW = [AGE, INCOME, CITY, MEMBER]


def _with(tensor: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**tensor, **changes}


def _rows(n: int) -> list[dict[str, Any]]:
    values = {"age": list(range(20, 20 + n)), "income": [1.5] * n, "city": ["lyon"] * n, "member": [True] * n}
    return [_with(t, shape=[n], data=values[t["name"]]) for t in ROW]


#: inputs the fast path takes: the usual requests
TAKEN = {
    "one row": ROW,
    "one row, columns in another order": [MEMBER, CITY, AGE, INCOME],
    "one row with MLServer's parameters": [_with(t, parameters={"content_type": "str"}) for t in ROW],
    "empty or null parameters": [_with(AGE, parameters={}), _with(INCOME, parameters=None), CITY, MEMBER],
    "one row and a column the model does not have": [*ROW, {"name": "extra", "shape": [1], "datatype": "FP32",
                                                             "data": [2.0]}],
    "one row, a column missing": ROW[:3],
    "an INT64 value in a double column": [AGE, _with(INCOME, datatype="INT64", data=[2]), CITY, MEMBER],
    "a null value": [_with(AGE, data=[None]), INCOME, CITY, MEMBER],
    "an object as a value": [_with(CITY, data=[{"a": 1}]), AGE, INCOME, MEMBER],
    "three rows": _rows(3),
}

#: inputs the fast path leaves to the general path (which reads them or names the mistake)
LEFT = {
    "a wrong datatype": [_with(AGE, datatype="BYTES", data=["40"]), INCOME, CITY, MEMBER],
    "a datatype that is no V2 datatype": [_with(AGE, datatype="INT128"), INCOME, CITY, MEMBER],
    "a datatype that is not a string": [_with(AGE, datatype=["INT64"]), INCOME, CITY, MEMBER],
    "a shape of True (not an int)": [_with(AGE, shape=[True]), INCOME, CITY, MEMBER],
    "a shape that does not match the data": [_with(AGE, shape=[2]), INCOME, CITY, MEMBER],
    "row counts that differ": [*_rows(2)[:2], CITY, MEMBER],
    "a [1, 1] tensor": [_with(AGE, shape=[1, 1]), INCOME, CITY, MEMBER],
    "nested data": [_with(AGE, data=[[40]]), INCOME, CITY, MEMBER],
    "nested data in a longer tensor": [_with(_rows(2)[0], data=[[20], [21]]), *_rows(2)[1:]],
    "a scalar as data": [_with(AGE, data=40), INCOME, CITY, MEMBER],
    "no data": [{k: v for k, v in AGE.items() if k != "data"}, INCOME, CITY, MEMBER],
    "a name twice": [AGE, _with(AGE, data=[41]), INCOME, CITY, MEMBER],
    "a name twice in a longer tensor": [*_rows(2), _rows(2)[0]],
    "a name that is a number": [_with(AGE, name=7), INCOME, CITY, MEMBER],
    "a name that is a list": [_with(AGE, name=["age"]), INCOME, CITY, MEMBER],
    "a datatype that is an object": [_with(AGE, datatype={"t": 1}), INCOME, CITY, MEMBER],
    "a tensor that is not an object": [AGE, INCOME, CITY, "member"],
    "zero rows": [_with(t, shape=[0], data=[]) for t in ROW],
    "binary_data_size": [_with(AGE, parameters={"binary_data_size": 0}), INCOME, CITY, MEMBER],
    "parameters that are no object (a 400)": [_with(AGE, parameters=3), _with(INCOME, parameters="x"), CITY,
                                              MEMBER],
    "binary_data_size beside a content type": [_with(AGE, parameters={"content_type": "np"}),
                                               _with(INCOME, parameters={"binary_data_size": 0}), CITY, MEMBER],
    "a 2-D tensor of rows": [{"name": "rows", "shape": [1, 4], "datatype": "BYTES", "data": [[40, 1.5, "lyon", True]]}],
}


@pytest.fixture(scope="module")
def bundle(classifier_bundle):
    return read_bundle(classifier_bundle)


def _general(inputs: list[Any], bundle: Any) -> Any:
    try:
        return _outcome(_v2_tensors(inputs, b"", bundle))
    except RequestError as e:
        return ("error", e.status, e.message, e.errors)


def _outcome(data: Frame | Tensor) -> Any:
    if isinstance(data, Tensor):
        return ("tensor", data.data, data.n)
    return ("frame", data.columns, data.n, data.split())


def _parsed(inputs: list[Any], bundle: Any) -> Any:
    try:
        return _outcome(parse_v2(json.dumps({"inputs": inputs}).encode(), bundle).data)
    except RequestError as e:
        return ("error", e.status, e.message, e.errors)


@pytest.mark.parametrize("case", list(TAKEN))
def test_the_fast_path_reads_what_the_general_path_reads(case, bundle):
    inputs = json.loads(json.dumps(TAKEN[case]))
    assert _v2_json_columns(inputs, bundle) is not None, "the fast path should take this request"
    assert _parsed(inputs, bundle) == _general(inputs, bundle)


@pytest.mark.parametrize("case", list(LEFT))
def test_the_general_path_reads_the_rest_and_names_each_mistake(case, bundle):
    inputs = json.loads(json.dumps(LEFT[case]))
    assert _v2_json_columns(inputs, bundle) is None, "the fast path should leave this request alone"
    assert _parsed(inputs, bundle) == _general(inputs, bundle)


def test_a_request_like_the_one_before_is_still_checked_for_each_datatype(bundle):
    # the fast path remembers the last names and datatypes it checked: the same names with one other
    # datatype, or in another order, must be checked again, alternating with the remembered ones
    wrong = [_with(AGE, datatype="BYTES", data=["40"]), INCOME, CITY, MEMBER]
    reordered = [INCOME, AGE, CITY, MEMBER]
    for _ in range(2):
        for inputs, taken in ((ROW, True), (wrong, False), (ROW, True), (reordered, True), (wrong, False)):
            inputs = json.loads(json.dumps(inputs))
            assert (_v2_json_columns(inputs, bundle) is not None) is taken, inputs
            assert _parsed(inputs, bundle) == _general(inputs, bundle)


def test_binary_requests_never_take_the_fast_path(bundle):
    header = json.dumps({"inputs": ROW}).encode()
    req = parse_v2(header, bundle, header_length=len(header))
    assert req.data.row is None and req.data.columns == {"age": [40], "income": [1.5], "city": ["lyon"],
                                                         "member": [True]}


def test_a_one_row_request_keeps_its_row_under_the_column_list_of_invocations(bundle):
    """The batch turns such rows into columns at once only when they share one column list."""
    a = parse_v2(json.dumps({"inputs": ROW}).encode(), bundle).data
    b = parse_v2(json.dumps({"inputs": ROW}).encode(), bundle).data
    split = parse_mlflow(json.dumps({"dataframe_split": {"columns": ["age", "income", "city", "member"],
                                                          "data": [[1, 2.0, "nice", False]]}}).encode(), bundle)
    assert a.row == [40, 1.5, "lyon", True] and a.n == 1
    assert a.names is b.names is split.names


def test_a_tensor_model_leaves_v2_to_the_general_path(bundle):
    class NoColumns:
        columns = None

    assert _v2_json_columns(json.loads(json.dumps(ROW)), NoColumns()) is None


def test_concurrent_one_row_requests_on_both_routes_get_their_own_predictions(classifier_server, classifier_bundle,
                                                                                client_for, training_frame):
    """V2 and /invocations rows batched together: each request gets the prediction of its own row."""
    import mlflow.pyfunc

    rows = training_frame.dropna().iloc[:32].reset_index(drop=True)
    expected = mlflow.pyfunc.load_model(str(classifier_bundle / "model")).predict(rows).tolist()
    types = {"age": "INT64", "income": "FP64", "city": "BYTES", "member": "BOOL"}

    def ask(i: int) -> tuple[int, Any]:
        c = client_for(classifier_server)
        row = rows.iloc[[i]]
        if i % 2:
            body = {"inputs": [{"name": k, "shape": [1], "datatype": types[k], "data": row[k].tolist()}
                               for k in row.columns]}
            status, _, doc = c.post("/v2/models/churn/infer", body)
            return status, doc["outputs"][0]["data"][0] if status == 200 else doc
        body = {"dataframe_split": {"columns": list(row.columns), "data": row.values.tolist()}}
        status, _, doc = c.post("/invocations", body)
        return status, doc["predictions"][0] if status == 200 else doc

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(ask, range(len(rows))))
    assert [status for status, _ in got] == [200] * len(rows), got
    assert [p for _, p in got] == expected


def test_v2_model_paths_are_routed_alike_once_remembered():
    """V2 model paths are remembered like the fixed ones; the name is still checked by the handler."""
    from nbdeploy.serve import protocol

    for _ in range(2):
        assert protocol.route("POST", "/v2/models/churn/infer") == ("v2_infer", protocol.v2_infer)
        assert protocol.route("GET", "/v2/models/churn/ready") == ("v2_model", protocol.v2_model)
        assert protocol.route("GET", "/v2/models/churn/infer")[0] == "v2_infer"  # a 405, not the infer handler
        assert protocol.route("GET", "/v2/models/churn/infer")[1] is not protocol.v2_infer


@pytest.mark.parametrize(("data", "datatype"), [([1, 2, None], "INT64"), ([1, 2.5], "FP64"), ([True, None], "BOOL"),
                                               (["a", 1], "BYTES"), ([None], "INT64"), ([], "INT64")])
def test_output_datatypes(data, datatype):
    from nbdeploy.serve.protocol import _datatype

    assert _datatype(data) == datatype


@pytest.mark.parametrize("preds", [[0, 1], [0.5, None], [True], ["yes", "no"], [], [[0.1, 0.9], [0.3, 0.7]],
                                   [{"a": 1}], {"a": [1, 2]}])
@pytest.mark.parametrize("signature", [[{"type": "tensor", "tensor-spec": {"dtype": "int64"}}],
                                       [{"name": "label", "type": "long"}]])
def test_the_usual_outputs_come_out_as_the_general_way_makes_them(preds, signature):
    """One output of scalars takes a short way; asking for that output by name takes the general one."""
    from nbdeploy.serve.protocol import v2_output_names, v2_outputs

    n = len(preds) if isinstance(preds, list) else 2
    name = ("a" if isinstance(preds, dict) or (preds and isinstance(preds[0], dict))
            else v2_output_names(signature)[0])
    assert v2_outputs(preds, n, signature, None) == v2_outputs(preds, n, signature, [name])


@pytest.mark.parametrize("predictions", [
    [1], [0, 1, 1], [0.25, -3.5e-12, 1e300], [True, False], ["yes", "n\u00e9e \"quoted\""], [None, 2.5], [],
    [1, 2.5], [0.5], [None], ["yes"], [False], [b"raw"],  # one prediction: its datatype by its type
])
@pytest.mark.parametrize("version", ["3", "v2 \"beta\""])
def test_the_usual_v2_answer_is_the_general_documents_json_byte_for_byte(classifier_bundle, predictions, version):
    """The kept-head answer (no id, no outputs asked for, scalars) equals what the general path writes."""
    from nbdeploy.serve.app import create_app
    from nbdeploy.serve.config import ServeConfig
    from nbdeploy.serve.protocol import _plain_answer, v2_outputs

    app = create_app(classifier_bundle, ServeConfig(log_path=""))
    n = len(predictions)
    doc = {"model_name": app.bundle.name, "model_version": version,
           "outputs": v2_outputs(predictions, n, app.bundle.outputs, None)}
    assert _plain_answer(app, version, predictions, n) == app.json(doc)
    assert json.loads(_plain_answer(app, version, predictions, n))["outputs"][0]["shape"] == [n]
