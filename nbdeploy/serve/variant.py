"""One loaded version of a model: what answers (or shadows) a request.

A server holds one live variant and, when asked, a canary (answers a share of the
requests) and a shadow (sees the same inputs off the request path). Each has its own
bundle, model, validator, predictor and batcher, so a reload builds a whole new variant
beside the old one and the server switches to it in one step.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .batcher import Batcher, Part
from .bundle import Bundle, read_bundle
from .drift import Drift
from .errors import ServeError
from .model import LoadedModel, load_model
from .payload import Frame, parse_mlflow
from .predictor import Predictor
from .validation import Validator

if TYPE_CHECKING:
    from .config import ServeConfig
    from .metrics import Metrics

logger = logging.getLogger("nbdeploy.serve")
#: a shadow's predict runs on the event loop only below this many milliseconds a call
SHADOW_INLINE_MS = 1.0


class Variant:
    """A bundle and its model, ready to predict through its own batcher.

    ``metrics``: where its batches and predictions are counted (None: nowhere, as for a
    shadow). ``shadow``: predict on the event loop only when a call takes under
    SHADOW_INLINE_MS (a shadow must not hold up the live model's requests; a slower one
    runs in the batcher's thread, where each small predict is a tug-of-war with the event
    loop for the GIL). :class:`.shadow.Shadow` forms the shadow's batches itself.
    """

    def __init__(self, bundle: Bundle, model: LoadedModel, config: ServeConfig,
                 metrics: Metrics | None = None, *, shadow: bool = False, drift: bool = True) -> None:
        self.bundle = bundle
        self.model = model
        self.version = bundle.version
        self.validator = Validator(bundle, config.range_margin) if bundle.columns is not None else None
        self.drift = (Drift(bundle.profile, [c.name for c in bundle.columns], config.drift_window)
                      if drift and metrics is not None and bundle.columns is not None and bundle.profile
                      and config.drift_window > 0 else None)
        self.predictor = Predictor(bundle, model, self.validator,
                                   on_output=metrics.outputs if metrics is not None else None,
                                   on_rows=self.drift.observe if self.drift is not None else None)
        self.batcher = Batcher(
            self.predictor.run_batch, config.max_batch_size, config.max_wait_ms / 1000,
            metrics.batch if metrics is not None else None,
            inline_below=min(config.inline_predict_ms, SHADOW_INLINE_MS if shadow else math.inf) / 1000,
        )
        #: whether every value its validator lets through is free of secrets (the request log's
        #: search then skips them): found out by the server that logs, on the first request
        self.known_values: bool | None = None
        #: whether the start-up prediction of the input example ran, and why it failed if it did not
        self.warmed = False
        self.warm_up_error: str | None = None

    def warm_up(self) -> None:
        """Predict the bundle's input example, so the first request pays no first-call costs.

        Sets ``warmed``; an example that is there but cannot be predicted sets
        ``warm_up_error``. A model without named input columns is not warmed up.
        """
        path = self.bundle.model_dir / "input_example.json"
        if not path.is_file() or self.validator is None:
            return
        try:
            example = orjson.loads(path.read_bytes())
            key = "dataframe_split" if isinstance(example, dict) and "columns" in example else "dataframe_records"
            frame = parse_mlflow(orjson.dumps({key: example}), self.bundle)
            if not (isinstance(frame, Frame) and frame.n):
                self.warm_up_error = "input_example.json has no rows"
                return
            columns, _ = self.validator.check(frame)
            times, cpu = [], []
            for _ in range(3):  # not served predictions: neither in the metrics nor in the drift report
                c0, t0 = time.thread_time(), time.perf_counter()
                self.predictor.run_batch([Part(columns, frame.n, None)], observe=False)  # type: ignore[arg-type]
                times.append(time.perf_counter() - t0)
                cpu.append(time.thread_time() - c0)
            # the first call pays one-off costs (lazy imports, caches): the steady cost is the fastest
            self.batcher.predict_seconds = min(times)
            self.batcher.blocking = self.batcher.waits(min(times), min(cpu))
            self.warmed = True
        except Exception as e:
            logger.warning("warm-up prediction of %s on input_example.json failed: %s: %s",
                           self.bundle.root, type(e).__name__, e)
            self.warm_up_error = f"{type(e).__name__}: {e}"

    def predict_logged(self, inputs: Any) -> Any:
        """Predict the inputs of a request-log record (``dataframe_split`` form, or a list of rows
        for a tensor model), outside any batcher: what a replay does."""
        key = "dataframe_split" if isinstance(inputs, dict) and "columns" in inputs else "instances"
        data = parse_mlflow(orjson.dumps({key: inputs}), self.bundle)
        payload: Any
        if isinstance(data, Frame) and self.validator is not None:
            payload, _ = self.validator.check(data)
        else:
            payload = data.columns if isinstance(data, Frame) else data
        out = self.predictor.run_batch([Part(payload, data.n, None)], observe=False)[0]  # type: ignore[arg-type]
        if isinstance(out, Exception):
            raise out
        return out


def open_variant(path: str | Path, config: ServeConfig, metrics: Metrics | None = None, *,
                 shadow: bool = False, drift: bool = True, warm: bool = True) -> Variant:
    """Read the bundle at ``path`` (its seal is checked before any model bytes load), load its
    model and predict its input example; ServeError when any of it fails (``warm``)."""
    bundle = read_bundle(path)
    if bundle.unlisted:
        logger.warning("%s holds %d file(s) its manifest does not list (never loaded): %s", bundle.root,
                       len(bundle.unlisted), ", ".join(bundle.unlisted[:5]))
    variant = Variant(bundle, load_model(bundle), config, metrics, shadow=shadow, drift=drift)
    if warm:
        variant.warm_up()
        if variant.warm_up_error is not None:
            raise ServeError(f"{bundle.name} v{bundle.version} ({bundle.root}) loaded but could not predict "
                             f"its input example: {variant.warm_up_error}")
    return variant
