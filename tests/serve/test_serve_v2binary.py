"""The V2 binary tensor data extension: a real Triton client, unchanged, against a real server;
hand-made binary bodies for every way such a body can be wrong; compressed request bodies."""

from __future__ import annotations

import gzip
import json
import struct
import zlib

import numpy as np
import pytest

from nbdeploy.serve import v2binary
from nbdeploy.serve.errors import RequestError

BUNDLES = ["classifier", "regressor"]


@pytest.fixture(params=BUNDLES)
def served(request, classifier_server, regressor_server, classifier_bundle, regressor_bundle, training_frame):
    """(server handle, model name, rows, predictions from MLflow's own loader)."""
    import mlflow.pyfunc

    handle, bundle, name = {
        "classifier": (classifier_server, classifier_bundle, "churn"),
        "regressor": (regressor_server, regressor_bundle, "spend"),
    }[request.param]
    rows = training_frame.dropna().iloc[20:31].reset_index(drop=True)
    expected = mlflow.pyfunc.load_model(str(bundle / "model")).predict(rows).tolist()
    return handle, name, rows, expected


def _triton_inputs(httpclient, meta, rows, binary):
    from tritonclient.utils import triton_to_np_dtype

    inputs = []
    for spec in meta["inputs"]:
        column = rows[spec["name"]]
        if spec["datatype"] == "BYTES":
            array = np.array([str(v).encode() for v in column], dtype=object)
        else:
            array = column.to_numpy().astype(triton_to_np_dtype(spec["datatype"]))
        tensor = httpclient.InferInput(spec["name"], [len(rows)], spec["datatype"])
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_a_triton_client_works_unchanged(served, binary):
    import tritonclient.http as httpclient

    handle, name, rows, expected = served
    client = httpclient.InferenceServerClient(handle.url.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(name)
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        meta = client.get_model_metadata(name)
        assert {i["name"] for i in meta["inputs"]} == set(rows.columns)
        (out_spec,) = meta["outputs"]
        out = out_spec["name"]
        asked = [httpclient.InferRequestedOutput(out, binary_data=binary)]
        result = client.infer(name, _triton_inputs(httpclient, meta, rows, binary), outputs=asked,
                              request_id="t-1")
        got = result.as_numpy(out)
        assert got.shape == (len(rows),)
        assert got.tolist() == pytest.approx(expected, rel=1e-12)
        response = result.get_response()
        assert response["id"] == "t-1" and response["model_name"] == name
        (output,) = response["outputs"]
        assert output["datatype"] == out_spec["datatype"]
        if binary:  # the answer really came as bytes, and the metadata named its datatype right
            assert output["parameters"]["binary_data_size"] == got.nbytes and "data" not in output
        else:
            assert "data" in output and "parameters" not in output
    finally:
        client.close()


def test_a_triton_client_with_default_outputs_and_a_gzip_body(served):
    """No outputs named: the client asks for all of them as binary; gzip-compressed request body."""
    import tritonclient.http as httpclient

    handle, name, rows, expected = served
    client = httpclient.InferenceServerClient(handle.url.removeprefix("http://"))
    try:
        meta = client.get_model_metadata(name)
        result = client.infer(name, _triton_inputs(httpclient, meta, rows, True),
                              request_compression_algorithm="gzip")
        assert result.as_numpy(meta["outputs"][0]["name"]).tolist() == pytest.approx(expected, rel=1e-12)
    finally:
        client.close()


# -- hand-made bodies ----------------------------------------------------------------------------------
def _bytes_tensor(values):
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def _binary_body(rows, *, drop_bytes=0, extra=b"", skew=None):
    """A V2 body with every column as binary data (and its header length)."""
    specs = {"age": ("INT64", "<i8"), "income": ("FP64", "<f8"), "member": ("BOOL", "?"), "city": ("BYTES", None)}
    inputs, blobs = [], []
    for col, (datatype, dtype) in specs.items():
        blob = _bytes_tensor(rows[col].tolist()) if dtype is None else rows[col].to_numpy().astype(dtype).tobytes()
        size = len(blob) + (skew.get(col, 0) if skew else 0)
        inputs.append({"name": col, "shape": [len(rows)], "datatype": datatype,
                       "parameters": {"binary_data_size": size}})
        blobs.append(blob)
    header = json.dumps({"inputs": inputs, "outputs": [{"name": "predict", "parameters": {"binary_data": True}}]})
    body = header.encode() + b"".join(blobs) + extra
    return body[:len(body) - drop_bytes], len(header)


def _post(client, name, body, header_len, **headers):
    h = {"Inference-Header-Content-Length": str(header_len), **headers}
    return client.post(f"/v2/models/{name}/infer", body, content_type="application/octet-stream", headers=h)


def test_binary_response_layout(classifier_server, client_for, training_frame):
    import mlflow.pyfunc  # noqa: F401  (the expected values come from the JSON protocol instead)

    rows = training_frame.dropna().iloc[:5]
    c = client_for(classifier_server)
    body, header_len = _binary_body(rows)
    status, headers, raw = _post(c, "churn", body, header_len)
    assert status == 200
    assert headers["content-type"] == "application/octet-stream"
    n = int(headers["inference-header-content-length"])
    doc = json.loads(raw[:n])
    (out,) = doc["outputs"]
    assert out["datatype"] == "INT64" and out["shape"] == [5]
    assert out["parameters"]["binary_data_size"] == len(raw) - n == 5 * 8
    got = np.frombuffer(raw[n:], "<i8").tolist()
    json_inputs = [{"name": col, "shape": [5], "datatype": dt, "data": rows[col].tolist()}
                   for col, dt in (("age", "INT64"), ("income", "FP64"), ("member", "BOOL"), ("city", "BYTES"))]
    status, _, plain = c.post("/v2/models/churn/infer", {"inputs": json_inputs})
    assert status == 200 and got == plain["outputs"][0]["data"]


@pytest.mark.parametrize(("change", "status", "words"), [
    ({"drop_bytes": 3}, 422, "goes past the end"),
    ({"extra": b"\x00\x01"}, 400, "2 bytes of binary data that no input claims"),
    ({"skew": {"age": -8, "income": 8}}, 400, "age"),
    ({"skew": {"city": 1, "member": -1}}, 400, "member"),
    ({"header": "999999"}, 400, "Inference-Header-Content-Length is 999999"),
    ({"header": "ten"}, 400, "must be a number of bytes"),
    ({"content_type": "text/csv"}, 415, "application/octet-stream"),
])
def test_broken_binary_bodies_are_4xx_naming_the_problem(classifier_server, client_for, training_frame,
                                                         change, status, words):
    rows = training_frame.dropna().iloc[:4]
    c = client_for(classifier_server)
    body, header_len = _binary_body(rows, **{k: v for k, v in change.items() if k not in ("header", "content_type")})
    headers = {"Inference-Header-Content-Length": change.get("header", str(header_len))}
    got, _, doc = c.post("/v2/models/churn/infer", body, headers=headers,
                         content_type=change.get("content_type", "application/octet-stream"))
    assert got == status, doc
    assert words in doc["error"]
    assert c.get("/health")[0] == 200  # and the server goes on


def test_binary_inputs_are_validated_like_json_ones(classifier_server, client_for, training_frame):
    """A binary tensor of the wrong datatype gets the same 422 naming the field as a JSON one."""
    rows = training_frame.dropna().iloc[:3]
    c = client_for(classifier_server)
    blob = rows["age"].to_numpy().astype("<f4").tobytes()
    inputs = [{"name": "age", "shape": [3], "datatype": "FP32", "parameters": {"binary_data_size": len(blob)}}]
    inputs += [{"name": col, "shape": [3], "datatype": dt, "data": rows[col].tolist()}
               for col, dt in (("income", "FP64"), ("member", "BOOL"), ("city", "BYTES"))]
    header = json.dumps({"inputs": inputs}).encode()
    status, _, doc = _post(c, "churn", header + blob, len(header))
    assert status == 422, doc
    assert doc["errors"][0]["field"] == "age" and doc["errors"][0]["problem"] == "wrong_datatype"


def test_an_unknown_output_is_a_400(classifier_server, client_for, training_frame):
    rows = training_frame.dropna().iloc[:2]
    inputs = [{"name": col, "shape": [2], "datatype": dt, "data": rows[col].tolist()}
              for col, dt in (("age", "INT64"), ("income", "FP64"), ("member", "BOOL"), ("city", "BYTES"))]
    status, _, doc = client_for(classifier_server).post(
        "/v2/models/churn/infer", {"inputs": inputs, "outputs": [{"name": "probabilities"}]})
    assert status == 400 and "'probabilities'" in doc["error"] and "predict" in doc["error"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_mlflow_bodies(classifier_server, client_for, training_frame, encoding):
    rows = training_frame.dropna().iloc[:3]
    doc = {"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}}
    raw = json.dumps(doc).encode()
    c = client_for(classifier_server)
    status, _, plain = c.post("/invocations", raw)
    packed = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
    status, _, got = c.post("/invocations", packed, headers={"Content-Encoding": encoding})
    assert status == 200 and got == plain


def test_compressed_bodies_that_are_wrong(classifier_server, client_for):
    c = client_for(classifier_server)  # this server's body limit is 64 KiB
    bomb = gzip.compress(b'{"dataframe_split": {"columns": [], "data": []}}' + b" " * (1 << 20))
    status, _, doc = c.post("/invocations", bomb, headers={"Content-Encoding": "gzip"})
    assert status == 413 and "inflates past the limit" in doc["message"]
    status, _, doc = c.post("/invocations", b"not gzip", headers={"Content-Encoding": "gzip"})
    assert status == 400 and "not valid gzip" in doc["message"]
    status, _, doc = c.post("/invocations", gzip.compress(b"{}")[:-6], headers={"Content-Encoding": "gzip"})
    assert status == 400 and "cut off" in doc["message"]
    status, _, doc = c.post("/invocations", b"{}", headers={"Content-Encoding": "br"})
    assert status == 415 and "'br'" in doc["message"]


# -- the codec on its own -------------------------------------------------------------------------------
@pytest.mark.parametrize("datatype", sorted(v2binary.DTYPES))
def test_every_fixed_size_datatype_round_trips(datatype):
    values = [True, False, True] if datatype == "BOOL" else [0, 1, 2**7 - 1] if "8" in datatype else [0, 3, 100]
    raw = v2binary.encode(values, datatype)
    assert len(raw) == 3 * v2binary.DTYPES[datatype].itemsize
    assert v2binary.decode(raw, datatype, 3, "x") == values


def test_bytes_elements_round_trip_and_refuse_cut_data():
    values = ["paris", "", "zürich"]
    raw = v2binary.encode(values, "BYTES")
    assert raw[:4] == struct.pack("<I", 5)
    assert v2binary.decode(raw, "BYTES", 3, "x") == values
    assert v2binary.decode(struct.pack("<I", 2) + b"\xff\xfe", "BYTES", 1, "x") == [b"\xff\xfe"]
    for broken, words in ((raw[:-1], "only 6 are left"), (raw[:2], "cut-off length"), (raw, "needs 2")):
        with pytest.raises(RequestError, match=words):
            v2binary.decode(broken, "BYTES", 2 if words == "needs 2" else 3, "x")
    with pytest.raises(RequestError, match="the byte 0 or 1, got 2"):
        v2binary.decode(b"\x01\x02", "BOOL", 2, "x")
