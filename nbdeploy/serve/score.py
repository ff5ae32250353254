"""Batch scoring with the API's own code: one chunk of rows in, predictions and rejects out.

A :class:`Scorer` holds what the server holds: the bundle (its seal checked before any model
bytes are read), the loaded model or compiled program, and the :class:`.validation.Validator`.
Each chunk (an Arrow table) goes through the server's rules: a row whose value has the wrong
type, or is null where training had none, is set aside with its reason (the API would answer
422); every other row is predicted exactly as :mod:`.predictor` predicts a request, so batch
and online answers cannot differ. Values out of the training range are scored and counted.

Columns whose Arrow type already is the signature's (no nulls where they are refused) are
checked and converted with numpy at once; any other column takes the validator's
value-by-value path, which finds and names each bad row.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bundle import Bundle, read_bundle
from .errors import ServeError
from .model import LoadedModel, load_model
from .program import Coded, Table
from .validation import Rule, Validator

PREDICTION = "prediction"
#: rows per call of a compiled program: its tables then stay in the CPU's caches (a 200,000-row
#: call runs at about half the rate of 65,536-row calls); the rows' answers do not depend on it
PROGRAM_ROWS = 65_536


@dataclass
class Scored:
    """One chunk's result: the predictions of the rows kept (in order) and the rows set aside."""

    kept: np.ndarray  # indices (in the chunk) of the scored rows
    predictions: dict[str, Any]  # output column name -> values, one per kept row
    rejects: dict[int, str]  # row index in the chunk -> reason
    flagged_rows: int = 0  # scored rows with at least one value out of range or unseen
    flags: Counter[str] = field(default_factory=Counter)  # "field:kind" -> values flagged


class Scorer:
    def __init__(self, bundle_dir: str | Path | Bundle, margin: float = 0.05) -> None:
        """``bundle_dir``: a bundle's folder (its seal checked first), or a :class:`.bundle.Bundle`
        its caller has just read, seal and all (checking it again would hash every file twice)."""
        require_pyarrow()
        self.bundle: Bundle = bundle_dir if isinstance(bundle_dir, Bundle) else read_bundle(bundle_dir)
        if self.bundle.columns is None:
            raise ServeError(f"the model in {self.bundle.root} has no column signature: batch scoring needs "
                             "named input columns", hint="save the model with a column-based MLflow signature")
        self.model: LoadedModel = load_model(self.bundle)
        self.validator = Validator(self.bundle, margin)
        self.columns = self.bundle.columns
        self.names = [c.name for c in self.columns]
        #: the text columns: read dictionary-encoded from Parquet (each distinct string made once)
        self.text_names = frozenset(c.name for c in self.columns if c.type == "string")

    def check_columns(self, available: list[str], where: str) -> None:
        missing = [c.name for c in self.columns if c.required and c.name not in available]
        if missing:
            raise ServeError(f"{where} lacks the model's input column(s) {', '.join(missing)}",
                             hint=f"the model needs {', '.join(self.names)}")

    def score(self, table: Any, text: bool = False) -> Scored:
        """Score an Arrow table; ``text``: every value is text (CSV), converted by type as the API does."""
        n = table.num_rows
        merged: dict[str, Any] = {}
        masks: dict[str, np.ndarray | None] = {}
        bad: dict[int, str] = {}
        for name, rule in self.validator.rules.items():
            col = table.column(name).combine_chunks() if name in table.column_names else None
            fast = _fast(col, rule, text) if col is not None else None
            if fast is not None:
                merged[name] = fast
                masks[name] = _flag_mask(col if rule.categories is not None and not isinstance(fast, Coded)
                                         else fast, rule)
                continue
            values = col.to_pylist() if col is not None else [None] * n
            if col is not None and _is_float(col):
                values = [None if v is not None and v != v else v for v in values]  # NaN is a null
            converted, problems = self.validator.row_problems(name, values, text or _is_text(col, rule))
            for i, why in problems.items():
                bad[i] = f"{bad[i]}; {why}" if i in bad else why
                converted[i] = None  # the row is set aside; its value is never predicted or flagged
            merged[name] = converted
            masks[name] = _flag_mask(converted, rule)
        kept = np.arange(n) if not bad else np.setdiff1d(np.arange(n), np.fromiter(bad, int, len(bad)))
        if bad:
            merged = {k: _take(v, kept) for k, v in merged.items()}
            masks = {k: None if m is None else m[kept] for k, m in masks.items()}
        result = Scored(kept, {}, bad)
        if len(kept):
            result.predictions = self._predict(merged, len(kept))
            self._count_flags(masks, result)
        return result

    def _predict(self, merged: dict[str, Any], n: int) -> dict[str, Any]:
        if self.model.program is not None:
            table = _table(self.columns, merged)
            if n <= PROGRAM_ROWS:
                raw = self.model.program.predict(table)
            else:
                raw = np.concatenate([self.model.program.predict(_slice(table, i, i + PROGRAM_ROWS))
                                      for i in range(0, n, PROGRAM_ROWS)])
        else:
            from .predictor import build_frame  # here: it imports the server's batching (asyncio)

            plain: dict[str, Any] = {k: np.asarray(v) if isinstance(v, Coded) else v for k, v in merged.items()}
            raw = self.model.predict(build_frame(self.columns, plain))  # numpy columns: the same frame
        return output_columns(raw, n, [o.get("name") for o in self.bundle.outputs if isinstance(o, dict)])

    def _count_flags(self, masks: dict[str, np.ndarray | None], result: Scored) -> None:
        """Out-of-range numbers and unseen categories, as :func:`.validation._flag` finds them."""
        any_flag = np.zeros(len(result.kept), dtype=bool)
        for name, rule in self.validator.rules.items():
            mask = masks.get(name)
            if mask is not None and mask.any():
                result.flags[f"{name}:{'out_of_range' if rule.lo is not None else 'unseen_category'}"] += int(mask.sum())
                any_flag |= mask
        result.flagged_rows = int(any_flag.sum())


