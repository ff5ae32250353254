"""Text and HTML views of capture records, shared by the magics and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nbdeploy.base.tables import View
from nbdeploy.bundle.readiness import Readiness
from nbdeploy.capture.hashing import recorded_hash, short_hash


def deps_section(record: dict) -> tuple[str, list[str], list[list[Any]], set[int]]:
    rows = [[d["name"], d["version"], ", ".join(d["found_by"]), ", ".join(map(str, d["cells"]))]
            for d in record.get("dependencies", [])]
    bad = set()
    for u in record.get("unresolved", []):
        bad.add(len(rows))
        rows.append([u["module"], "UNRESOLVED", u["reason"], ", ".join(map(str, u["cells"]))])
    for m in record.get("project_modules", []):
        rows.append([m["module"], "project code", m["relative_path"], ""])
    return ("Dependencies", ["package", "version", "found by", "cells"], rows, bad)


def lineage_section(record: dict) -> tuple[str, list[str], list[list[Any]], set[int]]:
    rows = []
    for e in record.get("lineage", []):
        cols = ", ".join(f"{c['name']}:{c['dtype']}" for c in e.get("columns", [])[:8])
        if len(e.get("columns", [])) > 8:
            cols += f", ... ({len(e['columns'])} columns)"
        where = e.get("relative_path") or e["path"]
        if e.get("query"):
            where = f"{e.get('connection')}: {' '.join(e['query'].split())[:60]}"
        rows.append([e["role"], where, short_hash(recorded_hash(e)), e.get("bytes") or "-",
                     e.get("rows") if e.get("rows") is not None else "-", cols,
                     ", ".join(map(str, e.get("cells", [])))])
    return ("Data lineage", ["role", "path", "hash", "bytes", "rows", "columns", "cells"], rows, set())


def environment_section(record: dict) -> tuple[str, list[str], list[list[Any]], set[int]]:
    env = record.get("environment", {})
    py, mach, loc = env.get("python", {}), env.get("machine", {}), env.get("locale", {})
    mem = mach.get("memory_bytes")
    rows = [
        ["python", f"{py.get('implementation', '')} {py.get('version', '')}"],
        ["os", env.get("os", {}).get("platform", "")],
        ["cpu", f"{mach.get('cpu_count')} x {mach.get('architecture')}"],
        ["memory", f"{mem / 2**30:.1f} GiB" if mem else "?"],
        ["gpu", ", ".join(mach.get("gpus", [])) or "none"],
        ["locale", f"{loc.get('language')} {loc.get('encoding')} tz={loc.get('timezone')}"],
    ] + [[k, v] for k, v in env.get("variables", {}).items()]
    return ("Environment", ["", ""], rows, set())


def metrics_section(record: dict) -> tuple[str, list[str], list[list[Any]], set[int]]:
    rows = [[k, v["value"], v.get("cell") or ""] for k, v in record.get("metrics", {}).items()]
    return ("Metrics", ["metric", "value", "cell"], rows, set())


def status_view(record: dict, state_dir: str = "") -> View:
    sections = [deps_section(record), lineage_section(record), environment_section(record)]
    if record.get("metrics"):
        sections.append(metrics_section(record))
    n_unres = len(record.get("unresolved", []))
    footer = f"record: {state_dir}" if state_dir else ""
    if n_unres:
        footer = f"{n_unres} unresolved import(s): install them in this kernel or remove them. " + footer
    return View(sections, footer)


def deps_view(record: dict) -> View:
    return View([deps_section(record)],
                "requirements.txt:\n" + "\n".join(record.get("requirements", [])))


def lineage_view(record: dict) -> View:
    return View([lineage_section(record)])


_MARK = {"ok": "✓", "warning": "!", "missing": "·", "error": "✗"}


def readiness_text(r: Readiness) -> str:
    """Plain-text checklist (papermill runs, terminals)."""
    lines = [f"Handoff readiness of {Path(r.notebook).name}: "
             + ("READY" if r.ready else "not ready yet")]
    if r.stale:
        lines.append("  (the notebook changed since it was last captured)")
    for it in r.items:
        lines.append(f"[{_MARK[it.status]}] {it.title}: {it.summary}")
        for d in it.details:
            if d.status == "error":
                lines.append(f"      ✗ {d.label} {d.value} {d.note}".rstrip())
        if it.action and it.status != "ok":
            lines.append(f"      -> {it.action}")
    return "\n".join(lines)
def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def runs_view(notebook_name: str, runs: list[Any]) -> View:
    """The recorded runs of a notebook (``RunRecord``s, oldest first), one row each."""
    rows, bad = [], set()
    for i, r in enumerate(runs):
        given = " ".join(f"{k}={v!r}" for k, v in r.given.items()) or "defaults"
        metrics = " ".join(f"{k}={v:.6g}" for k, v in r.metrics.items())
        error = (r.error or {}).get("message", "")
        rows.append([r.run_id, r.kind, r.status, f"{r.duration:.1f}s" if r.duration is not None
                     else "-", _short(given), _short(metrics), _short(error, 80)])
        if not r.ok:
            bad.add(i)
    footer = (f"{len(runs)} run(s); details: nbdeploy runs {notebook_name} --json" if runs else
              f"no runs of {notebook_name} yet: `nbdeploy run {notebook_name}` records one")
    return View([(f"runs of {notebook_name}", ["run", "kind", "status", "duration", "parameters",
                                                 "metrics", "error"], rows, bad)], footer)
