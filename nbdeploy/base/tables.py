"""Titled tables that a record of the core gives its front ends: as text, or as HTML in a notebook.

A plain value with two renderings, so core records (a batch, a reproduce report) can say
what they hold in rows without knowing which front end shows them.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Set as AbstractSet


def cell_text(value: Any) -> str:
    """A table cell as shown: floats to 6 significant digits (a metric of 0.8433333333333334
    reads 0.843333), everything else as it is."""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _table_text(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[cell_text(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def _table_html(title: str, headers: list[str], rows: list[list[Any]],
                bad: AbstractSet[int] = frozenset()) -> str:
    head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        ("<tr style='color:#c62828'>" if i in bad else "<tr>")
        + "".join(f"<td style='text-align:left'>{html.escape(cell_text(c))}</td>" for c in r) + "</tr>"
        for i, r in enumerate(rows))
    return f"<h4>{html.escape(title)}</h4><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class View:
    """A titled table renderable as text or HTML (IPython picks HTML in a notebook)."""

    def __init__(self, sections: list[tuple[str, list[str], list[list[Any]], set[int]]],
                 footer: str = "") -> None:
        self.sections = sections
        self.footer = footer

    def text(self) -> str:
        parts = [f"{t}\n{_table_text(h, r) if r else '(none)'}" for t, h, r, _ in self.sections]
        return "\n\n".join(parts) + (f"\n\n{self.footer}" if self.footer else "")

    def _repr_html_(self) -> str:
        parts = [_table_html(t, h, r, bad) if r else f"<h4>{html.escape(t)}</h4><p>(none)</p>"
                 for t, h, r, bad in self.sections]
        foot = f"<p>{html.escape(self.footer)}</p>" if self.footer else ""
        return "<div class='nbdeploy'>" + "".join(parts) + foot + "</div>"

    def __repr__(self) -> str:
        return self.text()
