"""The model's arithmetic as a numpy program: serve common scikit-learn models without scikit-learn.

A fitted scikit-learn model pays, on every ``predict``, for input validation, pandas
column selection and per-step dispatch (about 6-8 ms for a ColumnTransformer and a
100-tree gradient boosting, whether for 1 row or 64), and importing scikit-learn and
SciPy is most of a server's start. For the pipelines notebooks build most, the
fitted numbers are all a prediction needs, so the build compiles them into a
*program*: the same operations, in the same order and the same dtypes, written with
numpy only. ``nbdeploy serve`` runs the program when the bundle has one and never
imports scikit-learn.

A program exists only when it was proved equal to the model at build time
(:func:`write_program`): the model and the program predict the golden example and
rows generated from the training profile (every category, unseen ones, the range
ends, values beside each tree threshold); labels must be identical and numbers equal
to 1e-12 relative (tree ensembles are computed bit for bit; a BLAS dot product may
differ in the last bits with the array layout, as it does in scikit-learn itself).
Anything else - another estimator, a custom step, pandas output, ``predict_proba`` -
is not compiled, and the server loads the model with its own library as before.

Supported: ``Pipeline``, ``ColumnTransformer`` (named or positional columns,
``drop``/``passthrough``), ``StandardScaler``, ``MinMaxScaler``, ``SimpleImputer``
(numeric), ``OneHotEncoder`` (no infrequent categories), ``GradientBoostingClassifier``
/ ``Regressor``, ``HistGradientBoosting*`` (numeric features, identity link),
``DecisionTree*``, ``RandomForest*`` / ``ExtraTrees*`` (classifiers and regressors),
``LinearRegression``, ``Ridge``, ``Lasso``, ``ElasticNet``, ``LogisticRegression``.

This module is copied into bundles as part of ``nbdeploy_serve``: only numpy at run
time; the compiler reads fitted attributes and imports scikit-learn only to verify.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "nbdeploy.program/1"
PROGRAM_DIR = "nbdeploy_program"
RTOL = 1e-12


class Unsupported(Exception):
    """The model has a part the compiler does not know; the server uses the model's library."""


class Mismatch(Exception):
    """The program and the model disagreed on a row: the program is not written."""


FLOAT32_MAX = float(np.finfo(np.float32).max)


class InputOverflow(ValueError):
    """Finite numbers that became infinite in the cast to the trees' float32: a value too large
    for the model (scikit-learn refuses them too). ``features`` and ``rows``: where, in the
    trees' input; :meth:`Program.predict` adds the input ``column`` they come from and the
    ``bounds`` that column's values must keep to (None when the steps cannot be traced)."""

    def __init__(self, features: list[int], rows: list[int]) -> None:
        super().__init__(f"Input X contains a value too large for dtype('float32') (features {features}).")
        self.features, self.rows = features, rows
        self.column: str | None = None
        self.bounds: tuple[float, float] | None = None


class Table:
    """Named 1-D columns: what a pipeline step receives when it is given a DataFrame."""

    def __init__(self, names: list[str], columns: list[np.ndarray]) -> None:
        self.names = names
        self.columns = columns
        self.n = len(columns[0]) if columns else 0
        self._index: dict[str, int] | None = None

    def select(self, names: list[str]) -> Table:
        if names == self.names:
            return self
        if self._index is None:
            self._index = {n: i for i, n in enumerate(self.names)}
        index = self._index
        return Table(names, [self.columns[index[n]] for n in names])


class Coded:
    """A text column given as its distinct values and each row's index among them (Arrow's
    dictionary encoding, as batch scoring reads it): the one-hot encoder maps each distinct
    value once instead of each row's. Anything else sees the plain object array."""

    dtype = np.dtype(object)

    def __init__(self, values: np.ndarray, codes: np.ndarray) -> None:
        self.values, self.codes = values, codes

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, rows: Any) -> Coded:
        return Coded(self.values, self.codes[rows])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self.values.take(self.codes)
        return arr if dtype is None else arr.astype(dtype)


def as_array(x: Any, float_only: bool) -> np.ndarray:
    """``np.asarray(DataFrame)`` as pandas does it (column-major), then scikit-learn's dtype rule."""
    if isinstance(x, Table):
        dtype = np.result_type(*[c.dtype for c in x.columns])
        arr = np.empty((x.n, len(x.columns)), dtype=dtype, order="F")
        for j, c in enumerate(x.columns):
            arr[:, j] = c
        x = arr
    if x.dtype == object:
        x = x.astype(np.float64)
    if float_only and x.dtype.kind != "f":
        x = x.astype(np.float64)
    return x


def check_finite(x: np.ndarray, allow_nan: bool, who: str) -> None:
    if x.dtype.kind != "f":
        return
    if allow_nan:
        if np.isinf(x).any():
            raise ValueError(f"Input X contains infinity or a value too large for dtype('{x.dtype}') ({who}).")
    elif not np.isfinite(x).all():
        raise ValueError(f"Input X contains NaN or infinity ({who}).")


def in_order_sum(terms: np.ndarray) -> np.ndarray:
    """``terms[0] + terms[1] + ...``, added in that order, elementwise: what scikit-learn's loops
    over stages and trees compute, bit for bit.

    ``np.add.reduce`` along the first axis adds row after row while each row has two values
    or more; a reduce along a single contiguous run of values would sum it pairwise instead
    (other roundings), so one value per row goes through ``accumulate``, which is always in order.
    """
    if terms[0].size > 1:
        return np.add.reduce(terms, axis=0)
    return np.add.accumulate(terms, axis=0)[-1]


# -- the steps ----------------------------------------------------------------
# Each step is `run(x) -> y` plus a JSON spec whose arrays live in one .npz file.


class Step:
    kind = ""

    def run(self, x: Any) -> Any:
        raise NotImplementedError

    def spec(self, arrays: Arrays) -> dict[str, Any]:
        raise NotImplementedError


