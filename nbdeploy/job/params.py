"""The parameters of a notebook job: find the cell, infer types, convert and check values.

A cell tagged ``parameters`` (papermill's convention) is the parameters cell; so is
a cell whose first line is ``%%deploy params`` (for users who do not know about
tags). Types come from the defaults in that cell (``alpha = 1.0`` is a float).
Values given on the command line, in a YAML file or in a grid are converted to
those types and checked *before* any kernel starts: papermill itself accepts an
unknown name silently and injects it anyway.
"""

from __future__ import annotations

import ast
import copy
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbdeploy.base.errors import ParameterError

PARAMS_TAG = "parameters"
MAGIC_LINE = "%%deploy params"
_TYPES: dict[type, str] = {bool: "bool", int: "int", float: "float", str: "str",
                           list: "list", dict: "dict", tuple: "list"}


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str  # bool | int | float | str | list | dict | any
    default: Any
    line: int  # line of the assignment in the cell (1-based)


@dataclass
class ParametersCell:
    index: int  # position in the notebook
    via: str  # "tag" | "magic"
    source: str
    specs: dict[str, ParamSpec] = field(default_factory=dict)

    def defaults(self) -> dict[str, Any]:
        return {name: s.default for name, s in self.specs.items()}


def is_magic_cell(source: str) -> bool:
    lines = source.lstrip().splitlines()
    return bool(lines) and lines[0].split()[:2] == ["%%deploy", "params"]


def _body(source: str) -> str:
    """The Python of a parameters cell: the magic line dropped, other IPython lines blanked."""
    lines = source.splitlines()
    if is_magic_cell(source):
        first = next(i for i, line in enumerate(lines) if line.strip())
        lines[first] = ""
    return "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in lines)


def _literal(node: ast.expr) -> tuple[bool, Any]:
    try:
        return True, ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False, None


def infer_specs(source: str) -> dict[str, ParamSpec]:
    """``name = literal`` assignments of a parameters cell, typed by their default."""
    try:
        tree = ast.parse(_body(source))
    except SyntaxError as exc:
        raise ParameterError(f"the parameters cell is not valid Python: {exc.msg} "
                             f"(line {exc.lineno})") from None
    specs: dict[str, ParamSpec] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        ok, default = _literal(value)
        kind = _TYPES.get(type(default), "any") if ok else "any"
        specs[target.id] = ParamSpec(target.id, kind, default if ok else None, node.lineno)
    return specs


def find_parameters_cell(nb: Any) -> ParametersCell | None:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if PARAMS_TAG in cell.get("metadata", {}).get("tags", []):
            return ParametersCell(i, "tag", cell.source, infer_specs(cell.source))
        if is_magic_cell(cell.source):
            return ParametersCell(i, "magic", cell.source, infer_specs(cell.source))
    return None


def job_notebook(nb: Any) -> tuple[Any, ParametersCell | None]:
    """A copy of ``nb`` ready for papermill: a ``%%deploy params`` cell gets the tag.

    Only the in-memory copy changes; the file the user has open is never rewritten.
    The magic line is turned into a comment so the job kernel runs the plain body
    (papermill injects the given values in the cell after it).
    """
    pc = find_parameters_cell(nb)
    if pc is None or pc.via == "tag":
        return nb, pc
    nb = copy.deepcopy(nb)
    cell = nb.cells[pc.index]
    cell.metadata.setdefault("tags", []).append(PARAMS_TAG)
    cell.source = cell.source.replace(MAGIC_LINE, "# " + MAGIC_LINE, 1)
    return nb, pc


