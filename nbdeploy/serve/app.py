"""The ASGI application: routing, auth, limits, validation, batching, logging, metrics.

A raw ASGI callable (no framework) so that the per-request cost stays in the tens of
microseconds; the model call is shared between concurrent requests by the batcher.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import os
import random
import signal
import time
import zlib
from pathlib import Path
from typing import Any

import orjson

from . import headers as headers_mod
from . import protocol, v2binary
from .bundle import Bundle, read_bundle
from .config import ServeConfig
from .errors import RequestError, ServeError
from .metrics import Metrics
from .model import LoadedModel, load_model
from .payload import Frame, parse_csv, parse_mlflow, parse_v2
from .requestlog import RequestLog, open_log
from .shadow import Shadow
from .variant import Variant, open_variant

logger = logging.getLogger("nbdeploy.serve")
#: the folder in which the workers of one server share their metrics (set by the supervisor)
METRICS_DIR_ENV = "NBDEPLOY_METRICS_DIR"
METRICS_SHARE_SECONDS = 1.0
#: allocations between two collections of the youngest generation (Python's default: 700)
GC_YOUNG_THRESHOLD = 10_000

PROBES = frozenset({"/health", "/ping", "/v2/health/live", "/v2/health/ready"})
_JSON = [(b"content-type", b"application/json")]


class ServeApp:
    def __init__(self, bundle: Bundle, model: LoadedModel, config: ServeConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        #: answers ``canary_percent`` of the requests (set before startup)
        self.canary: Variant | None = None
        self._use(Variant(bundle, model, config, self.metrics))
        #: the folder a reload reads again (as given: a symlink is followed anew each time)
        self.bundle_path: str = str(bundle.root)
        self._canary_cut = config.canary_percent * 100  # out of 10,000
        self._canary_key = config.canary_key_header.lower().encode() or None
        self._wanted = _WANTED | {self._canary_key} if self._canary_key else _WANTED
        #: sees every request's inputs after the answer (set before startup)
        self.shadow: Shadow | None = None
        self._reloading = False
        #: requests are counted per version and handed to the shadow (only with a canary or a shadow)
        self._split = False
        self.log: RequestLog | None = None
        #: whether a prediction's record keeps its inputs and outputs (payload logging, and a log to keep them)
        self._log_payloads = False
        #: labels joined to the logged answers (:mod:`.feedback`), made on the first /feedback or /performance
        self.ledger: Any = None
        self._token = config.token.encode() if config.token else None
        self._flag_header = config.flag_out_of_range in ("header", "both")
        self._flag_body = config.flag_out_of_range in ("body", "both")
        self._static: dict[str, bytes] = {}
        self._rid_prefix = os.urandom(4).hex()
        self._served = 0
        self._sharing: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    def _use(self, variant: Variant) -> None:
        """Answer with ``variant`` from now on (one step on the event loop: no request sees half of it)."""
        self.live = variant
        self.bundle, self.model, self.validator = variant.bundle, variant.model, variant.validator
        self.predictor, self.batcher = variant.predictor, variant.batcher
        self.metrics.drift = variant.drift
        self._version_header = (b"x-model-version", variant.version.encode())
        self._version_headers = {variant.version: self._version_header}
        if self.canary is not None:  # the header of each version a request may name, made once
            self._version_headers[self.canary.version] = (b"x-model-version", self.canary.version.encode())

    def add_canary(self, variant: Variant) -> None:
        self.canary = variant
        self._split = True
        self._version_headers[variant.version] = (b"x-model-version", variant.version.encode())

    def add_shadow(self, shadow: Shadow) -> None:
        self.shadow = shadow
        self._split = True

    def _pick(self, headers: dict[bytes, bytes]) -> Variant:
        """The canary for ``canary_percent`` of the requests: the same for one value of the key header."""
        key = headers.get(self._canary_key) if self._canary_key is not None else None
        share = zlib.crc32(key) % 10_000 if key is not None else random.random() * 10_000
        return self.canary if share < self._canary_cut and self.canary is not None else self.live

    @property
    def warmed(self) -> bool:
        """Whether the start-up prediction of the input example ran."""
        return self.live.warmed

    @property
    def warm_up_error(self) -> str | None:
        """Why the start-up prediction failed, if it did."""
        return self.live.warm_up_error

    # -- ASGI -----------------------------------------------------------------
    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        # a plain function handing back the coroutine: one awaitable layer less per request
        if scope["type"] == "http":
            return self._http(scope, receive, send)
        if scope["type"] == "lifespan":
            return self._lifespan(receive, send)
        return _nothing()

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.startup()
                except Exception as e:
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def warm_up(self) -> None:
        """Predict the bundle's input example once (see :meth:`.variant.Variant.warm_up`)."""
        self.live.warm_up()

    def startup(self) -> None:
        # the model, the program and the imported modules live as long as the process: move them out of
        # the cyclic collector's way, so the collections that requests trigger only scan what requests made
        gc.collect()
        gc.freeze()
        # each request allocates a few dozen containers that die with it; with the default 700,
        # a young collection ran every few requests, each scanning what the requests in flight
        # hold (~3 % of a 1-row request's instructions, measured by benchmarks/serve_instructions.py)
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        self._rid_prefix = os.urandom(4).hex()  # per worker process, even when workers were forked
        if self.config.log_path:
            self.log = self.metrics.log = open_log(self.config, os.environ.get(METRICS_DIR_ENV))
            self._log_payloads = self.config.log_payloads
        self.batcher.start()
        if self.canary is not None:
            self.canary.batcher.start()
        if self.shadow is not None:
            self.shadow.log = self.log
            self.shadow.start()
        if self.config.workers == 1:  # with several workers, uvicorn's supervisor handles SIGHUP
            try:
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._hangup)
            except (ValueError, RuntimeError, NotImplementedError, AttributeError):
                pass  # not the main thread, or no signals here: POST /admin/reload still works
        shared = os.environ.get(METRICS_DIR_ENV)
        if self.config.workers > 1 and shared and Path(shared).is_dir():
            self.metrics.shared = Path(shared)
            self._sharing = asyncio.get_running_loop().create_task(self._share_metrics())

    async def _share_metrics(self) -> None:
        """Every second, this worker's counts for the other workers' scrapes (only when they changed)."""
        last = -1
        while True:
            if self._served != last:
                last = self._served
                try:
                    self.metrics.share()
                except OSError as e:
                    logger.warning("cannot share this worker's metrics: %s", e)
            await asyncio.sleep(METRICS_SHARE_SECONDS)

    async def shutdown(self) -> None:
        if self._sharing is not None:
            self._sharing.cancel()
        await self.batcher.stop()
        if self.canary is not None:
            await self.canary.batcher.stop()
        if self.shadow is not None:
            await self.shadow.stop()
        for task in list(self._retiring):
            await task
        if self.metrics.shared is not None:
            try:
                self.metrics.share()  # the final counts stay in the sums after this worker exits
            except OSError:
                pass
        if self.log is not None:
            self.log.close()

    # -- reload -----------------------------------------------------------------
    async def reload(self) -> dict[str, Any]:
        """Read the bundle folder again, load and check its model beside the live one, then switch.

        Requests keep being answered by the old model while the new one loads; those already
        given to it finish there. A bundle that fails to load (its seal, its model, its example)
        is a 422 and the old one keeps serving; a reload while one runs is a 409.
        """
        if self._reloading:
            raise RequestError(409, "a reload is already running; try again when it has finished")
        self._reloading = True
        old = self.live
        t0 = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            try:
                new = await loop.run_in_executor(None, open_variant, self.bundle_path, self.config, self.metrics)
            except ServeError as e:
                raise RequestError(422, f"{self.bundle_path} was not loaded, v{old.version} keeps serving: "
                                        f"{e}") from None
            except Exception as e:
                raise RequestError(422, f"{self.bundle_path} was not loaded, v{old.version} keeps serving: "
                                        f"{type(e).__name__}: {e}") from None
            if self.config.workers > 1:  # the supervisor replaces each worker, one by one
                os.kill(os.getppid(), signal.SIGHUP)
                return {"reloading": True, "version": new.version, "previous": old.version,
                        "workers": self.config.workers}
            new.batcher.start()
            self._use(new)
        finally:
            self._reloading = False
        task = loop.create_task(self._retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        logger.warning("reloaded %s: v%s -> v%s (%s)", self.bundle_path, old.version, new.version,
                       new.bundle.root)
        return {"reloaded": True, "name": new.bundle.name, "version": new.version, "previous": old.version,
                "bundle": str(new.bundle.root), "seconds": round(time.perf_counter() - t0, 3)}

    async def _retire(self, old: Variant) -> None:
        """Let the old model finish what it was given, then let it go."""
        await old.batcher.stop()
        gc.unfreeze()  # the old model was frozen with the start-up objects: let the collector free it
        gc.collect()
        gc.freeze()

    def _hangup(self) -> None:
        """SIGHUP: reload, as POST /admin/reload does (the outcome goes to the server log)."""

        async def run() -> None:
            try:
                await self.reload()
            except RequestError as e:
                logger.error("SIGHUP reload refused: %s", e.message)

        asyncio.get_running_loop().create_task(run())

    # -- HTTP -----------------------------------------------------------------
    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        t0 = time.perf_counter()
        self._served += 1
        rid = f"{self._rid_prefix}{self._served:08x}"  # unique per process start, no syscall per request
        path: str = scope["path"]
        method: str = scope["method"]
        wanted = self._wanted
        headers = {k: v for k, v in scope["headers"] if k in wanted}
        endpoint, handler = protocol.route(method, path)
        bundle = self.bundle
        # the request-log record, in the order its line has; the handlers add to it (the version that
        # answered, inputs, outputs, an error) and the end of the request fills in ts, status and latency
        record: dict[str, Any] = {"ts": 0.0, "id": rid, "method": method, "path": path, "endpoint": endpoint,
                                  "status": 0, "latency_ms": 0.0, "model": bundle.name, "version": bundle.version}
        metrics = self.metrics
        metrics.inflight += 1
        log = self.log
        if log is not None and (self.config.log_probes or endpoint not in protocol.UNLOGGED):
            log.counts[0] += 1  # promised now: were this worker killed, its record would be counted as lost
        else:
            log = None
        try:
            if self._token is not None and path not in PROBES:
                self._authorize(headers)
            status, body, content_type, extra = await handler(self, scope, receive, headers, record)
        except RequestError as e:
            status, content_type, extra = e.status, b"application/json", e.headers
            body = protocol.error_body(e, path.startswith("/v2"))
            record["error"] = {"message": e.message, "errors": e.errors}
            for err in e.errors:
                metrics.validation_failure(str(err.get("field")), str(err.get("problem")))
            if e.status == 401:
                extra = [(b"www-authenticate", b"Bearer")]
            # answered: the frames it passed through hold the request (its part holds the future that
            # holds it), a cycle only the garbage collector would free, for every refused request
            e.__traceback__ = e.__context__ = e.__cause__ = None
        except Exception as e:  # a model exception or a server bug: 500 with an error id
            status, content_type, extra = 500, b"application/json", []
            is_model = getattr(e, "from_model", False)
            if is_model:
                metrics.model_errors += 1
            cause = e.__cause__ if is_model and e.__cause__ else e
            logger.error("error_id=%s %s %s: %s", rid, method, path, f"{type(cause).__name__}: {cause}",
                         exc_info=cause)
            body = protocol.internal_error_body(rid, cause, is_model, path.startswith("/v2"))
            record["error"] = {"error_id": rid, "type": type(cause).__name__, "message": str(cause)}
        finally:
            metrics.inflight -= 1
        version = record["version"]
        version_header = self._version_header if version is None else (
            self._version_headers.get(version) or (b"x-model-version", version.encode()))
        # nbdeploy's own server takes the whole answer in one call (serve/connection.py); any other
        # ASGI server, or a client that is not reading, gets the two messages
        ext = scope.get("extensions")
        respond = ext.get("nbdeploy.respond") if ext is not None else None
        if respond is None or not respond(status, b"%scontent-length: %d\r\nx-request-id: %s\r\n%s%s" % (
                headers_mod.line(b"content-type", content_type), len(body), rid.encode(),
                headers_mod.line(*version_header), headers_mod.lines(extra) if extra else b""), body):
            await send({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", content_type), (b"content-length", b"%d" % len(body)),
                (b"x-request-id", rid.encode()), version_header, *extra]})
            await send({"type": "http.response.body", "body": body})
        seconds = time.perf_counter() - t0
        if self._split:  # counted also under the version that answered
            metrics.version_request(version or self.bundle.version, endpoint, status, seconds)
            shadowed = record.pop("_shadow", None)
            if shadowed is not None and self.shadow is not None:
                self.shadow.offer(rid, shadowed, int(seconds * 1e6) / 1000)
        else:
            metrics.request(endpoint, status, seconds)
        if log is not None:
            # a success's path is a route whose every part was checked against what this server holds,
            # so its record carries nothing of the client's but a logged payload; that needs no search
            # when validation proved each of its values a number or a training category (``_plain``,
            # see infer), or when its strings were searched before (a model's categories repeat)
            known = record.pop("_plain", False)
            record["ts"] = time.time()
            record["status"] = status
            record["latency_ms"] = int(seconds * 1e6) / 1000
            if log.write(record, promised=True, plain=status < 300 and (known or _CLIENT_TEXT.isdisjoint(record) or (
                    _NOT_PAYLOAD.isdisjoint(record) and log.clean.payload(record.get("inputs"), record.get("outputs"))))):
                await log.wait_for_space()

    def _authorize(self, headers: dict[bytes, bytes]) -> None:
        if not self.authorized(headers):
            raise RequestError(401, "this endpoint needs an Authorization: Bearer <token> header")

    def authorized(self, headers: dict[bytes, bytes]) -> bool:
        """No token configured, or the request's bearer token is it."""
        if self._token is None:
            return True
        auth = headers.get(b"authorization", b"")
        scheme, _, token = auth.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._token)

    async def read_body(self, receive: Any, headers: dict[bytes, bytes]) -> bytes:
        limit = self.config.max_body_bytes
        if _declared_length(headers) > limit:
            raise RequestError(413, f"the body is {_declared_length(headers)} bytes; the limit is {limit}")
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):  # the whole body
            body: bytes = message.get("body", b"")
            if len(body) > limit:
                raise RequestError(413, f"the body is over the limit of {limit} bytes")
            return body
        chunks, total = [], 0
        while True:
            if message["type"] == "http.disconnect":
                raise RequestError(400, "the client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                raise RequestError(413, f"the body is over the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
            message = await receive()
        return b"".join(chunks)

    # -- inference ------------------------------------------------------------
    async def infer(
        self, receive: Any, headers: dict[bytes, bytes], record: dict[str, Any], kind: str,
        variant: Variant | None = None,
    ) -> tuple[Any, list[dict[str, Any]], int, Any]:
        """Read, parse, validate and predict: (predictions, flags, rows, v2 request or None).
        ``variant``: the version the request asked for (V2's /versions/{v}), else live or canary.
        A canary's request joins the live requests' batches with the canary's predict (see
        :mod:`.batcher`); one that names its version goes to that version's own batcher."""
        run = None
        if variant is not None:
            record["version"] = variant.version
            batcher = variant.batcher
        elif self.canary is None:
            variant, batcher = self.live, self.batcher
        else:  # the record names the version that answered (the live one's is the default)
            variant = self._pick(headers)
            record["version"] = variant.version
            batcher = self.batcher
            if variant is not self.live:
                run = variant.predictor.run_batch
        bundle = variant.bundle
        validator = variant.validator
        batcher.reading += 1
        reading = True
        try:
            mime = protocol.content_type(headers, kind)
            body = await self.read_body(receive, headers)
            if b"content-encoding" in headers:
                body = decompress(body, headers[b"content-encoding"], self.config.max_body_bytes)
            v2req = None
            if kind == "v2":
                length = v2binary.header_length(headers.get(b"inference-header-content-length"), len(body))
                v2req = parse_v2(body, bundle, length)
                data = v2req.data
            elif mime == "text/csv":
                data = parse_csv(body, bundle)
            else:
                data = parse_mlflow(body, bundle)
            if data.n == 0:
                raise RequestError(400, "the request has no rows")
            flags: list[dict[str, Any]] = []
            # JSON columns are checked in the batch, all requests at once (each on its own only when
            # something is wrong); CSV values arrive as text and are converted here, request by request
            deferred = isinstance(data, Frame) and validator is not None and mime != "text/csv"
            shown, names = data, None  # what the log keeps; the column names of a row kept as it came
            # one row: turned into columns with its batch (only a Frame's checks are deferred)
            if deferred and data.row is not None:  # type: ignore[union-attr]  # deferred: a Frame
                payload: Any = data.row  # type: ignore[union-attr]  # deferred: a Frame
                names = data.names  # type: ignore[union-attr]  # deferred: a Frame
            elif isinstance(data, Frame) and validator is not None and not deferred:
                payload, flags = validator.check(data, text_values=True)
                shown = Frame(payload, data.n)  # CSV: the values as validation converted them
            else:
                payload = data.columns if isinstance(data, Frame) else data
            # every value the log keeps went through the validator: a number, a boolean or a category
            validated = validator is not None and isinstance(data, Frame)
            if self._log_payloads:
                record["inputs"] = shown.split() if isinstance(shown, Frame) else shown.data
            record["rows"] = data.n
            batcher.reading -= 1
            reading = False
            try:
                predictions, part = await batcher.submit_part(payload, data.n, check=deferred, names=names, run=run)
            except RequestError:
                raise
            except Exception as e:
                raise ModelError(str(e)) from e
            if part.flags:
                flags = part.flags
        finally:
            if reading:
                batcher.reading -= 1
        if flags:
            record["flags"] = flags
            for f in flags:
                self.metrics.flagged(f["field"], f["kind"], f["count"])
        if self._log_payloads:
            record["outputs"] = predictions
            if validated and not flags and self._known_values(variant) and self.log.clean.outputs(predictions):  # type: ignore[union-attr]  # _known_values(): a log
                record["_plain"] = True  # (taken out before the record is logged)
        if variant is not self.live:  # a reload switched while this request was with the old version
            record["version"] = variant.version
        if self.shadow is not None and variant is not self.shadow.variant:  # to the shadow once answered
            record["_shadow"] = (payload, data.n, deferred, names, predictions, variant.version)
        return predictions, flags, data.n, v2req

    def _known_values(self, variant: Variant) -> bool:
        """Whether what passes this variant's validator can hold no secret (asked once a variant)."""
        known = variant.known_values
        if known is None:
            log, validator = self.log, variant.validator
            known = variant.known_values = log is not None and validator is not None and log.clean.schema(
                (r.column.name, r.column.type, r.categories) for r in validator.rules.values())
        return known

    def flag_headers(self, flags: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
        if not flags or not self._flag_header:
            return []
        value = ",".join(f"{f['field']}:{f['kind']}:{f['count']}" for f in flags)
        return [(b"x-nbdeploy-flags", value.encode())]

    @property
    def flags_in_body(self) -> bool:
        return self._flag_body

    def json(self, obj: Any) -> bytes:
        try:  # the non-string-keys option slows every dict down: only for an output that needs it
            return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY, default=str)
        except TypeError:
            return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS, default=str)


