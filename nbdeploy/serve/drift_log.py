"""The served rows of a request log, counted per feature: what ``nbdeploy drift BUNDLE --log`` reads.

A log is the file the server writes (:mod:`.requestlog`), its rotated backups
(``NAME.1`` ... ``NAME.5``, also gzipped ``NAME.1.gz`` as logrotate leaves them), and the
files of the other workers (``NAME-STEM.<pid>.jsonl``); a folder means every log file in
it. Only answered predictions (``/invocations``, V2 ``infer``, status 200) with their
inputs count. Lines are parsed in chunks with one ``orjson.loads`` each, and every chunk
is reduced to per-column bucket counts and number arrays before the next is read, so a
log of millions of rows needs memory for its numbers only.
"""

from __future__ import annotations

import gzip
import io
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .drift import _Categories, _Numeric
from .errors import ServeError

INFER_ENDPOINTS = frozenset({"invocations", "v2_infer"})
#: lines parsed at once
CHUNK_LINES = 50_000
Buckets = _Numeric | _Categories


@dataclass
class Served:
    """Per feature, the served counts in its training buckets (and, for numbers, the values)."""

    files: list[str]
    records: int = 0
    requests: int = 0
    rows: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    models: Counter[str] = field(default_factory=Counter)
    columns_seen: Counter[tuple[str, ...]] = field(default_factory=Counter)
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    values: dict[str, list[np.ndarray]] = field(default_factory=dict)
    prediction_rows: int = 0
    prediction_skipped: int = 0

    def numbers(self, name: str) -> np.ndarray | None:
        parts = self.values.get(name)
        if parts is None:
            return None
        return np.concatenate(parts) if parts else np.zeros(0)


def log_files(path: str | Path) -> list[Path]:
    """The files of the request log at ``path`` (see the module docstring), oldest first."""
    p = Path(path).expanduser()
    if p.is_dir():
        return sorted(q for q in p.iterdir() if q.is_file() and ".jsonl" in q.name)
    found: list[Path] = []
    stems = [p.name]
    if p.suffix:  # the other workers' files: requests.<pid>.jsonl
        stems += sorted(q.name for q in p.parent.glob(f"{p.stem}.*{p.suffix}")
                        if q.name[len(p.stem) + 1:-len(p.suffix)].isdigit())
    for name in stems:
        base = p.with_name(name)
        backups = [q for q in p.parent.glob(name + ".*") if _backup_number(q, name) is not None]
        found += sorted(backups, key=lambda q: -(_backup_number(q, name) or 0))
        if base.is_file():
            found.append(base)
    return found


def _backup_number(q: Path, name: str) -> int | None:
    rest = q.name[len(name) + 1:].removesuffix(".gz")
    return int(rest) if rest.isdigit() else None


def _lines(path: Path) -> Iterator[list[bytes]]:
    """The lines of a log file in chunks (gzip read through)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as raw:  # type: ignore[operator]
            f = io.BufferedReader(raw, 1 << 20) if opener is gzip.open else raw
            chunk: list[bytes] = []
            for line in f:
                if len(line) > 2:
                    chunk.append(line)
                    if len(chunk) >= CHUNK_LINES:
                        yield chunk
                        chunk = []
            if chunk:
                yield chunk
    except (OSError, EOFError) as e:
        raise ServeError(f"cannot read the request log {path}: {e}") from None


def _parse(chunk: list[bytes]) -> list[Any]:
    try:
        return orjson.loads(b"[" + b",".join(chunk) + b"]")  # one call for the whole chunk
    except orjson.JSONDecodeError:  # a line cut off by a killed server, or not a log line: one by one
        out = []
        for line in chunk:
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
        return out


def read_served(path: str | Path, columns: dict[str, Buckets], prediction: Buckets | None) -> Served:
    """Count the served rows of the log at ``path`` into ``columns``' buckets (and the logged
    predictions into ``prediction``'s, when given)."""
    files = log_files(path)
    if not files:
        raise ServeError(f"no request log at {path}",
                         hint="pass the file the server writes (--log-path / NBDEPLOY_LOG_PATH, "
                              "nbdeploy-requests.jsonl by default)")
    served = Served([str(f) for f in files])
    for name, col in columns.items():
        served.counts[name] = np.zeros(col.size, dtype=np.int64)
        if isinstance(col, _Numeric):
            served.values[name] = []
    pred_key = "\x00prediction"
    if prediction is not None:
        served.counts[pred_key] = np.zeros(prediction.size, dtype=np.int64)
        if isinstance(prediction, _Numeric):
            served.values[pred_key] = []
    for f in files:
        for chunk in _lines(f):
            _count_chunk(served, _parse(chunk), columns, prediction, pred_key)
    return served


