"""Endpoints: MLflow scoring protocol, Open Inference Protocol (V2), health, metadata, docs.

Each handler takes ``(app, scope, receive, headers, record)`` and returns
``(status, body, content_type, extra_headers)``; client mistakes raise RequestError.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from . import feedback, v2binary
from .bundle import V2_TYPES, Bundle, v2_output_names
from .errors import RequestError
from .version import __version__ as SERVER_VERSION

if TYPE_CHECKING:
    from .config import ServeConfig
    from .metrics import Metrics
    from .model import LoadedModel


class ServeApp(Protocol):
    """What the endpoints use of the application (:class:`.app.ServeApp`, which routes to them)."""

    bundle: Bundle
    model: LoadedModel
    config: ServeConfig
    metrics: Metrics

    @property
    def flags_in_body(self) -> bool: ...

    async def infer(self, receive: Any, headers: dict[bytes, bytes], record: dict[str, Any],
                    kind: str, variant: Any = None) -> tuple[Any, list[dict[str, Any]], int, Any]: ...

    @property
    def live(self) -> Any: ...

    def flag_headers(self, flags: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]: ...

    def json(self, obj: Any) -> bytes: ...

    def authorized(self, headers: dict[bytes, bytes]) -> bool: ...

    async def reload(self) -> dict[str, Any]: ...

    @property
    def shadow(self) -> Any: ...

    @property
    def canary(self) -> Any: ...

JSON = b"application/json"
Handler = Callable[..., Awaitable[tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]]]
#: endpoints whose requests are not written to the request log (unless log_probes)
UNLOGGED = frozenset({"health", "v2_live", "v2_ready", "metrics", "drift", "shadow", "performance"})


def content_type(headers: dict[bytes, bytes], kind: str) -> str:
    value = headers.get(b"content-type", b"")
    if value == JSON and (kind != "v2" or b"inference-header-content-length" not in headers):
        return "application/json"  # what nearly every request sends
    raw = value.decode("latin-1")
    mime, _, params = raw.partition(";")
    mime = mime.strip().lower()
    for param in params.split(";"):
        key, _, given = param.partition("=")
        if key.strip().lower() == "charset" and given.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise RequestError(415, f"only UTF-8 bodies are accepted, not charset={given.strip()}")
    if kind == "v2":
        binary = b"inference-header-content-length" in headers
        if mime in ("", "application/json") or (binary and mime == "application/octet-stream"):
            return "application/json"
        raise RequestError(415, f"content type {mime!r} is not accepted; send application/json"
                                + (" (or application/octet-stream with binary tensors)" if binary else ""))
    if mime in ("application/json", "text/csv"):
        return mime
    raise RequestError(
        415, f"content type {mime or '(none)'!r} is not accepted; send application/json or text/csv"
    )


def error_body(e: RequestError, v2: bool) -> bytes:
    if v2:
        doc: dict[str, Any] = {"error": e.message}
    else:
        doc = {"error_code": e.code, "message": e.message}
    if e.errors:
        doc["errors"] = e.errors
    return orjson.dumps(doc, default=str)


def internal_error_body(rid: str, cause: BaseException, from_model: bool, v2: bool) -> bytes:
    what = "the model raised" if from_model else "internal server error"
    message = f"{what} {type(cause).__name__}: {cause}" if from_model else what
    doc = {"error": message} if v2 else {"error_code": "INTERNAL_ERROR", "message": message}
    doc["error_id"] = rid
    return orjson.dumps(doc)


# -- MLflow scoring protocol ---------------------------------------------------
async def invocations(app: ServeApp, scope: Any, receive: Any, headers: Any, record: Any) -> Any:
    predictions, flags, _, _ = await app.infer(receive, headers, record, "mlflow")
    if not flags:
        return 200, app.json({"predictions": predictions}), JSON, []
    doc: dict[str, Any] = {"predictions": predictions}
    if app.flags_in_body:
        doc["warnings"] = flags
    return 200, app.json(doc), JSON, app.flag_headers(flags)


# -- Open Inference Protocol (V2) ----------------------------------------------
def _model_path(app: ServeApp, path: str) -> tuple[Any, str]:
    """The part after /v2/models/{name}[/versions/{v}], checking name and version: (the variant
    a version asks for, or None, and that part)."""
    rest = path[len("/v2/models/"):]
    name, _, tail = rest.partition("/")
    if name != app.bundle.name:
        raise RequestError(404, f"no model named {name!r}; this server has {app.bundle.name!r}")
    chosen = None
    if tail.startswith("versions/"):
        version, _, tail = tail[len("versions/"):].partition("/")
        served = _served(app)
        chosen = next((v for role, v in served if v.version == version), None)
        if chosen is None:
            listed = ", ".join(f"{v.version!r} ({role})" for role, v in served)
            raise RequestError(404, f"no version {version!r} of {name!r} is served here; this server has {listed}")
    return chosen, tail


def _served(app: ServeApp) -> list[tuple[str, Any]]:
    """(role, variant) of every version this server holds: live, canary, shadow."""
    served = [("live", app.live)]
    if app.canary is not None:
        served.append(("canary", app.canary))
    if app.shadow is not None:
        served.append(("shadow", app.shadow.variant))
    return served


_INFER_PATHS: dict[str, str] = {}


async def v2_infer(app: ServeApp, scope: Any, receive: Any, headers: Any, record: Any) -> Any:
    path = scope["path"]
    if _INFER_PATHS.get(app.bundle.name) == path:  # /v2/models/{this model}/infer, as nearly every request
        chosen = None
    else:
        chosen, tail = _model_path(app, path)
        if tail != "infer":
            raise RequestError(404, f"no endpoint {path}")
        if chosen is None and len(_INFER_PATHS) < 64:
            _INFER_PATHS[app.bundle.name] = path
    predictions, flags, n, req = await app.infer(receive, headers, record, "v2", chosen)
    if req is not None and req.plain and not (flags and app.flags_in_body) and _scalars(predictions):
        return 200, _plain_answer(app, record.get("version", app.bundle.version), predictions, n), JSON, \
            app.flag_headers(flags)
    outputs = v2_outputs(predictions, n, app.bundle.outputs, req.outputs if req else None)
    # the version that answered: the canary's for its share, the old one's for a request that was
    # already in its hands when a reload switched
    doc: dict[str, Any] = {"model_name": app.bundle.name, "model_version": record.get("version", app.bundle.version),
                           "outputs": outputs}
    if req is not None and req.id is not None:
        doc["id"] = req.id
    if flags and app.flags_in_body:
        doc["parameters"] = {"nbdeploy_flags": flags}
    blobs = []
    if req is not None and (req.binary or req.binary_all):
        for out in outputs:
            if req.wants_binary(out["name"]):
                blob = v2binary.encode(out.pop("data"), out["datatype"])
                out["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
    if not blobs:
        return 200, app.json(doc), JSON, app.flag_headers(flags)
    header = app.json(doc)
    extra = [(b"inference-header-content-length", b"%d" % len(header)), *app.flag_headers(flags)]
    return 200, header + b"".join(blobs), b"application/octet-stream", extra


_NESTED = (dict, list)


def _scalars(preds: Any) -> bool:
    """Predictions as a list of scalars: one output, what nearly every request gets."""
    return type(preds) is list and (not preds or type(preds[0]) not in _NESTED)


_ANSWER_HEADS: dict[tuple[str, str], tuple[list[dict[str, Any]], bytes]] = {}


def _plain_answer(app: ServeApp, version: str, predictions: list[Any], n: int) -> bytes:
    """What nearly every V2 request gets (no id, no outputs asked for, no binary data, one output of
    scalars), written from a kept head: byte for byte ``app.json`` of the document
    :func:`v2_infer` builds otherwise, at a fraction of the cost."""
    bundle = app.bundle
    kept = _ANSWER_HEADS.get((bundle.name, version))
    if kept is None or kept[0] is not bundle.outputs:  # (the entry holds the outputs list: its id stays its own)
        if len(_ANSWER_HEADS) >= 64:
            _ANSWER_HEADS.clear()
        name = _first_output_name(bundle.outputs)
        kept = _ANSWER_HEADS[(bundle.name, version)] = (bundle.outputs, b'{"model_name":%s,"model_version":%s,'
                                                         b'"outputs":[{"name":%s,"datatype":"' % (
                                                             orjson.dumps(bundle.name), orjson.dumps(version),
                                                             orjson.dumps(name)))
    kind = _ONE_KIND.get(type(predictions[0])) if len(predictions) == 1 else None
    return b"%s%s\",\"shape\":[%d],\"data\":%s}]}" % (
        kept[1], kind or _datatype(predictions).encode(), n, app.json(predictions))


#: the datatype of one prediction, by its type (as :func:`_datatype` names it)
_ONE_KIND = {bool: b"BOOL", int: b"INT64", float: b"FP64", type(None): b"INT64", str: b"BYTES"}


def v2_outputs(preds: Any, n: int, signature_outputs: list[dict[str, Any]], wanted: list[str] | None) -> list[dict[str, Any]]:
    if not wanted and _scalars(preds):
        # what nearly every request gets: one output of scalars, under the one output name
        return [{"name": _first_output_name(signature_outputs), "datatype": _datatype(preds), "shape": [n],
                 "data": preds}]
    if isinstance(preds, dict):
        columns = {str(k): v for k, v in preds.items()}
    elif isinstance(preds, list) and preds and isinstance(preds[0], dict):
        columns = {str(k): [row.get(k) for row in preds] for k in preds[0]}
    else:
        columns = {v2_output_names(signature_outputs)[0]: preds}
    if wanted:
        unknown = [w for w in wanted if w not in columns]
        if unknown:
            raise RequestError(400, f"the model has no output {unknown[0]!r}; its outputs are {sorted(columns)}")
    outputs = []
    for name, values in columns.items():
        if wanted and name not in wanted:
            continue
        shape = [n]
        data = values
        if values and isinstance(values[0], list):
            shape = [n, len(values[0])]
            data = [x for row in values for x in row]
        outputs.append({"name": name, "datatype": _datatype(data), "shape": shape, "data": data})
    return outputs


_OUTPUT_NAMES: dict[int, tuple[list[dict[str, Any]], str]] = {}


def _first_output_name(signature_outputs: list[dict[str, Any]]) -> str:
    """``v2_output_names(signature_outputs)[0]``, kept per outputs list (the entry holds the list,
    so its id is not reused while it is kept)."""
    kept = _OUTPUT_NAMES.get(id(signature_outputs))
    if kept is None or kept[0] is not signature_outputs:
        if len(_OUTPUT_NAMES) >= 16:
            _OUTPUT_NAMES.clear()
        kept = _OUTPUT_NAMES[id(signature_outputs)] = (signature_outputs, v2_output_names(signature_outputs)[0])
    return kept[1]


def _signature_datatype(signature_outputs: list[dict[str, Any]], name: str) -> str:
    for o in signature_outputs:
        if o.get("name") in (name, None) and o.get("type") in V2_TYPES:
            return V2_TYPES[o["type"]]
        if o.get("type") == "tensor":
            return _TENSOR_TYPES.get(str(o.get("tensor-spec", {}).get("dtype")), "FP64")
    return "FP64"


_TENSOR_TYPES = {"int64": "INT64", "int32": "INT32", "float64": "FP64", "float32": "FP32", "bool": "BOOL",
                 "object": "BYTES", "str": "BYTES"}


def _datatype(data: list[Any]) -> str:
    kinds = set(map(type, data if len(data) <= 1000 else data[:1000]))  # at C speed: every response
    kinds.discard(_NONE)
    if kinds == _BOOL:
        return "BOOL"
    if kinds <= _INT:
        return "INT64"
    if kinds <= _NUMBER:
        return "FP64"
    return "BYTES"


_NONE, _BOOL, _INT, _NUMBER = type(None), frozenset({bool}), frozenset({int}), frozenset({int, float})


async def v2_model(app: ServeApp, scope: Any, receive: Any, headers: Any, record: Any) -> Any:
    chosen, tail = _model_path(app, scope["path"])
    if tail == "ready":
        return 200, orjson.dumps({"name": app.bundle.name, "ready": True}), JSON, []
    if tail != "":
        raise RequestError(404, f"no endpoint {scope['path']}")
    b = app.bundle if chosen is None else chosen.bundle
    inputs = (
        [{"name": c.name, "datatype": V2_TYPES.get(c.type, "BYTES"), "shape": [-1]} for c in b.columns]
        if b.columns is not None
        else [{"name": "input", "datatype": "FP64", "shape": (b.tensor_input or {}).get("shape", [-1])}]
    )
    doc = {
        "name": b.name,
        "versions": [v.version for _, v in _served(app)] if chosen is None else [b.version],
        "platform": f"mlflow_{(app.model if chosen is None else chosen.model).flavor}",
        "inputs": inputs,
        "outputs": [{"name": name, "datatype": _signature_datatype(b.outputs, name), "shape": [-1]}
                    for name in v2_output_names(b.outputs)],
    }
    return 200, orjson.dumps(doc), JSON, []


async def v2_server(app: ServeApp, *_: Any) -> Any:
    return 200, orjson.dumps({"name": "nbdeploy", "version": SERVER_VERSION, "extensions": ["binary_tensor_data"]}), JSON, []


async def v2_live(app: ServeApp, *_: Any) -> Any:
    return 200, b'{"live":true}', JSON, []


async def v2_ready(app: ServeApp, *_: Any) -> Any:
    return 200, b'{"ready":true}', JSON, []


# -- operations ----------------------------------------------------------------
async def health(app: ServeApp, scope: Any, receive: Any, headers: dict[bytes, bytes], *_: Any) -> Any:
    """200 while the API answers; the request log's state beside it ("degraded" while it fails to write,
    rotate or compress: the API keeps answering, and a probe must not restart it for that).

    A probe needs no token; on an API with one, the log's details (its path, the error) are only
    for a caller who gives it: an anonymous probe reads the status alone."""
    log = app.metrics.log
    if log is None:
        return 200, b'{"status":"ok"}', JSON, []
    doc: dict[str, Any] = {"status": "ok" if log.ok else "degraded"}
    if app.authorized(headers):
        doc["request_log"] = log.status()
    return 200, app.json(doc), JSON, []


async def version(app: ServeApp, *_: Any) -> Any:
    return 200, app.bundle.version.encode(), b"text/plain", []


async def metadata(app: ServeApp, *_: Any) -> Any:
    b, c = app.bundle, app.config
    profile = b.profile or {}
    doc = {
        "name": b.name,
        "version": b.version,
        "flavor": app.model.flavor,
        "model": app.model.detail,
        "program": ({"used": True, "checked_rows": app.model.program.checked_rows}
                    if app.model.program is not None else {"used": False, "why": app.model.program_note}),
        "mlflow_version": b.mlmodel.get("mlflow_version"),
        "signature": b.signature_dict(),
        "summary": b.summary,
        "profile": {"rows": profile.get("rows"), "columns": sorted(profile.get("columns") or {})} if profile else None,
        "server": {
            "version": SERVER_VERSION,
            "workers": c.workers,
            "max_batch_size": c.max_batch_size,
            "max_wait_ms": c.max_wait_ms,
            "max_body_bytes": c.max_body_bytes,
            "flag_out_of_range": c.flag_out_of_range,
        },
    }
    canary, shadowing = app.canary, app.shadow
    if canary is not None:
        doc["canary"] = {"version": canary.version, "percent": c.canary_percent,
                         "key_header": c.canary_key_header or None}
    if shadowing is not None:
        doc["shadow"] = {"version": shadowing.variant.version, "max_pending": shadowing.max_pending}
    return 200, app.json(doc), JSON, []


async def metrics(app: ServeApp, *_: Any) -> Any:
    return 200, app.metrics.render().encode(), b"text/plain; version=0.0.4; charset=utf-8", []


async def drift(app: ServeApp, scope: Any, *_: Any) -> Any:
    """``/drift``: PSI per column (JSON); ``?format=report``: the report with a verdict and a test per
    feature (:mod:`.drift_report`); ``?format=html``: that report as a self-contained page."""
    from urllib.parse import parse_qs

    # blank values kept: ``?format=`` is a mistake to name, not the default
    query = parse_qs((scope.get("query_string") or b"").decode("latin-1"), keep_blank_values=True)
    fmt = (query.get("format") or ["json"])[-1]
    if fmt not in ("json", "report", "html"):
        raise RequestError(400, f"format must be json, report or html, not {fmt[:40]!r}")
    total = app.metrics.combined()
    if total.drift is None:
        raise RequestError(404, "no drift report: the bundle has no training profile with the model's columns, "
                                "or drift_window is 0")
    if fmt == "json":
        return 200, app.json(total.drift.report()), JSON, []
    from .drift_report import from_api

    doc = from_api(total.drift, app.bundle.name, app.bundle.version)
    if fmt == "report":
        return 200, app.json(doc), JSON, []
    from .drift_html import document

    return 200, document(doc).encode(), b"text/html; charset=utf-8", []


async def shadow(app: ServeApp, *_: Any) -> Any:
    if app.shadow is None:
        raise RequestError(404, "no shadow: start the server with --shadow CANDIDATE_BUNDLE")
    return 200, app.json(app.shadow.report()), JSON, []


async def admin_reload(app: ServeApp, *_: Any) -> Any:
    # with a token configured, the request has passed the bearer check before it gets here
    if not app.config.token:
        raise RequestError(403, "reloading is turned off: start the server with NBDEPLOY_API_TOKEN set "
                                "(or send it SIGHUP)")
    return 200, app.json(await app.reload()), JSON, []


async def openapi_json(app: ServeApp, *_: Any) -> Any:
    from .openapi import openapi_document

    document = openapi_document(app.bundle, [v.version for _, v in _served(app)], app.shadow is not None,
                                bool(app.config.token))
    return 200, app.json(document), JSON, []


async def docs(app: ServeApp, *_: Any) -> Any:
    from .openapi import docs_html, openapi_document

    document = openapi_document(app.bundle, [v.version for _, v in _served(app)], app.shadow is not None,
                                bool(app.config.token))
    return 200, docs_html(document).encode(), b"text/html; charset=utf-8", []


async def not_found(app: ServeApp, scope: Any, *_: Any) -> Any:
    raise RequestError(404, f"no endpoint {scope['method']} {scope['path']}; see /docs")


def _not_allowed(methods: list[str]) -> Handler:
    """A 405 that says, in its message and in ``Allow`` (RFC 9110), which methods the path takes."""
    allowed = ", ".join([*methods, "HEAD"] if "GET" in methods else methods)  # HEAD is answered as GET
    header = [(b"allow", allowed.encode())]

    async def handler(app: ServeApp, scope: Any, *_: Any) -> Any:
        raise RequestError(405, f"{scope['path']} accepts {allowed}, not {scope['method']}; use {methods[0]}",
                           headers=header)

    return handler


ROUTES: dict[str, tuple[str, dict[str, Handler]]] = {
    "/invocations": ("invocations", {"POST": invocations}),
    "/health": ("health", {"GET": health}),
    "/ping": ("health", {"GET": health}),
    "/version": ("version", {"GET": version}),
    "/metadata": ("metadata", {"GET": metadata}),
    "/metrics": ("metrics", {"GET": metrics}),
    "/drift": ("drift", {"GET": drift}),
    "/shadow": ("shadow", {"GET": shadow}),
    "/admin/reload": ("admin_reload", {"POST": admin_reload}),
    "/feedback": ("feedback", {"POST": feedback.post_feedback}),
    "/performance": ("performance", {"GET": feedback.get_performance}),
    "/openapi.json": ("openapi", {"GET": openapi_json}),
    "/docs": ("docs", {"GET": docs}),
    "/v2": ("v2_server", {"GET": v2_server}),
    "/v2/health/live": ("v2_live", {"GET": v2_live}),
    "/v2/health/ready": ("v2_ready", {"GET": v2_ready}),
}


_ROUTED: dict[tuple[str, str], tuple[str, Handler]] = {}


def route(method: str, path: str) -> tuple[str, Handler]:
    """(endpoint name, handler) of a request; the answers for the fixed paths and the first
    V2 model paths seen are remembered."""
    found = _ROUTED.get((method, path))
    if found is not None:
        return found
    found = _route(method, path)
    # the fixed paths, and the V2 model paths (the model's name and version are checked by the handler)
    if (path in ROUTES or path.startswith("/v2/models/")) and len(_ROUTED) < 256:
        _ROUTED[(method, path)] = found
    return found


def _route(method: str, path: str) -> tuple[str, Handler]:
    entry = ROUTES.get(path)
    if entry is None and path.startswith("/v2/models/"):
        is_infer = path.endswith("/infer")
        entry = ("v2_infer", {"POST": v2_infer}) if is_infer else ("v2_model", {"GET": v2_model})
    if entry is None:
        return "not_found", not_found
    name, methods = entry
    if method == "HEAD" and "GET" in methods:
        method = "GET"
    handler = methods.get(method)
    if handler is None:
        return name, _not_allowed(list(methods))
    return name, handler