class Arrays:
    """The numeric tables of a program, stored by key in ``arrays.npz`` (never pickled).

    Labels that scikit-learn keeps as an object array of strings are stored as text and
    given back as object arrays, so a prediction has the model's own dtype.
    """

    def __init__(self, data: dict[str, np.ndarray] | None = None, objects: list[str] | None = None) -> None:
        self.data = dict(data or {})
        self.objects = list(objects or [])
        for key in self.objects:
            self.data[key] = self.data[key].astype(object)

    def put(self, value: Any) -> str | None:
        if value is None:
            return None
        key = f"a{len(self.data)}"
        arr = np.asarray(value)
        if arr.dtype == object:
            if not all(isinstance(v, str) for v in arr.ravel().tolist()):
                raise Unsupported("an array of Python objects that are not strings")
            self.objects.append(key)
        self.data[key] = arr
        return key

    def stored(self) -> dict[str, np.ndarray]:
        return {k: (v.astype(str) if k in self.objects else v) for k, v in self.data.items()}

    def get(self, key: str | None) -> Any:
        return None if key is None else self.data[key]


class Chain(Step):
    kind = "pipeline"

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps

    def run(self, x: Any) -> Any:
        last = len(self.steps) - 1
        for i, step in enumerate(self.steps):
            after = self.steps[i + 1] if i < last else None
            if isinstance(step, Columns) and isinstance(after, Trees) and after.takes_columns() and (
                    isinstance(x, Table) and x.n > LeafMasks.FEW_ROWS):  # (a request's few rows: no gain)
                x = step.run(x, as_float32=True)  # already in the layout the trees' masks read
            else:
                x = step.run(x)
        return x

    def spec(self, arrays: Arrays) -> dict[str, Any]:
        return {"kind": self.kind, "steps": [s.spec(arrays) for s in self.steps]}

    @classmethod
    def load(cls, spec: dict[str, Any], arrays: Arrays) -> Chain:
        return cls([load_step(s, arrays) for s in spec["steps"]])


class Columns(Step):
    """ColumnTransformer: each part gets its columns (as a table), outputs side by side."""

    kind = "columns"

    def __init__(self, parts: list[tuple[Step | None, list[str]]]) -> None:
        self.parts = parts

    def run(self, x: Any, as_float32: bool = False) -> Any:
        """The parts' outputs side by side. ``as_float32`` (float32 trees follow): float64 outputs
        are written straight into one float32 array, a feature's values side by side: the values
        of stacking them and then casting, without the float64 copy and the transposition (not
        when a value would become infinite: the trees then name it from the float64 one)."""
        if not isinstance(x, Table):
            raise ValueError("a ColumnTransformer program needs named columns")
        outs = []
        for step, names in self.parts:
            sub = x.select(names)
            y = as_array(sub, float_only=False) if step is None else step.run(sub)
            outs.append(y if y.ndim == 2 else y.reshape(-1, 1))
        if not outs:
            return np.empty((x.n, 0))
        if as_float32 and all(y.dtype == np.float64 for y in outs):
            out = np.empty((sum(y.shape[1] for y in outs), x.n), dtype=np.float32)  # the transposed layout
            at = 0
            with np.errstate(over="ignore"):
                for y in outs:
                    out[at:at + y.shape[1]] = y.T
                    at += y.shape[1]
            if not np.isinf(out).any():
                return out.T
        return np.hstack(outs)

    def spec(self, arrays: Arrays) -> dict[str, Any]:
        return {"kind": self.kind, "parts": [
            {"step": None if s is None else s.spec(arrays), "columns": names} for s, names in self.parts]}

    @classmethod
    def load(cls, spec: dict[str, Any], arrays: Arrays) -> Columns:
        return cls([(None if p["step"] is None else load_step(p["step"], arrays), list(p["columns"]))
                    for p in spec["parts"]])


class Affine(Step):
    """StandardScaler (``x -= mean; x /= scale``) and MinMaxScaler (``x *= scale; x += min``)."""

    kind = "affine"

    def __init__(self, mode: str, a: np.ndarray | None, b: np.ndarray | None,
                 clip: tuple[float, float] | None = None) -> None:
        self.mode, self.a, self.b, self.clip = mode, a, b, clip

    def run(self, x: Any) -> Any:
        x = as_array(x, float_only=True) if isinstance(x, Table) else np.array(
            as_array(x, float_only=True), copy=True, order="K")  # a table's array is already a new one
        check_finite(x, allow_nan=True, who=self.mode)
        if self.mode == "standard":
            if self.a is not None:
                x -= self.a
            if self.b is not None:
                x /= self.b
        else:
            x *= self.a
            x += self.b
            if self.clip is not None:
                np.clip(x, self.clip[0], self.clip[1], out=x)
        return x

    def spec(self, arrays: Arrays) -> dict[str, Any]:
        return {"kind": self.kind, "mode": self.mode, "a": arrays.put(self.a), "b": arrays.put(self.b),
                "clip": None if self.clip is None else list(self.clip)}

    @classmethod
    def load(cls, spec: dict[str, Any], arrays: Arrays) -> Affine:
        clip = spec.get("clip")
        return cls(spec["mode"], arrays.get(spec["a"]), arrays.get(spec["b"]),
                   None if clip is None else (float(clip[0]), float(clip[1])))


class Impute(Step):
    """SimpleImputer on numbers: NaN -> the fitted statistic of its column."""

    kind = "impute"

    def __init__(self, fill: np.ndarray) -> None:
        self.fill = fill

    def run(self, x: Any) -> Any:
        x = np.array(as_array(x, float_only=True), copy=True, order="K")
        check_finite(x, allow_nan=True, who="SimpleImputer")
        mask = np.isnan(x)
        if mask.any():
            x[mask] = np.broadcast_to(self.fill.astype(x.dtype), x.shape)[mask]
        return x

    def spec(self, arrays: Arrays) -> dict[str, Any]:
        return {"kind": self.kind, "fill": arrays.put(self.fill)}

    @classmethod
    def load(cls, spec: dict[str, Any], arrays: Arrays) -> Impute:
        return cls(arrays.get(spec["fill"]))


