"""The OpenAPI 3.1 document of a served bundle, and a self-contained /docs page (no CDN)."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from .bundle import V2_TYPES, Bundle, read_bundle, v2_output_names

_JSON_TYPES = {
    "double": {"type": "number"},
    "float": {"type": "number"},
    "long": {"type": "integer"},
    "integer": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "string": {"type": "string"},
    "binary": {"type": "string", "contentEncoding": "base64"},
    "datetime": {"type": "string", "format": "date-time"},
}


def openapi_document(bundle: Bundle | str | Path, versions: list[str] | None = None,
                     shadow: bool = True, admin: bool = True) -> dict[str, Any]:
    """The OpenAPI document for ``bundle`` (a Bundle or a bundle/model folder).

    A running server's document says what that server does: ``versions``, the versions it
    answers for (live, canary, shadow), are the only values of ``/versions/{version}/infer``
    (the bundle's own version when not given), and ``shadow=False`` (started without
    ``--shadow``) leaves ``/shadow`` out."""
    b = bundle if isinstance(bundle, Bundle) else read_bundle(bundle, check=False)  # reads no model bytes
    version_schema: dict[str, Any] = {"type": "string"}
    chosen = versions if versions is not None else ([str(b.version)] if b.version is not None else None)
    if chosen:
        version_schema["enum"] = list(dict.fromkeys(chosen))
    row = _row_schema(b)
    example = _example(b)
    error = {"type": "object", "properties": {
        "error_code": {"type": "string"}, "message": {"type": "string"}, "error_id": {"type": "string"},
        "errors": {"type": "array", "items": {"$ref": "#/components/schemas/FieldError"}}}}
    json_body = {"$ref": "#/components/schemas/ScoringRequest"}
    errors = {
        "400": _resp("Malformed JSON or an unknown payload format", "Error"),
        "401": _resp("Missing or wrong bearer token (when NBDEPLOY_API_TOKEN is set)", "Error"),
        "413": _resp("Body over the configured limit", "Error"),
        "405": {**_resp("The path does not take this method", "Error"), "headers": {"Allow": {
            "description": "the methods the path takes", "schema": {"type": "string"}}}},
        "415": _resp("Unsupported content type", "Error"),
        "422": _resp("Rows do not match the training schema, or hold values the model cannot take (a category "
                      "its encoder refuses, a number too large for it); each offending field is named", "Error"),
        "500": _resp("The model raised; error_id is also in the server log", "Error"),
    }
    paths: dict[str, Any] = {
        "/invocations": {"post": {
            "summary": "Predict (MLflow scoring protocol)",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": json_body, **({"example": example} if example else {})},
                "text/csv": {"schema": _csv_schema(b)}}},
            "responses": {"200": _resp("Predictions, one per row, in request order", "ScoringResponse"), **errors},
        }},
        f"/v2/models/{b.name}/infer": {"post": {
            "summary": "Predict (Open Inference Protocol V2)",
            "description": ("Binary tensors (the binary tensor data extension): send `application/octet-stream` "
                            "with an `Inference-Header-Content-Length` header giving the size of the JSON part; "
                            "inputs with `parameters.binary_data_size` take their bytes from what follows it."),
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/V2Request"}}}},
            "responses": {"200": {**_resp("V2 inference response", "V2Response"), "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/V2Response"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}, **errors},
        }},
        f"/v2/models/{b.name}": {"get": {"summary": "V2 model metadata", "responses": {"200": _resp("Model metadata")}}},
        f"/v2/models/{b.name}/ready": {"get": {"summary": "V2 model readiness", "responses": {"200": _resp("Ready")}}},
        "/v2/health/live": {"get": {"summary": "V2 liveness (no auth)", "responses": {"200": _resp("Live")}}},
        "/v2/health/ready": {"get": {"summary": "V2 readiness (no auth)", "responses": {"200": _resp("Ready")}}},
        "/health": {"get": {"summary": "Health (no auth)", "responses": {"200": _resp("Healthy")}}},
        "/metadata": {"get": {"summary": "Model name, version, signature and bundle summary", "responses": {"200": _resp("Metadata")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/drift": {"get": {"summary": "Drift of the served inputs against the training profile (PSI per column)",
                           "parameters": [{"name": "format", "in": "query", "required": False,
                                           "description": "json (PSI per column, the default), report (a verdict "
                                                          "and a test per feature) or html (that report as a page)",
                                           "schema": {"type": "string", "enum": ["json", "report", "html"]}}],
                           "responses": {"200": {"description": "format=json: rows, status, PSI per column; "
                                                                "format=report: a verdict per feature; format=html: "
                                                                "the report as one page",
                                                 "content": {"application/json": {"schema": {"type": "object"}},
                                                             "text/html": {"schema": {"type": "string"}}}},
                                         "400": _resp("format is not json, report or html", "Error"),
                                         "404": _resp("No training profile with the model's columns, or "
                                                      "drift_window is 0", "Error")}}},
        f"/v2/models/{b.name}/versions/{{version}}/infer": {"post": {
            "summary": "Predict with one served version (Open Inference Protocol V2)",
            "description": "The live version, or the canary or shadow candidate when the server has one; "
                           "`model_version` and `X-Model-Version` name it. A version not served is a 404 "
                           "that lists the versions served. Binary tensors as on the unversioned route "
                           "(`application/octet-stream` with an `Inference-Header-Content-Length` header).",
            "parameters": [{"name": "version", "in": "path", "required": True, "schema": version_schema}],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/V2Request"}}}},
            "responses": {"200": _resp("V2 inference response", "V2Response"),
                          "404": _resp("This version is not served here (the message lists those that are)",
                                       "Error"), **{k: v for k, v in errors.items() if k != "404"}},
        }},
        "/version": {"get": {"summary": "The live version (text)", "responses": {"200": {
            "description": "the version number", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/v2": {"get": {"summary": "V2 server metadata", "responses": {"200": _resp("Server metadata")}}},
        "/shadow": {"get": {
            "summary": "How the shadow candidate's answers compare with the live model's, on the same inputs",
            "responses": {"200": _resp("agreement of the shadow with the live model", "ShadowReport"),
                          "401": errors["401"],
                          "404": _resp("No shadow: the server was started without --shadow", "Error")}}},
        "/feedback": {"post": {
            "summary": "Send back the true label (or value) of answered requests",
            "description": "`request_id` is the `X-Request-ID` of the answer. The label joins every answer "
                           "the request log holds for that request (the version that answered and, with a "
                           "shadow, the shadow's). Unknown ids are counted in the answer, not refused; a "
                           "label sent again replaces the first. Kept in the request log: it survives a "
                           "restart and every worker sees it.",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/FeedbackRequest"},
                "example": [{"request_id": "3f2a9c1e00000001", "label": 1}]}}},
            "responses": {"200": _resp("How many labels were joined, unknown, mismatched", "FeedbackResponse"),
                          "400": errors["400"], "401": errors["401"],
                          "409": _resp("The request log is off or keeps no predictions: nothing to join to",
                                       "Error"),
                          "413": errors["413"], "415": errors["415"],
                          "422": _resp("A feedback field is wrong; errors[].field names it ([3].label)", "Error")},
        }},
        "/performance": {"get": {
            "summary": "Live accuracy (or MAE/RMSE) of each version from the labels sent back, against training",
            "responses": {"200": _resp("per version: labelled rows, live and training metric",
                                       "PerformanceReport"),
                          "401": errors["401"],
                          "409": _resp("The request log is off or keeps no predictions", "Error")}}},
        "/admin/reload": {"post": {
            "summary": "Load the bundle folder again and switch to it (as SIGHUP does)",
            "description": "The old version answers until the new one has loaded and predicted its example; "
                           "a bundle that fails is a 422 and the old one keeps serving. The request body is "
                           "ignored.",
            "security": [{"adminToken": []}],
            "responses": {"200": _resp("The versions before and after", "ReloadResponse"),
                          "401": errors["401"],
                          "403": _resp("Reloading is off: the server has no NBDEPLOY_API_TOKEN", "Error"),
                          "409": _resp("A reload is already running", "Error"),
                          "422": _resp("The bundle did not load; the old version keeps serving", "Error")}}},
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": _resp("OpenAPI document")}}},
        "/docs": {"get": {"summary": "Interactive documentation", "responses": {"200": {"description": "HTML page"}}}},
    }
    if not shadow:
        del paths["/shadow"]
    if not admin:
        del paths["/admin/reload"]
    for path, ops in paths.items():  # with a token set, everything but the probes needs it
        if path not in ("/health", "/v2/health/live", "/v2/health/ready"):
            for op in ops.values():
                op["responses"].setdefault("401", errors["401"])
    schemas = {
        "Row": row,
        "ScoringRequest": {
            "type": "object",
            "description": "Exactly one of dataframe_split, dataframe_records, instances and inputs, with at "
                           "least one row; params is optional; any other key is refused (400).",
            "properties": {
                "dataframe_split": _split_schema(b),
                "dataframe_records": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Row"}},
                "instances": {"$ref": "#/components/schemas/Instances"},
                "inputs": {"$ref": "#/components/schemas/Instances"},
                "params": {"type": "object"},
            },
            "oneOf": [{"required": [k]} for k in ("dataframe_split", "dataframe_records", "instances", "inputs")],
            "additionalProperties": False,
        },
        "Instances": _instances_schema(b),
        "ScoringResponse": {"type": "object", "properties": {
            "predictions": {"type": "array", "items": {}},
            "warnings": {"type": "array", "items": {"type": "object"}}}, "required": ["predictions"]},
        "V2Tensor": {"type": "object", "required": ["name", "shape", "datatype", "data"], "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": ["BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64", "BYTES"]},
            "data": {"type": "array"}}},
        "V2Request": _v2_request_schema(b),
        "V2Response": {"type": "object", "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
            "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/V2Tensor"}}}},
        "FieldError": {"type": "object", "properties": {
            "field": {"type": "string"}, "problem": {"type": "string", "enum": ["missing", "unexpected", "wrong_type", "null", "wrong_datatype", "out_of_bounds", "unknown_category", "empty", "too_many"]},
            "expected": {"type": "string"}, "got": {"type": "string"},
            "rows": {"type": "array", "items": {"type": "integer"}}, "count": {"type": "integer"},
            "allowed_range": {"type": "array", "items": {"type": "number"}}}},
        "Error": error,
        **_operation_schemas(),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{b.name} (nbdeploy)", "version": b.version,
                 "description": "Predictions from the model of an nbdeploy handoff bundle."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "NBDEPLOY_API_TOKEN; when the server has one, every endpoint but the "
                                      "health probes needs it"},
            "adminToken": {"type": "http", "scheme": "bearer",
                           "description": "NBDEPLOY_API_TOKEN, required by /admin/reload (which is off, 403, "
                                          "when the server has no token)"}}},
        "security": [{"bearer": []}, {}],
    }


def _operation_schemas() -> dict[str, Any]:
    """The bodies of the operations endpoints: feedback, performance, shadow, reload."""
    label = {"type": ["string", "number", "boolean"]}
    feedback = {"type": "object", "required": ["request_id", "label"], "additionalProperties": False,
                "properties": {
                    "request_id": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "\\S",
                                   "description": "the X-Request-ID header of the answer"},
                    "label": {"description": "the true class or value; a list: one per row of the request",
                              "oneOf": [label, {"type": "array", "minItems": 1, "items": label}]}}}
    metrics = {"type": "object", "additionalProperties": {"type": ["number", "null"]}}
    return {
        "Feedback": feedback,
        "FeedbackRequest": {"oneOf": [{"$ref": "#/components/schemas/Feedback"},
                                      {"type": "array", "minItems": 1, "maxItems": 10_000,
                                       "items": {"$ref": "#/components/schemas/Feedback"}}]},
        "FeedbackResponse": {"type": "object", "required": ["received", "joined", "unknown", "mismatched"],
                             "properties": {
                                 "received": {"type": "integer"}, "joined": {"type": "integer"},
                                 "unknown": {"type": "integer"}, "mismatched": {"type": "integer"},
                                 "unknown_ids": {"type": "array", "items": {"type": "string"}},
                                 "mismatched_ids": {"type": "array", "items": {"type": "string"}}}},
        "PerformanceReport": {"type": "object", "required": ["labels", "joined", "unjoined", "versions"],
                              "properties": {
                                  "labels": {"type": "integer"}, "joined": {"type": "integer"},
                                  "unjoined": {"type": "integer"},
                                  "versions": {"type": "array", "items": {"type": "object", "properties": {
                                      "version": {"type": "string"},
                                      "served_as": {"type": "array", "items": {"enum": ["answered", "shadow"]}},
                                      "kind": {"enum": ["classification", "regression"]},
                                      "labelled_requests": {"type": "integer"}, "labelled_rows": {"type": "integer"},
                                      "live": metrics, "training": metrics, "change": metrics,
                                      "training_metric_names": {"type": "object"}}}}}},
        "ShadowReport": {"type": "object", "properties": {
            "primary": {"type": "object"}, "candidate": {"type": "object"}, "requests": {"type": "integer"},
            "rows": {"type": "integer"}, "dropped": {"type": "integer"}, "errors": {"type": "integer"},
            "kind": {"enum": ["classification", "regression"]}, "agreement": {"type": ["number", "null"]},
            "disagreeing_rows": {"type": "integer"}, "worst": {"type": "array"}, "pending": {"type": "integer"},
            "max_pending": {"type": "integer"}}},
        "ReloadResponse": {"type": "object", "properties": {
            "reloaded": {"type": "boolean"}, "reloading": {"type": "boolean"}, "name": {"type": "string"},
            "version": {"type": "string"}, "previous": {"type": "string"}, "bundle": {"type": "string"},
            "seconds": {"type": "number"}, "workers": {"type": "integer"}}},
    }


def _row_schema(b: Bundle) -> dict[str, Any]:
    if b.columns is None:
        return {"type": "object", "description": "the model has no column signature"}
    props: dict[str, Any] = {}
    profile = ((b.profile or {}).get("columns")) or {}
    for c in b.columns:
        schema: dict[str, Any] = dict(_JSON_TYPES.get(c.type, {}))
        schema["x-mlflow-type"] = c.type
        schema["x-v2-datatype"] = V2_TYPES.get(c.type, "BYTES")
        stats = profile.get(c.name) or {}
        if stats.get("nulls", 0) > 0:
            schema["type"] = [schema.get("type", "string"), "null"]
        if isinstance(stats.get("values"), list) and c.type == "string":
            schema["x-training-values"] = stats["values"]
        if stats.get("kind") == "numeric":
            schema["x-training-range"] = [stats.get("min"), stats.get("max")]
        props[c.name] = schema
    return {"type": "object", "properties": props, "additionalProperties": False,
            "required": [c.name for c in b.columns if c.required]}


def _value_schemas(b: Bundle) -> list[dict[str, Any]]:
    """Each signature column's value schema (as in Row), in the signature's order."""
    props = _row_schema(b).get("properties", {})
    return [props[c.name] for c in b.columns or []]


def _any_value(b: Bundle) -> dict[str, Any]:
    """A value of any of the columns (a row given as a list: its place decides its column)."""
    kinds: list[Any] = []
    for v in _value_schemas(b):
        t = v.get("type", "string")
        for k in t if isinstance(t, list) else [t]:
            if k not in kinds:
                kinds.append(k)
    return {"type": kinds if len(kinds) != 1 else kinds[0]}


def _split_schema(b: Bundle) -> dict[str, Any]:
    """MLflow's dataframe_split: the signature's columns (in any order) and rows of as many values."""
    if b.columns is None:
        return {"type": "object", "properties": {
            "columns": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "data": {"type": "array", "minItems": 1, "items": {"type": "array"}}},
            "required": ["columns", "data"]}
    n = len(b.columns)
    return {"type": "object", "description": "columns: the signature's column names, each once, in any "
                                             "order; data: the rows, each with a value per column in that order",
            "properties": {
                "columns": {"type": "array", "items": {"enum": [c.name for c in b.columns]},
                            "uniqueItems": True, "minItems": n, "maxItems": n},
                "data": {"type": "array", "minItems": 1, "items": {
                    "type": "array", "minItems": n, "maxItems": n, "items": _any_value(b)}}},
            "required": ["columns", "data"], "additionalProperties": False}


def _instances_schema(b: Bundle) -> dict[str, Any]:
    """instances / inputs: rows as objects, rows as lists (signature order), or one row as columns."""
    if b.columns is None:
        return {"description": "Rows (a list of rows or of objects), or columns (an object of lists).",
                "oneOf": [{"type": "array", "minItems": 1},
                          {"type": "object", "minProperties": 1, "additionalProperties": {
                              "not": {"type": "array", "maxItems": 0}}}]}
    n = len(b.columns)
    values = _value_schemas(b)
    return {"description": "Rows as objects, rows as lists of a value per column in the signature's order, "
                           "or columns (an object of lists of equal length; here, one value each; a bare "
                           "value counts as a list of one).",
            "oneOf": [
                {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Row"}},
                {"type": "array", "minItems": 1, "items": {
                    "type": "array", "minItems": n, "maxItems": n, "prefixItems": values}},
                {"type": "object", "additionalProperties": False,
                 "required": [c.name for c in b.columns if c.required],
                 "properties": {c.name: {"anyOf": [{"type": "array", "minItems": 1, "maxItems": 1, "items": v}, v]}
                                for c, v in zip(b.columns, values, strict=True)}},
            ]}


_V2_KINDS = {"boolean": ["BOOL"], "string": ["BYTES"], "binary": ["BYTES"], "datetime": ["BYTES"]}
_V2_INTS = ["INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"]


def _v2_request_schema(b: Bundle) -> dict[str, Any]:
    """A V2 request: for a model with a column signature, one tensor per column (here, one row:
    shape [1]); the binary tensor extension is described with the operation, not here."""
    outputs = {"type": ["array", "null"], "items": {
        "type": "object", "required": ["name"], "description": 'parameters {"binary_data": true}: as binary data',
        "properties": {"name": {"type": "string"} if b.columns is None else {"enum": v2_output_names(b.outputs)}}}}
    params = {"type": ["object", "null"], "description": '{"binary_data_output": true}: every output as binary data'}
    if b.columns is None:
        return {"type": "object", "required": ["inputs"], "properties": {
            "id": {"type": ["string", "null"]},
            "inputs": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/V2Tensor"}},
            "outputs": outputs, "parameters": params}}
    tensors = []
    for c, value in zip(b.columns, _value_schemas(b), strict=True):
        kinds = _V2_KINDS.get(c.type) or (_V2_INTS if c.type in ("long", "integer")
                                          else ["FP16", "FP32", "FP64", *_V2_INTS])
        tensors.append({"type": "object", "required": ["name", "shape", "datatype", "data"], "properties": {
            "name": {"const": c.name}, "datatype": {"enum": kinds},
            "shape": {"type": "array", "prefixItems": [{"const": 1}], "minItems": 1, "maxItems": 1},
            "data": {"type": "array", "minItems": 1, "maxItems": 1, "items": value},
            "parameters": {"type": ["object", "null"]}}})
    n = len(b.columns)
    return {"type": "object", "required": ["inputs"], "description": (
                "One tensor per column of the signature (each once, in any order); the document shows one "
                "row (shape [1]); N rows are shape [N] (or [N, 1]) with N values in each tensor."),
            "properties": {
                "id": {"type": ["string", "null"]},
                "inputs": {"type": "array", "minItems": n, "maxItems": n, "items": {"oneOf": tensors},
                           "allOf": [{"contains": {"properties": {"name": {"const": c.name}}}}
                                     for c in b.columns]},
                "outputs": outputs, "parameters": params}}


def _csv_schema(b: Bundle) -> dict[str, Any]:
    """A CSV body as the server reads it: the header row (the signature's columns, in its
    order), then at least one row with a field for each column. The values are text the
    server converts by the column's type (a value that does not convert is a 422 naming the
    column); a field with a comma, a quote or a line break would need quoting, left out here."""
    schema: dict[str, Any] = {"type": "string", "description": "A header row, then one row per prediction"}
    if b.columns is None:
        return schema
    names = [c.name for c in b.columns]
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(names)
    # with one column an empty field is an empty line, which CSV readers skip: it needs a value
    value = '[^,"\\r\\n]' + ("+" if len(names) == 1 else "*")
    row = ",".join([value] * len(names))
    schema["pattern"] = f"^{re.escape(out.getvalue())}\\r?\\n{row}(\\r?\\n{row})*(\\r?\\n)?$"
    return schema


def _example(b: Bundle) -> dict[str, Any] | None:
    """MLflow's serving example, with missing values as JSON null (MLflow writes NaN, which JSON lacks)."""
    path = b.model_dir / "serving_input_example.json"
    try:
        return _json_safe(json.loads(path.read_text())) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _resp(description: str, schema: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema:
        out["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
    return out


def docs_html(doc: dict[str, Any]) -> str:
    """A small page: the endpoints, the input columns, and a form that POSTs to /invocations."""
    rows = "".join(
        f"<tr><td><code>{m.upper()}</code></td><td><code>{html.escape(p)}</code></td>"
        f"<td>{html.escape(op.get('summary', ''))}</td></tr>"
        for p, ops in doc["paths"].items() for m, op in ops.items()
    )
    props = doc["components"]["schemas"]["Row"].get("properties", {})
    cols = "".join(
        f"<tr><td><code>{html.escape(n)}</code></td><td>{html.escape(str(s.get('x-mlflow-type')))}</td>"
        f"<td>{html.escape(json.dumps(s.get('x-training-range') or s.get('x-training-values') or ''))}</td></tr>"
        for n, s in props.items()
    )
    example = doc["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"].get("example")
    body = html.escape(json.dumps(example, indent=1) if example else '{"dataframe_records": [{}]}')
    title = html.escape(doc["info"]["title"])
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}td{{padding:2px 8px}}
textarea{{width:100%;height:14em;font-family:monospace}}pre{{background:#f4f4f4;padding:1em}}</style></head>
<body><h1>{title}</h1><p>Version {html.escape(doc["info"]["version"])}.
The full description is <a href="openapi.json">openapi.json</a>.</p>
<h2>Endpoints</h2><table>{rows}</table>
<h2>Input columns</h2><table><tr><th>column</th><th>type</th><th>training range / values</th></tr>{cols}</table>
<h2>Try it</h2><p>Bearer token (if set): <input id="tok" size="40"></p>
<textarea id="body">{body}</textarea><p><button onclick="go()">POST /invocations</button></p>
<pre id="out"></pre>
<script>
async function go() {{
  const h = {{"Content-Type": "application/json"}};
  const t = document.getElementById("tok").value;
  if (t) h["Authorization"] = "Bearer " + t;
  const r = await fetch("invocations", {{method: "POST", headers: h, body: document.getElementById("body").value}});
  document.getElementById("out").textContent = r.status + "\\n" + await r.text();
}}
</script></body></html>"""
