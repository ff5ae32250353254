"""Reproduce a captured run: re-run from a clean kernel with its parameters and compare.

The baseline is a run (``run_id``), else the notebook's capture record (what the
live session or ``nbdeploy capture`` recorded), else the last completed run.
The comparison covers the run status, every data file read (input hashes), every
data file written (output hashes), every metric (within ``rtol``/``atol``) and,
when both runs saved predictions of the registered model on its example,
those predictions. Each check says what matched or what differed, and by how much.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nbdeploy.base.errors import StateError
from nbdeploy.base.progress import Progress, note, silent
from nbdeploy.base.state import NotebookState, atomic_write_json, read_json
from nbdeploy.capture.hashing import algorithm_of, content_hash, recorded_hash, short_hash
from nbdeploy.job.checks import DIFFERED, MATCHED, MISSING, NEW, SKIPPED, Check, CheckKind
from nbdeploy.job.run import RunRecord, get_run, last_run, run_notebook


@dataclass
class Baseline:
    source: str  # "capture record" | "run <id>"
    parameters: dict[str, Any]
    metrics: dict[str, float]
    lineage: list[dict]
    run_dir: str | None = None


@dataclass
class ReproduceReport:
    notebook: str
    baseline: str
    run: RunRecord
    rtol: float
    atol: float
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.failed for c in self.checks)

    @property
    def matched(self) -> list[Check]:
        return [c for c in self.checks if c.status == MATCHED]

    @property
    def differed(self) -> list[Check]:
        return [c for c in self.checks if c.failed]

    def to_dict(self) -> dict:
        return {"notebook": self.notebook, "baseline": self.baseline, "ok": self.ok,
                "rtol": self.rtol, "atol": self.atol, "run": self.run.to_dict(),
                "checks": [asdict(c) for c in self.checks]}

    def summary(self) -> str:
        verdict = "REPRODUCED" if self.ok else "DIFFERED"
        tail = count_checks([asdict(c) for c in self.checks])
        return (f"reproduce {Path(self.notebook).name}: {verdict} ({tail}); baseline {self.baseline}; "
                f"re-run {self.run.run_id} -> {self.run.output}")

    def view(self) -> Any:
        from nbdeploy.base.tables import View

        rows = [[c.status, c.kind, c.name, c.detail] for c in self.checks]
        bad = {i for i, c in enumerate(self.checks) if c.failed}
        return View([(f"reproduce {Path(self.notebook).name} against {self.baseline}",
                      ["result", "what", "name", "detail"], rows, bad)], self.summary())

    def text(self) -> str:
        return self.view().text()


def count_checks(checks: list[dict]) -> str:
    """How the checks came out, every one counted once under its own status.

    ``all 6 checks matched``; ``5 of 6 checks matched; 1 skipped: input data.csv``;
    ``1 of 6 checks differ: metric auc; 4 matched; 1 new: metric f1``.
    """
    n = len(checks)
    named: dict[str, list[str]] = {}
    for c in checks:
        named.setdefault(c.get("status", ""), []).append(f"{c.get('kind')} {c.get('name')}")
    matched = len(named.get(MATCHED, []))
    if n == 0:
        return "no checks"
    if matched == n:
        return f"all {n} checks matched"

    def listed(names: list[str]) -> str:
        return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")

    bad = named.get(DIFFERED, []) + named.get(MISSING, [])
    others = [f"{len(named[s])} {s}: {listed(named[s])}" for s in (SKIPPED, NEW) if named.get(s)]
    if bad:
        parts = [f"{len(bad)} of {n} checks differ: {listed(bad)}", f"{matched} matched"]
    else:
        parts = [f"{matched} of {n} checks matched"]
    return "; ".join(parts + others)


# -- the baseline -------------------------------------------------------------
def _from_record(record: dict, source: str) -> Baseline:
    metrics = {k: m["value"] if isinstance(m, dict) else m
               for k, m in (record.get("metrics") or {}).items()}
    return Baseline(source, dict(record.get("parameters") or {}), metrics,
                    list(record.get("lineage") or []))


def baseline_for(notebook: str | Path, run_id: str | None = None) -> Baseline:
    if run_id:
        rec = get_run(notebook, run_id)
        return Baseline(f"run {rec.run_id}", rec.parameters, rec.metrics, rec.lineage, rec.run_dir)
    st = NotebookState.for_notebook(notebook)
    if st.capture_path.exists():
        record = st.read_capture()
        when = record.get("updated") or record.get("session", {}).get("started", "")
        return _from_record(record, f"capture record ({record.get('session', {}).get('mode', '?')}"
                                    f" session, {when})")
    last = last_run(notebook, status="completed")
    if last is None:
        raise StateError(f"nothing to reproduce for {Path(notebook).name}: no capture record and "
                         "no completed run",
                         hint="run the notebook with `%deploy init` on, or `nbdeploy run` it first")
    return Baseline(f"run {last.run_id}", last.parameters, last.metrics, last.lineage, last.run_dir)


# -- comparing ------------------------------------------------------------------
def _files(lineage: list[dict], role: str) -> dict[str, dict]:
    return {(e.get("relative_path") or e["path"]): e for e in lineage
            if e.get("role") == role and e.get("kind", "file") == "file"}


def _same_algorithm(expected: str | None, entry: dict) -> str | None:
    """The re-run's hash of a file, made with the algorithm of the baseline's hash.

    A baseline from an older record hashed with SHA-256 where the re-run uses BLAKE3:
    the file the re-run read or wrote is hashed again, if it is still there.
    """
    actual = recorded_hash(entry)
    if not expected or not actual or algorithm_of(actual) == algorithm_of(expected):
        return actual
    try:
        return content_hash(entry["path"], algorithm_of(expected))[0]
    except (OSError, ValueError):
        return None


def compare_files(role: str, before: list[dict], after: list[dict]) -> list[Check]:
    kind: CheckKind = "input" if role == "read" else "output"
    a, b = _files(before, role), _files(after, role)
    checks = []
    for name, e in a.items():
        f = b.get(name)
        expected = recorded_hash(e)
        if f is None:
            checks.append(Check(kind, name, MISSING, expected, None,
                                f"{'read' if role == 'read' else 'written'} by the baseline, "
                                "not by the re-run"))
            continue
        actual = _same_algorithm(expected, f)
        if expected and actual is None and recorded_hash(f):
            checks.append(Check(kind, name, SKIPPED, expected, recorded_hash(f),
                                f"the baseline's {algorithm_of(expected)} hash cannot be compared: "
                                f"the re-run's file is gone, its hash is {short_hash(recorded_hash(f))}"))
        elif expected == actual:
            checks.append(Check(kind, name, MATCHED, expected, actual,
                                f"{short_hash(expected)}, {f.get('rows')} rows"))
        else:
            detail = f"{short_hash(expected)} -> {short_hash(actual)}"
            if e.get("bytes") != f.get("bytes"):
                detail += f"; {e.get('bytes')} -> {f.get('bytes')} bytes"
            if e.get("rows") != f.get("rows"):
                detail += f"; {e.get('rows')} -> {f.get('rows')} rows"
            checks.append(Check(kind, name, DIFFERED, expected, actual, detail))
    for name, f in b.items():
        if name not in a:
            checks.append(Check(kind, name, NEW, None, recorded_hash(f),
                                f"only the re-run {'read' if role == 'read' else 'wrote'} it"))
    return checks


def compare_metrics(before: dict[str, float], after: dict[str, float], rtol: float,
                    atol: float) -> list[Check]:
    checks = []
    for name, v in before.items():
        if name not in after:
            checks.append(Check("metric", name, MISSING, v, None, "not reported by the re-run"))
            continue
        w = after[name]
        delta = w - v
        rel = f", {delta / abs(v):+.3%}" if v else ""
        if math.isclose(v, w, rel_tol=rtol, abs_tol=atol):
            checks.append(Check("metric", name, MATCHED, v, w, f"{v:.6g} (delta {delta:+.3g})"))
        else:
            checks.append(Check("metric", name, DIFFERED, v, w,
                                f"{v:.6g} -> {w:.6g} (delta {delta:+.6g}{rel}; "
                                f"rtol {rtol:g}, atol {atol:g})"))
    for name, w in after.items():
        if name not in before:
            checks.append(Check("metric", name, NEW, None, w, f"only the re-run reported it ({w:.6g})"))
    return checks


def reproduce(notebook: str | Path, *, run_id: str | None = None, rtol: float = 1e-6,
              atol: float = 1e-9, timeout: float | None = None, tracking: str = "background",
              progress: Progress | None = None, kernel: str | None = None) -> ReproduceReport:
    from nbdeploy.job.predictions import compare_predictions

    src = Path(notebook).resolve()
    base = baseline_for(src, run_id)
    say = progress or silent
    say(note(f"reproduce {src.name}: baseline is the {base.source}"))
    rec = run_notebook(src, parameters=base.parameters, timeout=timeout, tracking=tracking,
                       kind="reproduce", reproduces=base.source, progress=progress, kernel=kernel)
    report = ReproduceReport(str(src), base.source, rec, rtol, atol)
    detail = (f"{rec.error.get('message')}" if rec.error else f"completed in {rec.duration:.1f}s")
    report.checks.append(Check("status", "run", MATCHED if rec.ok else DIFFERED, "completed",
                               rec.status, detail))
    report.checks += compare_files("read", base.lineage, rec.lineage)
    report.checks += compare_files("write", base.lineage, rec.lineage)
    report.checks += compare_metrics(base.metrics, rec.metrics, rtol, atol)
    pred = compare_predictions(base.run_dir, rec.run_dir, rtol, atol, src)
    if pred is not None:
        report.checks.append(pred)
    atomic_write_json(Path(rec.run_dir) / "reproduce.json", report.to_dict())
    return report


def load_report(run_dir: str | Path) -> dict:
    return read_json(Path(run_dir) / "reproduce.json")
