"""Request bodies -> rows: MLflow's scoring formats, CSV and Open Inference Protocol (V2).

Every parser returns a :class:`Frame` (columns of plain Python values) or a
:class:`Tensor` (for models whose signature is a tensor, or that have none and get
an array). Client mistakes raise :class:`RequestError` with status 400.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import orjson

from . import v2binary
from .bundle import V2_TYPES, Bundle
from .errors import RequestError

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
V2_NUMERIC = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64"}
V2_DATATYPES = V2_NUMERIC | {"BOOL", "BYTES"}


class Frame:
    """Rows as columns (name -> values). A one-row request may keep its row as it came
    (``row``, in the order of ``names``): a batch of such rows is turned into columns at
    once, and ``columns`` builds this request's own only when asked."""

    __slots__ = ("_columns", "n", "row", "names", "_rows")

    def __init__(self, columns: dict[str, list[Any]] | None, n: int, row: list[Any] | None = None,
                 names: list[str] | None = None, rows: list[list[Any]] | None = None) -> None:
        self._columns = columns
        self.n = n
        self.row = row
        self.names = names
        self._rows = rows  # the rows as they came (dataframe_split), in the order of ``names``

    def split(self) -> dict[str, Any]:
        """The rows in MLflow's dataframe_split form, ``{"columns": [...], "data": [[...], ...]}``:
        what the request log keeps, and a body /invocations takes as it is."""
        if self._rows is not None and self.names is not None:
            return {"columns": self.names, "data": self._rows}
        columns = self.columns
        return {"columns": list(columns), "data": [list(r) for r in zip(*columns.values(), strict=True)]}

    @property
    def columns(self) -> dict[str, list[Any]]:
        if self._columns is None:
            self._columns = row_columns(self.names or [], self.row or [])
        return self._columns

    def __repr__(self) -> str:
        return f"Frame({self.columns!r}, {self.n})"


def row_columns(names: list[str], row: list[Any]) -> dict[str, list[Any]]:
    """One row (values in the order of ``names``) as columns of one value each."""
    return {name: [value] for name, value in zip(names, row, strict=True)}


@dataclass
class Tensor:
    data: Any  # nested lists, first axis = rows
    n: int


def load_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise RequestError(400, f"the body is not valid JSON: {e}") from None


def parse_mlflow(body: bytes, bundle: Bundle) -> Frame | Tensor:
    doc = load_json(body)
    if not isinstance(doc, dict):
        raise RequestError(400, _format_message(f"got a JSON {type(doc).__name__}"))
    if len(doc) == 1 and "dataframe_split" in doc:  # what most clients send
        key = "dataframe_split"
    else:
        keys = [k for k in doc if k in MLFLOW_FORMATS]
        unknown = [k for k in doc if k not in MLFLOW_FORMATS and k != "params"]
        if len(keys) != 1 or unknown:
            raise RequestError(400, _format_message(f"got the keys {sorted(doc)}"))
        key = keys[0]
    data = doc[key]
    if key == "dataframe_split":
        return _split(data)
    if key == "dataframe_records":
        return _records(data, key)
    return _instances(data, key, bundle)


def _format_message(got: str) -> str:
    return (
        "the body must be a JSON object with exactly one of the keys "
        f"{', '.join(MLFLOW_FORMATS)} (and optionally params); {got}"
    )


def _split(data: Any) -> Frame:
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise RequestError(400, 'dataframe_split must be an object {"columns": [...], "data": [[...], ...]}')
    rows, names = data["data"], data.get("columns")
    if names is None:
        raise RequestError(400, 'dataframe_split needs "columns": the column names in row order')
    names = _column_names(names)
    width = len(names)
    if len(rows) == 1 and type(rows[0]) is list and len(rows[0]) == width:  # one row: kept as it came
        return Frame(None, 1, rows[0], names, rows)
    # the common case checked at C speed: every row a list of `width` values
    if rows and (set(map(type, rows)) != {list} or set(map(len, rows)) != {width}):
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != width:
                raise RequestError(
                    400, f"dataframe_split row {i} has {len(row) if isinstance(row, list) else 'no'} values; "
                         f"the columns are {width}"
                )
    # (lengths are checked above, so zip need not check them again)
    columns = dict(zip(names, map(list, zip(*rows, strict=False)), strict=False)) if rows else {n: [] for n in names}
    return Frame(columns, len(rows), names=names, rows=rows)