# -- values ------------------------------------------------------------------
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _from_text(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def convert(spec: ParamSpec, value: Any, *, from_text: bool = False) -> Any:
    """``value`` as the type of ``spec``'s default, or a :class:`ParameterError`."""
    t = spec.type

    def bad(why: str = "") -> ParameterError:
        return ParameterError(
            f"parameter {spec.name!r} expects {t} (default {spec.default!r}), got {value!r}{why}")

    if t == "any":
        return _from_text(value) if from_text else value
    if t == "str":
        if isinstance(value, str):
            return value
        if from_text or isinstance(value, bool | int | float):
            return str(value)
        raise bad()
    if t == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise bad(" (use true or false)")
    if t in ("int", "float"):
        v = value
        if isinstance(v, str):
            try:
                v = int(v.strip()) if t == "int" else float(v.strip())
            except ValueError:
                raise bad() from None
        if isinstance(v, bool):
            raise bad()
        if t == "int":
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if not isinstance(v, int):
                raise bad()
            return v
        if not isinstance(v, int | float):
            raise bad()
        return float(v)
    # list / dict
    v = _from_text(value) if isinstance(value, str) else value
    want = list if t == "list" else dict
    if isinstance(v, tuple):
        v = list(v)
    if not isinstance(v, want):
        raise bad(f" (give a {'YAML list like [1, 2]' if t == 'list' else 'YAML mapping'})")
    return v


def _unknown(name: str, specs: dict[str, ParamSpec]) -> ParameterError:
    close = difflib.get_close_matches(name, list(specs), n=1)
    known = ", ".join(specs) or "none"
    hint = f"did you mean {close[0]!r}?" if close else f"the parameters are: {known}"
    return ParameterError(f"unknown parameter {name!r}", hint=hint)


def check(pc: ParametersCell | None, values: dict[str, Any], *,
          from_text: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """Converted values; ``from_text`` names came as strings from a command line."""
    if values and pc is None:
        raise ParameterError("this notebook has no parameters cell",
                             hint="tag a cell `parameters` or start it with `%%deploy params`")
    out: dict[str, Any] = {}
    for name, value in values.items():
        spec = pc.specs.get(name) if pc else None
        if spec is None:
            raise _unknown(name, pc.specs if pc else {})
        out[name] = convert(spec, value, from_text=name in from_text)
    return out


def read_yaml_file(path: Path, what: str) -> Any:
    """The YAML document of a file the user gave (``what``: "parameters", "grid"); a
    ParameterError naming the file for one that is missing, unreadable, not UTF-8 or not YAML."""
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParameterError(f"no such {what} file: {path}") from None
    except UnicodeDecodeError as exc:
        raise ParameterError(f"{path} is not a text file (not UTF-8 at byte {exc.start})",
                             hint=f"give a YAML {what} file") from None
    except OSError as exc:
        raise ParameterError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path} is not valid YAML: {exc}", hint=f"give a YAML {what} file") from None


def read_params_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    doc = read_yaml_file(p, "parameters")
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not all(isinstance(k, str) for k in doc):
        raise ParameterError(f"{p} must be a mapping of parameter names to values",
                             hint="write one `name: value` line per parameter")
    return doc


def resolve(pc: ParametersCell | None, *, cli: list[tuple[str, str]] | None = None,
            params_file: str | Path | None = None,
            values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge a YAML file, a dict and ``-p NAME VALUE`` pairs (later wins), then check."""
    merged: dict[str, Any] = {}
    if params_file:
        merged.update(read_params_file(params_file))
    merged.update(values or {})
    text: set[str] = set()
    for name, value in cli or []:
        merged[name] = value
        text.add(name)
    return check(pc, merged, from_text=text)


def run_params_cell(shell: Any, body: str) -> dict[str, Any]:
    """``%%deploy params`` in a live kernel: run the body, record the parameters in capture.

    Returns the parameters (name -> value) the cell defined.
    """
    from nbdeploy.capture.session import current_session

    specs = infer_specs(body)
    session = current_session()
    cell = session.current_cell if session is not None else None
    code = compile(shell.transform_cell(body), "<%%deploy params>", "exec")
    exec(code, shell.user_global_ns, shell.user_ns)  # noqa: S102 - the user's own cell
    values = {name: shell.user_ns.get(name) for name in specs}
    if session is not None:
        session.set_parameters(values, cell)
    return values
