"""One batch of validated requests -> one DataFrame -> ``predict`` -> each request's slice.

Runs in the batcher's worker thread. Columns are built with the dtypes of the model
signature (``long`` -> int64, ``double`` -> float64, ...), as MLflow's pyfunc does.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from .batcher import Part
from .bundle import Bundle, Column
from .errors import RequestError
from .model import LoadedModel
from .payload import Frame, Tensor, row_columns
from .program import InputOverflow, Table
from .validation import Validator

#: what scikit-learn says when a value is too large for the float32 its trees compute in
FLOAT32_REFUSED = "too large for dtype('float32')"
#: what scikit-learn (and the compiled program) say of a number that became infinity in the model's arithmetic
OVERFLOWED = (FLOAT32_REFUSED, "Input X contains infinity", "Input X contains NaN or infinity")
#: what scikit-learn's OneHotEncoder(handle_unknown="error") (and the compiled program's) says of a new category
UNKNOWN_CATEGORY = "Found unknown categories"
_NUMPY = {"long": "int64", "integer": "int32", "double": "float64", "float": "float32", "boolean": "bool"}


class OutputMismatch(Exception):
    """The model returned a different number of rows than it was given."""


class Predictor:
    def __init__(self, bundle: Bundle, model: LoadedModel, validator: Validator | None = None,
                 on_output: Callable[[Any], None] | None = None,
                 on_rows: Callable[[dict[str, list[Any]], int], None] | None = None) -> None:
        self.bundle = bundle
        #: called with each batch's raw predictions once they were split between its requests
        self.on_output = on_output
        #: called with each predicted batch's columns (validated) and its number of rows
        self.on_rows = on_rows
        self.model = model
        self.columns = bundle.columns
        tensor = bundle.tensor_input or {}
        self.tensor_dtype = tensor.get("dtype")
        self.validator = validator
        self._names = frozenset(validator.rules) if validator is not None else frozenset()
        self._observe_failed = False

    def validate(self, parts: list[Part]) -> tuple[list[Part], dict[int, Exception], Any]:
        """Check the parts that still need it: the whole batch in one pass when every value is
        clean (the usual case: no per-request work), else each such part on its own, so each
        request gets its own 422 or flags. Returns the parts to predict, the refused ones by
        index, and the merged columns when they could be reused."""
        pending = [p for p in parts if p.check]
        if not pending or self.validator is None:
            return parts, {}, None
        if self._same_columns(parts):
            merged = self.merged(parts)
            if self.validator.clean(merged):
                for p in pending:
                    p.check = False
                return parts, {}, merged
        refused: dict[int, Exception] = {}
        for i, p in enumerate(parts):
            if p.check:
                try:
                    p.data, p.flags = self.validator.check(Frame(_columns_of(p), p.n))
                except RequestError as e:
                    refused[i] = e
                p.check = False
        return [p for i, p in enumerate(parts) if i not in refused], refused, None

    def _same_columns(self, parts: list[Part]) -> bool:
        """Whether every part has exactly the signature's columns (then one check covers the batch)."""
        names = _shared_names(parts)
        if names is not None:  # rows parsed with one header
            return len(names) == len(self._names) and self._names.issuperset(names)
        return all(isinstance(_columns_of(p), dict) and p.data.keys() == self._names for p in parts)

    def merged(self, parts: list[Part]) -> Any:
        """The batch's rows: one column dict, or one array for a tensor model."""
        first = parts[0]
        if isinstance(first.data, Tensor):
            rows: list[Any] = []
            for p in parts:
                rows.extend(p.data.data)
            try:
                return np.asarray(rows, dtype=self.tensor_dtype)
            except OverflowError:
                raise RequestError(422, f"the input tensor has a number too large for the model's "
                                        f"{self.tensor_dtype} input; send values that fit {self.tensor_dtype}",
                                   [{"field": "input", "problem": "out_of_bounds",
                                     "expected": f"numbers that fit {self.tensor_dtype}"}]) from None
        names = _shared_names(parts)
        if names is not None:
            # one-row requests that came with the same column list: one transpose for the batch
            return dict(zip(names, map(list, zip(*[p.data for p in parts], strict=True)), strict=True))
        if len(parts) == 1:
            return _columns_of(first)
        merged: dict[str, list[Any]] = {name: [] for name in _columns_of(first)}
        for p in parts:
            for name, values in _columns_of(p).items():
                merged[name].extend(values)
        return merged

    def frame(self, parts: list[Part]) -> Any:
        merged = self.merged(parts)
        if isinstance(merged, np.ndarray):
            return merged
        return build_frame(self.columns, merged)

    def run_batch(self, parts: list[Part], observe: bool = True) -> list[Any]:
        """Each part's output (or the RequestError that refused it); ``observe``: count the batch
        in the metrics and the drift report (not for the start-up prediction)."""
        todo, refused, merged = self.validate(parts)
        outs = self._predict(todo, merged, observe) if todo else []
        if not refused:
            return outs
        given = iter(outs)
        return [refused[i] if i in refused else next(given) for i in range(len(parts))]

    def _predict(self, parts: list[Part], merged: Any = None, observe: bool = True) -> list[Any]:
        if merged is None:
            merged = self.merged(parts)
        if isinstance(merged, np.ndarray):
            raw = self.model.predict(merged)
        elif self.model.program is not None:
            try:
                raw = self.model.program.predict(build_table(self.columns, merged))
            except InputOverflow as e:
                raise _overflow_error(e) from None
            except ValueError as e:
                raise self._refusal(parts, merged, e) from None
        else:
            try:
                raw = self.model.predict(build_frame(self.columns, merged))
            except ValueError as e:
                raise self._refusal(parts, merged, e) from None
        total = sum(p.n for p in parts)
        outs = split_output(raw, [p.n for p in parts], total)
        if observe:
            self._observe(raw, merged, total)
        return outs

    def _refusal(self, parts: list[Part], merged: Any, e: ValueError) -> Exception:
        """The 422 for a lone request whose values the model refused though their types are
        right (a category its encoder does not know, a number its arithmetic overflows on), or
        ``e`` itself. A batch of several requests is retried request by request (see Batcher),
        so only a lone request is looked into, and never a good one."""
        text = str(e)
        if len(parts) > 1 or not isinstance(merged, dict):
            return e
        if UNKNOWN_CATEGORY in text:
            return self._locate_unknown(merged, text) or e
        if any(mark in text for mark in OVERFLOWED):
            return self._locate_too_large(merged, text) or e
        return e

    def _locate_too_large(self, merged: dict[str, list[Any]], text: str) -> RequestError | None:
        """The numeric columns whose values the library model refused as too large for float32
        (after its own transforms): every numeric column is set to a value from training, then
        each is given back its own values; those the model refuses again are named, with the
        fewest of their largest values that must go. Only on that error, never on a good request."""
        if FLOAT32_REFUSED in text:
            sees, computes = "'s float32 trees see as infinity", "computes in float32"
        else:
            sees, computes = "'s arithmetic turns into infinity", "overflows to infinity"
        numeric = [c.name for c in self.columns or [] if c.type in ("double", "float", "long", "integer")]
        safe = {n: [None if v is None else self._typical(n) for v in merged[n]] for n in numeric}
        if not numeric or not self._predicts({**merged, **safe}):
            return None
        errors = []
        for name in numeric:
            values = merged[name]
            if self._predicts({**merged, **safe, name: values}):
                continue
            largest = sorted((i for i, v in enumerate(values) if v is not None), key=lambda i: -abs(values[i]))
            k = 1
            while k < len(largest):
                trial = list(values)
                for i in largest[:k]:
                    trial[i] = safe[name][i]
                if self._predicts({**merged, **safe, name: trial}):
                    break
                k *= 2
            rows = sorted(largest[:k])
            below = min(abs(values[i]) for i in rows)
            errors.append({"field": name, "problem": "out_of_bounds", "rows": rows[:5], "count": len(rows),
                           "expected": f"a number of magnitude below {_number(float(below))}, which the model"
                                       f"{sees} after its own transforms"})
        if not errors:
            return None
        names = ", ".join(repr(e["field"]) for e in errors)
        return RequestError(422, f"{names} has values too large for the model, which {computes} after its own "
                                 "transforms; send values nearer the training range", errors)

    def _locate_unknown(self, merged: dict[str, list[Any]], message: str) -> RequestError | None:
        """The columns holding the categories an encoder with handle_unknown="error" refused
        (its message quotes them): a 422 naming each column, the value and its rows, instead of
        the model's 500. Values the training profile lists for the column are never blamed."""
        errors = []
        for name, values in merged.items():
            rule = self.validator.rules.get(name) if self.validator is not None else None
            known = rule.categories if rule is not None else None
            rows = [i for i, v in enumerate(values) if v is not None and not isinstance(v, bool | float)
                    and (known is None or str(v) not in known) and repr(v) in message]
            if not rows:
                continue
            value = values[rows[0]]
            expected = ("a category seen in training" if not known else
                        f"one of the {len(known)} categories seen in training: {sorted(known)[:10]}"
                        + (" ..." if len(known) > 10 else ""))
            errors.append({"field": name, "problem": "unknown_category", "got": repr(value)[:80],
                           "expected": expected, "rows": rows[:5], "count": len(rows)})
        if not errors:
            return None
        what = "; ".join(f"{e['field']!r} has {e['got']} in {e['count']} row(s) (first: {e['rows']})"
                         for e in errors)
        return RequestError(422, f"the model's encoder refuses categories it never saw in training: {what}; "
                                 "send a category from training (see /openapi.json, x-training-values)", errors)

    def _typical(self, name: str) -> Any:
        rule = self.validator.rules.get(name) if self.validator is not None else None
        mid = 0.0 if rule is None or rule.lo is None or rule.hi is None else (rule.lo + rule.hi) / 2
        return int(mid) if rule is not None and rule.column.type in ("long", "integer") else mid

    def _predicts(self, columns: dict[str, list[Any]]) -> bool:
        try:
            if self.model.program is not None:
                self.model.program.predict(build_table(self.columns, columns))
            else:
                self.model.predict(build_frame(self.columns, columns))
        except Exception:
            return False
        return True

    def _observe(self, raw: Any, merged: Any, rows: int) -> None:
        """Metrics and drift of a predicted batch; never the reason a request fails."""
        try:
            if self.on_output is not None:
                self.on_output(raw)
            if self.on_rows is not None and isinstance(merged, dict):
                self.on_rows(merged, rows)
        except Exception as e:  # a bug here must not cost the clients their predictions
            if not self._observe_failed:
                self._observe_failed = True
                logging.getLogger("nbdeploy.serve").warning(
                    "metrics/drift of a batch failed (further failures not logged): %s: %s", type(e).__name__, e)


