"""``nbdeploy doctor [--repair]``: find damaged state records and move them aside.

A state file can be damaged by a full disk, a copy made mid-write by a sync tool, or a
hand edit. Every reader already names such a file in one line; this finds them all at
once and, with ``repair``, moves each into ``.nbdeploy/damaged/<time>/`` (never deletes:
the bytes may still matter to someone) so the next capture, run or build starts clean.
A damaged run record moves with its whole run folder; a damaged MLflow store with its
``-wal``/``-shm`` companions (its artifacts stay where they are).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from nbdeploy.base.state import STATE_DIRNAME

DAMAGED = "damaged"
_SKIP = {DAMAGED, "mlartifacts"}  # what was moved already; MLflow's artifact files are not records
RUN_FILE = "run.json"


@dataclass
class Damaged:
    path: str  # the file found damaged
    reason: str
    moved_to: str = ""  # after a repair: where it (or its run folder) now is

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason, "moved_to": self.moved_to}


@dataclass
class DoctorReport:
    state_dir: str
    checked: int = 0
    damaged: list[Damaged] = field(default_factory=list)
    repaired: bool = False

    @property
    def ok(self) -> bool:
        return not self.damaged or self.repaired

    def text(self) -> str:
        if not self.damaged:
            return f"{self.state_dir}: {self.checked} record(s) checked, none damaged"
        lines = []
        for d in self.damaged:
            lines.append(f"moved {d.path} -> {d.moved_to} ({d.reason})" if d.moved_to
                         else f"damaged: {d.path} ({d.reason})")
        tail = ("moved aside, nothing deleted; capture, run or build again to rewrite them"
                if self.repaired else "move them aside with: nbdeploy doctor --repair")
        return "\n".join(lines) + f"\n{len(self.damaged)} of {self.checked} record(s) damaged; {tail}"

    def to_dict(self) -> dict:
        return {"state_dir": self.state_dir, "checked": self.checked, "repaired": self.repaired,
                "damaged": [d.to_dict() for d in self.damaged]}


def state_dir_of(path: str | Path) -> Path:
    """The ``.nbdeploy`` folder of a notebook, of a project folder, or the folder itself."""
    p = Path(path).resolve()
    if p.name == STATE_DIRNAME:
        return p
    return (p.parent if p.is_file() or p.suffix == ".ipynb" else p) / STATE_DIRNAME


def _json_problem(path: Path) -> str | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return "not text"
    except json.JSONDecodeError as exc:
        return f"not JSON: {exc.msg} at line {exc.lineno}"
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if path.name == RUN_FILE and not (isinstance(doc, dict) and doc.get("run_id")):
        return "JSON, but not a run record"
    return None


def _store_problem(db: Path) -> str | None:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            check = con.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                return f"SQLite integrity check: {check[0] if check else 'no answer'}"
            con.execute("SELECT count(*) FROM experiments").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return f"not a usable MLflow store: {exc}"
    return None


def _records(state: Path) -> list[Path]:
    out = []
    for p in sorted(state.rglob("*.json")):
        rel = p.relative_to(state).parts
        if rel[0] in _SKIP or "last-build-run" in rel or any(part.startswith(".") for part in rel):
            continue
        out.append(p)
    return out


def examine(path: str | Path = ".", *, repair: bool = False) -> DoctorReport:
    """Check every JSON record and the MLflow store under the state folder of ``path``;
    with ``repair``, move the damaged ones into ``.nbdeploy/damaged/<time>/``."""
    state = state_dir_of(path)
    report = DoctorReport(str(state))
    if not state.is_dir():
        return report
    found: list[tuple[Path, str]] = []
    for rec in _records(state):
        report.checked += 1
        problem = _json_problem(rec)
        if problem:
            found.append((rec, problem))
    db = state / "mlflow.db"
    if db.is_file():
        report.checked += 1
        problem = _store_problem(db)
        if problem:
            found.append((db, problem))
    report.damaged = [Damaged(str(p), why) for p, why in found]
    if repair and found:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        aside = state / DAMAGED / stamp
        for (p, _), d in zip(found, report.damaged, strict=True):
            d.moved_to = str(_move_aside(p, state, aside))
        report.repaired = True
    return report


def _move_aside(path: Path, state: Path, aside: Path) -> Path:
    """Move ``path`` (a run record: its run folder; a store: with its companions) under ``aside``."""
    what = path.parent if path.name == RUN_FILE and path.parent.parent.name == "runs" else path
    dest = aside / what.relative_to(state)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(what), str(dest))
    if path.suffix == ".db":
        for extra in ("-wal", "-shm", "-journal"):
            companion = path.with_name(path.name + extra)
            if companion.exists():
                shutil.move(str(companion), str(dest.with_name(dest.name + extra)))
    return dest
