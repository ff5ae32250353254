"""Both protocols, every payload format, the response shapes, on both example bundles."""

from __future__ import annotations

import io

import pytest

BUNDLES = ["classifier", "regressor"]


@pytest.fixture(params=BUNDLES)
def served(request, classifier_server, regressor_server, classifier_bundle, regressor_bundle, training_frame):
    """(server handle, bundle, rows as a DataFrame, expected predictions from MLflow's own loader)."""
    import mlflow.pyfunc

    handle, bundle = {
        "classifier": (classifier_server, classifier_bundle),
        "regressor": (regressor_server, regressor_bundle),
    }[request.param]
    rows = training_frame.dropna().iloc[10:17].reset_index(drop=True)
    expected = mlflow.pyfunc.load_model(str(bundle / "model")).predict(rows).tolist()
    return handle, bundle, rows, expected


def _records(df):
    return df.to_dict(orient="records")


def _close(got, expected):
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_dataframe_split(served, client_for):
    handle, _, rows, expected = served
    body = {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}
    status, headers, doc = client_for(handle).post("/invocations", body)
    assert status == 200, doc
    assert headers["content-type"] == "application/json"
    assert set(doc) == {"predictions"}
    _close(doc["predictions"], expected)


def test_dataframe_split_columns_in_another_order(served, client_for):
    handle, _, rows, expected = served
    cols = list(reversed(rows.columns))
    body = {"dataframe_split": {"columns": cols, "data": rows[cols].values.tolist()}}
    status, _, doc = client_for(handle).post("/invocations", body)
    assert status == 200, doc
    _close(doc["predictions"], expected)


def test_dataframe_records(served, client_for):
    handle, _, rows, expected = served
    status, _, doc = client_for(handle).post("/invocations", {"dataframe_records": _records(rows)})
    assert status == 200, doc
    _close(doc["predictions"], expected)


@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_instances_and_inputs_as_records(served, client_for, key):
    handle, _, rows, expected = served
    status, _, doc = client_for(handle).post("/invocations", {key: _records(rows)})
    assert status == 200, doc
    _close(doc["predictions"], expected)


@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_instances_and_inputs_as_columns(served, client_for, key):
    handle, _, rows, expected = served
    status, _, doc = client_for(handle).post("/invocations", {key: rows.to_dict(orient="list")})
    assert status == 200, doc
    _close(doc["predictions"], expected)


def test_instances_as_lists_in_signature_order(served, client_for):
    handle, _, rows, expected = served
    status, _, doc = client_for(handle).post("/invocations", {"instances": rows.values.tolist()})
    assert status == 200, doc
    _close(doc["predictions"], expected)


def test_params_key_is_accepted(served, client_for):
    handle, _, rows, expected = served
    status, _, doc = client_for(handle).post("/invocations", {"dataframe_records": _records(rows), "params": {}})
    assert status == 200, doc
    _close(doc["predictions"], expected)


@pytest.mark.parametrize("content_type", ["text/csv", "text/csv; charset=utf-8"])
def test_csv(served, client_for, content_type):
    handle, _, rows, expected = served
    buf = io.StringIO()
    rows.to_csv(buf, index=False)
    status, _, doc = client_for(handle).post("/invocations", buf.getvalue(), content_type=content_type)
    assert status == 200, doc
    _close(doc["predictions"], expected)


def _v2_inputs(rows):
    types = {"age": "INT64", "income": "FP64", "city": "BYTES", "member": "BOOL"}
    return [
        {"name": c, "shape": [len(rows)], "datatype": types[c], "data": rows[c].tolist()} for c in rows.columns
    ]


def test_v2_infer(served, client_for):
    handle, bundle, rows, expected = served
    name = "churn" if "clf" in str(bundle) else "spend"
    body = {"id": "req-7", "inputs": _v2_inputs(rows)}
    status, _, doc = client_for(handle).post(f"/v2/models/{name}/infer", body)
    assert status == 200, doc
    assert doc["model_name"] == name and doc["model_version"] == "3" and doc["id"] == "req-7"
    (out,) = doc["outputs"]
    assert out["shape"] == [len(rows)]
    assert out["datatype"] == ("INT64" if name == "churn" else "FP64")
    _close(out["data"], expected)