async def _nothing() -> None:
    return None


class ModelError(Exception):
    """The model raised: answered 500 with an error id, and the server keeps serving."""

    from_model = True


#: the record's entries that may hold what a client sent (the log's secret search reads those records)
_CLIENT_TEXT = frozenset({"inputs", "outputs", "error", "labels", "training"})
_NOT_PAYLOAD = _CLIENT_TEXT - {"inputs", "outputs"}
_WANTED = frozenset({b"authorization", b"content-type", b"content-length", b"content-encoding",
                     b"inference-header-content-length"})


def decompress(body: bytes, encoding: bytes, limit: int) -> bytes:
    """A gzip or deflate request body, inflated up to ``limit`` bytes (a bigger one is a 413)."""
    import zlib

    name = encoding.strip().lower()
    if name == b"identity":
        return body
    if name not in (b"gzip", b"deflate"):
        raise RequestError(415, f"Content-Encoding {encoding.decode('latin-1')!r} is not accepted; "
                                "send gzip, deflate or an uncompressed body")
    # gzip: a gzip header; deflate: the zlib format (what HTTP means by it), raw deflate as a fallback
    for wbits in (31,) if name == b"gzip" else (15, -15):
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, limit + 1)
            break
        except zlib.error as e:
            error = e
    else:
        raise RequestError(400, f"the body is not valid {name.decode()} data: {error}") from None
    if len(out) > limit:
        raise RequestError(413, f"the body inflates past the limit of {limit} bytes")
    if not inflater.eof:
        raise RequestError(400, f"the {name.decode()} body is cut off")
    return out


