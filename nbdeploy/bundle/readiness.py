"""Handoff readiness: the checklist of one notebook, from its file and its state folder.

No kernel is needed: the JupyterLab panel (through the server extension), the
``%deploy status`` widgets and the CLI all call :func:`readiness` and render the
same :class:`Readiness`. Each :class:`Item` says whether that part of the handoff
is ready and, when it is not, what to do about it (``action``).
"""

from __future__ import annotations

import ast
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from nbdeploy.base.notebook import load_notebook
from nbdeploy.base.state import NotebookState
from nbdeploy.bundle.catalog import find_bundles, load_json
from nbdeploy.capture.hashing import recorded_hash, short_hash

Status = Literal["ok", "warning", "missing", "error"]
PARAMETERS_TAG = "parameters"  # papermill's tag


@dataclass
class Detail:
    """One row under a checklist item: a dependency, a data file, a run, a bundle file."""

    label: str
    value: str = ""
    status: Status = "ok"
    note: str = ""
    path: str | None = None  # a file the front end can open (absolute in the core)


@dataclass
class Item:
    key: str  # parameters | model | dependencies | lineage | run | bundle
    title: str
    status: Status
    summary: str
    action: str | None = None  # what to do when the item is not ok
    details: list[Detail] = field(default_factory=list)


@dataclass
class Readiness:
    notebook: str
    state_dir: str
    ready: bool
    captured: str | None  # when the capture record was last written
    stale: bool  # the notebook changed since the capture record was written
    items: list[Item]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def item(self, key: str) -> Item:
        return next(i for i in self.items if i.key == key)


def parameters_cell(nb: Any) -> int | None:
    """Index of the first cell tagged ``parameters``, or None."""
    for i, cell in enumerate(nb.cells):
        if PARAMETERS_TAG in cell.get("metadata", {}).get("tags", []):
            return i
    return None


