"""The drift report people look at: per feature the statistic fit for its type and sample size.

One report for two sources: the rows of a request log read offline (``nbdeploy drift BUNDLE
--log``, every served value at hand) and the running API's own counts (``GET
/drift?format=html``, counts in the training histogram's buckets, see :mod:`.drift`).

Per feature, against the training profile in ``profile.json``:

* fewer than ``MIN_ROWS`` served values: **insufficient rows**, no verdict;
* up to ``SMALL_SAMPLE`` values a hypothesis test decides, with SciPy: a number whose
  profile has a ``quantile_grid`` and no heavy ties gets the one-sample Kolmogorov-Smirnov
  test (``scipy.stats.kstest``) against the training distribution function that grid
  describes; a category, a boolean, a number with few distinct values (KS assumes a
  continuous distribution), an old bundle without the grid, or the API's counts get
  Pearson's chi-squared test (``scipy.stats.chisquare``) over the profile's buckets.
  p below ``ALPHA_DRIFT`` is drift, below ``ALPHA_MODERATE`` moderate;
* above ``SMALL_SAMPLE`` values every p-value is tiny for any difference at all, so the
  size of the shift decides: the population stability index over the same buckets (0.1
  moderate, 0.25 drift, as ``/drift`` has always read it), and for a continuous number
  also the KS distance D (the largest gap between the two distribution functions: 0.1
  moderate, 0.2 drift). The worse of the two verdicts counts.

The model's predictions are one more feature (``role: "prediction"``) when the bundle's
profile has a ``prediction`` profile (written at build time from the model's predictions
on its training rows) and the log has the answers.

SciPy comes with scikit-learn; a bundle without it still gets PSI, and the report says so.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from .drift import DRIFT, MIN_ROWS, MODERATE, _Categories, _Numeric, psi

#: served values up to which a hypothesis test decides; above it, the size of the shift
SMALL_SAMPLE = 1000
ALPHA_DRIFT, ALPHA_MODERATE = 0.001, 0.01
#: KS distance (largest gap between the distribution functions) read as moderate / drift
KS_MODERATE, KS_DRIFT = 0.1, 0.2
#: chi-squared buckets are pooled until each expects at least this many rows
MIN_EXPECTED = 5.0
VERDICTS = ("drift", "moderate", "stable", "insufficient")
_ORDER = {v: i for i, v in enumerate(VERDICTS)}


def thresholds() -> dict[str, Any]:
    return {"min_rows": MIN_ROWS, "small_sample": SMALL_SAMPLE, "alpha_drift": ALPHA_DRIFT,
            "alpha_moderate": ALPHA_MODERATE, "psi_moderate": MODERATE, "psi_drift": DRIFT,
            "ks_moderate": KS_MODERATE, "ks_drift": KS_DRIFT}


def _stats() -> Any:
    try:
        from scipy import stats
    except ImportError:
        return None
    return stats


# -- the training distribution function of a quantile grid -------------------
class GridCDF:
    """The distribution function a profile's ``quantile_grid`` describes: linear between
    distinct grid values, with a jump where several grid points share a value."""

    def __init__(self, grid: list[float]) -> None:
        g = np.asarray(grid, dtype=np.float64)
        p = np.linspace(0.0, 1.0, len(g))
        self.values, first = np.unique(g, return_index=True)
        last = np.r_[first[1:] - 1, len(g) - 1]
        self.low, self.high = p[first], p[last]  # F just below each value, and at it
        #: the largest share of the training rows one value holds (as far as the grid tells)
        self.largest_tie = float((self.high - self.low).max()) if len(g) > 1 else 1.0

    @property
    def continuous(self) -> bool:
        """KS assumes a continuous distribution: many distinct values, no value holding >1 %."""
        return len(self.values) >= 50 and self.largest_tie <= 0.01

    def __call__(self, x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        v, low, high = self.values, self.low, self.high
        i = np.searchsorted(v, x, side="right")  # v[i-1] <= x < v[i]
        inner = np.clip(i, 1, len(v) - 1)
        x0, x1 = v[inner - 1], v[inner]
        f0, f1 = high[inner - 1], low[inner]
        span = np.where(x1 > x0, x1 - x0, 1.0)
        out = f0 + (x - x0) / span * (f1 - f0)
        out = np.where(x == x0, f0, out)
        out = np.where(i == 0, 0.0, out)
        return np.where(i >= len(v), 1.0, np.clip(out, 0.0, 1.0))


# -- one feature ---------------------------------------------------------------
def _chi2(stats: Any, expected: np.ndarray, served: np.ndarray) -> tuple[float, float, int]:
    """Pearson's chi-squared of served counts against expected shares, buckets pooled (smallest
    first) until each expects ``MIN_EXPECTED`` rows: (statistic, p, buckets)."""
    n = float(served.sum())
    order = np.argsort(expected, kind="stable")
    exp, obs = expected[order] * n, served[order].astype(np.float64)
    e_groups: list[float] = []
    o_groups: list[float] = []
    e_acc = o_acc = 0.0
    for e, o in zip(exp, obs, strict=True):
        e_acc += e
        o_acc += o
        if e_acc >= MIN_EXPECTED:
            e_groups.append(e_acc)
            o_groups.append(o_acc)
            e_acc = o_acc = 0.0
    if e_acc or o_acc:
        if e_groups:
            e_groups[-1] += e_acc
            o_groups[-1] += o_acc
        else:
            e_groups, o_groups = [e_acc], [o_acc]
    if len(e_groups) < 2:
        return 0.0, 1.0, len(e_groups)
    e_arr = np.asarray(e_groups)
    e_arr *= n / e_arr.sum()  # shares floored or rounded: the totals must agree exactly
    result = stats.chisquare(np.asarray(o_groups), e_arr)
    return float(result.statistic), float(result.pvalue), len(e_groups)


def _rank(verdict: str) -> int:
    return _ORDER[verdict]


def _by_p(p: float) -> str:
    return "drift" if p < ALPHA_DRIFT else "moderate" if p < ALPHA_MODERATE else "stable"


def _by_psi(value: float) -> str:
    return "drift" if value >= DRIFT else "moderate" if value >= MODERATE else "stable"


def _by_d(d: float) -> str:
    return "drift" if d >= KS_DRIFT else "moderate" if d >= KS_MODERATE else "stable"


def _fmt_p(p: float) -> str:
    return f"= {p:.2g}" if p >= 1e-4 else "< 0.0001"


def feature(name: str, column: _Numeric | _Categories, stats: dict[str, Any], served: np.ndarray,
            values: np.ndarray | None = None, role: str = "input") -> dict[str, Any]:
    """The report of one feature: ``served`` are its counts in ``column``'s buckets; ``values``
    the served numbers themselves (nan = null) when they are at hand, for KS."""
    numeric = isinstance(column, _Numeric)
    rows = int(served.sum())
    present = rows - int(served[-1])
    value_psi = psi(column.expected, served)
    entry: dict[str, Any] = {
        "field": name, "role": role, "kind": "numeric" if numeric else str(stats.get("kind") or "categorical"),
        "rows": rows, "values": present, "psi": _round(value_psi), "notes": [],
        "null_share": {"training": _round(float(column.expected[-1])), "served": _round(served[-1] / rows) if rows else None},
    }
    grid = stats.get("quantile_grid") if numeric else None
    cdf = GridCDF(grid) if isinstance(grid, list) and len(grid) > 2 else None
    sp = _stats()
    if numeric:
        entry["training_mean"] = stats.get("mean")
        if values is not None:
            present_values = values[~np.isnan(values)]
            entry["served_mean"] = _round(float(present_values.mean())) if len(present_values) else None
        if cdf is None:
            entry["notes"].append("this bundle's profile has no quantile grid (built by an older nbdeploy): "
                                  "tests over the 20-bin histogram only, no Kolmogorov-Smirnov; rebuild for KS")
        elif not cdf.continuous:
            entry["notes"].append(f"few distinct training values ({len(cdf.values)} in the quantile grid): "
                                  "chi-squared over the histogram's buckets instead of KS, which assumes continuity")
        elif values is None:
            entry["notes"].append("the API keeps counts in the histogram's buckets, not the values: chi-squared "
                                  "and PSI here; `nbdeploy drift BUNDLE --log` runs KS on the logged values")
    if sp is None:
        entry["notes"].append("SciPy is not installed where this report ran: PSI only")
    ks_usable = numeric and cdf is not None and cdf.continuous and values is not None and sp is not None
    if ks_usable and present and values is not None:  # (implied by ks_usable; said for the type checker)
        x = values[~np.isnan(values)]
        # the exact distribution of D costs seconds for a million values, and above SMALL_SAMPLE the
        # p-value decides nothing: the asymptotic one there
        result = sp.kstest(x, cdf, method="auto" if len(x) <= SMALL_SAMPLE else "asymp")
        entry["ks"] = {"d": _round(float(result.statistic)), "p_value": float(result.pvalue)}
    chi = None
    if sp is not None and present >= 1:
        stat, p, groups = _chi2(sp, column.expected, served)
        chi = {"statistic": _round(stat), "p_value": p, "buckets": groups}
        entry["chi2"] = chi
    verdict, test, reason = _verdict(entry, present, sp is not None, ks_usable)
    entry.update(verdict=verdict, test=test, reason=reason, plot=_plot(column, served))
    return entry


def _verdict(entry: dict[str, Any], n: int, have_scipy: bool, ks: bool) -> tuple[str, str, str]:
    """(verdict, the statistic that decided, why) of one feature."""
    if n < MIN_ROWS:
        return "insufficient", "none", f"{n} served values; at least {MIN_ROWS} are needed for a verdict"
    value_psi = entry["psi"] or 0.0
    if n <= SMALL_SAMPLE and have_scipy:
        if ks:
            d, p = entry["ks"]["d"], entry["ks"]["p_value"]
            head, test = f"Kolmogorov-Smirnov D = {d:.3f}, p {_fmt_p(p)} over {n} values", "ks"
        else:
            chi = entry["chi2"]
            p = chi["p_value"]
            head = f"chi-squared {chi['statistic']:.3g} over {chi['buckets']} buckets, p {_fmt_p(p)}, {n} values"
            test = "chi2"
        verdict = _by_p(p)
        if verdict == "stable":
            return verdict, test, f"{head}: no evidence of a shift (p {ALPHA_MODERATE} or more)"
        return verdict, test, f"{head}: {verdict} (p below {ALPHA_DRIFT if verdict == 'drift' else ALPHA_MODERATE})"
    by_psi = _by_psi(value_psi)
    limit = {"drift": f"{DRIFT} or more: drift", "moderate": f"{MODERATE} or more: moderate",
             "stable": f"under {MODERATE}: stable"}[by_psi]
    why = f"PSI {value_psi:.3f} over {n} values ({limit})"
    if ks and n > SMALL_SAMPLE:
        d = entry["ks"]["d"]
        by_d = _by_d(d)
        limit_d = {"drift": f"{KS_DRIFT} or more: drift", "moderate": f"{KS_MODERATE} or more: moderate",
                   "stable": f"under {KS_MODERATE}: stable"}[by_d]
        why += f", KS distance D = {d:.3f} ({limit_d})"
        if _rank(by_d) < _rank(by_psi):
            by_psi = by_d
    tail = (f"; over {SMALL_SAMPLE} values the size of the shift decides, not a p-value"
            if n > SMALL_SAMPLE else "; no SciPy for a test")
    return by_psi, ("ks" if ks and n > SMALL_SAMPLE and by_psi != _by_psi(value_psi) else "psi"), why + tail


def _plot(column: _Numeric | _Categories, served: np.ndarray) -> dict[str, Any]:
    """Training and served shares per bucket, the buckets named, for the report's chart."""
    rows = served.sum() or 1
    shares = served / rows
    expected = column.expected
    if isinstance(column, _Numeric):
        edges = column._edges
        labels = ["below min", *(f"{_short(a)}..{_short(b)}" for a, b in zip(edges[:-1], edges[1:], strict=True)),
                  "above max", "null"]
        keep = [i for i in range(len(labels))
                if not (i in (0, len(labels) - 2, len(labels) - 1) and expected[i] == 0 and served[i] == 0)]
        return {"kind": "bins", "labels": [labels[i] for i in keep], "training": [_round(expected[i]) for i in keep],
                "served": [_round(shares[i]) for i in keep], "edges": [float(edges[0]), float(np.nextafter(edges[-1], -np.inf))]}
    names = [str(v) for v in column.values] + ["(other values)", "(null)"]
    keep = [i for i in range(len(names)) if i < len(column.values) or expected[i] > 0 or served[i] > 0]
    return {"kind": "categories", "labels": [names[i] for i in keep], "training": [_round(expected[i]) for i in keep],
            "served": [_round(shares[i]) for i in keep]}