_MISSING = "__nbdeploy_missing__"


def _key(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value):
        return _MISSING
    if isinstance(value, np.generic):
        return value.item()
    return value


class OneHot(Step):
    """OneHotEncoder: per column, category -> output column; unknown -> zeros (or an error)."""

    kind = "onehot"

    def __init__(self, categories: list[list[Any]], drop: list[int | None], unknown: str, dtype: str) -> None:
        self.categories, self.drop, self.unknown, self.dtype = categories, drop, unknown, dtype
        self.maps: list[dict[Any, int]] = []
        self.widths: list[int] = []
        for cats, dropped in zip(categories, drop, strict=True):
            mapping: dict[Any, int] = {}
            out = 0
            for i, c in enumerate(cats):
                if i == dropped:
                    mapping[_key(c)] = -1
                    continue
                mapping[_key(c)] = out
                out += 1
            self.maps.append(mapping)
            self.widths.append(out)
        self.offsets = np.cumsum([0, *self.widths])[:-1].tolist()
        self._width = sum(self.widths)
        # category -> its column in the output; a dropped category -> the spare column past the end
        self._columns = [{k: self._width if c < 0 else offset + c for k, c in mapping.items()}
                         for mapping, offset in zip(self.maps, self.offsets, strict=True)]

    def run(self, x: Any) -> Any:
        cols = x.columns if isinstance(x, Table) else [x[:, j] for j in range(x.shape[1])]
        n = x.n if isinstance(x, Table) else x.shape[0]
        width = self._width
        if any(isinstance(col, Coded) for col in cols):  # batch scoring: each distinct value once, then its rows
            index = np.stack([self._coded(col, mapping, j) if isinstance(col, Coded) else
                              np.array(self._found(col, mapping, j), dtype=np.intp)
                              for j, (col, mapping) in enumerate(zip(cols, self._columns, strict=True))])
        else:
            codes: list[int] = []  # every column's output column per row; `width` (a spare column): none
            for j, (col, mapping) in enumerate(zip(cols, self._columns, strict=True)):
                codes += self._found(col, mapping, j)
            index = np.array(codes, dtype=np.intp).reshape(len(cols), n)
        out = np.zeros((n, width + 1), dtype=self.dtype)
        if len(cols):
            out[np.arange(n), index] = 1
        return out[:, :width]

    def _found(self, col: np.ndarray, mapping: dict[Any, int], j: int) -> list[int]:
        """Each row's output column (``width``, a spare one: none)."""
        if col.dtype.kind == "f" and np.isinf(col).any():
            raise ValueError("Input X contains infinity (OneHotEncoder).")
        values = col.tolist()
        found: list[Any] = list(map(mapping.get, values))  # None: unknown, missing, or a key needing _key
        if None in found:
            for i, c in enumerate(found):
                if c is None:
                    c = mapping.get(_key(values[i]))
                    if c is None:
                        if self.unknown == "error":
                            raise ValueError(f"Found unknown categories [{values[i]!r}] in column {j} "
                                             "during transform")
                        c = self._width
                    found[i] = c
        return found

    def _coded(self, col: Coded, mapping: dict[Any, int], j: int) -> np.ndarray:
        """Each row's output column: the distinct values mapped as :meth:`run` maps a row's."""
        values = col.values.tolist()
        found = [mapping.get(v) for v in values]
        found = [mapping.get(_key(v)) if c is None else c for v, c in zip(values, found, strict=True)]
        if self.unknown == "error" and None in found:  # an error only when a row has that value
            unknown = np.array([c is None for c in found], dtype=bool).take(col.codes)
            if unknown.any():
                raise ValueError(f"Found unknown categories [{values[col.codes[np.argmax(unknown)]]!r}] in "
                                 f"column {j} during transform")
        return np.array([self._width if c is None else c for c in found], dtype=np.intp).take(col.codes)

    def spec(self, arrays: Arrays) -> dict[str, Any]:
        return {"kind": self.kind, "categories": [[_jsonable(c) for c in cats] for cats in self.categories],
                "drop": self.drop, "unknown": self.unknown, "dtype": self.dtype}

    @classmethod
    def load(cls, spec: dict[str, Any], arrays: Arrays) -> OneHot:
        return cls(spec["categories"], spec["drop"], spec["unknown"], spec["dtype"])


def _jsonable(value: Any) -> Any:
    value = _key(value)
    return None if value is _MISSING else value


class TooLarge(Exception):
    """A faster layout would take too much memory for these trees; they are walked instead."""


