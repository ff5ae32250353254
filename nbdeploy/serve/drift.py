"""Drift of the served inputs against the training profile: per column, the population stability index.

Every predicted batch adds its rows to per-column counts in the training profile's own
buckets (gathered, and counted a few thousand rows at a time or when a report is asked
for): for a number, the 20 bins of its training histogram plus "below the training
minimum", "above the maximum" and "null"; for a category (or boolean), each of its
most frequent training values, "any other value" and "null". ``report()`` compares the
served shares with the training shares:

    PSI = sum over buckets of (served - training) * ln(served / training)

(shares floored at 1e-4 so that an empty bucket counts without dividing by zero). The
usual reading: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 drift.

The counts cover the most recent rows: two generations of ``window`` rows each are kept,
and when the newer one is full the older is dropped, so a report is over the last
``window`` to ``2 * window`` rows served. With several workers each keeps its own
counts and a report sums them (see metrics.py).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from typing import Any

import numpy as np

#: shares below this are taken as this, so an empty bucket adds a finite amount
FLOOR = 1e-4
MODERATE, DRIFT = 0.1, 0.25
#: fewer served rows than this: the report says "insufficient" rather than a status
MIN_ROWS = 100
#: why a free-text input has no drift measure (its training profile has kind "text")
TEXT_NOT_MEASURED = ("free text: almost every value is new, so shares of values say nothing; the "
                     "prediction's drift (`nbdeploy drift BUNDLE --log ...`) is the measure for a text model")


class _Numeric:
    def __init__(self, stats: dict[str, Any]) -> None:
        hist = stats["histogram"]
        # the training edges, the last one moved up by one ulp so that the last bin is closed
        self._edges = np.asarray(hist["edges"], dtype=np.float64)
        self._edges[-1] = np.nextafter(self._edges[-1], np.inf)
        counts = np.asarray(hist["counts"], dtype=np.float64)
        nulls, present = float(stats.get("nulls") or 0), float(stats.get("count") or counts.sum())
        total = present + nulls
        # training shares: the bins (over the rows present), none below or above, then the nulls
        shares = counts / counts.sum() * (present / total) if counts.sum() else counts
        self.expected = np.concatenate([[0.0], shares, [0.0], [nulls / total if total else 0.0]])
        self.mean = stats.get("mean")
        self.size = len(self.expected)

    def counts(self, x: np.ndarray) -> tuple[np.ndarray, float, int]:
        """Bucket counts of ``x`` (nan = null), and the sum and number of its non-null values."""
        # searchsorted over the edges, the last one moved up by one ulp: below the minimum -> 0,
        # bin i -> i + 1 (the last bin closed, as np.histogram's), above the maximum and nan -> bins + 1
        counts = np.bincount(self._edges.searchsorted(x, side="right"), minlength=self.size)
        null = np.isnan(x)
        nulls = int(np.count_nonzero(null))
        if not nulls:
            return counts, float(x.sum()), int(x.size)
        counts[-2] -= nulls
        counts[-1] = nulls
        return counts, float(x[~null].sum()), int(x.size) - nulls

    def detail(self, served: np.ndarray, sums: tuple[float, int]) -> dict[str, Any]:
        rows = served.sum()
        total, n = sums
        return {
            "training_mean": self.mean, "served_mean": total / n if n else None,
            "below_training_min": _share(served[0], rows), "above_training_max": _share(served[-2], rows),
            "null_share": {"training": round(float(self.expected[-1]), 6), "served": _share(served[-1], rows)},
        }


class _Categories:
    def __init__(self, stats: dict[str, Any]) -> None:
        top = stats.get("top") or []
        self.values = [t["value"] for t in top]
        self.index = {_key(v): i for i, v in enumerate(self.values)}
        present, nulls = float(stats.get("count") or 0), float(stats.get("nulls") or 0)
        total = present + nulls
        listed = [float(t["count"]) for t in top]
        other = max(present - sum(listed), 0.0)
        self.expected = np.asarray([*listed, other, nulls], dtype=np.float64) / (total or 1.0)
        self.size = len(self.expected)

    def counts(self, values: list[Any]) -> np.ndarray:
        out = np.zeros(self.size, dtype=np.int64)
        other, null = self.size - 2, self.size - 1
        for v, c in Counter(values).items():
            out[null if v is None else self.index.get(_key(v), other)] += c
        return out

    def detail(self, served: np.ndarray, sums: tuple[float, int]) -> dict[str, Any]:
        rows = served.sum()
        names = [*map(_plain, self.values), "(other values)"]
        shifts = [{"value": v, "training": round(float(e), 6), "served": _share(s, rows)}
                  for v, e, s in zip(names, self.expected[:-1], served[:-1], strict=True)]
        shifts.sort(key=lambda d: -abs((d["served"] or 0) - d["training"]))
        return {"largest_shifts": shifts[:5],
                "null_share": {"training": round(float(self.expected[-1]), 6), "served": _share(served[-1], rows)}}


def _key(v: Any) -> Any:
    return ("bool", v) if isinstance(v, bool) else v  # True is not the category 1


def _plain(v: Any) -> Any:
    return v if isinstance(v, str | int | float | bool) or v is None else str(v)


def _share(count: Any, rows: Any) -> float | None:
    return round(float(count) / float(rows), 6) if rows else None


def psi(expected: np.ndarray, served: np.ndarray) -> float:
    """Population stability index of served counts against expected shares."""
    rows = served.sum()
    if not rows:
        return 0.0
    e = np.maximum(expected, FLOOR)
    a = np.maximum(served / rows, FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def text_columns(stats: dict[str, Any], names: list[str]) -> list[str]:
    """The inputs among ``names`` the training profile ``stats`` holds as free text (no drift measure)."""
    return [n for n in names if (stats.get(n) or {}).get("kind") == "text"]


def status_of(value: float, rows: int) -> str:
    if rows < MIN_ROWS:
        return "insufficient"
    return "drift" if value >= DRIFT else "moderate" if value >= MODERATE else "ok"


class Drift:
    """Per-column served counts in the training buckets, over the most recent rows."""

    def __init__(self, profile: dict[str, Any] | None, columns: list[str], window: int = 10_000) -> None:
        self.profile = profile
        stats = ((profile or {}).get("columns") or {})
        self.columns: dict[str, _Numeric | _Categories] = {}
        #: free-text inputs: no bucket to count their values in (each review is its own value)
        self.text_columns = text_columns(stats, columns)
        for name in columns:
            s = stats.get(name)
            if not s:
                continue
            if s.get("kind") == "numeric" and (s.get("histogram") or {}).get("counts"):
                self.columns[name] = _Numeric(s)
            elif s.get("kind") in ("categorical", "boolean") and s.get("top"):
                self.columns[name] = _Categories(s)
        self.window = window
        self.since = time.time()
        # observe() runs where predict runs (a thread, or the event loop), report() on the loop
        self._lock = threading.Lock()
        self.reset()

    def empty_like(self) -> Drift:
        """The same columns and buckets with no rows (to sum several workers' counts into)."""
        other = Drift.__new__(Drift)
        other.columns, other.window, other.since = self.columns, self.window, self.since
        other.text_columns = self.text_columns
        other.profile = self.profile
        other._lock = threading.Lock()
        other.reset()
        return other

    def reset(self) -> None:
        self._old: dict[str, Any] = self._empty()
        self._new: dict[str, Any] = self._empty()
        # rows observed but not yet counted: counting a batch of one row costs as much as one of
        # thousands, so batches are gathered and counted together
        self._pending: dict[str, list[Any]] = {n: [] for n in self.columns}
        self._pending_rows = 0

    def _empty(self) -> dict[str, Any]:
        return {"rows": 0, "counts": {n: np.zeros(c.size, dtype=np.int64) for n, c in self.columns.items()},
                "sums": {n: [0.0, 0] for n, c in self.columns.items() if isinstance(c, _Numeric)}}

    def observe(self, merged: dict[str, list[Any]], rows: int) -> None:
        """Add the rows of a predicted batch (columns of plain values, as validated)."""
        if not self.columns or not rows:
            return
        with self._lock:
            pending = self._pending
            for name in self.columns:
                values = merged.get(name)
                if values is not None:
                    pending[name] += values
            self._pending_rows += rows
            # counted by the time the newer generation is full, so generations end where they would
            if self._pending_rows >= min(self.CHUNK, self.window - self._new["rows"]):
                self._count()

    #: observed rows are counted once this many are waiting (or the newer generation is full)
    CHUNK = 4096

    def _count(self) -> None:
        """Count the pending rows into the newer generation (the lock is held)."""
        new, pending = self._new, self._pending
        for name, col in self.columns.items():
            values = pending[name]
            if not values:
                continue
            if isinstance(col, _Numeric):
                counts, total, n = col.counts(np.asarray(values, dtype=np.float64))  # None -> nan
                new["counts"][name] += counts
                s = new["sums"][name]
                s[0] += total
                s[1] += n
            else:
                new["counts"][name] += col.counts(values)
            pending[name] = []
        new["rows"] += self._pending_rows
        self._pending_rows = 0
        if new["rows"] >= self.window:
            self._old, self._new = new, self._empty()

    def _counted(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Both generations with every observed row counted."""
        with self._lock:
            if self._pending_rows:
                self._count()
            return self._old, self._new

    def served(self) -> tuple[int, dict[str, np.ndarray], float]:
        """(rows, per column the served counts in its buckets, since): what the HTML report reads."""
        old, new = self._counted()
        return (old["rows"] + new["rows"], {n: old["counts"][n] + new["counts"][n] for n in self.columns},
                self.since)

    # -- several workers ------------------------------------------------------
    def state(self) -> dict[str, Any]:
        def plain(g: dict[str, Any]) -> dict[str, Any]:
            return {"rows": g["rows"], "counts": {n: c.tolist() for n, c in g["counts"].items()},
                    "sums": {n: list(s) for n, s in g["sums"].items()}}

        old, new = self._counted()
        return {"since": self.since, "old": plain(old), "new": plain(new)}

    def add(self, state: dict[str, Any]) -> None:
        """Add another worker's counts (both its generations into this one's newer one)."""
        self.since = min(self.since, float(state.get("since", self.since)))
        self._counted()
        for g in (state["old"], state["new"]):
            self._new["rows"] += g["rows"]
            for n, c in g["counts"].items():
                if n in self._new["counts"] and len(c) == len(self._new["counts"][n]):
                    self._new["counts"][n] += np.asarray(c, dtype=np.int64)
            for n, (total, count) in g["sums"].items():
                if n in self._new["sums"]:
                    self._new["sums"][n][0] += total
                    self._new["sums"][n][1] += count

    # -- the report -----------------------------------------------------------
    def report(self) -> dict[str, Any]:
        old, new = self._counted()
        rows = old["rows"] + new["rows"]
        out = []
        for name, col in self.columns.items():
            served = old["counts"][name] + new["counts"][name]
            value = psi(col.expected, served)
            sums = (0.0, 0)
            if name in new["sums"]:
                sums = (old["sums"][name][0] + new["sums"][name][0], old["sums"][name][1] + new["sums"][name][1])
            out.append({"field": name, "kind": "numeric" if isinstance(col, _Numeric) else "categorical",
                        "psi": round(value, 6) if math.isfinite(value) else None,
                        "status": status_of(value, rows), **col.detail(served, sums)})
        order = {"drift": 0, "moderate": 1, "ok": 2, "insufficient": 3}
        out.sort(key=lambda d: (order[d["status"]], -(d["psi"] or 0)))
        statuses = {d["status"] for d in out}
        overall = ("insufficient" if rows < MIN_ROWS or not out else
                   "drift" if "drift" in statuses else "moderate" if "moderate" in statuses else "ok")
        return {"rows": rows, "since": self.since, "window": self.window, "status": overall,
                "thresholds": {"moderate": MODERATE, "drift": DRIFT, "min_rows": MIN_ROWS},
                "drifted": [d["field"] for d in out if d["status"] == "drift"], "columns": out,
                "not_measured": [{"field": n, "why": TEXT_NOT_MEASURED} for n in self.text_columns]}