def _short(x: float) -> str:
    return f"{x:.4g}"


def _round(x: Any) -> float | None:
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


# -- the whole report ----------------------------------------------------------
def buckets(stats: dict[str, Any] | None) -> _Numeric | _Categories | None:
    """The drift buckets of a profiled column, or None when the profile cannot hold any."""
    if not stats:
        return None
    if stats.get("kind") == "numeric" and (stats.get("histogram") or {}).get("counts"):
        return _Numeric(stats)
    if stats.get("kind") in ("categorical", "boolean") and stats.get("top"):
        return _Categories(stats)
    return None


def assemble(features: list[dict[str, Any]], *, source: dict[str, Any], rows: int,
             notes: list[str] | None = None) -> dict[str, Any]:
    """The report document: features ordered worst first, the overall verdict, counts per verdict."""
    features.sort(key=lambda f: (_rank(f["verdict"]), f["role"] != "prediction", _severity(f), f["field"]))
    counts = {v: sum(f["verdict"] == v for f in features) for v in VERDICTS}
    decided = [f for f in features if f["verdict"] != "insufficient"]
    overall = (min((f["verdict"] for f in decided), key=_rank) if decided else "insufficient")
    return {"kind": "nbdeploy-drift-report", "created": time.time(), "source": source, "rows": rows,
            "verdict": overall, "counts": counts,
            "drifted": [f["field"] for f in features if f["verdict"] == "drift"],
            "moderate": [f["field"] for f in features if f["verdict"] == "moderate"],
            "thresholds": thresholds(), "notes": notes or [], "features": features}