def test_v2_infer_versioned_path_and_2d_tensor(served, client_for):
    handle, bundle, rows, expected = served
    name = "churn" if "clf" in str(bundle) else "spend"
    body = {"inputs": [{"name": "rows", "shape": [len(rows), 4], "datatype": "BYTES", "data": rows.values.tolist()}]}
    status, _, doc = client_for(handle).post(f"/v2/models/{name}/versions/3/infer", body)
    assert status == 200, doc
    _close(doc["outputs"][0]["data"], expected)


def test_v2_metadata_health_and_server(served, client_for):
    handle, bundle, _, _ = served
    name = "churn" if "clf" in str(bundle) else "spend"
    c = client_for(handle)
    status, _, doc = c.get(f"/v2/models/{name}")
    assert status == 200
    assert doc["name"] == name and doc["versions"] == ["3"] and doc["platform"] == "mlflow_sklearn"
    assert {i["name"]: i["datatype"] for i in doc["inputs"]} == {
        "age": "INT64", "income": "FP64", "city": "BYTES", "member": "BOOL"}
    status, _, doc = c.get(f"/v2/models/{name}/ready")
    assert (status, doc) == (200, {"name": name, "ready": True})
    assert c.get("/v2/health/live")[0] == 200
    assert c.get("/v2/health/ready")[0] == 200
    assert c.get("/v2")[2]["name"] == "nbdeploy"
    status, _, doc = c.get("/v2/models/nope")
    assert status == 404 and "nope" in doc["error"]


def test_health_metadata_openapi_docs(served, client_for):
    handle, bundle, _, _ = served
    c = client_for(handle)
    assert c.get("/health")[0] == 200
    status, _, meta = c.get("/metadata")
    assert status == 200
    assert meta["version"] == "3" and meta["flavor"] == "sklearn"
    assert meta["summary"] == {"trained_on": 400}
    assert [i["name"] for i in meta["signature"]["inputs"]] == ["age", "income", "city", "member"]
    status, _, doc = c.get("/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    assert "/invocations" in doc["paths"] and f"/v2/models/{meta['name']}/infer" in doc["paths"]
    assert set(doc["components"]["schemas"]["Row"]["properties"]) == {"age", "income", "city", "member"}
    status, headers, page = c.get("/docs")
    assert status == 200 and headers["content-type"].startswith("text/html") and "/invocations" in page


def test_metrics_count_requests_batches_and_predictions(classifier_server, client_for, training_frame):
    c = client_for(classifier_server)
    rows = training_frame.dropna().head(3)
    for _ in range(3):
        assert c.post("/invocations", {"dataframe_records": _records(rows)})[0] == 200
    status, headers, text = c.get("/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    line = next(x for x in text.splitlines()
                if x.startswith("nbdeploy_requests_total") and 'endpoint="invocations",status="200"' in x)
    assert int(line.rsplit(" ", 1)[1]) >= 3
    for name in ("nbdeploy_request_duration_seconds_bucket", "nbdeploy_batch_rows_bucket",
                 "nbdeploy_predictions_total", "nbdeploy_predict_duration_seconds_count",
                 "nbdeploy_validation_failures_total", "nbdeploy_out_of_range_total"):
        assert name in text


def test_v2_infer_under_an_unknown_part_of_the_model_path_is_a_404(classifier_server, client_for, training_frame):
    """Only /v2/models/{name}[/versions/{v}]/infer predicts: a success's path then names nothing but
    what the server holds (its request log record is written without a search for secrets)."""
    rows = training_frame.dropna().iloc[:1]
    body = {"inputs": [{"name": "rows", "shape": [1, 4], "datatype": "BYTES", "data": rows.values.tolist()}]}
    client = client_for(classifier_server)
    assert client.post("/v2/models/churn/infer", body)[0] == 200
    status, _, doc = client.post("/v2/models/churn/tkn8Hq3ZvR6pL1mX9cW4/infer", body)
    assert status == 404 and "no endpoint" in doc["error"]
