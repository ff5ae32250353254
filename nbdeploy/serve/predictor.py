"""One batch of validated requests -> one DataFrame -> ``predict`` -> each request's slice.

Runs in the batcher's worker thread. Columns are built with the dtypes of the model
signature (``long`` -> int64, ``double`` -> float64, ...), as MLflow's pyfunc does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .batcher import Part
from .bundle import Bundle
from .model import LoadedModel
from .payload import Tensor

_NUMPY = {"long": "int64", "integer": "int32", "double": "float64", "float": "float32", "boolean": "bool"}


class OutputMismatch(Exception):
    """The model returned a different number of rows than it was given."""


class Predictor:
    def __init__(self, bundle: Bundle, model: LoadedModel) -> None:
        self.bundle = bundle
        self.model = model
        self.columns = bundle.columns
        tensor = bundle.tensor_input or {}
        self.tensor_dtype = tensor.get("dtype")

    def frame(self, parts: list[Part]) -> Any:
        import pandas as pd

        if isinstance(parts[0].data, Tensor):
            rows: list[Any] = []
            for p in parts:
                rows.extend(p.data.data)
            return np.asarray(rows, dtype=self.tensor_dtype)
        if len(parts) == 1:
            merged = parts[0].data
        else:
            merged = {name: [] for name in parts[0].data}
            for p in parts:
                for name, values in p.data.items():
                    merged[name].extend(values)
        if self.columns is None:
            return pd.DataFrame(merged)
        data: dict[str, Any] = {}
        for col in self.columns:
            values = merged[col.name]
            dtype = _NUMPY.get(col.type)
            if dtype is not None and None in values:
                dtype = "float64" if col.type != "boolean" else "object"
            if col.type == "datetime":
                data[col.name] = pd.to_datetime(values)
            elif dtype is not None:
                data[col.name] = np.asarray(values, dtype=dtype)
            else:
                data[col.name] = values
        return pd.DataFrame(data)

    def run_batch(self, parts: list[Part]) -> list[Any]:
        raw = self.model.predict(self.frame(parts))
        total = sum(p.n for p in parts)
        return split_output(raw, [p.n for p in parts], total)


def split_output(raw: Any, sizes: list[int], total: int) -> list[Any]:
    """Cut the model output into one JSON-able piece per request, in order."""
    import pandas as pd

    if isinstance(raw, pd.DataFrame):
        _check(len(raw), total, sizes)
        return _cut(raw, sizes, lambda x: x.to_dict("records"))
    if isinstance(raw, pd.Series):
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