def _columns_of(part: Part) -> Any:
    """A part's data as columns: a one-row part (``names`` set) is turned into its own columns."""
    if part.names is not None:
        part.data = row_columns(part.names, part.data)
        part.names = None
    return part.data


def _shared_names(parts: list[Part]) -> list[str] | None:
    """The column list when every part is one row kept as it came with that same list, else None."""
    names = parts[0].names
    return names if names is not None and all(p.names is names for p in parts) else None


def _column_dtype(col: Column, values: list[Any]) -> str | None:
    dtype = _NUMPY.get(col.type)
    if dtype is not None and None in values:
        dtype = "float64" if col.type != "boolean" else "object"
    return dtype


def build_frame(columns: list[Column] | None, merged: dict[str, list[Any]]) -> Any:
    """The DataFrame a model gets: columns typed by the signature, as MLflow's pyfunc does."""
    import pandas as pd

    if columns is None:
        return pd.DataFrame(merged)
    data: dict[str, Any] = {}
    for col in columns:
        values = merged[col.name]
        dtype = _column_dtype(col, values)
        if col.categories is not None:  # trained as pandas' category dtype: the same categories, in order
            data[col.name] = pd.Categorical(values, categories=col.categories)
        elif col.type == "datetime":
            data[col.name] = datetimes(values)
        elif dtype is not None:
            data[col.name] = typed_array(col, values, dtype)
        else:
            data[col.name] = values
        # (a None in a string column becomes pandas' missing value, NaN, in the frame)
    return pd.DataFrame(data)


