"""The drift report as one self-contained HTML page: a summary table and a chart per feature.

No script, no font, no stylesheet from anywhere: the charts are SVG drawn here, the style
is inline, so the file opens offline, in a mail attachment, or inside a notebook
(:func:`fragment`, whose CSS is scoped under ``.nbd-drift``). Every value is escaped:
column names and category values are user data. Features come in the report's order,
drifted first. The page reads on a phone: a viewport, one column under 700 px, tables
that scroll sideways.
"""

from __future__ import annotations

import datetime
import html
from typing import Any

TRAINING, SERVED = "#7b8fb8", "#e8743b"
_COLORS = {"drift": "#c0392b", "moderate": "#d68910", "stable": "#1e8449", "insufficient": "#7f8c8d"}
_LABEL = {"drift": "drift", "moderate": "moderate", "stable": "stable", "insufficient": "insufficient rows"}

CSS = """
.nbd-drift{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;max-width:1100px;margin:0 auto}
.nbd-drift h1{font-size:1.35em;margin:.2em 0}.nbd-drift h2{font-size:1.1em;margin:1.2em 0 .4em}
.nbd-drift h3{font-size:1em;margin:0 0 .3em;word-break:break-word}
.nbd-drift .meta{color:#555;margin:.2em 0}
.nbd-drift .badge{display:inline-block;padding:0 .5em;border-radius:.8em;color:#fff;font-size:.85em;font-weight:600}
.nbd-drift .scroll{overflow-x:auto}
.nbd-drift table{border-collapse:collapse;width:100%}
.nbd-drift th,.nbd-drift td{text-align:left;padding:.25em .5em;border-bottom:1px solid #ddd;vertical-align:top}
.nbd-drift td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.nbd-drift .grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:12px}
.nbd-drift .feature{border:1px solid #ddd;border-left:5px solid #999;border-radius:4px;padding:.6em .7em}
.nbd-drift .reason{margin:.2em 0 .4em;color:#333}.nbd-drift .note{color:#666;font-size:.9em;margin:.3em 0 0}
.nbd-drift svg{width:100%;height:auto;display:block}
.nbd-drift .legend span{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 .8em;vertical-align:-.1em}
@media (max-width:700px){.nbd-drift{font-size:15px}.nbd-drift .grid{grid-template-columns:1fr}
.nbd-drift .why{display:none}}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _p(x: Any) -> str:
    return "-" if x is None else f"{x:.2g}" if x >= 1e-4 else "<0.0001"


def document(doc: dict[str, Any]) -> str:
    """The whole page."""
    src = doc.get("source") or {}
    title = f"Drift report: {src.get('model', '')} v{src.get('version', '')}"
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>body{{margin:12px}}</style></head><body>\n"
            f"{fragment(doc)}\n</body></html>\n")


def fragment(doc: dict[str, Any]) -> str:
    """The report as one ``<div class="nbd-drift">`` with its own scoped style (for a notebook)."""
    src = doc.get("source") or {}
    counts = doc.get("counts") or {}
    verdict = str(doc.get("verdict"))
    parts = [f"<div class=\"nbd-drift\" data-verdict=\"{_e(verdict)}\"><style>{CSS}</style>",
             f"<h1>Drift: {_e(src.get('model', ''))} v{_e(src.get('version', ''))} "
             f"{_badge(verdict)}</h1>",
             f"<p class=\"meta\">{_e(src.get('text', ''))}"
             + (f", {_e(src.get('requests'))} requests" if src.get("requests") else "")
             + (f", {_e(src['first'])} to {_e(src['last'])}" if src.get("first") else "")
             + f". Made {_e(_when(doc.get('created')))}.</p>",
             "<p class=\"meta\">" + ", ".join(f"{_e(counts.get(v, 0))} {_e(_LABEL[v])}" for v in _LABEL) + "</p>"]
    parts += [f"<p class=\"note\">{_e(n)}</p>" for n in doc.get("notes") or []]
    parts.append(_table(doc))
    parts.append("<h2>Training against served, per feature</h2><p class=\"legend\">"
                 f"<span style=\"background:{TRAINING}\"></span>training"
                 f"<span style=\"background:{SERVED}\"></span>served</p><div class=\"grid\">")
    parts += [_section(f) for f in doc.get("features") or []]
    parts.append("</div>")
    parts.append(_thresholds(doc.get("thresholds") or {}))
    parts.append("</div>")
    return "".join(parts)


def _when(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _badge(verdict: str) -> str:
    color = _COLORS.get(verdict, "#7f8c8d")
    return f"<span class=\"badge\" style=\"background:{color}\">{_e(_LABEL.get(verdict, verdict))}</span>"


def _table(doc: dict[str, Any]) -> str:
    rows = []
    for f in doc.get("features") or []:
        ks = f.get("ks") or {}
        chi = f.get("chi2") or {}
        name = _e(f["field"]) + (" <em>(prediction)</em>" if f.get("role") == "prediction" else "")
        rows.append(f"<tr><td>{name}</td><td>{_badge(f['verdict'])}</td><td>{_e(f.get('kind'))}</td>"
                    f"<td class=\"num\">{_e(f.get('values'))}</td><td class=\"num\">{_num(f.get('psi'))}</td>"
                    f"<td class=\"num\">{_num(ks.get('d'))}</td><td class=\"num\">{_p(ks.get('p_value'))}</td>"
                    f"<td class=\"num\">{_p(chi.get('p_value'))}</td><td class=\"why\">{_e(f.get('reason'))}</td></tr>")
    return ("<h2>Features, drifted first</h2><div class=\"scroll\"><table><thead><tr><th>feature</th><th>verdict</th>"
            "<th>kind</th><th>values</th><th>PSI</th><th>KS D</th><th>KS p</th><th>&chi;&sup2; p</th><th class=\"why\">why</th>"
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")


def _section(f: dict[str, Any]) -> str:
    verdict = str(f["verdict"])
    color = _COLORS.get(verdict, "#999")
    role = " (prediction)" if f.get("role") == "prediction" else ""
    extra = ""
    if f.get("kind") == "numeric":
        extra = (f"<p class=\"note\">mean: training {_e(_short(f.get('training_mean')))}, served "
                 f"{_e(_short(f.get('served_mean')))}; nulls: training {_pct((f.get('null_share') or {}).get('training'))}, "
                 f"served {_pct((f.get('null_share') or {}).get('served'))}</p>")
    notes = "".join(f"<p class=\"note\">{_e(n)}</p>" for n in f.get("notes") or [] if n)
    return (f"<section class=\"feature\" style=\"border-left-color:{color}\" data-field=\"{_e(f['field'])}\" "
            f"data-verdict=\"{_e(verdict)}\"><h3>{_e(f['field'])}{_e(role)} {_badge(verdict)}</h3>"
            f"<p class=\"reason\">{_e(f.get('reason'))}</p>{_chart(f)}{extra}{notes}</section>")


def _short(x: Any) -> str:
    if not isinstance(x, int | float) or isinstance(x, bool):
        return "-" if x is None else str(x)
    return f"{x:,.0f}" if 1e4 <= abs(x) < 1e12 else f"{x:.4g}"


def _chart(f: dict[str, Any]) -> str:
    plot = f.get("plot") or {}
    labels = plot.get("labels") or []
    if not labels:
        return ""
    train = [v or 0.0 for v in plot.get("training") or []]
    served = [v or 0.0 for v in plot.get("served") or []]
    top = max([*train, *served, 1e-9])
    name = _e(f["field"])
    if plot.get("kind") == "categories":
        return _hbars(name, labels, train, served, top)
    return _vbars(name, labels, train, served, top, plot.get("edges"))


def _vbars(name: str, labels: list[str], train: list[float], served: list[float], top: float,
           edges: list[float] | None) -> str:
    """Side-by-side bars per bucket (the histogram's bins, then outside and null when any)."""
    w, h, left, bottom = 360, 150, 34, 26
    n = len(labels)
    step = (w - left) / n
    bar = step * 0.42
    out = [f"<svg viewBox=\"0 0 {w} {h + bottom}\" role=\"img\" aria-label=\"{name}: training and served "
           f"distribution\" class=\"chart\" data-kind=\"bins\">",
           f"<line x1=\"{left}\" y1=\"{h}\" x2=\"{w}\" y2=\"{h}\" stroke=\"#999\"/>",
           f"<text x=\"{left - 3}\" y=\"10\" font-size=\"9\" text-anchor=\"end\">{_pct(top)}</text>",
           f"<text x=\"{left - 3}\" y=\"{h}\" font-size=\"9\" text-anchor=\"end\">0</text>"]
    for i, label in enumerate(labels):
        x = left + i * step
        tip = f"{_e(label)}: training {_pct(train[i])}, served {_pct(served[i])}"
        for j, (share, color) in enumerate(((train[i], TRAINING), (served[i], SERVED))):
            bh = share / top * (h - 12)
            out.append(f"<rect x=\"{x + 1 + j * bar:.1f}\" y=\"{h - bh:.1f}\" width=\"{bar:.1f}\" height=\"{bh:.1f}\" "
                       f"fill=\"{color}\"><title>{tip}</title></rect>")
    outside = {"below min": "<min", "above max": ">max", "null": "null"}
    bins = [i for i, lb in enumerate(labels) if lb not in outside]
    if edges and len(edges) == 2 and bins:  # the range of the training bins under their first and last
        for x, text, anchor in ((left + bins[0] * step, _short(edges[0]), "start"),
                                (left + (bins[-1] + 1) * step, _short(edges[1]), "end")):
            out.append(f"<text x=\"{x:.1f}\" y=\"{h + 11}\" font-size=\"9\" text-anchor=\"{anchor}\">{_e(text)}</text>")
    for i, lb in enumerate(labels):  # the buckets outside the training range, on a second line
        if lb in outside:
            x, anchor = (w, "end") if i == n - 1 else (left + (i + 0.5) * step, "middle")
            out.append(f"<text x=\"{x:.1f}\" y=\"{h + 22}\" font-size=\"8\" text-anchor=\"{anchor}\">"
                       f"{_e(outside[lb])}</text>")
    out.append("</svg>")
    return "".join(out)


def _hbars(name: str, labels: list[str], train: list[float], served: list[float], top: float) -> str:
    """Per category a pair of horizontal bars, the label on the left."""
    w, row, left = 360, 20, 110
    h = row * len(labels) + 4
    out = [f"<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{name}: training and served shares per value\" "
           "class=\"chart\" data-kind=\"categories\">"]
    span = w - left - 40
    for i, label in enumerate(labels):
        y = 2 + i * row
        shown = label if len(label) <= 18 else label[:17] + "\u2026"
        out.append(f"<text x=\"{left - 4}\" y=\"{y + 13}\" font-size=\"10\" text-anchor=\"end\">"
                   f"<title>{_e(label)}</title>{_e(shown)}</text>")
        for j, (share, color) in enumerate(((train[i], TRAINING), (served[i], SERVED))):
            bw = share / top * span
            out.append(f"<rect x=\"{left}\" y=\"{y + 1 + j * 8}\" width=\"{bw:.1f}\" height=\"7\" fill=\"{color}\">"
                       f"<title>{_e(label)}: {'training' if j == 0 else 'served'} {_pct(share)}</title></rect>")
        out.append(f"<text x=\"{left + max(train[i], served[i]) / top * span + 3:.1f}\" y=\"{y + 13}\" "
                   f"font-size=\"9\">{_pct(served[i])}</text>")
    out.append("</svg>")
    return "".join(out)


def _thresholds(t: dict[str, Any]) -> str:
    if not t:
        return ""
    return (f"<h2>How the verdicts are read</h2><p class=\"note\">Under {_e(t.get('min_rows'))} served values: "
            f"insufficient rows. Up to {_e(t.get('small_sample'))} values a test decides (SciPy): Kolmogorov-Smirnov "
            f"for continuous numbers against the training quantiles, chi-squared over the profile's buckets for "
            f"categories, booleans and numbers with few values; p below {_e(t.get('alpha_drift'))} is drift, below "
            f"{_e(t.get('alpha_moderate'))} moderate. Above that many values every difference is significant, so "
            f"the size of the shift decides: PSI {_e(t.get('psi_moderate'))} moderate, {_e(t.get('psi_drift'))} "
            f"drift; KS distance D {_e(t.get('ks_moderate'))} moderate, {_e(t.get('ks_drift'))} drift.</p>")