def _assigned_names(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: list[str] = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def _parameters_item(nb: Any) -> Item:
    idx = parameters_cell(nb)
    if idx is None:
        return Item("parameters", "Parameters cell", "missing", "no cell is tagged `parameters`",
                    "select the cell that holds the defaults and run 'Mark as parameters cell' "
                    "(Deploy panel, command palette or cell context menu), or add the tag "
                    "`parameters` to it")
    names = _assigned_names(nb.cells[idx].source)
    if not names:
        return Item("parameters", "Parameters cell", "warning",
                    f"cell {idx} is tagged `parameters` but assigns nothing",
                    "put one `name = default` line per parameter in that cell")
    return Item("parameters", "Parameters cell", "ok",
                f"cell {idx}: {len(names)} parameter(s)",
                details=[Detail(n) for n in names])


def _model_item(nb: Any, record: dict | None) -> Item:
    model = (record or {}).get("model")
    if model:
        example = model.get("example") or "no example input"
        return Item("model", "Model", "ok",
                    f"`{model['variable']}` registered in cell {model.get('cell')}",
                    details=[Detail("variable", model["variable"]), Detail("example", example)])
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "%deploy model" in cell.source:
            return Item("model", "Model", "warning", f"`%deploy model` is in cell {i} but has not run",
                        "run the notebook (Run button) so the model is captured")
    return Item("model", "Model", "warning",
                "not registered: Build uses the one fitted estimator it finds, if there is one",
                "after training, add a cell `%deploy model VAR --example X_test.head(20)` to name "
                "the model and give example input rows")


def _deps_item(record: dict | None) -> Item:
    if record is None:
        return Item("dependencies", "Dependencies", "missing", "nothing captured yet",
                    "run the notebook with `%load_ext nbdeploy` and `%deploy init` in its first "
                    "cell, or click Run")
    details = [Detail(d["name"], d["version"]) for d in record.get("dependencies", [])]
    unresolved = record.get("unresolved", [])
    details = [Detail(u["module"], "unresolved", "error", u.get("reason", "")) for u in unresolved] + details
    n = len(record.get("dependencies", []))
    if unresolved:
        names = ", ".join(u["module"] for u in unresolved)
        return Item("dependencies", "Dependencies", "error",
                    f"{n} pinned, {len(unresolved)} unresolved import(s): {names}",
                    "install the missing package(s) in the kernel (`%pip install NAME`) or remove "
                    "the import, then re-run", details)
    return Item("dependencies", "Dependencies", "ok",
                f"{n} package(s) pinned, {len(record.get('lock', []))} locked", details=details)


def _lineage_item(record: dict | None) -> Item:
    if record is None:
        return Item("lineage", "Data lineage", "missing", "nothing captured yet",
                    "run the notebook with capture on (click Run)")
    details = []
    for e in record.get("lineage", []):
        where = e.get("relative_path") or e.get("path") or e.get("connection") or "?"
        rows = e.get("rows")
        digest = short_hash(recorded_hash(e))
        value = f"{rows} rows · {digest}" if rows is not None else digest
        details.append(Detail(f"{e['role']} {where}", value, "ok", e.get("kind") or "",
                              e.get("path")))
    reads = sum(1 for e in record.get("lineage", []) if e["role"] == "read")
    writes = len(details) - reads
    if not reads:
        return Item("lineage", "Data lineage", "warning", "no data read was captured",
                    "read training data with pandas (read_csv, read_parquet, ...) so it is hashed "
                    "and profiled", details)
    return Item("lineage", "Data lineage", "ok", f"{reads} read, {writes} written", details=details)


def latest_run(state: NotebookState) -> dict | None:
    """The newest run of a notebook (``runs/<id>/run.json``), with its reproduce report."""
    if not state.runs_dir.is_dir():
        return None
    for d in sorted(state.runs_dir.iterdir(), reverse=True):  # run ids sort by time
        doc = load_json(d / "run.json")
        if doc is not None:
            doc.setdefault("run_id", d.name)
            report = load_json(d / "reproduce.json")
            if report is not None:
                doc["reproduce"] = report
            return doc
    return None


def _run_item(state: NotebookState) -> Item:
    title = "Last run / reproduce"
    run = latest_run(state)
    if run is None:
        return Item("run", title, "missing", "the notebook never ran as a job",
                    "click Run (or `nbdeploy run NB`), then Reproduce to check it gives the same "
                    "results from a clean kernel")
    kind, status = run.get("kind") or "run", str(run.get("status", "?"))
    when = (run.get("started") or "")[:19].replace("T", " ")
    details = [Detail("run", str(run.get("run_id")), "ok" if status == "completed" else "error",
                      when)]
    if run.get("output"):
        details.append(Detail("executed notebook", Path(run["output"]).name, path=run["output"]))
    for name, value in (run.get("metrics") or {}).items():
        details.append(Detail(name, f"{value:.4g}" if isinstance(value, float) else str(value)))
    report = run.get("reproduce")
    if status != "completed":
        err = run.get("error") or {}
        note = err.get("message", "") if isinstance(err, dict) else str(err)
        return Item("run", title, "error", f"last {kind} {status}",
                    "fix the failing cell and run again" + (f": {note}" if note else ""), details)
    if report is None:
        return Item("run", title, "warning", f"last {kind} completed, not reproduced",
                    "click Reproduce to re-run it from a clean kernel and compare", details)
    checks = report.get("checks", [])
    bad = [c for c in checks if c.get("status") in ("differed", "missing")]
    for c in bad:
        details.append(Detail(f"{c.get('kind')} {c.get('name')}", str(c.get("status")), "error",
                              str(c.get("detail", ""))))
    if bad:
        return Item("run", title, "error", f"reproduce differed: {len(bad)} of {len(checks)} checks",
                    "make the notebook deterministic (seeds, fixed inputs), then Reproduce again",
                    details)
    from nbdeploy.job.reproduce import count_checks

    return Item("run", title, "ok", f"reproduced: {count_checks(checks)}", details=details)


def latest_bundle(state: NotebookState) -> dict | None:
    """The newest bundle built from this notebook, in the notebook's folder or below."""
    for b in find_bundles(state.notebook.parent):
        if b.get("notebook") == str(state.notebook):
            return b
    return None


def _bundle_item(state: NotebookState) -> Item:
    b = latest_bundle(state)
    if b is None:
        return Item("bundle", "Bundle and verify", "missing", "no bundle built yet",
                    "click Build bundle (or `nbdeploy build NB -o DIR`)")
    path = Path(b["path"])
    details = [Detail("bundle", path.name, path=str(path))]
    if (path / "README.md").exists():
        details.append(Detail("README", "README.md", path=str(path / "README.md")))
    if not path.is_dir():
        return Item("bundle", "Bundle and verify", "error", f"{path} no longer exists",
                    "click Build bundle again", details)
    details.append(_served_by(path))
    verify = b.get("verify")
    if not verify:
        return Item("bundle", "Bundle and verify", "warning", f"{path.name} built, not verified",
                    "click Verify to run the bundle's tests against its API", details)
    passed = bool(verify.get("ok", verify.get("passed", verify.get("status") in {"passed", "ok"})))
    details.append(Detail("verify", "passed" if passed else "failed", "ok" if passed else "error",
                          str(verify.get("summary", ""))))
    if not passed:
        return Item("bundle", "Bundle and verify", "error", f"{path.name}: verify failed",
                    "read the verify log, fix the notebook or the bundle, build and verify again",
                    details)
    return Item("bundle", "Bundle and verify", "ok", f"{path.name}: verified", details=details)


def _served_by(bundle: Path) -> Detail:
    """Whether the bundle's API runs the compiled program (see nbdeploy.serve.program) or the library."""
    program = load_json(bundle / "model" / "nbdeploy_program" / "program.json")
    if program is not None:
        return Detail("served by", "compiled program", "ok",
                      f"numpy only; checked equal to the model on {program.get('checked_rows')} rows at build")
    return Detail("served by", "the model's library", "ok", "no compiled program for this model (see the README)")


def latest_record(state: NotebookState) -> dict | None:
    """The newest capture record: the live session's, or the last completed run's."""
    candidates = [load_json(state.capture_path)]
    run = latest_run(state)
    if run is not None and run.get("status") == "completed" and run.get("run_dir"):
        candidates.append(load_json(Path(run["run_dir"]) / "capture.json"))
    records = [r for r in candidates if r is not None]
    return max(records, key=lambda r: str(r.get("updated") or "")) if records else None


def readiness(notebook: str | Path) -> Readiness:
    """The handoff-readiness checklist of ``notebook`` (raises ``NotebookInputError``)."""
    nb = load_notebook(notebook)
    state = NotebookState.for_notebook(notebook)
    record = latest_record(state)
    stale = False
    if record is not None:
        from nbdeploy.capture.hashing import sha256_file

        captured_sha = (record.get("notebook") or {}).get("sha256")
        stale = bool(captured_sha) and captured_sha != sha256_file(state.notebook)[0]
    items = [_parameters_item(nb), _model_item(nb, record), _deps_item(record),
             _lineage_item(record), _run_item(state), _bundle_item(state)]
    return Readiness(
        notebook=str(state.notebook), state_dir=str(state.root),
        ready=all(i.status == "ok" for i in items),
        captured=(record or {}).get("updated"), stale=stale, items=items)