_NAMES: dict[tuple[Any, ...], list[str]] = {}


def _column_names(names: Any) -> list[str]:
    """Column names as strings, each once; the last few lists seen are remembered."""
    if not isinstance(names, list):
        raise RequestError(400, "dataframe_split columns must be a list of distinct names")
    try:
        key = tuple(names)
        known = _NAMES.get(key)
    except TypeError:  # a name that is a list or an object
        key, known = None, None
    if known is not None:
        return known
    out = [str(c) for c in names]
    if len(set(out)) != len(out):
        raise RequestError(400, "dataframe_split columns must be a list of distinct names")
    if key is not None:
        _remember(key, out)
    return out


def _remember(key: tuple[Any, ...], names: list[str]) -> None:
    if len(_NAMES) >= 64:
        _NAMES.clear()
    _NAMES[key] = names


def _shared_names(names: list[str]) -> list[str] | None:
    """The one list object for these (string) column names, shared by every request that
    names the same columns in the same order; None when a name is there twice."""
    key = tuple(names)
    known = _NAMES.get(key)
    if known is not None:
        return known
    if len(set(names)) != len(names):
        return None
    _remember(key, names)
    return names


def _records(rows: Any, key: str) -> Frame:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise RequestError(400, f"{key} must be a list of objects, one per row")
    names: dict[str, None] = {}
    for r in rows:
        for k in r:
            names.setdefault(k, None)
    columns = {str(k): [r.get(k) for r in rows] for k in names}
    return Frame(columns, len(rows))


def _instances(data: Any, key: str, bundle: Bundle) -> Frame | Tensor:
    if bundle.columns is None:
        if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
            return _records(data, key)
        if isinstance(data, dict):
            return _columnar(data, key)
        if not isinstance(data, list):
            raise RequestError(400, f"{key} must be a list of rows")
        return Tensor(data, len(data))
    if isinstance(data, dict):
        return _columnar(data, key)
    if not isinstance(data, list):
        raise RequestError(400, f"{key} must be a list of rows or an object of columns")
    if all(isinstance(r, dict) for r in data):
        return _records(data, key)
    names = [c.name for c in bundle.columns]
    if len(names) == 1 and not any(isinstance(r, list) for r in data):
        return Frame({names[0]: list(data)}, len(data))
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(names):
            raise RequestError(
                400, f"{key}[{i}] must be a list of {len(names)} values in the order {names}, or an object"
            )
    return Frame({name: [row[j] for row in data] for j, name in enumerate(names)}, len(data))


def _columnar(data: dict[str, Any], key: str) -> Frame:
    lengths = set()
    columns = {}
    for name, values in data.items():
        vals = values if isinstance(values, list) else [values]
        lengths.add(len(vals))
        columns[str(name)] = vals
    if len(lengths) > 1:
        raise RequestError(400, f"the columns of {key} have different lengths: {sorted(lengths)}")
    return Frame(columns, lengths.pop() if lengths else 0)


