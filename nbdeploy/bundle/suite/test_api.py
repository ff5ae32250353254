"""The API answers like the notebook did: health, metadata, schema, golden predictions.

``golden.json`` holds example rows and the predictions the model gave for them
inside the notebook run that built this bundle. The API must give the same
predictions (floats within a relative tolerance): the training-serving skew guard.
"""

from __future__ import annotations

import math

V2_TYPES = {"boolean": "BOOL", "integer": "INT32", "long": "INT64", "float": "FP32",
            "double": "FP64", "string": "BYTES", "binary": "BYTES", "datetime": "BYTES"}


def close(got, want, rel: float, abs_: float) -> bool:
    if isinstance(want, list) or isinstance(got, list):
        return (isinstance(want, list) and isinstance(got, list) and len(got) == len(want)
                and all(close(g, w, rel, abs_) for g, w in zip(got, want, strict=False)))
    if isinstance(want, bool) or isinstance(got, bool):
        return got == want
    if isinstance(want, int | float) and isinstance(got, int | float):
        return math.isclose(got, want, rel_tol=rel, abs_tol=abs_)
    return got == want


def mismatches(got: list, want: list, golden: dict) -> list[str]:
    tol = golden["tolerance"]
    return [f"row {i}: API {g!r} != notebook {w!r}"
            for i, (g, w) in enumerate(zip(got, want, strict=False)) if not close(g, w, tol["rel"], tol["abs"])]


def test_health(api):
    r = api.get("/health")
    assert r.status == 200, r.text


def test_metadata_names_this_bundle(api, manifest):
    r = api.get("/metadata")
    assert r.status == 200, r.text
    doc = r.json()
    assert doc.get("name") == manifest["name"], doc
    assert str(doc.get("version")) == str(manifest["version"]), doc


def test_missing_column_is_rejected_by_name(api, golden):
    columns = golden["columns"]
    dropped = columns[0]
    row = dict(zip(columns, golden["data"][0], strict=True))
    del row[dropped]
    r = api.post("/invocations", {"dataframe_records": [row]})
    assert 400 <= r.status < 500, f"expected a 4xx for a request without {dropped!r}, got {r.status}: {r.text}"
    assert dropped in r.text, f"the error does not name the missing column {dropped!r}: {r.text}"


def test_golden_predictions_mlflow_protocol(api, golden):
    r = api.post("/invocations", {"dataframe_split": {"columns": golden["columns"], "data": golden["data"]}})
    assert r.status == 200, r.text
    got = r.json()["predictions"]
    assert len(got) == len(golden["predictions"]), got
    bad = mismatches(got, golden["predictions"], golden)
    assert not bad, "training-serving skew:\n" + "\n".join(bad)


def test_golden_predictions_v2_protocol(api, golden, manifest):
    n = len(golden["data"])
    types = golden.get("types", {})
    inputs = [{"name": c, "shape": [n], "datatype": V2_TYPES.get(types.get(c, ""), "BYTES"),
               "data": [row[j] for row in golden["data"]]}
              for j, c in enumerate(golden["columns"])]
    r = api.post(f"/v2/models/{manifest['name']}/infer", {"inputs": inputs})
    assert r.status == 200, r.text
    outputs = r.json()["outputs"]
    assert outputs, r.text
    out = outputs[0]
    want = golden["predictions"]
    data = out["data"]
    if len(out["shape"]) == 2 and out["shape"][1] > 1:
        k = out["shape"][1]
        data = [data[i * k:(i + 1) * k] for i in range(out["shape"][0])]
    bad = mismatches(data, want, golden)
    assert not bad, "training-serving skew (V2):\n" + "\n".join(bad)
