"""The served rows of a request log, counted per feature: what ``nbdeploy drift BUNDLE --log`` reads.

A log is the file the server writes (:mod:`.requestlog`), its rotated files (named by
time, gzipped or not yet, see :mod:`.logfiles`; also numbered backups ``NAME.1`` and
logrotate's ``NAME.1.gz``), and the files of the other workers (``STEM.<pid>.jsonl``);
a folder means every log file in it. Only answered predictions (``/invocations``, V2 ``infer``, status 200) with their
inputs count. Lines are parsed in chunks with one ``orjson.loads`` each, and every chunk
is reduced to per-column bucket counts and number arrays before the next is read, so a
log of millions of rows needs memory for its numbers only.
"""

from __future__ import annotations

import gc
import gzip
import io
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .drift import _Categories, _Numeric, text_columns
from .errors import ServeError

INFER_ENDPOINTS = frozenset({"invocations", "v2_infer"})
#: lines parsed at once
CHUNK_LINES = 50_000
#: a file is read in parts of about this many bytes (each part at once, in a process of its own
#: when the log is larger than PARALLEL_BYTES)
PART_BYTES = 32 * 1024 * 1024
PARALLEL_BYTES = 96 * 1024 * 1024
MAX_WORKERS = 4
#: the key of the predictions among the counted columns (no column name has a NUL)
PREDICTION = "\x00prediction"
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

    def merge(self, other: Served) -> None:
        """Add another part's counts (read in another process)."""
        self.records += other.records
        self.requests += other.requests
        self.rows += other.rows
        for ts in (other.first_ts, other.last_ts):
            if ts is not None:
                self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
                self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        self.models.update(other.models)
        self.columns_seen.update(other.columns_seen)
        for name, counts in other.counts.items():
            self.counts[name] += counts
        for name, arrays in other.values.items():
            self.values[name] += arrays
        self.prediction_rows += other.prediction_rows
        self.prediction_skipped += other.prediction_skipped

    def numbers(self, name: str) -> np.ndarray | None:
        parts = self.values.get(name)
        if parts is None:
            return None
        return np.concatenate(parts) if parts else np.zeros(0)


def log_files(path: str | Path) -> list[Path]:
    """The files of the request log at ``path`` (see the module docstring)."""
    from .logfiles import family, family_files

    p = Path(path).expanduser()
    if p.is_dir():
        return sorted(q for q in p.iterdir() if q.is_file() and ".jsonl" in q.name)
    found = family_files(p)
    # logrotate's gzipped numbered backups (NAME.1.gz), which the server itself never writes
    for member in family(p):
        numbered = [q for q in member.parent.glob(member.name + ".*.gz")
                    if q.name[len(member.name) + 1:-3].isdigit()]
        found = sorted(numbered, key=lambda q: -int(q.name[len(member.name) + 1:-3])) + found
    return [f for f in found if f.is_file()]