def datetimes(values: list[Any]) -> Any:
    """A datetime column from ISO 8601 strings (validation checked each one) in any mix of their
    forms: ``2024-03-05`` beside ``2024-07-01T08:30:00``. pandas guesses one format from the first
    value otherwise, and the next value's form made the request a 500. Values with offsets in
    different time zones (or beside values without one) are taken to UTC."""
    import pandas as pd

    try:
        return pd.to_datetime(values, format="ISO8601")
    except ValueError:  # mixed offsets: one instant each, in UTC
        return pd.to_datetime(values, format="ISO8601", utc=True)


def build_table(columns: list[Column] | None, merged: dict[str, list[Any]]) -> Table:
    """The same columns for a compiled program: numpy arrays, no pandas."""
    if columns is None:
        raise ValueError("a compiled program needs the signature's columns")
    arrays = []
    for col in columns:
        values = merged[col.name]
        dtype = _column_dtype(col, values)
        if dtype is not None:
            arrays.append(typed_array(col, values, dtype))
        else:
            arr = np.empty(len(values), dtype=object)
            arr[:] = [np.nan if v is None else v for v in values]
            arrays.append(arr)
    return Table([c.name for c in columns], arrays)


def typed_array(col: Column, values: list[Any], dtype: str) -> np.ndarray:
    """A column's values in the signature's numpy dtype; a number that dtype cannot hold (an
    integer past int64, a float past float32's range) is the client's mistake: a 422 naming it."""
    if dtype == "float32":
        with np.errstate(over="ignore"):
            arr = np.asarray(values, dtype=dtype)
        if np.isinf(arr).any():
            over = np.isinf(arr) & np.isfinite(np.asarray(values, dtype=np.float64))
            if over.any():
                f = np.finfo(np.float32)
                raise _bounds_error(col.name, "float32 column", np.flatnonzero(over).tolist(),
                                   float(f.min), float(f.max))
        return arr
    try:
        return np.asarray(values, dtype=dtype)
    except OverflowError:
        if dtype not in ("int64", "int32"):
            raise
        i = np.iinfo(dtype)
        rows = [r for r, v in enumerate(values) if isinstance(v, int) and not i.min <= v <= i.max]
        raise _bounds_error(col.name, f"{dtype} column", rows, int(i.min), int(i.max)) from None


