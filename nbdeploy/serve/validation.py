"""Check request rows against the model signature and the training profile.

Hard errors (answered 422, each naming the field and what was expected): a missing
column, an unexpected column, a value of the wrong type, a null where training had none.
Soft findings (accepted, counted and flagged): numeric values outside the training range
widened by ``margin``, and categories never seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .bundle import Bundle, Column
from .errors import RequestError
from .payload import Frame

EXAMPLE_ROWS = 5  # row indices listed per error or flag
_EXPECTED = {
    "double": "a number",
    "float": "a number",
    "long": "an integer",
    "integer": "an integer",
    "boolean": "true or false",
    "string": "a string",
    "binary": "a base64 string",
    "datetime": "an ISO 8601 date-time string",
}
_TRUE = {"true", "True", "TRUE", "1"}
_FALSE = {"false", "False", "FALSE", "0"}


@dataclass
class Rule:
    column: Column
    nulls_ok: bool
    lo: float | None = None
    hi: float | None = None
    categories: frozenset[str] | None = None


class Validator:
    def __init__(self, bundle: Bundle, margin: float = 0.05) -> None:
        self.rules: dict[str, Rule] = {}
        profile = ((bundle.profile or {}).get("columns") or {}) if bundle.profile else {}
        for col in bundle.columns or []:
            stats = profile.get(col.name)
            if stats is not None and "nulls" in stats:
                nulls_ok = stats["nulls"] > 0
            else:
                nulls_ok = col.type in ("double", "float") or not col.required
            rule = Rule(col, nulls_ok)
            if stats and stats.get("kind") == "numeric" and col.type in ("double", "float", "long", "integer"):
                lo, hi = stats.get("min"), stats.get("max")
                if isinstance(lo, int | float) and isinstance(hi, int | float):
                    pad = (hi - lo) * margin
                    rule.lo, rule.hi = lo - pad, hi + pad
            if stats and stats.get("kind") == "categorical" and isinstance(stats.get("values"), list):
                rule.categories = frozenset(str(v) for v in stats["values"])
            self.rules[col.name] = rule

    def clean(self, columns: dict[str, list[Any]]) -> bool:
        """True when these columns (exactly the signature's) need nothing: every value of the
        column's type, none null, out of range or unseen. Then ``check`` would change nothing
        and report nothing."""
        rules = self.rules
        return columns.keys() == rules.keys() and all(_clean(columns[name], rule) for name, rule in rules.items())

    def check(self, frame: Frame, text_values: bool = False) -> tuple[dict[str, list[Any]], list[dict[str, Any]]]:
        """Typed columns in signature order and the soft flags; raise RequestError(422) on errors.

        ``text_values`` means every value arrived as text (CSV) and is converted by type.
        """
        errors: list[dict[str, Any]] = []
        flags: list[dict[str, Any]] = []
        for name in frame.columns:
            if name not in self.rules:
                errors.append({"field": name, "problem": "unexpected", "expected": f"one of {list(self.rules)}"})
        out: dict[str, list[Any]] = {}
        for name, rule in self.rules.items():
            values = frame.columns.get(name)
            if values is None:
                if rule.column.required:
                    errors.append({"field": name, "problem": "missing", "expected": f"{rule.column.type} column"})
                    continue
                values = [None] * frame.n
            if not text_values and _clean(values, rule):  # the common case, checked at C speed
                out[name] = values
                continue
            values, error = _convert(values, rule, text_values)
            if error:
                errors.append(error)
                continue
            out[name] = values
            flag = _flag(values, rule)
            if flag:
                flags.append(flag)
        if errors:
            raise RequestError(422, f"{len(errors)} field(s) do not match the model's input schema", errors)
        return out, flags


    def row_problems(self, name: str, values: list[Any], text_values: bool) -> tuple[list[Any], dict[int, str]]:
        """One column's values converted by type, and the reason each row that fails is refused:
        the per-value rules of :meth:`check` (wrong type, null where training had none), row by
        row, for batch scoring, which sets such rows aside instead of refusing them all."""
        rule = self.rules[name]
        t = rule.column.type
        out = list(values)
        problems: dict[int, str] = {}
        for i, v in enumerate(values):
            if v is None:
                if not rule.nulls_ok:
                    problems[i] = f"{name}: null; expected {_EXPECTED.get(t, t)} (the training data had no nulls here)"
                continue
            ok, w = _value(v, t, text_values)
            if ok:
                out[i] = w
            else:
                problems[i] = f"{name}: wrong_type; expected {_EXPECTED.get(t, t)} ({t}), got {type(v).__name__} {repr(v)[:60]}"
        return out, problems


_EXACT_TYPES = {"double": ({float, int}, {float}, {int}), "float": ({float, int}, {float}, {int}),
                "long": ({int},), "integer": ({int},), "boolean": ({bool},), "string": ({str},)}


def _clean(values: list[Any], rule: Rule) -> bool:
    """True when every value already has the column's Python type (no None, nothing to convert)
    and none is out of range or an unseen category: nothing to report, nothing to change.
    Anything else takes the value-by-value path, which finds and names the problems."""
    allowed = _EXACT_TYPES.get(rule.column.type)
    if allowed is None or not values or set(map(type, values)) not in allowed:
        return False
    if rule.lo is not None and rule.hi is not None:
        return min(values) >= rule.lo and max(values) <= rule.hi
    if rule.categories is not None:
        return rule.categories.issuperset(values)
    return True


def _convert(values: list[Any], rule: Rule, text: bool) -> tuple[list[Any], dict[str, Any] | None]:
    t = rule.column.type
    bad: list[int] = []
    nulls: list[int] = []
    got = None
    out = values
    for i, v in enumerate(values):
        if v is None:
            if not rule.nulls_ok:
                nulls.append(i)
            continue
        ok, w = _value(v, t, text)
        if not ok:
            bad.append(i)
            got = got or type(v).__name__
        elif w is not v:
            if out is values:
                out = list(values)
            out[i] = w
    name = rule.column.name
    if bad:
        return values, {
            "field": name, "problem": "wrong_type", "expected": f"{_EXPECTED.get(t, t)} ({t})",
            "got": got, "rows": bad[:EXAMPLE_ROWS], "count": len(bad),
        }
    if nulls:
        return values, {
            "field": name, "problem": "null", "expected": f"{_EXPECTED.get(t, t)}; the training data had no nulls here",
            "rows": nulls[:EXAMPLE_ROWS], "count": len(nulls),
        }
    return out, None


def _value(v: Any, t: str, text: bool) -> tuple[bool, Any]:
    """(is acceptable, value converted to the column's Python type)."""
    tv = type(v)
    if t in ("double", "float"):
        if tv is float or tv is int:
            return True, v
        if text and tv is str:
            try:
                return True, float(v)
            except ValueError:
                return False, v
        return False, v
    if t in ("long", "integer"):
        if tv is int:
            return True, v
        if tv is float and v.is_integer():
            return True, int(v)
        if text and tv is str:
            try:
                return True, int(v)
            except ValueError:
                try:
                    f = float(v)
                except ValueError:
                    return False, v
                return (True, int(f)) if f.is_integer() else (False, v)
        return False, v
    if t == "boolean":
        if tv is bool:
            return True, v
        if text and tv is str and (v in _TRUE or v in _FALSE):
            return True, v in _TRUE
        return False, v
    if t == "datetime":
        if tv is str:
            try:
                datetime.fromisoformat(v)
            except ValueError:
                return False, v
            return True, v
        return False, v
    return tv is str, v  # string, binary


def _flag(values: list[Any], rule: Rule) -> dict[str, Any] | None:
    rows: list[int] = []
    if rule.lo is not None and rule.hi is not None:
        lo, hi = rule.lo, rule.hi
        for i, v in enumerate(values):
            if v is not None and (v < lo or v > hi):
                rows.append(i)
        if rows:
            return {"field": rule.column.name, "kind": "out_of_range", "count": len(rows),
                    "rows": rows[:EXAMPLE_ROWS], "accepted_range": [lo, hi]}
    elif rule.categories is not None:
        cats = rule.categories
        for i, v in enumerate(values):
            if v is not None and v not in cats:
                rows.append(i)
        if rows:
            return {"field": rule.column.name, "kind": "unseen_category", "count": len(rows),
                    "rows": rows[:EXAMPLE_ROWS], "known_values": len(cats)}
    return None
