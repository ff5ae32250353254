"""The models a build can choose between: the candidates kept from the last build's run.

A build that finds several fitted models stops and keeps its run with every candidate
exported (:func:`nbdeploy.bundle.build.build_bundle`); ``nbdeploy build --model VAR``
right after reuses it. :func:`kept_candidates` lists what that run offers, so a front
end (the Deploy panel's Build chooser) can show each candidate's variable, class and,
when the notebook logged one, its score, without running anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nbdeploy.base.state import NotebookState
from nbdeploy.bundle.catalog import load_json


@dataclass
class Candidate:
    """One model of the kept run (what ``--model VARIABLE`` would ship)."""

    variable: str
    model_class: str  # module.QualName of the estimator
    flavor: str
    score: str | None  # the metric the notebook logged for it, "NAME = VALUE"; None when none names it


@dataclass
class Candidates:
    """The candidates of a notebook's last build run, and whether that run still matches the file."""

    notebook: str
    current: bool  # the notebook is unchanged since that run: choosing one reuses it (no second run)
    candidates: list[Candidate]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        if not self.candidates:
            return f"{self.notebook}: no kept run with several models (build it first)"
        head = (f"{self.notebook}: the last build found {len(self.candidates)} models; "
                + ("`nbdeploy build --model VAR` reuses its run" if self.current
                   else "the notebook changed since, so a build runs it again"))
        rows = [f"  {c.variable:20} {c.model_class}" + (f"  ({c.score})" if c.score else "")
                for c in self.candidates]
        return "\n".join([head, *rows])


def _names_variable(metric: str, variable: str) -> bool:
    """``ridge_r2``, ``r2_ridge``, ``ridge.auc`` or ``ridge`` name the candidate ``ridge``."""
    if metric == variable:
        return True
    return any(metric.startswith(variable + sep) or metric.endswith(sep + variable) for sep in "_.-/ ")


def _score(metrics: dict[str, Any], variable: str) -> str | None:
    named = sorted(name for name in metrics if _names_variable(name, variable))
    if not named:
        return None
    value = (metrics[named[0]] or {}).get("value") if isinstance(metrics[named[0]], dict) else metrics[named[0]]
    return f"{named[0]} = {value:.4g}" if isinstance(value, int | float) else f"{named[0]} = {value}"


def kept_candidates(notebook: str | Path) -> Candidates:
    """The candidate models kept from the notebook's last build run (empty when there is none)."""
    from nbdeploy.bundle.build import KEPT_RUN, code_sha256

    nb = Path(notebook).resolve()
    kept = NotebookState.for_notebook(nb).root / KEPT_RUN
    run = load_json(kept / "run.json") or {}
    if not run.get("candidates"):
        return Candidates(nb.name, False, [])
    current = run.get("code_sha256") == code_sha256(nb)
    metrics = (load_json(kept / "state" / "capture.json") or {}).get("metrics") or {}
    out = []
    for name in run["candidates"]:
        export = load_json(kept / "candidates" / name / "export.json")
        if export is None:
            continue
        out.append(Candidate(name, str(export.get("class") or ""), str(export.get("flavor") or ""),
                             _score(metrics, name)))
    return Candidates(nb.name, current, out)