def _declared_length(headers: dict[bytes, bytes]) -> int:
    declared = headers.get(b"content-length")
    return int(declared) if declared is not None and declared.isdigit() else 0


def create_app(bundle_dir: str | Path, config: ServeConfig | None = None) -> ServeApp:
    config = config or ServeConfig.from_env()
    bundle = read_bundle(bundle_dir)  # checks every file against the manifest before loading
    if bundle.unlisted:
        logger.warning("%s holds %d file(s) its manifest does not list (never loaded): %s", bundle.root,
                       len(bundle.unlisted), ", ".join(bundle.unlisted[:5]))
    app = ServeApp(bundle, load_model(bundle), config)
    app.bundle_path = os.path.abspath(bundle_dir)  # not resolved: a reload follows a symlink again
    app.warm_up()
    # a canary or a shadow goes through the same seal check; one that cannot predict its example refuses to start
    if config.canary:
        app.add_canary(open_variant(config.canary, config, app.metrics, drift=False))
    if config.shadow:
        app.add_shadow(Shadow(open_variant(config.shadow, config, None, shadow=True), bundle.version,
                              config.shadow_max_pending, config.log_payloads))
    return app


def app_from_env() -> ServeApp:
    """App factory for worker processes: the bundle and config come from the environment."""
    import json

    config = ServeConfig.from_dict(json.loads(os.environ["NBDEPLOY_SERVE_CONFIG"]))
    config.token = os.environ.get("NBDEPLOY_API_TOKEN") or config.token
    return create_app(os.environ["NBDEPLOY_SERVE_BUNDLE"], config)