def _count_chunk(served: Served, records: list[Any], columns: dict[str, Buckets], prediction: Buckets | None,
                 pred_key: str) -> None:
    groups: dict[tuple[str, ...], list[Any]] = {}
    predictions: list[Any] = []
    for r in records:
        if not isinstance(r, dict):
            continue
        served.records += 1
        if r.get("endpoint") not in INFER_ENDPOINTS or r.get("status") != 200:
            continue
        given = r.get("inputs")
        if not isinstance(given, dict) or not isinstance(given.get("data"), list):
            continue
        names = given.get("columns")
        if not isinstance(names, list):
            continue
        served.requests += 1
        ts = r.get("ts")
        if isinstance(ts, int | float):
            served.first_ts = ts if served.first_ts is None else min(served.first_ts, ts)
            served.last_ts = ts if served.last_ts is None else max(served.last_ts, ts)
        served.models[f"{r.get('model')} v{r.get('version')}"] += 1
        key = tuple(map(str, names))
        data = given["data"]
        group = groups.get(key)
        if group is None:
            groups[key] = group = []
        group += data
        if prediction is not None:
            out = r.get("outputs")
            if isinstance(out, dict) and len(out) == 1:
                out = next(iter(out.values()))
            if isinstance(out, list) and len(out) == len(data) and (not out or not isinstance(out[0], list | dict)):
                predictions += out
            else:
                served.prediction_skipped += len(data)
    for key, rows in groups.items():
        served.columns_seen[key] += len(rows)
        served.rows += len(rows)
        position = {n: i for i, n in enumerate(key)}
        wanted = [(n, position[n]) for n in columns if n in position]
        if not wanted or not rows:
            continue
        try:
            transposed = list(zip(*rows, strict=True))
        except (TypeError, ValueError):  # a row of another width: keep the rows that fit
            transposed = list(zip(*(r for r in rows if isinstance(r, list) and len(r) == len(key)), strict=True))
            if not transposed:
                continue
        for name, i in wanted:
            _add(served, name, columns[name], transposed[i])
    if prediction is not None and predictions:
        served.prediction_rows += len(predictions)
        _add(served, pred_key, prediction, predictions)


def _add(served: Served, name: str, col: Buckets, values: Any) -> None:
    if isinstance(col, _Numeric):
        arr = _numbers(values)
        counts, _, _ = col.counts(arr)
        served.counts[name] += counts
        served.values[name].append(arr)
    else:
        try:
            served.counts[name] += col.counts(list(values))
        except TypeError:  # unhashable values (lists): counted as their text
            served.counts[name] += col.counts([v if v is None else str(v) for v in values])


def _numbers(values: Any) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)  # None -> nan
    except (TypeError, ValueError):
        import pandas as pd

        return pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(np.float64)


def log_report(bundle_dir: str | Path, path: str | Path) -> dict[str, Any]:
    """The drift report of the rows logged at ``path`` against the bundle's training profile
    (and the logged predictions against its prediction profile)."""
    import datetime

    from .bundle import read_bundle
    from .drift_report import assemble, buckets, feature

    bundle = read_bundle(bundle_dir)
    profile = bundle.profile or {}
    stats = profile.get("columns") or {}
    if bundle.columns is None:
        raise ServeError(f"the model of {bundle.root} takes a tensor, not named columns: "
                         "no per-feature drift report for it")
    columns = {c.name: b for c in bundle.columns if (b := buckets(stats.get(c.name))) is not None}
    if not columns:
        raise ServeError(f"the bundle {bundle.root} has no training profile of its input columns (profile.json)",
                         hint="bundles built by `nbdeploy build` from a notebook that reads its training data "
                              "with pandas have one")
    pred_stats = ((profile.get("prediction") or {}).get("columns") or {}).get("prediction")
    pred = buckets(pred_stats)
    served = read_served(path, columns, pred)
    if not served.requests:
        raise ServeError(f"the request log {path} has no answered predictions with their inputs "
                         f"({served.records} records in {len(served.files)} file(s))",
                         hint="send the API some predictions first; inputs are logged unless "
                              "NBDEPLOY_LOG_PAYLOADS is off")
    logged = set().union(*served.columns_seen)
    if not logged & set(columns):
        seen = ", ".join(f"{m} ({n} requests)" for m, n in served.models.most_common(3))
        raise ServeError(f"the rows in {path} have columns {sorted(logged)[:8]}; {bundle.name} v{bundle.version} "
                         f"takes {sorted(columns)[:8]}: none in common (the log is of {seen})",
                         hint="pass the request log of this bundle's API, or the bundle that served this log")
    features = []
    for name, col in columns.items():
        if name in logged:
            features.append(feature(name, col, stats[name], served.counts[name], served.numbers(name)))
    notes = []
    missing = sorted(set(columns) - logged)
    if missing:
        notes.append(f"not in the log's rows: {', '.join(missing)}")
    pred_key = "\x00prediction"
    if pred is None:
        notes.append("this bundle has no prediction profile (built by an older nbdeploy, or its training data "
                     "could not be re-read): the logged predictions are not compared")
    elif served.prediction_rows:
        features.append(feature("prediction", pred, pred_stats or {}, served.counts[pred_key],
                                served.numbers(pred_key), role="prediction"))
        features[-1]["notes"].append(str((profile.get("prediction") or {}).get("source") or ""))
    else:
        notes.append("the log has no predictions with one value per row (outputs are logged unless "
                     "NBDEPLOY_LOG_PAYLOADS is off): the predictions are not compared")
    others = [m for m in served.models if m != f"{bundle.name} v{bundle.version}"]
    if others:
        notes.append(f"the log also has requests answered by {', '.join(sorted(others)[:3])}")

    def when(ts: float | None) -> str | None:
        return None if ts is None else datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")

    source = {"kind": "log", "model": bundle.name, "version": bundle.version, "bundle": str(bundle.root),
              "log": str(path), "files": served.files, "requests": served.requests,
              "first": when(served.first_ts), "last": when(served.last_ts),
              "text": f"{served.rows} rows logged in {path} against {bundle.name} v{bundle.version}"}
    return assemble(features, source=source, rows=served.rows, notes=notes)
