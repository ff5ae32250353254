"""How far a candidate model's answers are from the live model's, on the same inputs.

One report for three sources: a shadow running beside the live model (``GET /shadow``),
the shadow records of a request log (``nbdeploy compare LOG``), and a replay of a logged
day of requests through a candidate bundle offline (``nbdeploy compare --replay``).

Per row: labels (classification: strings, booleans, integers) agree when equal; floats
(regression) are compared by their absolute difference. The report keeps the rows where the two disagree most.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from pathlib import Path
from typing import Any

import orjson

#: rows kept in a report's ``worst`` list
WORST = 10
#: latencies kept per side for the percentiles (the most recent)
LATENCIES = 100_000
INFER_ENDPOINTS = frozenset({"invocations", "v2_infer"})
#: the types of a list of predictions that :meth:`Agreement.add` counts without looking at each row
#: when the two lists are equal (floats are not among them: NaN is not equal to itself, but a list
#: holding the same NaN object twice is equal to itself)
_LABELS = frozenset({int, str, bool})
_INT = {int}


class Agreement:
    """Running counts of a comparison: feed it pairs of answers with :meth:`add`."""

    def __init__(self, primary: str = "", candidate: str = "") -> None:
        self.primary = primary
        self.candidate = candidate
        self.requests = 0
        self.rows = 0
        self.equal = 0
        self.dropped = 0
        self.errors = 0
        self.error_examples: list[dict[str, Any]] = []
        self._numeric = True  # every pair compared so far was two numbers
        self._floats = False  # one of them was a float
        self._diff_sum = 0.0
        self._diff_max = 0.0
        self._latency: tuple[deque[float], deque[float]] = (deque(maxlen=LATENCIES), deque(maxlen=LATENCIES))
        self._worst: list[tuple[float, int, dict[str, Any]]] = []
        self._seq = itertools.count()

    def add(self, rid: str, primary: Any, candidate: Any, primary_ms: float | None = None,
            candidate_ms: float | None = None) -> None:
        """One request's answers (a list with one prediction per row, or a dict of output columns)."""
        if type(primary) is list and type(candidate) is list and primary == candidate:  # the usual pair: same labels
            kinds = set(map(type, primary))
            if kinds == set(map(type, candidate)) and kinds <= _LABELS:
                self._count(primary_ms, candidate_ms)
                n = len(primary)
                self.rows += n
                self.equal += n
                if n and kinds != _INT:  # strings or booleans: what the loop below finds of them
                    self._numeric = False
                return
        a, b = _rows(primary), _rows(candidate)
        if len(a) != len(b):
            self.error(rid, f"the candidate gave {len(b)} rows for {len(a)}")
            return
        self._count(primary_ms, candidate_ms)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            self.rows += 1
            same = x == y
            if same:
                self.equal += 1
            diff = _difference(x, y)
            if diff is None:
                self._numeric = False
                score = 0.0 if same else 1.0
            else:
                self._diff_sum += diff
                self._diff_max = max(self._diff_max, diff)
                self._floats = self._floats or _is_float(x) or _is_float(y)
                score = diff
            if score > 0:
                entry = {"id": rid, "row": i, "primary": x, "candidate": y}
                if diff is not None:
                    entry["difference"] = diff
                item = (score, -next(self._seq), entry)  # ties: the earliest row stays
                if len(self._worst) < WORST:
                    heapq.heappush(self._worst, item)
                elif item > self._worst[0]:
                    heapq.heapreplace(self._worst, item)

    def _count(self, primary_ms: float | None, candidate_ms: float | None) -> None:
        self.requests += 1
        if primary_ms is not None:
            self._latency[0].append(primary_ms)
        if candidate_ms is not None:
            self._latency[1].append(candidate_ms)

    def error(self, rid: str, message: str) -> None:
        self.errors += 1
        if len(self.error_examples) < 5:
            self.error_examples.append({"id": rid, "message": message})

    @property
    def kind(self) -> str:
        return "regression" if self.rows and self._numeric and self._floats else "classification"

    def report(self) -> dict[str, Any]:
        rows = self.rows
        doc: dict[str, Any] = {
            "primary": {"version": self.primary, "latency_ms": latency_summary(self._latency[0])},
            "candidate": {"version": self.candidate, "latency_ms": latency_summary(self._latency[1])},
            "requests": self.requests, "rows": rows, "dropped": self.dropped, "errors": self.errors,
            "kind": self.kind,
            "agreement": round(self.equal / rows, 6) if rows else None,
            "disagreeing_rows": rows - self.equal,
        }
        if self.kind == "regression":
            doc["mean_abs_diff"] = self._diff_sum / rows
            doc["max_abs_diff"] = self._diff_max
        doc["worst"] = [entry for _, _, entry in sorted(self._worst, reverse=True)]
        if self.error_examples:
            doc["error_examples"] = self.error_examples
        return doc