def require_pyarrow() -> None:
    """Batch scoring reads and writes through pyarrow, which the API's own lock leaves out (156 MB:
    the API image stays small); say so in one line where it is missing."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ServeError("batch scoring needs pyarrow, which this environment does not have",
                         hint="pip install pyarrow (an image for the k8s score Job: add it to the bundle's "
                              "image, see docs/score.md)") from None


def output_columns(raw: Any, n: int, names: list[Any]) -> dict[str, Any]:
    """The prediction columns: what ``/invocations`` answers, one column per output."""
    import sys

    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(raw, pd.DataFrame):
        cols = {str(c): raw[c].to_numpy() for c in raw.columns}
    elif pd is not None and isinstance(raw, pd.Series):
        cols = {PREDICTION: raw.to_numpy()}
    elif isinstance(raw, dict):
        cols = {str(k): np.asarray(v) for k, v in raw.items()}
    else:
        arr = np.asarray(raw)
        if arr.ndim == 2 and arr.shape[1] > 1:
            labels = names if len(names) == arr.shape[1] and all(names) else range(arr.shape[1])
            cols = {f"{PREDICTION}_{k}" if isinstance(k, int) else str(k): arr[:, i] for i, k in enumerate(labels)}
        else:
            cols = {PREDICTION: arr.reshape(len(arr)) if arr.ndim == 2 else arr}
    for name, values in cols.items():
        if len(values) != n:
            raise ServeError(f"the model returned {len(values)} values in {name} for {n} rows")
    return cols


_INT = ("long", "integer")
_FLOAT = ("double", "float")
_NUMPY = {"long": "int64", "integer": "int32", "double": "float64", "float": "float32", "boolean": "bool"}


def _fast(col: Any, rule: Rule, text: bool) -> Any:
    """The column as the numpy array the predictor would build, when its Arrow type needs no
    value-by-value check (None when it does)."""
    import pyarrow as pa

    t = rule.column.type
    typ = col.type
    if text and pa.types.is_string(typ) and t != "string":
        import pyarrow.compute as pc  # (only here and for undecoded text: ~0.1 s to import)

        if col.null_count:
            return None
        try:
            if t == "boolean":
                return None
            col = pc.cast(col, pa.int64() if t in _INT else pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        typ = col.type
    nulls = col.null_count
    if t in _FLOAT and (pa.types.is_floating(typ) or pa.types.is_integer(typ)):
        arr = _numpy(col).astype("float64", copy=False)
        if (nulls or np.isnan(arr).any()) and not rule.nulls_ok:
            return None
        return arr.astype(_NUMPY[t], copy=False)
    if nulls:
        return None
    if t in _INT and pa.types.is_integer(typ):
        return _numpy(col).astype(_NUMPY[t], copy=False)
    if t == "boolean" and pa.types.is_boolean(typ):
        return _numpy(col)
    if t == "string" and (pa.types.is_string(typ) or pa.types.is_large_string(typ) or (
            pa.types.is_dictionary(typ) and pa.types.is_string(typ.value_type))):
        # each distinct string made a Python str once: the object array the predictor builds, kept
        # as its distinct values and each row's index (a compiled one-hot encoder maps each value once)
        enc = col if pa.types.is_dictionary(typ) else _dictionary_encode(col)
        values = np.empty(len(enc.dictionary), dtype=object)
        values[:] = enc.dictionary.to_pylist()
        return Coded(values, _numpy(enc.indices))
    return None


#: numpy's dtype of Arrow's fixed-width numbers
_ARROW_NUMPY = {"int8": "i1", "int16": "i2", "int32": "i4", "int64": "i8", "uint8": "u1", "uint16": "u2",
                "uint32": "u4", "uint64": "u8", "halffloat": "f2", "float": "f4", "double": "f8"}


def _numpy(arr: Any) -> np.ndarray:
    """An Arrow array of numbers or booleans as numpy, read straight from its buffers: a null is
    NaN (floats as they are, integers as float64, as ``to_numpy`` gives them). ``Array.to_numpy``
    would import pandas in the scoring threads: half a second of every run (of every run whose
    float columns have a null, before these were read here too)."""
    import pyarrow as pa

    numeric = str(arr.type) in _ARROW_NUMPY
    if not numeric and (arr.null_count or not pa.types.is_boolean(arr.type)):
        return np.asarray(arr.to_numpy(zero_copy_only=False))
    n, offset = len(arr), arr.offset
    if arr.null_count:  # the values, then NaN where the validity bitmap has a 0 (whatever the buffer holds there)
        values = _numpy(pa.Array.from_buffers(arr.type, n, [None, arr.buffers()[1]], offset=offset))
        values = values.astype("float64") if values.dtype.kind != "f" else values.copy()
        valid = np.unpackbits(np.frombuffer(arr.buffers()[0], dtype=np.uint8), count=offset + n,
                              bitorder="little")[offset:]
        values[valid == 0] = np.nan
        return values
    data = arr.buffers()[1]
    if pa.types.is_boolean(arr.type):  # one bit a value, the first value in the lowest bit
        if not n:
            return np.zeros(0, dtype=bool)
        bits = np.frombuffer(data, dtype=np.uint8)
        return np.unpackbits(bits, count=offset + n, bitorder="little")[offset:].astype(bool)
    dtype = np.dtype(_ARROW_NUMPY[str(arr.type)])
    if not n:
        return np.zeros(0, dtype=dtype)
    return np.frombuffer(data, dtype=dtype, count=n, offset=offset * dtype.itemsize)


def arrow_array(values: Any) -> Any:
    """numpy numbers or booleans as an Arrow array over the same memory (``pa.array`` imports
    pandas, half a second of every run); anything else through ``pa.array``."""
    import pyarrow as pa

    arr = np.asarray(values)
    if arr.ndim == 1 and arr.dtype.kind in "iuf" and arr.dtype.byteorder in "=|<":
        arr = np.ascontiguousarray(arr)
        return pa.Array.from_buffers(pa.from_numpy_dtype(arr.dtype), len(arr), [None, pa.py_buffer(arr)])
    if arr.ndim == 1 and arr.dtype == bool:
        bits = np.packbits(arr, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(arr), [None, pa.py_buffer(bits)])
    return pa.array(values)


def _dictionary_encode(col: Any) -> Any:
    import pyarrow.compute as pc

    return pc.dictionary_encode(col)


def _is_float(col: Any) -> bool:
    import pyarrow as pa

    return col is not None and pa.types.is_floating(col.type)


def _is_text(col: Any, rule: Rule) -> bool:
    """A text column for a typed field: its values are converted by type, as the API does with CSV."""
    import pyarrow as pa

    return col is not None and rule.column.type != "string" and (
        pa.types.is_string(col.type) or pa.types.is_large_string(col.type))


def _take(values: Any, kept: np.ndarray) -> Any:
    return values[kept] if isinstance(values, np.ndarray | Coded) else [values[i] for i in kept]


def _as_list(values: Any) -> Any:
    return values.tolist() if isinstance(values, np.ndarray) and values.dtype != object else values


def _table(columns: list[Any], merged: dict[str, Any]) -> Table:
    """:func:`.predictor.build_table`, without its per-value pass for columns already typed."""
    if all(isinstance(merged[c.name], np.ndarray | Coded) for c in columns):
        return Table([c.name for c in columns], [merged[c.name] for c in columns])
    from .predictor import build_table

    return build_table(columns, {k: _as_list(np.asarray(v)) if isinstance(v, np.ndarray | Coded) else v
                                 for k, v in merged.items()})


def _slice(table: Table, start: int, stop: int) -> Table:
    return Table(table.names, [c[start:stop] for c in table.columns])


def _flag_mask(values: Any, rule: Rule) -> np.ndarray | None:
    """Which values :func:`.validation._flag` would flag: numbers out of the widened training
    range, categories not seen in training (nulls never); ``values``: a list, numpy or Arrow array."""
    if rule.lo is not None and rule.hi is not None:
        arr = np.asarray([np.nan if v is None else v for v in values] if isinstance(values, list) else values,
                         dtype="float64")
        with np.errstate(invalid="ignore"):
            return (arr < rule.lo) | (arr > rule.hi)
    if rule.categories is not None and isinstance(values, Coded):  # each distinct value once (no nulls)
        cats = rule.categories
        return np.array([v not in cats for v in values.values.tolist()], dtype=bool).take(values.codes)
    if rule.categories is not None:
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = values if isinstance(values, pa.Array) else pa.array(
            values if isinstance(values, list) else values.tolist(), from_pandas=True)
        if not pa.types.is_string(arr.type):
            arr = pc.cast(arr, pa.string())
        known = pc.is_in(arr, value_set=pa.array(np.array(sorted(rule.categories), dtype=object), pa.string()))
        return _numpy(pc.and_(pc.invert(known), pc.is_valid(arr)))
    return None
