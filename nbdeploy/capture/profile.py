"""Per-column statistics of a DataFrame: the training profile.

The profile travels in the capture record and in the bundle (``profile.json``);
the API validates requests against it and measures drift with it. Format::

    {"rows": int, "sampled_rows": int,
     "columns": {name: {"dtype": str, "kind": "numeric"|"boolean"|"datetime"|"categorical"|"text",
                        "count": int, "nulls": int,
                        # numeric: "min", "max", "mean", "std", "quantiles" {"0.01": ..},
                        #          "histogram" {"edges": [..], "counts": [..]},
                        #          "quantile_grid" [q(0), q(0.005), ..., q(1)] (201 values)
                        # categorical/boolean: "distinct", "top" [{"value", "count"}],
                        #          "values" (all distinct values when there are few)
                        # text (strings of several words, mostly distinct: reviews, tickets,
                        #          descriptions): "distinct", "length" {"min", "max", "mean"}
                        #          in characters; no values (no category is worth counting)
                        }}}

Counts, nulls, min and max are exact. For frames over ``max_exact_rows`` rows the
mean, std, quantiles, histogram and top values come from a deterministic sample
of rows, said in ``sampled_rows``, so profiling a large file costs a bounded time.

``quantile_grid`` is the column's distribution function in 201 points (every half
percent): enough for a Kolmogorov-Smirnov test of served values against the training
data (``nbdeploy drift``) without the bundle shipping any training row. Profiles written
before it existed lack it; the drift report then falls back to the histogram.
"""

from __future__ import annotations

import math
from typing import Any

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
HISTOGRAM_BINS = 20
TOP_VALUES = 10
MAX_LISTED_VALUES = 50
MAX_EXACT_ROWS = 200_000
#: points of ``quantile_grid``: the quantiles at 0, 1/(n-1), ..., 1
GRID_POINTS = 201


def column_kind(dtype: Any) -> str:
    from pandas.api import types as t

    if t.is_bool_dtype(dtype):
        return "boolean"
    if t.is_numeric_dtype(dtype):
        return "numeric"
    if t.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "categorical"


def _num(x: Any) -> float | int | None:
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    if math.isnan(f) or math.isinf(f):
        return None
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


def _plain(v: Any) -> Any:
    """A JSON-friendly scalar."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, bool | int | str) or v is None:
        return v
    return str(v)


def _numeric(col: Any, sample: Any) -> dict:
    import numpy as np

    s = sample.dropna().to_numpy(dtype="float64", na_value=np.nan)
    s = s[np.isfinite(s)]
    out: dict[str, Any] = {
        "min": _num(col.min()),
        "max": _num(col.max()),
        "mean": _num(s.mean()) if len(s) else None,
        "std": _num(s.std(ddof=1)) if len(s) > 1 else None,
    }
    if len(s):
        qs = np.quantile(s, QUANTILES)
        out["quantiles"] = {str(q): _num(v) for q, v in zip(QUANTILES, qs, strict=True)}
        counts, edges = np.histogram(s, bins=HISTOGRAM_BINS)
        out["histogram"] = {"edges": [_num(e) for e in edges], "counts": [int(c) for c in counts]}
        grid = np.quantile(s, np.linspace(0.0, 1.0, GRID_POINTS))
        out["quantile_grid"] = [_num(float(f"{v:.10g}")) for v in grid]  # 10 digits: a small profile.json
    return out


def _categorical(sample: Any) -> dict:
    vc = sample.dropna().value_counts()
    out: dict[str, Any] = {
        "distinct": int(len(vc)),
        "top": [{"value": _plain(v), "count": int(c)} for v, c in vc.head(TOP_VALUES).items()],
    }
    if len(vc) <= MAX_LISTED_VALUES:
        out["values"] = sorted((_plain(v) for v in vc.index), key=str)
    return out


#: a string column is free text when it has more distinct values than are listed and its
#: values' median word count is at least this
TEXT_MIN_WORDS = 3


def _text(sample: Any) -> dict | None:
    """The profile of a column of free text, or None when its values are categories (few, or single words)."""
    values = sample.dropna()
    if not len(values) or not all(isinstance(v, str) for v in values.head(100)):
        return None
    distinct = int(values.nunique())
    if distinct <= MAX_LISTED_VALUES:
        return None
    text = values.astype(str)
    if float(text.str.split().str.len().median()) < TEXT_MIN_WORDS:
        return None
    lengths = text.str.len()
    return {"distinct": distinct, "length": {"min": int(lengths.min()), "max": int(lengths.max()),
                                             "mean": _num(round(float(lengths.mean()), 2))}}


def profile_frame(df: Any, max_exact_rows: int = MAX_EXACT_ROWS) -> dict:
    """Profile every column of ``df`` (see the module docstring for the format)."""
    n = len(df)
    if n <= max_exact_rows:
        sample = df
    else:  # sorted random positions: cheaper than DataFrame.sample on millions of rows
        import numpy as np

        rows = np.unique(np.random.default_rng(0).integers(0, n, max_exact_rows))
        sample = df.iloc[rows]
    columns: dict[str, dict] = {}
    for name in df.columns:
        col = df[name]
        kind = column_kind(col.dtype)
        nulls = int(col.isna().sum())
        info: dict[str, Any] = {"dtype": str(col.dtype), "kind": kind, "count": n - nulls, "nulls": nulls}
        if kind == "numeric":
            info.update(_numeric(col, sample[name]))
        elif kind == "datetime":
            vals = col.dropna()
            info["min"] = str(vals.min()) if len(vals) else None
            info["max"] = str(vals.max()) if len(vals) else None
        elif kind == "categorical" and (text := _text(sample[name])) is not None:
            info.update(kind="text", **text)
        else:
            info.update(_categorical(sample[name]))
        columns[str(name)] = info
    return {"rows": n, "sampled_rows": len(sample), "columns": columns}


def schema_of(df: Any) -> list[dict]:
    """``[{"name", "dtype"}]`` for every column."""
    return [{"name": str(c), "dtype": str(t)} for c, t in df.dtypes.items()]