def parse_csv(body: bytes, bundle: Bundle) -> Frame:
    """CSV with a header row. Values are strings here; validation converts them by type."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(400, "the CSV body is not UTF-8") from None
    reader = csv.reader(io.StringIO(text))
    try:
        rows = list(reader)
    except csv.Error as e:
        raise RequestError(400, _csv_problem(text, reader.line_num, e)) from None
    if not rows:
        raise RequestError(400, "the CSV body is empty; it needs a header row")
    names, data = rows[0], [r for r in rows[1:] if r]
    if len(set(names)) != len(names):
        raise RequestError(400, "the CSV header has duplicate column names")
    for i, row in enumerate(data):
        if len(row) != len(names):
            raise RequestError(400, f"CSV line {i + 2} has {len(row)} fields; the header has {len(names)}")
    columns = {name: [row[j] if row[j] != "" else None for row in data] for j, name in enumerate(names)}
    return Frame(columns, len(data))


def _csv_problem(text: str, line: int, error: csv.Error) -> str:
    """What is wrong with a body the csv module refused, and where: the line, and for the usual
    cause (a carriage return alone, outside quotes) the field it cut."""
    lines = text.split("\n")
    where = lines[line - 1] if 0 < line <= len(lines) else ""
    cr = where.rstrip("\r").find("\r")
    if cr < 0:
        return f"the CSV body is not valid CSV at line {line}: {error}; send RFC 4180 CSV with a header row"
    index = max(len(next(csv.reader([where[:cr]]), [])) - 1, 0)  # the fields before the \r, quotes read
    header = next(csv.reader([lines[0].split("\r", 1)[0]]), [])
    field = f"column {index + 1}" + (f" ({header[index]!r})" if index < len(header) else "")
    return (f"the CSV body has a bare carriage return (\\r) in line {line}, {field}; end lines with \\n or "
            "\\r\\n, and put a value that holds a line break in double quotes")


@dataclass
class V2Request:
    data: Frame | Tensor
    id: str | None
    #: the outputs asked for by name (None: all)
    outputs: list[str] | None
    #: outputs to send as binary data (binary tensor extension); ``binary_all``: every output
    binary: frozenset[str] = frozenset()
    binary_all: bool = False
    #: outputs explicitly asked for as JSON (``binary_data: false``), which ``binary_all`` leaves alone
    json_only: frozenset[str] = frozenset()

    @property
    def plain(self) -> bool:
        """No id to send back, no outputs asked for by name, no binary data: the usual answer."""
        return self.id is None and self.outputs is None and not self.binary_all

    def wants_binary(self, name: str) -> bool:
        return name in self.binary or (self.binary_all and name not in self.json_only)


_NO_OUTPUTS: tuple[None, frozenset[str], frozenset[str]] = (None, frozenset(), frozenset())


def parse_v2(body: bytes, bundle: Bundle, header_length: int | None = None) -> V2Request:
    """A V2 inference request; ``header_length``: the JSON part's size when binary tensors follow it."""
    binary = b""
    if header_length is not None:
        body, binary = body[:header_length], body[header_length:]
    doc = load_json(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list) or not doc["inputs"]:
        raise RequestError(400, 'the body must be an object with a non-empty "inputs" list of tensors')
    rid = doc.get("id")
    if rid is not None and not isinstance(rid, str):
        raise RequestError(400, f'"id" must be a string (the request\'s id, sent back in the answer), not '
                                f"{orjson.dumps(rid).decode()[:40]}")
    outs = doc.get("outputs")
    out_names, binary_outs, json_outs = _requested_outputs(outs) if outs is not None else _NO_OUTPUTS
    params = doc.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise RequestError(400, '"parameters" must be an object, such as {"binary_data_output": true}')
    binary_all = isinstance(params, dict) and params.get("binary_data_output") is True
    inputs = doc["inputs"]
    data: Frame | Tensor | None = _v2_json_columns(inputs, bundle) if header_length is None else None
    if data is None:
        data = _v2_tensors(inputs, binary, bundle)
    return V2Request(data, str(rid) if rid is not None else None, out_names, binary_outs, binary_all, json_outs)


def _v2_tensors(inputs: list[Any], binary: bytes, bundle: Bundle) -> Frame | Tensor:
    """Any V2 request's inputs, each checked and flattened (JSON data or binary): what
    :func:`_v2_json_columns` leaves to it, and every mistake, named."""
    slices = v2binary.split_inputs(inputs, binary)
    tensors = []
    for i, (t, raw) in enumerate(zip(inputs, slices, strict=True)):
        needed = {"name", "shape", "datatype"} if raw is not None else {"name", "shape", "datatype", "data"}
        if not isinstance(t, dict) or not needed <= t.keys():
            raise RequestError(400, f"inputs[{i}] needs name, shape, datatype and data (or binary_data_size)")
        if t.get("parameters") is not None and not isinstance(t["parameters"], dict):
            raise RequestError(400, f"inputs[{i}] ({t['name']}): parameters must be an object")
        if not isinstance(t["datatype"], str) or t["datatype"] not in V2_DATATYPES:
            raise RequestError(
                400, f"inputs[{i}] ({t['name']}): datatype must be one of {', '.join(sorted(V2_DATATYPES))} "
                     f"(a string), not {repr(t['datatype'])[:80]}",
            )
        shape = t["shape"]
        if not isinstance(shape, list) or not shape or not all(type(s) is int and s >= 0 for s in shape):
            raise RequestError(400, f"inputs[{i}] ({t['name']}): shape must be a list of sizes")
        size = 1
        for s in shape:
            size *= s
        where = f"inputs[{i}] ({t['name']})"
        flat = v2binary.decode(raw, t["datatype"], size, where) if raw is not None else _flatten(t["data"])
        if size != len(flat):
            raise RequestError(400, f"{where}: shape {shape} needs {size} values, got {len(flat)}")
        tensors.append((str(t["name"]), shape, t["datatype"], flat))
    return _v2_data(tensors, bundle)


