"""Prometheus metrics, kept in plain dicts and rendered in the text exposition format.

Each worker process keeps its own metrics (label ``worker`` = its pid), so with
``--workers N`` a scrape shows the worker that answered it.
"""

from __future__ import annotations

import bisect
import os
from typing import Any

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
#: distinct class labels tracked in nbdeploy_predictions_total before lumping into "other"
MAX_LABELS = 50


class Histogram:
    __slots__ = ("buckets", "counts", "sum", "count")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out, running = [], 0
        for bound, c in zip(self.buckets, self.counts, strict=True):
            running += c
            out.append(f'{name}_bucket{{{labels}{sep}le="{_fmt(bound)}"}} {running}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        out.append(f"{name}_sum{{{labels}}} {_fmt(self.sum)}")
        out.append(f"{name}_count{{{labels}}} {self.count}")
        return out


class Metrics:
    def __init__(self) -> None:
        self.worker = str(os.getpid())
        self.requests: dict[tuple[str, int], int] = {}
        self.latency: dict[tuple[str, int], Histogram] = {}
        self.batch_rows = Histogram(BATCH_BUCKETS)
        self.batch_requests = Histogram(BATCH_BUCKETS)
        self.predict_seconds = Histogram(LATENCY_BUCKETS)
        self.prediction_values = Histogram(
            (-1e6, -1e3, -100.0, -10.0, -1.0, 0.0, 0.25, 0.5, 0.75, 1.0, 10.0, 100.0, 1e3, 1e6)
        )
        self.prediction_labels: dict[str, int] = {}
        self.validation_failures: dict[tuple[str, str], int] = {}
        self.out_of_range: dict[tuple[str, str], int] = {}
        self.model_errors = 0
        self.inflight = 0

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        key = (endpoint, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        h = self.latency.get(key)
        if h is None:
            h = self.latency[key] = Histogram(LATENCY_BUCKETS)
        h.observe(seconds)

    def batch(self, rows: int, requests: int, seconds: float) -> None:
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)
        self.predict_seconds.observe(seconds)

    def predictions(self, values: list[Any]) -> None:
        """Floats go to a histogram; labels (ints, strings, bools) are counted, up to MAX_LABELS."""
        labels = self.prediction_labels
        for v in values:
            if isinstance(v, float):
                self.prediction_values.observe(v)
            elif not isinstance(v, list | dict):
                label = str(v)
                if label not in labels and len(labels) >= MAX_LABELS:
                    label = "other"
                labels[label] = labels.get(label, 0) + 1

    def validation_failure(self, field: str, problem: str) -> None:
        key = (field, problem)
        self.validation_failures[key] = self.validation_failures.get(key, 0) + 1

    def flagged(self, field: str, kind: str, count: int) -> None:
        key = (field, kind)
        self.out_of_range[key] = self.out_of_range.get(key, 0) + count

    def render(self) -> str:
        w = f'worker="{self.worker}"'
        out = [
            "# HELP nbdeploy_requests_total HTTP requests by endpoint and status.",
            "# TYPE nbdeploy_requests_total counter",
        ]
        for (ep, st), n in sorted(self.requests.items()):
            out.append(f'nbdeploy_requests_total{{{w},endpoint="{ep}",status="{st}"}} {n}')
        out += [
            "# HELP nbdeploy_request_duration_seconds Request latency by endpoint and status.",
            "# TYPE nbdeploy_request_duration_seconds histogram",
        ]
        for (ep, st), h in sorted(self.latency.items()):
            out += h.lines("nbdeploy_request_duration_seconds", f'{w},endpoint="{ep}",status="{st}"')
        for name, h, text in (
            ("nbdeploy_batch_rows", self.batch_rows, "Rows per predict call."),
            ("nbdeploy_batch_requests", self.batch_requests, "Requests coalesced per predict call."),
            ("nbdeploy_predict_duration_seconds", self.predict_seconds, "Time in the model's predict."),
            ("nbdeploy_prediction_value", self.prediction_values, "Numeric predictions."),
        ):
            out += [f"# HELP {name} {text}", f"# TYPE {name} histogram", *h.lines(name, w)]
        out += [
            "# HELP nbdeploy_predictions_total Predicted labels (non-numeric or integer classes).",
            "# TYPE nbdeploy_predictions_total counter",
        ]
        for label, n in sorted(self.prediction_labels.items()):
            out.append(f'nbdeploy_predictions_total{{{w},label="{_esc(label)}"}} {n}')
        out += [
            "# HELP nbdeploy_validation_failures_total Rejected fields by problem.",
            "# TYPE nbdeploy_validation_failures_total counter",
        ]
        for (f, p), n in sorted(self.validation_failures.items()):
            out.append(f'nbdeploy_validation_failures_total{{{w},field="{_esc(f)}",problem="{p}"}} {n}')
        out += [
            "# HELP nbdeploy_out_of_range_total Accepted values outside the training profile.",
            "# TYPE nbdeploy_out_of_range_total counter",
        ]
        for (f, k), n in sorted(self.out_of_range.items()):
            out.append(f'nbdeploy_out_of_range_total{{{w},field="{_esc(f)}",kind="{k}"}} {n}')
        out += [
            "# HELP nbdeploy_model_errors_total Exceptions raised by the model.",
            "# TYPE nbdeploy_model_errors_total counter",
            f"nbdeploy_model_errors_total{{{w}}} {self.model_errors}",
            "# HELP nbdeploy_inflight_requests Requests being handled.",
            "# TYPE nbdeploy_inflight_requests gauge",
            f"nbdeploy_inflight_requests{{{w}}} {self.inflight}",
        ]
        return "\n".join(out) + "\n"


def _fmt(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else f"{x:.1f}" if abs(x) < 1e15 else repr(float(x))


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