class LeafMasks:
    """Every tree's exit leaf from bit masks (QuickScorer, Lucchese et al., SIGIR 2015).

    A tree's leaves, left to right, are the bits of one word. A split that sends a row
    right rules out the leaves of its left subtree: its mask has their bits clear. The
    row's leaf is the lowest bit left set once the masks of all its right-going splits
    are ANDed, which is the leaf the walk from the root ends on. A row goes right at
    ``x[f] > t``, so for feature f the splits it goes right at are those with the
    smallest thresholds: with each feature's splits sorted by threshold, the AND of
    the first k masks is one stored row, and the row a value picks is found by
    ``searchsorted``. Per input row that is one search per feature, one copy of a
    stored row per feature and an AND, instead of several lookups per tree and level.

    float32 input only (the walk compares float32), and no missing values: NaN goes
    the walk's way. The search compares float32 with float32, as the walk does (-0.0
    equals +0.0). A stored row is the trees' words side by side, ANDed 8 bytes at a time.
    """

    #: the stored rows may take this many bytes at most (else the trees are walked)
    MAX_BYTES = 8 << 20
    #: leaves of a tree, at most
    MAX_LEAVES = 64
    #: features are looked up together while their rows' combinations are at most this many
    GROUP_ROWS = 256
    #: up to this many rows, all features are searched at once (fewer calls; more work per row)
    FEW_ROWS = 256

    def __init__(self, roots: np.ndarray, feature: np.ndarray, t32: np.ndarray, left: np.ndarray,
                 right: np.ndarray) -> None:
        trees = len(roots)
        leaves: list[int]  # the trees' leaf nodes, tree after tree
        split_tree, split_node, split_mask, leaves, leaf_base = [], [], [], [], []
        width = 0
        for tree, root in enumerate(roots.tolist()):
            order: list[int] = []  # the tree's leaves, left to right
            stack = [(int(root), False)]
            pending: list[tuple[int, int]] = []  # (split, index of its first left leaf)
            while stack:  # depth first, left subtree before right
                node, done = stack.pop()
                if done:  # the left subtree of `node` is finished: its leaves are order[first:]
                    split, first = pending.pop()
                    split_tree.append(tree)
                    split_node.append(split)
                    split_mask.append(((1 << (len(order) - first)) - 1) << first)
                    continue
                lo, hi = int(left[node]), int(right[node])
                if lo == node:  # a leaf loops to itself
                    order.append(node)
                    if len(order) > self.MAX_LEAVES:
                        raise TooLarge(f"a tree with more than {self.MAX_LEAVES} leaves")
                    continue
                stack.append((hi, False))
                stack.append((node, True))
                pending.append((node, len(order)))
                stack.append((lo, False))
            width = max(width, len(order))
            leaf_base.append(len(leaves))
            leaves.extend(order)
        self.dtype = next(np.dtype(d) for d in ("u1", "u2", "u4", "u8") if np.dtype(d).itemsize * 8 >= width)
        self.leaves = np.asarray(leaves, dtype=np.intp)  # node of each leaf slot, trees one after another
        self.leaf_base = np.asarray(leaf_base, dtype=np.intp)[:, None]
        nodes = np.asarray(split_node, dtype=np.intp)
        used = _distinct(feature.take(nodes)) if len(nodes) else np.zeros(0, np.intp)
        rows = len(nodes) + len(used)
        if rows * trees * self.dtype.itemsize > self.MAX_BYTES:
            raise TooLarge(f"{rows} x {trees} stored masks")
        self.features = used
        full = np.iinfo(self.dtype).max
        t = t32.take(nodes) + np.float32(0)  # + 0: -0.0 -> +0.0, so that it compares as floats do
        slot = np.searchsorted(used, feature.take(nodes))  # which used feature each split tests
        by = np.lexsort((t, slot))  # features one after another, each sorted by threshold
        counts = np.bincount(slot, minlength=len(used))
        split_t = np.split(t[by], np.cumsum(counts)[:-1])
        # feature j's rows start at (splits of the features before j) + j; its first row is every
        # leaf still possible (no split went right), row k the AND of its k lowest splits' masks
        starts = np.cumsum(counts) - counts + np.arange(len(used))
        # the trees of a stored row side by side, padded to whole 8-byte words: a row is ANDed a word at a time
        width = -(-trees * self.dtype.itemsize // 8) * 8 // self.dtype.itemsize
        table = np.full((rows, width), full, dtype=self.dtype)
        at = np.arange(len(nodes)) + slot[by] + 1
        table[at, np.asarray(split_tree, dtype=np.intp)[by]] = (
            np.asarray(split_mask, dtype=np.uint64)[by] ^ np.uint64(full)).astype(self.dtype)
        for j, start in enumerate(starts.tolist()):
            end = start + int(counts[j]) + 1
            np.bitwise_and.accumulate(table[start:end], axis=0, out=table[start:end])
        # Splits on the same threshold (a one-hot column's 0.5, a value many trees split at) are
        # passed together: only the rows after each distinct threshold are kept, and a value is
        # searched among the distinct thresholds (compared with the one, for a single threshold)
        #: each used feature's distinct thresholds, sorted: a value is above the first k of them
        self.thresholds = [_distinct(ts) for ts in split_t]
        keep = [start + np.concatenate([[0], np.searchsorted(ts, u, side="right")])
                for start, ts, u in zip(starts.tolist(), split_t, self.thresholds, strict=True)]
        # Features of few rows (one-hot columns, flags: two rows each) are looked up together: a
        # group's row for each combination of its features' rows is their AND, precomputed, so a
        # value row takes one stored row per group instead of one per feature
        self.sizes = [len(k) for k in keep]  # rows of each feature
        self.groups: list[list[int]] = []
        for j in sorted(range(len(keep)), key=lambda j: self.sizes[j]):
            if self.groups and np.prod([self.sizes[i] for i in self.groups[-1]]) * self.sizes[j] <= self.GROUP_ROWS:
                self.groups[-1].append(j)
            else:
                self.groups.append([j])
        grouped = sum(int(np.prod([self.sizes[i] for i in g])) for g in self.groups)
        if grouped * width * self.dtype.itemsize > self.MAX_BYTES:  # wide trees: one feature at a time
            self.groups = [[j] for j in range(len(keep))]
        parts = []
        for group in self.groups:
            part = table[keep[group[0]]]
            for j in group[1:]:
                part = (part[:, None, :] & table[keep[j]][None, :, :]).reshape(-1, width)
            parts.append(part)
        table = np.concatenate(parts) if parts else table[:0]
        self.starts = np.cumsum([0] + [len(part) for part in parts])[:-1].astype(np.intp)  # of each group
        self.table = table
        self.words = table.view(np.uint64)
        self.trees = trees
        # a few rows (a request's batch): every feature searched in one call, among keys that order as
        # the thresholds do, feature after feature (in the groups' order); the groups' rows summed in one
        # call: row = start + sum(place * weight), with the keys' positions as places (each feature's
        # first key's position taken off, through the start)
        order = [j for group in self.groups for j in group]
        offsets = np.arange(len(order), dtype=np.int64) << 32
        self._few_features = self.features[np.asarray(order, dtype=np.intp)] if order else self.features
        self._key_offsets = offsets
        self._keys = np.concatenate([np.zeros(0, np.int64)] + [
            _order_keys(self.thresholds[j]).astype(np.int64) + off for j, off in zip(order, offsets.tolist(),
                                                                                     strict=True)])
        first_key = np.cumsum([0] + [len(self.thresholds[j]) for j in order])[:-1].astype(np.int64)
        self._weight = np.array([int(np.prod([self.sizes[i] for i in group[k + 1:]], dtype=np.int64))
                                 for group in self.groups for k in range(len(group))], dtype=np.int64)
        self._group_first = np.cumsum([0] + [len(group) for group in self.groups])[:-1].astype(np.intp)
        self._few_starts = (self.starts - (np.add.reduceat(first_key * self._weight, self._group_first)
                                           if order else 0)).astype(np.int64)
        # the lowest set bit of a byte or a 16-bit word, looked up; of wider words, computed
        if self.dtype.itemsize <= 2:
            self.lowest: np.ndarray | None = _lowest_bit(
                np.arange(1 << (8 * self.dtype.itemsize), dtype=np.int64)).astype(np.intp)
        else:
            self.lowest = None

    def bits(self, x: np.ndarray) -> np.ndarray:
        """``(rows, trees)`` (a view): each tree's leaves still possible for each row of float32 ``x``:
        per group of features, the stored row their values pick (each value's place among its
        feature's distinct thresholds: a binary search, or one comparison), ANDed a word at a time."""
        if len(x) <= self.FEW_ROWS and len(self.thresholds):
            return self._few_bits(x)
        words = None
        features = self.features.tolist()
        for group, start in zip(self.groups, self.starts.tolist(), strict=True):
            at = None  # the group's row: its features' rows, numbered as the product enumerates them
            for j in group:
                ts, values = self.thresholds[j], x[:, features[j]]
                if len(ts) == 1:  # above it or not: the second row or the first
                    here = (values > ts[0]).astype(np.intp)
                else:
                    here = np.searchsorted(ts, values, side="left")  # distinct thresholds below the value
                if at is None:
                    at = here
                else:
                    at *= self.sizes[j]
                    at += here
            assert at is not None
            at += start
            picked = self.words.take(at, axis=0)
            if words is None:
                words = picked
            else:
                np.bitwise_and(words, picked, out=words)
        if words is None:  # no splits at all: every tree is its root leaf
            words = np.repeat(self.words[:1], len(x), axis=0)
        return words.view(self.dtype)[:, : self.trees]

    def _few_bits(self, x: np.ndarray) -> np.ndarray:
        """:meth:`bits` in a fixed number of calls, whatever the number of features."""
        keys = _order_keys(x.take(self._few_features, axis=1)).astype(np.int64)
        keys += self._key_offsets
        place = np.searchsorted(self._keys, keys)  # keys below each value: its feature's and the features' before
        at = np.add.reduceat(place * self._weight, self._group_first, axis=1)
        at += self._few_starts
        words = np.bitwise_and.reduce(self.words.take(at, axis=0), axis=1)
        return words.view(self.dtype)[:, : self.trees]

    def slots(self, x: np.ndarray) -> np.ndarray:
        """``(trees, rows)``: the leaf slot each tree sends each row of float32 ``x`` to."""
        bits = self.bits(x)
        leaf = self.lowest.take(bits) if self.lowest is not None else _lowest_bit(bits)
        return leaf.T + self.leaf_base


def _distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique`` of numbers without NaN: sorted, each value once. numpy 2's own imports
    ``numpy.ma`` (10 ms of every start: a batch scoring run's, a server's) to ask whether the
    array is masked."""
    ordered = np.sort(values)
    keep = np.empty(len(ordered), dtype=bool)
    keep[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def _order_keys(values: np.ndarray) -> np.ndarray:
    """int32 keys that order as the float32 ``values`` do (no NaN; -0.0 below +0.0, and the
    thresholds hold +0.0 only, so a value of -0.0 is not above a threshold of 0, as in floats)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.int32)
    return bits ^ ((bits >> 31) & np.int32(0x7FFFFFFF))