def latency_summary(values: Any) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    n = len(ordered)

    def pick(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))], 3)

    return {"p50": pick(0.5), "p95": pick(0.95), "p99": pick(0.99), "mean": round(sum(ordered) / n, 3)}


def _rows(outputs: Any) -> list[Any]:
    if isinstance(outputs, dict):  # output columns -> one dict per row
        names = list(outputs)
        columns = [outputs[k] if isinstance(outputs[k], list) else [outputs[k]] for k in names]
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=False)]
    return list(outputs) if isinstance(outputs, list | tuple) else [outputs]


def _difference(x: Any, y: Any) -> float | None:
    if isinstance(x, bool) or isinstance(y, bool):
        return None
    if isinstance(x, int | float) and isinstance(y, int | float):
        return abs(float(x) - float(y))
    if isinstance(x, list) and isinstance(y, list) and len(x) == len(y) and x:  # e.g. class probabilities
        diffs = [_difference(p, q) for p, q in zip(x, y, strict=True)]
        return max(diffs) if None not in diffs else None  # type: ignore[type-var]
    return None


def _is_float(x: Any) -> bool:
    return isinstance(x, float) or (isinstance(x, list) and any(isinstance(v, float) for v in x))


# -- request logs ---------------------------------------------------------------
def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a request log: the file, its rotated files (gzipped or not yet, oldest first),
    and the files of the other workers (``requests.<pid>.jsonl``) when ``path`` is the shared name."""
    from .logfiles import family_files, read_lines

    p = Path(path)
    files = family_files(p)
    if not files:
        from .errors import ServeError

        raise ServeError(f"no request log at {p}", hint="pass the file named by --log-path / NBDEPLOY_LOG_PATH")
    records = []
    for f in files:
        for line in read_lines(f):
            if line.strip():
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a line cut off by a killed server
                # the server writes objects naming their endpoint; anything else is not its record
                if isinstance(record, dict) and isinstance(record.get("endpoint"), str):
                    records.append(record)
    return records


def _ms(value: Any) -> float | None:
    """A logged latency, when it is a number."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def compare_log(path: str | Path) -> dict[str, Any]:
    """The agreement report of the shadow records in a request log (``nbdeploy compare LOG``)."""
    records = read_records(path)
    agreement = Agreement()
    inputs: dict[str, Any] = {}
    shadowed = 0
    for r in records:
        if r.get("endpoint") != "shadow":
            if r.get("endpoint") in INFER_ENDPOINTS and "inputs" in r:
                inputs[str(r.get("id"))] = r["inputs"]
            continue
        shadowed += 1
        primary = r.get("primary")
        if not isinstance(primary, dict):
            primary = {}
        agreement.primary = str(primary.get("version", agreement.primary))
        agreement.candidate = str(r.get("version", agreement.candidate))
        outcome = r.get("shadow")
        if outcome == "dropped":
            agreement.dropped += 1
        elif outcome == "error":
            agreement.error(str(r.get("id")), str(r.get("error")))
        elif "outputs" in r and "outputs" in primary:
            agreement.add(str(r.get("id")), primary["outputs"], r["outputs"], _ms(primary.get("latency_ms")),
                          _ms(r.get("latency_ms")))
    if not shadowed:
        from .errors import ServeError

        raise ServeError(f"{path} has no shadow records",
                         hint="serve with --shadow CANDIDATE, or compare offline with --replay LOG CANDIDATE")
    doc = agreement.report()
    _attach_inputs(doc, inputs)
    return doc