def _severity(f: dict[str, Any]) -> float:
    """Within a verdict, the bigger shift first."""
    return -max(f.get("psi") or 0.0, 10 * ((f.get("ks") or {}).get("d") or 0.0))


def failed(doc: dict[str, Any], level: str) -> list[str]:
    """The features at ``level`` (``drift`` or ``moderate``) or worse: what --fail-on gates on."""
    worst = _rank(level)
    return [f["field"] for f in doc["features"] if f["verdict"] != "insufficient" and _rank(f["verdict"]) <= worst]


def from_api(drift: Any, name: str, version: str) -> dict[str, Any]:
    """The report of a running API, from its drift counts (:class:`.drift.Drift`)."""
    rows, counts, since = drift.served()
    stats = (drift.profile or {}).get("columns") or {}
    features = [feature(n, col, stats.get(n) or {}, counts[n]) for n, col in drift.columns.items()]
    return assemble(features, rows=rows, source={
        "kind": "api", "model": name, "version": version, "since": since, "window": drift.window,
        "text": f"the last {rows} rows the API of {name} v{version} served"},
        notes=["predictions are not in the API's own report; `nbdeploy drift BUNDLE --log REQUESTS.jsonl` "
               "compares them with the bundle's prediction profile", *text_notes(drift.text_columns)])


def text_notes(columns: list[str]) -> list[str]:
    """The note saying which free-text inputs have no drift measure, and why."""
    from .drift import TEXT_NOT_MEASURED

    return [f"not measured: {', '.join(columns)} ({TEXT_NOT_MEASURED})"] if columns else []


def text(doc: dict[str, Any]) -> str:
    """The report as the CLI prints it."""
    src = doc["source"]
    lines = [f"drift of {src.get('text')}: {doc['verdict']}"
             + (f" (drifted: {', '.join(doc['drifted'])})" if doc["drifted"] else "")]
    lines.append(f"  {'feature':24} {'verdict':13} {'test':5} {'PSI':>7}  reason")
    for f in doc["features"]:
        label = f["field"] + (" (prediction)" if f["role"] == "prediction" else "")
        psi_text = f"{f['psi']:.3f}" if f.get("psi") is not None else "-"
        lines.append(f"  {label[:24]:24} {f['verdict']:13} {f['test']:5} {psi_text:>7}  {f['reason']}")
    for note in doc.get("notes") or []:
        lines.append(f"  note: {note}")
    notes = sorted({n for f in doc["features"] for n in f.get("notes") or []})
    lines += [f"  note: {n}" for n in notes]
    return "\n".join(lines)
