"""Live accuracy (classification) or MAE and RMSE (regression) of each version, against the
metric the notebook recorded at training.

Computed from a :class:`.feedback.Ledger` (labels joined to logged answers), so
``GET /performance`` and ``nbdeploy performance LOG`` are the same table. A prediction equals
its label when they are equal as values, or as text for a label that arrived as text (a CSV
of labels: ``"1"`` is the class ``1``); a number is compared with a label that is a number
(or parses as one) by its absolute error.
"""

from __future__ import annotations

import math
from typing import Any

from .compare import _rows

#: the names a notebook's training metric goes by, after an optional test_/val_ prefix
_NAMES = {
    "accuracy": ("accuracy", "acc", "accuracy_score"),
    "mae": ("mae", "mean_absolute_error"),
    "rmse": ("rmse", "root_mean_squared_error"),
    "mse": ("mse", "mean_squared_error"),
}
_PREFIXES = ("", "test_", "test.", "val_", "valid_", "validation_", "eval_", "holdout_")


class Score:
    """Running counts for one version: requests and rows labelled, equal rows, errors."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.roles: set[str] = set()
        self.requests = 0
        self.rows = 0
        self.equal = 0
        self.numeric_rows = 0
        self.abs_sum = 0.0
        self.sq_sum = 0.0
        self.floats = False
        self.mismatched = 0
        self.unscorable = 0

    def add(self, label: Any, outputs: Any) -> None:
        predictions = _rows(outputs)
        labels = label if isinstance(label, list) else [label]
        if len(predictions) != len(labels):
            self.mismatched += 1
            return
        self.requests += 1
        for p, y in zip(predictions, labels, strict=True):
            if isinstance(p, dict) and len(p) == 1:  # one named output column
                p = next(iter(p.values()))
            if isinstance(p, dict | list):
                self.unscorable += 1  # several outputs, or class probabilities: no one value to compare
                continue
            self.rows += 1
            self.equal += _same(p, y)
            err = _error(p, y)
            if err is not None:
                self.numeric_rows += 1
                self.abs_sum += err
                self.sq_sum += err * err
                self.floats = self.floats or isinstance(p, float)

    def kind(self, training: dict[str, Any]) -> str:
        named = {_base(k) for k in training}
        if "accuracy" in named:
            return "classification"
        if named & {"mae", "rmse", "mse"}:
            return "regression"
        return "regression" if self.rows and self.numeric_rows == self.rows and self.floats else "classification"

    def doc(self, training: dict[str, Any]) -> dict[str, Any]:
        kind = self.kind(training)
        live: dict[str, float | None] = {}
        if kind == "classification":
            live["accuracy"] = round(self.equal / self.rows, 6) if self.rows else None
        else:
            n = self.numeric_rows
            live["mae"] = self.abs_sum / n if n else None
            live["rmse"] = math.sqrt(self.sq_sum / n) if n else None
        recorded = _training_values(training, list(live))
        out: dict[str, Any] = {
            "version": self.version, "served_as": sorted(self.roles), "kind": kind,
            "labelled_requests": self.requests, "labelled_rows": self.rows,
            "live": live, "training": {k: v for k, (v, _) in recorded.items()},
            "training_metric_names": {k: name for k, (_, name) in recorded.items()},
            "change": {k: live[k] - v for k, (v, _) in recorded.items()  # type: ignore[operator]
                       if live.get(k) is not None},
        }
        if self.mismatched:
            out["mismatched_requests"] = self.mismatched
        if self.unscorable:
            out["unscorable_rows"] = self.unscorable
        return out


def report(ledger: Any, training: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per version: labelled requests and rows, the live metric, the training one, the change.
    ``ledger``: a :class:`.feedback.Ledger` (its ``labels``, ``answers`` and ``training``)."""
    scores: dict[str, Score] = {}
    joined = 0
    for rid, label in ledger.labels.items():
        answers = ledger.answers.get(rid)
        if not answers:
            continue
        joined += 1
        for version, role, outputs in answers:
            score = scores.get(version)
            if score is None:
                score = scores[version] = Score(version)
            score.roles.add(role)
            score.add(label, outputs)
    known = {**ledger.training, **(training or {})}
    return {
        "labels": len(ledger.labels), "joined": joined, "unjoined": len(ledger.labels) - joined,
        "versions": [scores[v].doc(known.get(v) or {}) for v in sorted(scores, key=_version_key)],
    }


def text(doc: dict[str, Any], title: str = "") -> str:
    """The report as the CLI and the notebook print it."""
    lines = [title or "performance against the labels sent back"]
    lines.append(f"  labels {doc['labels']}, joined to a logged answer {doc['joined']}, "
                 f"not found in the log {doc['unjoined']}")
    if not doc["versions"]:
        lines.append("  no labelled answers yet")
    for v in doc["versions"]:
        lines.append(f"  v{v['version']} ({', '.join(v['served_as'])}) {v['kind']}: "
                     f"{v['labelled_rows']} labelled rows in {v['labelled_requests']} requests")
        for name, value in v["live"].items():
            trained = v["training"].get(name)
            change = v["change"].get(name)
            lines.append(f"    {name:8} live {_fmt(value)}   training {_fmt(trained)}"
                         + (f"   change {change:+.4g}" if change is not None else "")
                         + ("" if trained is not None else "   (the bundle recorded no such metric)"))
        for key in ("mismatched_requests", "unscorable_rows"):
            if v.get(key):
                lines.append(f"    {key.replace('_', ' ')}: {v[key]}")
    return "\n".join(lines)


def _same(p: Any, y: Any) -> bool:
    if isinstance(p, bool) or isinstance(y, bool):  # True is not the class 1, but it is "true"
        return p == y if isinstance(p, bool) and isinstance(y, bool) else str(p).lower() == str(y).lower()
    if p == y:
        return True
    if isinstance(p, str) != isinstance(y, str):  # one side arrived as text: "1" and 1, "2.5" and 2.5
        try:
            return float(p) == float(y)
        except (TypeError, ValueError):
            return False
    return False


def _error(p: Any, y: Any) -> float | None:
    if isinstance(p, bool) or isinstance(y, bool) or not isinstance(p, int | float):
        return None
    if isinstance(y, str):
        try:
            y = float(y)
        except ValueError:
            return None
    if not isinstance(y, int | float):
        return None
    return abs(float(p) - float(y))


def _base(name: str) -> str | None:
    low = name.lower()
    for prefix in _PREFIXES:
        if low.startswith(prefix):
            rest = low[len(prefix):]
            for base, names in _NAMES.items():
                if rest in names:
                    return base
    return None


def _training_values(training: dict[str, Any], wanted: list[str]) -> dict[str, tuple[float, str]]:
    """The recorded metric for each wanted one (an unprefixed name first), with the name it had;
    RMSE from a recorded MSE when that is all there is."""
    found: dict[str, tuple[float, str]] = {}
    for prefix in _PREFIXES:
        for name, value in training.items():
            base = _base(name)
            low = name.lower()
            if base is None or not low.startswith(prefix) or low[len(prefix):] not in _NAMES[base]:
                continue
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                continue
            if base in wanted and base not in found:
                found[base] = (float(value), name)
            elif base == "mse" and "rmse" in wanted and "rmse" not in found and value >= 0:
                found["rmse"] = (math.sqrt(value), f"sqrt({name})")
    return found


def _version_key(v: str) -> tuple[int, Any]:
    return (0, int(v)) if v.isdigit() else (1, v)


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{x:.4g}"