def _lowest_bit(words: np.ndarray) -> np.ndarray:
    """The index of each word's lowest set bit: ``w & -w`` isolates it (a power of two, exact
    as a double), and frexp gives its exponent."""
    isolated = words & (~words + np.array(1, words.dtype))
    return np.frexp(isolated.astype(np.float64))[1] - 1


class Trees(Step):
    """Tree ensembles: every tree's leaf found at once, leaves summed in tree order.

    Trees of up to 64 leaves on float32 input find their leaves from bit masks
    (:class:`LeafMasks`); deeper trees, float64 input and rows with missing values walk
    all trees level by level, one vectorized step per level.

    ``how`` is ``boosting`` (``raw = init; raw += rate * leaf`` for each stage, as
    scikit-learn's ``predict_stages``), ``mean`` (forests: ``sum += leaf`` per tree,
    then ``/= n``) or ``single`` (one tree). ``output`` decides what ``predict``
    returns: ``raw`` (regression), ``binary`` (``classes[raw >= 0]``), ``argmax``.
    """

    kind = "trees"

    def __init__(self, how: str, output: str, feature: np.ndarray, threshold: np.ndarray, left: np.ndarray,
                 right: np.ndarray, nan_left: np.ndarray, value: np.ndarray, roots: np.ndarray, depth: int,
                 init: np.ndarray, rate: float, classes: np.ndarray | None, n_features: int,
                 dtype: str = "float32", check: str | None = None) -> None:
        self.how, self.output = how, output
        #: the input's dtype in scikit-learn's walk: float32 (trees, forests, GradientBoosting) or
        #: float64 (HistGradientBoosting); `check`: which non-finite inputs scikit-learn refuses
        self.dtype = dtype
        self.check = check or ("finite" if how == "boosting" else "allow_nan")
        self.feature, self.threshold, self.left, self.right = feature, threshold, left, right
        self.init, self.rate, self.classes, self.n_features = init, rate, classes, n_features
        self.nan_left, self.value, self.roots, self.depth = nan_left, value, roots, depth
        # The input is float32, so `x <= t` (t float64, as scikit-learn compares) is the same test as
        # `x <= t32` with t32 the largest float32 not above t: compare in float32, half the bytes.
        if dtype == "float32":
            t32 = threshold.astype(np.float32)
            above = t32.astype(np.float64) > threshold
            t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
            self._t = t32
        else:
            self._t = threshold
        # the first level is the same for every row: each tree's root split, read straight from x
        flat_roots = roots.ravel()
        self._root_feature = feature.take(flat_roots)
        self._root_t = self._t.take(flat_roots)[:, None]
        self._root_nan_left = nan_left.take(flat_roots)[:, None]
        self._masks: LeafMasks | None = None
        if dtype == "float32":
            try:
                self._masks = LeafMasks(flat_roots, feature, self._t, left, right)
            except TooLarge:
                pass
        # the walk (deep trees, or missing values): children side by side, the next node is
        # child[2 * node + (went right)]
        self._child = np.stack([left, right], axis=1).ravel().astype(np.intp)
        self._root_left = left.take(flat_roots).astype(np.intp)[:, None]
        self._root_right = right.take(flat_roots).astype(np.intp)[:, None]
        self._is_leaf = left == np.arange(len(left))
        self._set_terms()

    #: in the walk of deep trees, every this many levels the walks that reached a leaf are set aside
    SETTLE_EVERY = 4

    @property
    def value(self) -> np.ndarray:
        return self._value

    @value.setter
    def value(self, value: np.ndarray) -> None:
        self._value = value
        if hasattr(self, "_masks"):  # set again after __init__
            self._set_terms()

    def _set_terms(self) -> None:
        # boosting adds `rate * leaf` stage after stage: the product of the same two doubles is the
        # same double, so it is taken once here instead of on every call
        terms = self.rate * self.value if self.how == "boosting" else self.value
        self._terms = terms  # by node, where the walk ends
        self._mask_terms: np.ndarray | None = None  # by leaf slot, where the masks end (with masks)
        # trees of up to 8 leaves: each tree's byte of remaining leaves -> its exit leaf's term, a
        # table of 256 terms per tree (row `tree * 256 + byte`); only when it stays small
        self._bit_terms: np.ndarray | None = None
        self._bit_base: np.ndarray | None = None
        m = self._masks
        if m is None:
            return
        self._mask_terms = mask_terms = terms.take(m.leaves, axis=0)
        # (m.lowest, the lowest bits looked up, is always there for a byte per tree)
        if m.lowest is not None and m.dtype.itemsize == 1 and m.trees * 256 * terms[0].size * 8 <= LeafMasks.MAX_BYTES:
            # (trees, 255): the byte 0 never occurs (a leaf is always left), nor a bit past a tree's last leaf
            ends = np.append(m.leaf_base[1:, 0], len(m.leaves))[:, None]
            leaf = np.minimum(m.leaf_base + m.lowest[None, 1:], ends - 1)
            table = np.zeros((m.trees, 256, *terms.shape[1:]), dtype=terms.dtype)
            table[:, 1:] = mask_terms.take(leaf, axis=0)
            self._bit_terms = table.reshape(m.trees * 256, *terms.shape[1:])
            self._bit_base = (np.arange(m.trees, dtype=np.intp) * 256)[:, None]

    def run(self, x: Any) -> Any:
        given = as_array(x, float_only=False)
        # the masks read a feature's values side by side; the walk a row's
        x = np.asarray(given, dtype=self.dtype, order="F" if self._masks is not None else "C")
        if x.shape[1] != self.n_features:
            raise ValueError(f"X has {x.shape[1]} features, but the model expects {self.n_features}")
        if self.check != "none":
            try:
                check_finite(x, allow_nan=self.check == "allow_nan", who="trees")
            except ValueError:
                if x.dtype == np.float32 and given.dtype.kind in "fiu":  # finite before the cast?
                    over = np.isinf(x) & np.isfinite(given)
                    if over.any():
                        rows, features = np.nonzero(over)
                        raise InputOverflow(sorted(set(features.tolist())), sorted(set(rows.tolist()))) from None
                raise
        n, f = x.shape
        has_nan = self.check != "finite" and bool(np.isnan(x).any())
        if self._masks is not None and not has_nan:
            return self._finish(self._by_masks(x))
        x = np.ascontiguousarray(x)
        flat = x.ravel()
        # the walk: one row of nodes per tree (trees in stage order, then output), one column per input row
        v = x.T.take(self._root_feature, axis=0)
        if has_nan:  # a missing value goes where training sent it (scikit-learn's missing_go_to_left)
            right = ~((v <= self._root_t) | (np.isnan(v) & self._root_nan_left))
        else:
            right = v > self._root_t
        node: np.ndarray = np.where(right, self._root_right, self._root_left).ravel()  # tree after tree, row after row
        trees = len(self._root_feature)
        base = np.tile(np.arange(n, dtype=np.intp) * f, trees) if n > 1 else None  # where each row's values start
        feature, t32, child = self.feature, self._t, self._child
        done: np.ndarray | None  # (deep trees) the nodes of walks that reached a leaf
        slot: np.ndarray  # where the rest go: set with `done`, read only once it is
        done, slot = None, None  # type: ignore[assignment]  # slot: None until done is set
        for level in range(1, self.depth):
            if level % self.SETTLE_EVERY == 0:  # leaves loop to themselves: stop walking the finished
                leaf = self._is_leaf.take(node)
                if leaf.any():
                    if done is None:
                        done, slot = np.empty(trees * n, dtype=np.intp), np.arange(trees * n)
                    done[slot[leaf]] = node[leaf]
                    going = ~leaf
                    node, slot = node[going], slot[going]
                    base = base[going] if base is not None else None
                    if not node.size:
                        break
            at = feature.take(node)
            if base is not None:
                at += base
            v = flat.take(at)
            if has_nan:
                right = ~((v <= t32.take(node)) | (np.isnan(v) & self.nan_left.take(node)))
            else:
                right = v > t32.take(node)
            node <<= 1
            node += right
            node = child.take(node)
        if done is not None:
            done[slot] = node
            node = done
        node = node.reshape(trees, n)
        return self._finish(self._combine(node, n, self._terms))

    #: rows per step of the masks' path: its arrays (a word per tree and row, a term per tree and
    #: row) then stay in the CPU's caches; each row's answer does not depend on it
    MASK_BLOCK = 2048

    def takes_columns(self) -> bool:
        """Whether :meth:`run` reads float32 columns (the masks' path)."""
        return self._masks is not None and self.dtype == "float32"

    def _by_masks(self, x: np.ndarray) -> np.ndarray:
        """The trees' sum from their leaf masks, block by block of rows."""
        m = self._masks
        assert m is not None
        x = np.asfortranarray(x)  # a feature's values side by side: each search reads them in a run
        n = len(x)
        if n <= self.MASK_BLOCK:
            return self._masks_block(m, x)
        return np.concatenate([self._masks_block(m, x[i:i + self.MASK_BLOCK]) for i in range(0, n, self.MASK_BLOCK)])

    def _masks_block(self, m: LeafMasks, x: np.ndarray) -> np.ndarray:
        bits = m.bits(x)  # (rows, trees)
        if self._bit_terms is not None:  # a byte per tree: the byte picks the term, no leaf number between
            return self._combine(np.add(bits.T, self._bit_base, dtype=np.intp),  # type: ignore[arg-type]  # set with _bit_terms
                                 len(x), self._bit_terms)
        leaf = m.lowest.take(bits) if m.lowest is not None else _lowest_bit(bits)
        return self._combine(leaf.T + m.leaf_base, len(x), self._mask_terms)  # type: ignore[arg-type]  # set with the masks

    def _combine(self, node: np.ndarray, n: int, leaf_terms: np.ndarray) -> np.ndarray:
        """The trees' leaves summed in tree order: ``(n, K)`` for boosting, ``(n, *value)`` else.

        ``node`` is ``(trees, n)`` indices into ``leaf_terms``, the leaves' terms in the walk's layout."""
        value_shape = leaf_terms.shape[1:]
        if self.how == "boosting":  # raw = init; raw += rate * leaf, stage after stage
            stages, k = self.roots.shape
            terms = np.empty((stages + 1, k, n, *value_shape), dtype=np.float64)
            terms[0] = self.init.reshape(k, *([1] * (1 + len(value_shape))))
            # mode="clip" (the leaves are always in range): with "raise" numpy takes into a copy of `out`
            leaf_terms.take(node.reshape(stages, k, n), axis=0, out=terms[1:], mode="clip")
            return in_order_sum(terms).T.reshape(n, k)
        # forests and single trees: the sum of the trees' leaves (then their mean)
        trees = self.roots.shape[0]
        out = in_order_sum(leaf_terms.take(node.reshape(trees, n), axis=0))
        if self.how == "mean":
            out /= trees
        return out

    def _finish(self, raw: np.ndarray) -> np.ndarray:
        if self.output == "raw":
            return raw.ravel() if raw.ndim == 2 and raw.shape[1] == 1 else raw
        if self.output == "binary":
            return self.classes[(raw.ravel() >= 0).astype(int)]  # type: ignore[index]  # a classifier: classes set
        if self.output == "binary_positive":  # HistGradientBoosting: a raw score of exactly 0 is class 0
            return self.classes[(raw.ravel() > 0).astype(int)]  # type: ignore[index]  # a classifier: classes set
        if self.output == "proba_argmax":  # a classifier tree: value rows are class fractions
            return self.classes[np.argmax(raw.reshape(raw.shape[0], -1), axis=1)]  # type: ignore[index]  # a classifier: classes set
        return self.classes[np.argmax(raw, axis=1)]  # type: ignore[index]  # a classifier: classes set

    def spec(self, arrays: Arrays) -> dict[str, Any]:
        put = arrays.put
        return {"kind": self.kind, "how": self.how, "output": self.output, "feature": put(self.feature),
                "threshold": put(self.threshold), "left": put(self.left), "right": put(self.right),
                "nan_left": put(self.nan_left), "value": put(self.value), "roots": put(self.roots),
                "depth": self.depth, "init": put(self.init), "rate": self.rate,
                "classes": put(self.classes), "n_features": self.n_features, "dtype": self.dtype,
                "check": self.check}

    @classmethod
    def load(cls, spec: dict[str, Any], arrays: Arrays) -> Trees:
        get = arrays.get
        return cls(spec["how"], spec["output"], get(spec["feature"]), get(spec["threshold"]), get(spec["left"]),
                   get(spec["right"]), get(spec["nan_left"]), get(spec["value"]), get(spec["roots"]),
                   int(spec["depth"]), get(spec["init"]), float(spec["rate"]), get(spec["classes"]),
                   int(spec["n_features"]), spec.get("dtype", "float32"), spec.get("check"))