def _v2_json_columns(inputs: list[Any], bundle: Bundle) -> Frame | None:
    """The usual V2 JSON request read in one tight pass: one 1-D tensor per column (each
    with name, shape [n], datatype, a flat ``data`` list of n values; ``parameters`` without
    binary data), the same n for all, distinct names, each datatype one its column takes
    (checked once per list of names and datatypes, then remembered).

    A one-row request keeps its row as it came, under a column list shared with the other
    requests of the same columns (as /invocations does), so that its batch is turned into
    columns at once. Anything else, mistakes included, gives None: :func:`_v2_tensors`
    reads it, so the answer is the same either way."""
    kept = _kept(bundle)
    if kept is None:  # a tensor model: the general path shapes its array
        return None
    names, datatypes = [], []
    try:
        n = len(inputs[0]["data"])  # every tensor must have this many rows (checked below)
        one = [n]  # the shape each tensor must have: a list equal to [n] (compared in C), of an int
        if n == 1:  # the usual request: its row taken in the same pass
            row = []
            for t in inputs:
                shape, data = t["shape"], t["data"]
                if shape != one or type(shape[0]) is not int or type(data) is not list or len(data) != 1:
                    return None
                if len(t) > 4 and not _plain_parameters(t):
                    return None
                value = data[0]
                if type(value) is list:  # a nested list: flattened (and checked) by the general path
                    return None
                names.append(t["name"])
                datatypes.append(t["datatype"])
                row.append(value)
        else:
            datas = []
            for t in inputs:
                shape, data = t["shape"], t["data"]
                if shape != one or type(shape[0]) is not int or type(data) is not list or len(data) != n:
                    return None
                if len(t) > 4 and not _plain_parameters(t):
                    return None
                names.append(t["name"])
                datatypes.append(t["datatype"])
                datas.append(data)
            if n == 0 or any(list in set(map(type, d)) for d in datas):
                return None
    except (KeyError, TypeError):  # a tensor that is no object or lacks a field; data that has no length
        return None
    accepted, known, last = kept
    if names == last[0] and datatypes == last[1]:  # as the request before (compared in C): checked then
        shared = last[2]
    else:
        try:
            key = (tuple(names), tuple(datatypes))
            shared = known.get(key)
        except TypeError:  # a name that is a list
            return None
        if shared is None:
            shared = _checked_names(key[0], key[1], accepted)
            if shared is None:
                return None
            if len(known) >= 64:
                known.clear()
            known[key] = shared
        last[:] = (names, datatypes, shared)
    if n == 1:
        return Frame(None, 1, row, shared, [row])
    return Frame(dict(zip(shared, datas, strict=True)), n)


def _plain_parameters(tensor: dict[str, Any]) -> bool:
    """A tensor's fields past name, shape, datatype and data (MLServer's content types?) leave it
    one the tight pass reads: ``parameters`` an object, without binary data."""
    params = tensor.get("parameters")
    return params is None or (type(params) is dict and "binary_data_size" not in params)


def _checked_names(names: tuple[Any, ...], datatypes: tuple[Any, ...],
                   accepted: dict[str, frozenset[str]]) -> list[str] | None:
    """The shared column list of these tensors when their names are distinct strings and each
    datatype is one its column takes (any V2 datatype for a name the signature lacks)."""
    for name, datatype in zip(names, datatypes, strict=True):
        if type(name) is not str or type(datatype) is not str or datatype not in accepted.get(name, V2_DATATYPES):
            return None
    return _shared_names(list(names))