def _lines(path: Path, start: int = 0, end: int = -1) -> Iterator[list[bytes]]:
    """The lines of a log file (of its bytes ``start`` to ``end``, on line boundaries) in chunks;
    gzip read through."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as raw, io.BufferedReader(raw, 1 << 20) as f:
                chunk: list[bytes] = []
                for line in f:
                    if len(line) > 2:
                        chunk.append(line)
                        if len(chunk) >= CHUNK_LINES:
                            yield chunk
                            chunk = []
                if chunk:
                    yield chunk
            return
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(end - start if end >= 0 else -1)  # a part is at most PART_BYTES
        lines = [line for line in data.split(b"\n") if len(line) > 2]
        del data
        for i in range(0, len(lines), CHUNK_LINES):
            yield lines[i:i + CHUNK_LINES]
    except (OSError, EOFError) as e:
        raise ServeError(f"cannot read the request log {path}: {e}") from None


def _parts(files: list[Path]) -> list[tuple[Path, int, int]]:
    """The files cut into parts of about ``PART_BYTES`` on line boundaries (a gzipped file: whole)."""
    parts = []
    for f in files:
        size = f.stat().st_size
        if f.suffix == ".gz" or size <= PART_BYTES:
            parts.append((f, 0, -1))
            continue
        with open(f, "rb") as fh:
            start = 0
            while start < size:
                end = start + PART_BYTES
                if end < size:
                    fh.seek(end)
                    fh.readline()  # to the end of the line the cut falls in
                    end = fh.tell()
                parts.append((f, start, min(end, size)))
                start = end
    return parts


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
    parts = _parts(files)
    workers = min(os.cpu_count() or 1, MAX_WORKERS, len(parts))
    # a gzipped request log holds ~6x its size in lines (level 1 on JSON records)
    size = sum(f.stat().st_size * (6 if f.suffix == ".gz" else 1) for f in files)
    if workers < 2 or size < PARALLEL_BYTES:
        served = _read_parts(parts, columns, prediction)
    else:
        results = _in_processes([parts[i::workers] for i in range(workers)], columns, prediction)
        served = results[0]
        for other in results[1:]:
            served.merge(other)
    served.files = [str(f) for f in files]
    return served


#: what a worker process runs: read its parts (pickled on stdin), write the counts (pickled on stdout)
_WORKER = """
import importlib, pickle, sys
module = importlib.import_module(sys.argv[1])
parts, columns, prediction = pickle.load(sys.stdin.buffer)
sys.stdout.buffer.write(pickle.dumps(module._read_parts(parts, columns, prediction), protocol=5))
"""


def _in_processes(groups: list[list[tuple[Path, int, int]]], columns: dict[str, Buckets],
                  prediction: Buckets | None) -> list[Served]:
    """Each group of parts read by a Python process of its own, at the same time. Plain
    subprocesses rather than multiprocessing: spawning would run the caller's main script
    again (a script without a ``__main__`` guard), forking is unsafe in a kernel with threads."""
    import pickle
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[len(__name__.split(".")) - 1]  # above nbdeploy/ (or nbdeploy_serve/)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    procs = []
    for group in groups:
        proc = subprocess.Popen([sys.executable, "-c", _WORKER, __name__], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert proc.stdin is not None
        proc.stdin.write(pickle.dumps((group, columns, prediction), protocol=5))
        proc.stdin.close()
        proc.stdin = None  # written and closed: communicate() only reads
        procs.append(proc)
    results = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            last = err.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            raise ServeError(f"reading the request log in a worker process failed: {last[0]}")
        results.append(pickle.loads(out))
    return results


def _read_parts(parts: list[tuple[Path, int, int]], columns: dict[str, Buckets],
                prediction: Buckets | None) -> Served:
    served = Served([])
    for name, col in columns.items():
        served.counts[name] = np.zeros(col.size, dtype=np.int64)
        if isinstance(col, _Numeric):
            served.values[name] = []
    if prediction is not None:
        served.counts[PREDICTION] = np.zeros(prediction.size, dtype=np.int64)
        if isinstance(prediction, _Numeric):
            served.values[PREDICTION] = []
    # a chunk is ~50 000 new dicts and lists that live until it is counted: the cyclic garbage
    # collector, run again and again while they are created, would cost more than parsing them
    collecting = gc.isenabled()
    gc.disable()
    try:
        for path, start, end in parts:
            for chunk in _lines(path, start, end):
                _count_chunk(served, _parse(chunk), columns, prediction, PREDICTION)
    finally:
        if collecting:
            gc.enable()
    for name, arrays in served.values.items():  # one array each: less to send back from a process
        served.values[name] = [np.concatenate(arrays)] if len(arrays) > 1 else arrays
    return served


def _count_chunk(served: Served, records: list[Any], columns: dict[str, Buckets], prediction: Buckets | None,
                 pred_key: str) -> None:
    groups: dict[tuple[str, ...], list[Any]] = {}
    predictions: list[Any] = []
    stamps: list[Any] = []
    answered_by: list[tuple[Any, Any]] = []
    endpoints = INFER_ENDPOINTS
    served.records += len(records)
    want_outputs = prediction is not None
    last_names: Any = None
    key: tuple[str, ...] = ()
    for r in records:  # a million times for a million one-row requests: direct lookups, no more
        try:
            if r["status"] != 200 or r["endpoint"] not in endpoints:
                continue
            given = r["inputs"]
            names = given["columns"]
            if names != last_names:  # one-row requests repeat the same names: one tuple for all
                key, last_names = tuple(names), names
            data = given["data"]
        except (KeyError, TypeError):  # not a prediction with its inputs (or not a log record)
            continue
        if type(data) is not list:
            continue
        stamps.append(r.get("ts"))
        answered_by.append((r.get("model"), r.get("version")))
        group = groups.get(key)
        if group is None:
            groups[key] = group = []
        group += data
        if want_outputs:
            out = r.get("outputs")
            if type(out) is dict and len(out) == 1:
                out = next(iter(out.values()))
            if type(out) is list and len(out) == len(data):
                predictions += out
            else:
                served.prediction_skipped += len(data)
    served.requests += len(stamps)
    for (model, version), n in Counter(answered_by).items():
        served.models[f"{model} v{version}"] += n
    times = [t for t in stamps if isinstance(t, int | float)]
    if times:
        low, high = min(times), max(times)
        served.first_ts = low if served.first_ts is None else min(served.first_ts, low)
        served.last_ts = high if served.last_ts is None else max(served.last_ts, high)
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
        if isinstance(predictions[0], list | dict):  # several values a row (probabilities): not one feature
            served.prediction_skipped += len(predictions)
        else:
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
    from .drift_report import assemble, buckets, feature, text_notes

    bundle = read_bundle(bundle_dir)
    profile = bundle.profile or {}
    stats = profile.get("columns") or {}
    if bundle.columns is None:
        raise ServeError(f"the model of {bundle.root} takes a tensor, not named columns: "
                         "no per-feature drift report for it")
    columns = {c.name: b for c in bundle.columns if (b := buckets(stats.get(c.name))) is not None}
    text = text_columns(stats, [c.name for c in bundle.columns])
    pred_stats = ((profile.get("prediction") or {}).get("columns") or {}).get("prediction")
    pred = buckets(pred_stats)
    if not columns and not (text and pred is not None):  # a text model is measured by its predictions
        raise ServeError(f"the bundle {bundle.root} has no training profile of its input columns (profile.json)",
                         hint="bundles built by `nbdeploy build` from a notebook that reads its training data "
                              "with pandas have one")
    served = read_served(path, columns, pred)
    if not served.requests:
        raise ServeError(f"the request log {path} has no answered predictions with their inputs "
                         f"({served.records} records in {len(served.files)} file(s))",
                         hint="send the API some predictions first; inputs are logged unless "
                              "NBDEPLOY_LOG_PAYLOADS is off")
    logged = set().union(*served.columns_seen)
    if columns and not logged & set(columns):
        seen = ", ".join(f"{m} ({n} requests)" for m, n in served.models.most_common(3))
        raise ServeError(f"the rows in {path} have columns {sorted(logged)[:8]}; {bundle.name} v{bundle.version} "
                         f"takes {sorted(columns)[:8]}: none in common (the log is of {seen})",
                         hint="pass the request log of this bundle's API, or the bundle that served this log")
    features = []
    for name, col in columns.items():
        if name in logged:
            features.append(feature(name, col, stats[name], served.counts[name], served.numbers(name)))
    notes = text_notes(text)
    missing = sorted(set(columns) - logged)
    if missing:
        notes.append(f"not in the log's rows: {', '.join(missing)}")
    pred_key = PREDICTION
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