class Linear(Step):
    """``X @ coef (.T) + intercept``, then the label rule of a linear classifier if any."""

    kind = "linear"

    def __init__(self, coef: np.ndarray, intercept: Any, classes: np.ndarray | None) -> None:
        self.coef, self.intercept, self.classes = coef, intercept, classes

    def run(self, x: Any) -> Any:
        x = as_array(x, float_only=False)
        check_finite(x, allow_nan=False, who="linear model")
        if self.coef.shape[-1] != x.shape[1]:
            raise ValueError(f"X has {x.shape[1]} features, but the model expects {self.coef.shape[-1]}")
        if self.classes is None:
            return x @ self.coef + self.intercept if self.coef.ndim == 1 else x @ self.coef.T + self.intercept
        scores = x @ (self.coef.T if self.coef.ndim == 2 else self.coef) + self.intercept
        if scores.ndim > 1 and scores.shape[1] == 1:
            scores = scores.reshape(-1)
        index = (scores > 0).astype(np.intp) if scores.ndim == 1 else np.argmax(scores, axis=1)
        return self.classes[index]

    def spec(self, arrays: Arrays) -> dict[str, Any]:
        return {"kind": self.kind, "coef": arrays.put(self.coef), "intercept": arrays.put(self.intercept),
                "classes": arrays.put(self.classes)}

    @classmethod
    def load(cls, spec: dict[str, Any], arrays: Arrays) -> Linear:
        intercept = arrays.get(spec["intercept"])
        if intercept is not None and intercept.ndim == 0:
            intercept = intercept[()]
        return cls(arrays.get(spec["coef"]), intercept, arrays.get(spec["classes"]))


