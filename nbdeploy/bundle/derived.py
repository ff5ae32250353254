"""Inputs the notebook computed itself (``df.assign(...)``, ``pd.get_dummies``): not in the model.

A model fitted on engineered columns makes the API ask its callers for those columns,
computed exactly as the notebook did. The build keeps such a bundle (it is correct), but
says so in its output, its manifest and its README, names the cells that computed them,
and says how to move the steps into the model.
"""

from __future__ import annotations

import re
from typing import Any

_STEPS = re.compile(r"get_dummies|add_constant|\.assign\(|\.apply\(|\.map\(|\.eval\(|\.dt\.|\.str\.|pd\.cut\(|np\.log")


def derived_inputs(inputs: list[str], lineage: list[dict[str, Any]]) -> list[str]:
    """The model's input columns that no data file the notebook read has."""
    read = [{c["name"] for c in e.get("columns") or []} for e in lineage if e.get("role") == "read"]
    if not any(read):
        return []  # sklearn.datasets, generated data: nothing to hold the inputs to
    known = set().union(*read)
    return [c for c in inputs if c not in known]


def _cells(columns: list[str], cells: list[Any]) -> list[tuple[int, str]]:
    """(index, the line that computes them) of the code cells that create the columns."""
    named = [re.compile(rf"\b{re.escape(c)}\s*=(?!=)|[\"']{re.escape(c)}[\"']\s*\]\s*=(?!=)") for c in columns]
    stems = {c.split("_")[0] for c in columns}
    found = []
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            text = line.strip()
            if text.startswith("#"):
                continue
            if any(r.search(text) for r in named) or ("get_dummies" in text and any(s in text for s in stems)) \
                    or (_STEPS.search(text) and any(s in text for s in stems)):
                found.append((i, text))
                break
    return found


def derived_note(columns: list[str], cells: list[Any]) -> str:
    """One paragraph: which inputs the notebook computed, where, and how to put the steps in the model."""
    shown = ", ".join(columns[:8]) + (f" and {len(columns) - 8} more" if len(columns) > 8 else "")
    where = "; ".join(f"cell {i}: {line[:80]}{'…' if len(line) > 80 else ''}"
                      for i, line in _cells(columns, cells)[:3])
    return (f"inputs {shown} are computed in the notebook{f' ({where})' if where else ''}, not by the "
            "model: the API expects its callers to send them already computed the same way. To take "
            "the raw columns instead, put those steps in the model: a scikit-learn Pipeline whose first "
            "step computes them (FunctionTransformer for formulas, OneHotEncoder in a ColumnTransformer "
            "for get_dummies), fitted on the columns the data file has")
