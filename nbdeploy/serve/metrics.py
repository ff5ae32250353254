"""Prometheus metrics, kept in plain dicts and rendered in the text exposition format.

With ``--workers N`` every worker process keeps its own counts and writes a snapshot of
them (JSON, replaced atomically) into a folder the workers share, once a second and on
every scrape; a scrape then answers with the sum over all workers, whichever worker it
reaches. Counts of a worker that has exited stay in the sums (counters never go
down); its in-flight requests do not.
"""

from __future__ import annotations

import bisect
import gc
import os
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .logfiles import pid_alive

if TYPE_CHECKING:
    from .drift import Drift
    from .requestlog import RequestLog

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
VALUE_BUCKETS = (-1e6, -1e3, -100.0, -10.0, -1.0, 0.0, 0.25, 0.5, 0.75, 1.0, 10.0, 100.0, 1e3, 1e6)
#: distinct class labels tracked in nbdeploy_predictions_total before lumping into "other"
MAX_LABELS = 50
#: label arrays up to this size are counted in Python (a canary's few rows a batch, a live batch at c=64)
SMALL_LABELS = 128
FORMAT = "nbdeploy.metrics/1"
_DROP_REASONS = ("retention", "write_error", "worker_died")


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

    def observe_array(self, values: Any) -> None:
        """Every value of a 1-D float array at once (the same buckets as ``observe``)."""
        import numpy as np

        index = np.searchsorted(self.buckets, values, side="left")
        per_bucket = np.bincount(index, minlength=len(self.buckets) + 1)
        for i, c in enumerate(per_bucket[: len(self.counts)].tolist()):
            self.counts[i] += c
        self.sum += float(values.sum())
        self.count += int(values.size)

    def state(self) -> list[Any]:
        return [list(self.counts), self.sum, self.count]

    def add(self, state: list[Any]) -> None:
        counts, total, count = state
        if len(counts) == len(self.counts):
            self.counts = [a + b for a, b in zip(self.counts, counts, strict=True)]
            self.sum += total
            self.count += count

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out, running = [], 0
        for bound, c in zip(self.buckets, self.counts, strict=True):
            running += c
            out.append(f'{name}_bucket{{{labels}{sep}le="{_fmt(bound)}"}} {running}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        braces = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{braces} {_fmt(self.sum)}")
        out.append(f"{name}_count{braces} {self.count}")
        return out


class Metrics:
    def __init__(self) -> None:
        #: request latency per (endpoint, status); its count is the request counter
        self.latency: dict[tuple[str, int], Histogram] = {}
        #: the same per (version, endpoint, status); kept only with a canary or a shadow
        self.by_version: dict[tuple[str, str, int], Histogram] = {}
        self.batch_rows = Histogram(BATCH_BUCKETS)
        self.batch_requests = Histogram(BATCH_BUCKETS)
        self.predict_seconds = Histogram(LATENCY_BUCKETS)
        self.prediction_values = Histogram(VALUE_BUCKETS)
        self.prediction_labels: dict[str, int] = {}
        self.validation_failures: dict[tuple[str, str], int] = {}
        self.out_of_range: dict[tuple[str, str], int] = {}
        self.model_errors = 0
        self.inflight = 0
        self.workers = 1
        #: the folder the workers share their snapshots in (None: this process only)
        self.shared: Path | None = None
        #: served inputs against the training profile (None without a profile)
        self.drift: Drift | None = None
        #: this process's request log (None: no log)
        self.log: RequestLog | None = None
        #: request-log records written and dropped (by reason), and logs failing now: of the other workers
        self.log_written = 0
        self.log_searched = 0
        self.log_dropped = dict.fromkeys(_DROP_REASONS, 0)
        self.logs_failing = 0
        self.logs = 0

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        h = self.latency.get((endpoint, status))
        if h is None:
            h = self.latency[(endpoint, status)] = Histogram(LATENCY_BUCKETS)
        h.observe(seconds)

    def version_request(self, version: str, endpoint: str, status: int, seconds: float) -> None:
        """A request counted as :meth:`request` counts it and, the same, under the version that
        answered (with a canary or a shadow): one bucket search for both histograms."""
        h = self.latency.get((endpoint, status))
        if h is None:
            h = self.latency[(endpoint, status)] = Histogram(LATENCY_BUCKETS)
        v = self.by_version.get((version, endpoint, status))
        if v is None:
            v = self.by_version[(version, endpoint, status)] = Histogram(LATENCY_BUCKETS)
        i = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        if i < len(LATENCY_BUCKETS):
            h.counts[i] += 1
            v.counts[i] += 1
        h.sum += seconds
        h.count += 1
        v.sum += seconds
        v.count += 1

    def batch(self, rows: int, requests: int, seconds: float) -> None:
        self.batch_rows.observe(rows)
        self.batch_requests.observe(requests)
        self.predict_seconds.observe(seconds)

    def outputs(self, raw: Any) -> None:
        """A batch's predictions: numbers go to a histogram, labels (ints, strings, bools) are
        counted up to MAX_LABELS. Tables of outputs (several columns per row) are not counted."""
        np = sys.modules.get("numpy")
        if np is not None and isinstance(raw, np.ndarray) and raw.ndim == 1:
            if raw.dtype.kind == "f":
                self.prediction_values.observe_array(raw)
                return
            if raw.dtype.kind in "biu":
                if raw.size <= SMALL_LABELS:  # np.unique's fixed cost (~8 us) is most of a small batch's count
                    self._labels(sorted(Counter(raw.tolist()).items()))  # in np.unique's order
                    return
                values, counts = np.unique(raw, return_counts=True)
                self._labels(zip(values.tolist(), counts.tolist(), strict=True))
                return
            raw = raw.tolist()
        pd = sys.modules.get("pandas")
        if pd is not None and isinstance(raw, pd.Series):
            raw = raw.tolist()
        if isinstance(raw, list | tuple):
            self.predictions(raw)

    def predictions(self, values: list[Any] | tuple[Any, ...]) -> None:
        counts: dict[str, int] = {}
        for v in values:
            if isinstance(v, float):
                self.prediction_values.observe(v)
            elif not isinstance(v, list | dict):
                label = str(v)
                counts[label] = counts.get(label, 0) + 1
        self._labels(counts.items())

    def _labels(self, counted: Any) -> None:
        labels = self.prediction_labels
        for value, n in counted:
            label = str(value)
            if label not in labels and len(labels) >= MAX_LABELS:
                label = "other"
            labels[label] = labels.get(label, 0) + n

    def validation_failure(self, field: str, problem: str) -> None:
        key = (field, problem)
        self.validation_failures[key] = self.validation_failures.get(key, 0) + 1

    def flagged(self, field: str, kind: str, count: int) -> None:
        key = (field, kind)
        self.out_of_range[key] = self.out_of_range.get(key, 0) + count

    # -- several workers ------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """This process's counts as JSON-able data (what a worker shares)."""
        return {
            "format": FORMAT, "pid": os.getpid(),
            "latency": [[ep, st, h.state()] for (ep, st), h in self.latency.items()],
            "by_version": [[v, ep, st, h.state()] for (v, ep, st), h in self.by_version.items()],
            "batch_rows": self.batch_rows.state(), "batch_requests": self.batch_requests.state(),
            "predict_seconds": self.predict_seconds.state(), "prediction_values": self.prediction_values.state(),
            "prediction_labels": self.prediction_labels,
            "validation_failures": [[f, p, n] for (f, p), n in self.validation_failures.items()],
            "out_of_range": [[f, k, n] for (f, k), n in self.out_of_range.items()],
            "model_errors": self.model_errors, "inflight": self.inflight,
            "drift": self.drift.state() if self.drift is not None else None,
            "log": self._log_state(),
        }

    def _log_state(self) -> dict[str, Any] | None:
        log = self.log
        if log is None:
            return None
        return {"written": log.written, "searched": log.searched, "dropped": dict(log.dropped),
                "failing": 0 if log.ok else 1}

    def add(self, state: dict[str, Any], alive: bool = True) -> None:
        """Add another worker's counts to these (its in-flight requests only if it is alive)."""
        for ep, st, h in state["latency"]:
            mine = self.latency.get((ep, st))
            if mine is None:
                mine = self.latency[(ep, st)] = Histogram(LATENCY_BUCKETS)
            mine.add(h)
        for v, ep, st, h in state.get("by_version", []):
            mine = self.by_version.get((v, ep, st))
            if mine is None:
                mine = self.by_version[(v, ep, st)] = Histogram(LATENCY_BUCKETS)
            mine.add(h)
        for name in ("batch_rows", "batch_requests", "predict_seconds", "prediction_values"):
            getattr(self, name).add(state[name])
        self._labels(state["prediction_labels"].items())
        for f, p, n in state["validation_failures"]:
            self.validation_failures[(f, p)] = self.validation_failures.get((f, p), 0) + n
        for f, k, n in state["out_of_range"]:
            self.flagged(f, k, n)
        self.model_errors += state["model_errors"]
        if self.drift is not None and state.get("drift"):
            self.drift.add(state["drift"])
        log = state.get("log")
        if log:
            self.log_written += log["written"]
            self.log_searched += log["searched"]
            for reason, n in log["dropped"].items():
                self.log_dropped[reason] = self.log_dropped.get(reason, 0) + n
            if alive:
                self.logs_failing += log["failing"]
                self.logs += 1
        if alive:
            self.inflight += state["inflight"]
            self.workers += 1

    def share(self) -> None:
        """Write this worker's snapshot into the shared folder (atomically)."""
        if self.shared is None:
            return
        import orjson

        path = self.shared / f"{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self.state()))
        os.replace(tmp, path)

    def combined(self) -> Metrics:
        """This worker's counts plus every other worker's latest snapshot."""
        if self.shared is None:
            return self
        import orjson

        self.share()
        total = Metrics()
        total.workers = 0
        total.drift = self.drift.empty_like() if self.drift is not None else None
        for path in sorted(self.shared.glob("*.json")):
            try:
                state = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue  # a worker's file that vanished: nothing to add
            if not isinstance(state, dict) or state.get("format") != FORMAT:
                continue
            total.add(state, alive=pid_alive(int(state["pid"])))
        total.log_dropped["worker_died"] += self.lost_by_dead_workers()
        return total

    def lost_by_dead_workers(self) -> int:
        """Request-log records that workers killed before writing them lost (their requests in flight and
        their queued lines), from the counters each worker keeps in the shared folder."""
        from .requestlog import LOG_COUNTERS_SUFFIX, lost_by

        if self.shared is None:
            return 0
        lost = 0
        for path in self.shared.glob(f"*{LOG_COUNTERS_SUFFIX}"):
            pid = path.name[: -len(LOG_COUNTERS_SUFFIX)]
            if pid.isdigit() and not pid_alive(int(pid)):
                lost += lost_by(path)
        return lost

    def _local_log(self) -> None:
        """This process's log counts (a single process: there is no shared snapshot to add)."""
        state = self._log_state()
        if state is not None:
            self.log_written, self.logs, self.logs_failing = state["written"], 1, state["failing"]
            self.log_searched = state["searched"]
            self.log_dropped = {**dict.fromkeys(_DROP_REASONS, 0), **state["dropped"]}

    # -- exposition -----------------------------------------------------------
    def render(self) -> str:
        m = self.combined()
        if m is self:
            self._local_log()
        out = [
            "# HELP nbdeploy_requests_total HTTP requests by endpoint and status.",
            "# TYPE nbdeploy_requests_total counter",
        ]
        for (ep, st), h in sorted(m.latency.items()):
            out.append(f'nbdeploy_requests_total{{endpoint="{ep}",status="{st}"}} {h.count}')
        out += [
            "# HELP nbdeploy_request_duration_seconds Request latency by endpoint and status.",
            "# TYPE nbdeploy_request_duration_seconds histogram",
        ]
        for (ep, st), h in sorted(m.latency.items()):
            out += h.lines("nbdeploy_request_duration_seconds", f'endpoint="{ep}",status="{st}"')
        if m.by_version:
            out += [
                "# HELP nbdeploy_version_requests_total HTTP requests by the model version that answered.",
                "# TYPE nbdeploy_version_requests_total counter",
                *(f'nbdeploy_version_requests_total{{version="{_esc(v)}",endpoint="{ep}",status="{st}"}} {h.count}'
                  for (v, ep, st), h in sorted(m.by_version.items())),
                "# HELP nbdeploy_version_request_duration_seconds Request latency by the model version that answered.",
                "# TYPE nbdeploy_version_request_duration_seconds histogram",
            ]
            for (v, ep, st), h in sorted(m.by_version.items()):
                out += h.lines("nbdeploy_version_request_duration_seconds",
                               f'version="{_esc(v)}",endpoint="{ep}",status="{st}"')
        for name, h, text in (
            ("nbdeploy_batch_rows", m.batch_rows, "Rows per predict call."),
            ("nbdeploy_batch_requests", m.batch_requests, "Requests coalesced per predict call."),
            ("nbdeploy_predict_duration_seconds", m.predict_seconds, "Time in the model's predict."),
            ("nbdeploy_prediction_value", m.prediction_values, "Numeric predictions."),
        ):
            out += [f"# HELP {name} {text}", f"# TYPE {name} histogram", *h.lines(name, "")]
        out += [
            "# HELP nbdeploy_predictions_total Predicted labels (non-numeric or integer classes).",
            "# TYPE nbdeploy_predictions_total counter",
        ]
        for label, n in sorted(m.prediction_labels.items()):
            out.append(f'nbdeploy_predictions_total{{label="{_esc(label)}"}} {n}')
        out += [
            "# HELP nbdeploy_validation_failures_total Rejected fields by problem.",
            "# TYPE nbdeploy_validation_failures_total counter",
        ]
        for (f, p), n in sorted(m.validation_failures.items()):
            out.append(f'nbdeploy_validation_failures_total{{field="{_esc(f)}",problem="{p}"}} {n}')
        out += [
            "# HELP nbdeploy_out_of_range_total Accepted values outside the training profile.",
            "# TYPE nbdeploy_out_of_range_total counter",
        ]
        for (f, k), n in sorted(m.out_of_range.items()):
            out.append(f'nbdeploy_out_of_range_total{{field="{_esc(f)}",kind="{k}"}} {n}')
        out += [
            "# HELP nbdeploy_model_errors_total Exceptions raised by the model.",
            "# TYPE nbdeploy_model_errors_total counter",
            f"nbdeploy_model_errors_total {m.model_errors}",
            "# HELP nbdeploy_inflight_requests Requests being handled.",
            "# TYPE nbdeploy_inflight_requests gauge",
            f"nbdeploy_inflight_requests {m.inflight}",
            "# HELP nbdeploy_workers Worker processes serving (whose counts are summed here).",
            "# TYPE nbdeploy_workers gauge",
            f"nbdeploy_workers {m.workers}",
        ]
        if m.logs or any(m.log_dropped.values()):
            out += [
                "# HELP nbdeploy_requestlog_records_total Request-log records written.",
                "# TYPE nbdeploy_requestlog_records_total counter",
                f"nbdeploy_requestlog_records_total {m.log_written}",
                "# HELP nbdeploy_requestlog_searched_total Request-log records searched for secrets before "
                "writing: those holding a client's values that validation did not prove to be numbers or "
                "training categories.",
                "# TYPE nbdeploy_requestlog_searched_total counter",
                f"nbdeploy_requestlog_searched_total {m.log_searched}",
                "# HELP nbdeploy_requestlog_dropped_total Request-log records lost: deleted by retention "
                "(--log-keep), not writable (disk full, read-only), or lost with a killed worker.",
                "# TYPE nbdeploy_requestlog_dropped_total counter",
                *(f'nbdeploy_requestlog_dropped_total{{reason="{r}"}} {n}' for r, n in sorted(m.log_dropped.items())),
                "# HELP nbdeploy_requestlog_failing Request logs failing now (cannot write, rotate or compress; "
                "see /health).",
                "# TYPE nbdeploy_requestlog_failing gauge",
                f"nbdeploy_requestlog_failing {m.logs_failing}",
            ]
        out += _gc_lines()
        if m.drift is not None and m.drift.columns:
            report = m.drift.report()
            out += [
                "# HELP nbdeploy_drift_psi Population stability index of served inputs against training (see /drift).",
                "# TYPE nbdeploy_drift_psi gauge",
                *(f'nbdeploy_drift_psi{{field="{_esc(c["field"])}"}} {c["psi"]}' for c in report["columns"]
                  if c["psi"] is not None),
                "# HELP nbdeploy_drift_rows Served rows the drift report covers.",
                "# TYPE nbdeploy_drift_rows gauge",
                f"nbdeploy_drift_rows {report['rows']}",
            ]
        return "\n".join(out) + "\n"


def _gc_lines() -> list[str]:
    """Python's cyclic garbage collector in the process that answers (named as prometheus_client names
    them). A request leaves nothing for it: what a request makes is freed when the request ends.
    A rising ``python_gc_objects_collected_total`` means something now builds reference cycles."""
    stats = gc.get_stats()
    return [
        "# HELP python_gc_objects_collected_total Objects the cyclic collector freed, by generation (this process).",
        "# TYPE python_gc_objects_collected_total counter",
        *(f'python_gc_objects_collected_total{{generation="{g}"}} {s["collected"]}' for g, s in enumerate(stats)),
        "# HELP python_gc_collections_total Runs of the cyclic collector, by generation (this process).",
        "# TYPE python_gc_collections_total counter",
        *(f'python_gc_collections_total{{generation="{g}"}} {s["collections"]}' for g, s in enumerate(stats)),
    ]


def _fmt(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else f"{x:.1f}" if abs(x) < 1e15 else repr(float(x))


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