def replay(path: str | Path, candidate: str | Path, config: Any = None) -> dict[str, Any]:
    """Send every answered request of a request log to the ``candidate`` bundle (loaded here,
    its seal checked first) and compare its answers with the logged ones."""
    from .config import ServeConfig
    from .variant import open_variant

    config = config or ServeConfig()
    records = [r for r in read_records(path)
               if r.get("endpoint") in INFER_ENDPOINTS and r.get("status") == 200 and "inputs" in r
               and "outputs" in r]
    if not records:
        from .errors import ServeError

        raise ServeError(f"{path} has no answered requests with their inputs and outputs",
                         hint="the server logs them unless NBDEPLOY_LOG_PAYLOADS is off")
    variant = open_variant(candidate, config, None)
    agreement = Agreement(str(records[-1].get("version", "")), variant.version)
    inputs: dict[str, Any] = {}
    for r in records:
        rid = str(r.get("id"))
        inputs[rid] = r["inputs"]
        t0 = time.perf_counter()
        try:
            outputs = variant.predict_logged(r["inputs"])
        except Exception as e:
            agreement.error(rid, f"{type(e).__name__}: {getattr(e, 'message', e)}")
            continue
        agreement.add(rid, r["outputs"], outputs, _ms(r.get("latency_ms")), (time.perf_counter() - t0) * 1000)
    doc = agreement.report()
    _attach_inputs(doc, inputs)
    return doc


def _attach_inputs(doc: dict[str, Any], inputs: dict[str, Any]) -> None:
    """The input row of each of the worst rows, when the log has it."""
    for entry in doc["worst"]:
        given = inputs.get(entry["id"])
        if isinstance(given, dict) and "data" in given and entry["row"] < len(given["data"]):
            entry["inputs"] = dict(zip(given.get("columns") or [], given["data"][entry["row"]], strict=False))
        elif isinstance(given, list) and entry["row"] < len(given):
            entry["inputs"] = given[entry["row"]]


def text(doc: dict[str, Any], title: str = "") -> str:
    """The report as the CLI prints it."""
    p, c = doc["primary"], doc["candidate"]
    lines = [title or f"v{p['version']} (live) against v{c['version']} (candidate)"]
    lines.append(f"  requests compared {doc['requests']}, rows {doc['rows']}, dropped {doc['dropped']}, "
                 f"errors {doc['errors']}")
    if doc["agreement"] is not None:
        lines.append(f"  {doc['kind']}: {100 * doc['agreement']:.2f}% of rows equal "
                     f"({doc['disagreeing_rows']} differ)")
    if doc["kind"] == "regression":
        lines.append(f"  absolute difference: mean {doc['mean_abs_diff']:.6g}, max {doc['max_abs_diff']:.6g}")
    for side, what in ((p, "live"), (c, "candidate")):
        lat = side["latency_ms"]
        if lat:
            lines.append(f"  latency {what:9} p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms")
    if doc["worst"]:
        lines.append("  rows that disagree most:")
        for w in doc["worst"]:
            diff = f" (|diff| {w['difference']:.6g})" if "difference" in w else ""
            lines.append(f"    {w['id']} row {w['row']}: live {w['primary']!r}, candidate {w['candidate']!r}{diff}"
                         + (f"  inputs {w['inputs']}" if "inputs" in w else ""))
    for e in doc.get("error_examples", []):
        lines.append(f"  error {e['id']}: {e['message']}")
    return "\n".join(lines)