_KEPT: dict[int, tuple[list[Any], dict[str, frozenset[str]], dict[Any, list[str]], list[Any]]] = {}


def _kept(bundle: Bundle) -> tuple[dict[str, frozenset[str]], dict[Any, list[str]], list[Any]] | None:
    """For the bundle's column list: the V2 datatypes each column takes, the (names,
    datatypes) of requests already checked against them, and the last such request's
    ``[names, datatypes, shared names]`` (None: no column signature). Kept per column list;
    the entry holds the list, so its id is not reused while it is kept."""
    columns = bundle.columns
    if columns is None:
        return None
    kept = _KEPT.get(id(columns))
    if kept is None or kept[0] is not columns:
        accepted = {c.name: frozenset(d for d in V2_DATATYPES if v2_datatype_matches(d, c.type)) for c in columns}
        if len(_KEPT) >= 16:
            _KEPT.clear()
        kept = _KEPT[id(columns)] = (columns, accepted, {}, [None, None, None])
    return kept[1], kept[2], kept[3]


def _requested_outputs(outs: Any) -> tuple[list[str] | None, frozenset[str], frozenset[str]]:
    """(names asked for, those asked as binary data, those asked as JSON) of a V2 ``outputs`` list."""
    if outs is None:
        return None, frozenset(), frozenset()
    if not isinstance(outs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outs):
        raise RequestError(400, 'outputs must be a list of objects {"name": ..., "parameters": {...}}')
    binary: set[str]
    as_json: set[str]
    names, binary, as_json = [], set(), set()
    for o in outs:
        names.append(o["name"])
        params = o.get("parameters")
        if isinstance(params, dict) and "binary_data" in params:
            (binary if params["binary_data"] is True else as_json).add(o["name"])
    return names, frozenset(binary), frozenset(as_json)


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(x, list) for x in data):
        return data
    out: list[Any] = []
    for x in data:
        out.extend(_flatten(x))
    return out


def _v2_data(tensors: list[tuple[str, list[int], str, list[Any]]], bundle: Bundle) -> Frame | Tensor:
    names = [c.name for c in bundle.columns] if bundle.columns is not None else None
    if len(tensors) == 1 and len(tensors[0][1]) == 2 and (names is None or tensors[0][0] not in names):
        name, (n, k), _, flat = tensors[0]
        rows = [flat[r * k:(r + 1) * k] for r in range(n)]
        if names is None:
            return Tensor(rows, n)
        if k != len(names):
            raise RequestError(
                400, f"input {name!r} has {k} values per row; the model takes {len(names)} columns {names}"
            )
        return Frame({c: [row[j] for row in rows] for j, c in enumerate(names)}, n)
    columns: dict[str, list[Any]] = {}
    rows_seen = set()
    types = {c.name: c.type for c in bundle.columns} if bundle.columns is not None else {}
    wrong = []
    for name, shape, datatype, flat in tensors:
        if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise RequestError(400, f"input {name!r}: a column tensor has shape [N] or [N, 1], got {shape}")
        if name in columns:  # the later one silently replaced the earlier: which was meant?
            raise RequestError(400, f"input {name!r} is given twice; a V2 request has one tensor per column")
        if name in types and not v2_datatype_matches(datatype, types[name]):
            wrong.append(
                {"field": name, "problem": "wrong_datatype", "got": datatype,
                 "expected": V2_TYPES.get(types[name], types[name])}
            )
        columns[name] = flat
        rows_seen.add(shape[0])
    if wrong:
        raise RequestError(422, "input tensors have datatypes the model does not take", wrong)
    if len(rows_seen) > 1:
        raise RequestError(400, f"the input tensors have different row counts: {sorted(rows_seen)}")
    return Frame(columns, rows_seen.pop())


def v2_datatype_matches(datatype: str, column_type: str) -> bool:
    if datatype == "BOOL":
        return column_type == "boolean"
    if datatype == "BYTES":
        return column_type in ("string", "binary", "datetime")
    if datatype.startswith("FP"):
        return column_type in ("float", "double")
    return column_type in ("integer", "long", "float", "double")