def _bounds_error(name: str, what: str, rows: list[int], lo: Any, hi: Any) -> RequestError:
    allowed = f"from {_number(lo)} to {_number(hi)}"
    return RequestError(
        422, f"{name!r} has a value too large for the model's {what} in {len(rows)} row(s) (first: "
             f"{rows[:5]}); send values {allowed}",
        [{"field": name, "problem": "out_of_bounds", "expected": f"a number {allowed} ({what})",
          "allowed_range": [lo, hi], "rows": rows[:5], "count": len(rows)}],
    )


def _number(v: Any) -> str:
    return str(v) if isinstance(v, int) else f"{v:.7g}"


def _overflow_error(e: InputOverflow) -> RequestError:
    """A value the compiled program's float32 trees cannot take, named by its input column."""
    what = "trees, which compute in float32 after the model's own scaling"
    if e.column is None or e.bounds is None:
        return RequestError(
            422, f"a number in the request is too large for the model's {what} (rows {e.rows[:5]}); "
                 f"send values that stay below {_number(float(np.finfo(np.float32).max))} after scaling",
            [{"field": "(input)", "problem": "out_of_bounds", "rows": e.rows[:5], "count": len(e.rows)}])
    return _bounds_error(e.column, what, e.rows, *e.bounds)


def split_output(raw: Any, sizes: list[int], total: int) -> list[Any]:
    """Cut the model output into one JSON-able piece per request, in order."""
    pd = sys.modules.get("pandas")  # a pandas result implies pandas is imported; never import it here

    if pd is not None and isinstance(raw, pd.DataFrame):
        _check(len(raw), total, sizes)
        return _cut(raw, sizes, lambda x: x.to_dict("records"))
    if pd is not None and isinstance(raw, pd.Series):
        _check(len(raw), total, sizes)
        return _cut(raw, sizes, lambda x: x.tolist())
    if isinstance(raw, np.ndarray):
        if raw.ndim == 0:
            if len(sizes) == 1:
                return [raw.item()]
            raise OutputMismatch("the model returned a scalar for a batch")
        _check(len(raw), total, sizes)
        return _cut(raw, sizes, lambda x: x.tolist())
    if isinstance(raw, dict):
        cols = {k: np.asarray(v) for k, v in raw.items()}
        for v in cols.values():
            _check(len(v), total, sizes)
        out, start = [], 0
        for n in sizes:
            out.append({k: v[start:start + n].tolist() for k, v in cols.items()})
            start += n
        return out
    if isinstance(raw, list | tuple):
        _check(len(raw), total, sizes)
        return _cut(list(raw), sizes, lambda x: x)
    if len(sizes) == 1:
        return [raw]
    raise OutputMismatch(f"cannot split a {type(raw).__name__} output between requests")


def _check(n: int, total: int, sizes: list[int]) -> None:
    if n != total and len(sizes) > 1:
        raise OutputMismatch(f"the model returned {n} rows for {total}")


def _cut(raw: Any, sizes: list[int], convert: Any) -> list[Any]:
    if len(sizes) == 1:
        return [convert(raw)]
    rows = raw.iloc if hasattr(raw, "iloc") else raw
    out, start = [], 0
    for n in sizes:
        out.append(convert(rows[start:start + n]))
        start += n
    return out