STEPS: dict[str, Any] = {c.kind: c for c in (Chain, Columns, Affine, Impute, OneHot, Trees, Linear)}


def load_step(spec: dict[str, Any], arrays: Arrays) -> Step:
    cls = STEPS.get(spec.get("kind", ""))
    if cls is None:
        raise ValueError(f"unknown program step {spec.get('kind')!r}")
    return cls.load(spec, arrays)


# -- the program --------------------------------------------------------------


class Program:
    """A compiled model: ``predict(Table)`` with numpy only."""

    def __init__(self, inputs: list[str], root: Step, model_class: str, checked_rows: int = 0) -> None:
        self.inputs = inputs
        self.root = root
        self.model_class = model_class
        self.checked_rows = checked_rows

    def predict(self, table: Table) -> np.ndarray:
        try:
            return self.root.run(table.select(self.inputs))
        except InputOverflow as e:
            source = _trees_inputs(self.root, self.inputs)
            traced = source[e.features[0]] if source is not None and e.features[0] < len(source) else None
            if traced is not None:
                e.column, e.bounds = traced[0], _bounds(traced[1])
            raise

    def save(self, folder: Path) -> None:
        """Write ``program.json`` + ``arrays.npz`` into ``folder`` (which must not exist yet)."""
        arrays = Arrays()
        root = self.root.spec(arrays)
        doc = {"format": FORMAT, "inputs": self.inputs, "model_class": self.model_class,
               "checked_rows": self.checked_rows, "object_arrays": arrays.objects, "root": root}
        folder.mkdir(parents=True)
        np.savez(folder / "arrays.npz", allow_pickle=False, **arrays.stored())
        (folder / "program.json").write_text(json.dumps(doc, indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path) -> Program:
        doc = json.loads((folder / "program.json").read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(f"{folder}/program.json is {doc.get('format')!r}, not {FORMAT}")
        with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
            arrays = Arrays({k: npz[k] for k in npz.files}, doc.get("object_arrays"))
        return cls(list(doc["inputs"]), load_step(doc["root"], arrays), doc.get("model_class", ""),
                   int(doc.get("checked_rows", 0)))


# -- where a trees' input feature comes from (only when a value overflowed) -------

#: each feature: (input column, the elementwise steps it went through, by feature index) or None
Sources = list[tuple[str, list[tuple[Step, int]]] | None]


def _trees_inputs(root: Step, names: list[str]) -> Sources | None:
    """The sources of the features a program's trees receive (None: no trees, or a step not traced)."""
    sources: Sources = [(n, []) for n in names]
    for step in root.steps if isinstance(root, Chain) else [root]:
        if isinstance(step, Trees):
            return sources
        traced = _through(step, sources)
        if traced is None:
            return None
        sources = traced
    return None


def _through(step: Step, sources: Sources) -> Sources | None:
    if isinstance(step, Chain):
        for s in step.steps:
            traced = _through(s, sources)
            if traced is None:
                return None
            sources = traced
        return sources
    if isinstance(step, Columns):
        by_name = {s[0]: s for s in sources if s is not None and not s[1]}
        out: Sources = []
        for sub, names in step.parts:
            part: Sources | None = [by_name.get(n) for n in names]
            if sub is not None and part is not None:
                part = _through(sub, part)
            if part is None:
                return None
            out += part
        return out
    if isinstance(step, Affine | Impute):
        return [None if s is None else (s[0], [*s[1], (step, j)]) for j, s in enumerate(sources)]
    if isinstance(step, OneHot):  # zeros and ones: never too large
        return [None] * sum(step.widths)
    return None


def _bounds(steps: list[tuple[Step, int]]) -> tuple[float, float]:
    """The input values that the steps keep within float32's range, undoing them from the last."""
    lo, hi = -FLOAT32_MAX, FLOAT32_MAX
    for step, j in reversed(steps):
        if not isinstance(step, Affine):  # imputing changes only missing values
            continue
        a = 0.0 if step.a is None else float(np.ravel(step.a)[j % np.size(step.a)])
        b = 1.0 if step.b is None else float(np.ravel(step.b)[j % np.size(step.b)])
        if step.mode == "standard":  # y = (x - a) / b
            ends = (lo * b + a, hi * b + a)
        elif step.clip is not None:  # clipped: any input ends within the clip range
            return -np.inf, np.inf
        else:  # y = x * a + b
            ends = ((lo - b) / a, (hi - b) / a) if a else (-np.inf, np.inf)
        lo, hi = min(ends), max(ends)
    return lo, hi


def present(model_dir: Path) -> bool:
    """Whether ``model_dir`` holds a compiled program (the server uses it unless :func:`enabled` says no)."""
    return (Path(model_dir) / PROGRAM_DIR / "program.json").is_file()


def enabled() -> bool:
    """NBDEPLOY_PROGRAM=0 makes the server load the model with its own library."""
    return os.environ.get("NBDEPLOY_PROGRAM", "1").strip().lower() not in ("0", "false", "no", "off")
