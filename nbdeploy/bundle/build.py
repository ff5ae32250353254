"""``nbdeploy build NB``: the handoff bundle, from a clean papermill run of the notebook.

Never from the interactive kernel's state: the notebook is run in a fresh kernel
with capture on and the hidden ``%deploy export`` cell appended (see
:mod:`.export`), and the bundle is assembled from what that run produced. The
bundle is assembled in a hidden folder beside the target and renamed into place
only when it is complete, so a failure at any step leaves no half-written bundle.
"""

from __future__ import annotations

import datetime as dt
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from nbdeploy.base.errors import BundleError, CellExecutionError, ModelError
from nbdeploy.base.progress import Progress, ProgressEvent, note, silent
from nbdeploy.base.redact import recording
from nbdeploy.base.state import atomic_write_bytes, default_bundle_dir
from nbdeploy.bundle.deploy_files import k8s_name
from nbdeploy.bundle.models import is_model_name
from nbdeploy.bundle.staging import move_into_place, staging_dir, sweep, work_dir

if TYPE_CHECKING:
    from nbdeploy.bundle.records import Manifest, ProgramOutcome
    from nbdeploy.capture.record import CaptureRecord

STEPS = ("check the notebook and the target", "run the notebook in a clean kernel and export the model",
         "assemble the bundle", "register the model version",
         "write the manifest, attach the bundle to its version and move into place")


@dataclass
class BuildResult:
    bundle: Path
    name: str
    version: str
    flavor: str
    seconds: float
    notebook_seconds: float  # the papermill run, export cell included
    export_seconds: float  # the export cell alone
    steps: list[tuple[str, float]] = field(default_factory=list)
    manifest: Manifest = field(default_factory=dict)  # type: ignore[assignment]  # {} is a Manifest (total=False)
    #: the compiled program: {"compiled": True, "rows": N} or {"compiled": False, "reason": ...}
    program: ProgramOutcome = field(default_factory=dict)  # type: ignore[assignment]  # {}: a ProgramOutcome too
    #: secrets the scrubber took out of the bundle's files: {"file", "kind", "count"} (never the value)
    scrubbed: list[dict] = field(default_factory=list)

    def text(self) -> str:
        served = (f"served by its compiled program (checked equal on {self.program.get('rows')} rows)"
                  if self.program.get("compiled") else
                  f"served through its library ({self.program.get('reason') or 'no compiled program'})")
        return (f"bundle {self.name} v{self.version} ({self.flavor}) -> {self.bundle}\n"
                f"the model is {served}\n"
                + "".join(f"{line}\n" for line in scrubbed_lines(self.scrubbed))
                + (f"warning: {self.manifest['model']['derived_note']}\n"
                   if (self.manifest.get("model") or {}).get("derived_note") else "")
                + (f"note: {self.manifest['model']['input_note']}\n"
                   if (self.manifest.get("model") or {}).get("input_note") else "") +
                f"built in {self.seconds:.1f} s (notebook {self.notebook_seconds:.1f} s); "
                f"check it with: nbdeploy verify {shlex.quote(str(self.bundle))}")

    def to_dict(self) -> dict:
        return {"bundle": str(self.bundle), "name": self.name, "version": self.version,
                "flavor": self.flavor, "seconds": self.seconds,
                "notebook_seconds": self.notebook_seconds, "export_seconds": self.export_seconds,
                "program": self.program, "steps": [{"step": s, "seconds": t} for s, t in self.steps],
                "scrubbed": self.scrubbed}


def scrubbed_lines(scrubbed: list[dict]) -> list[str]:
    """One line per file the scrubber changed: what kinds of secret it took out, never the values."""
    by_file: dict[str, list[str]] = {}
    for s in scrubbed:
        by_file.setdefault(s["file"], []).append(f"{s['kind']}" + (f" x{s['count']}" if s["count"] > 1 else ""))
    return [f"secrets scrubbed from {f}: {', '.join(kinds)} (replaced by ***; keep keys out of the "
            "notebook, read them from the environment)" for f, kinds in by_file.items()]


def _scrubbed(found: list[dict], root: Path) -> list[dict]:
    """The scrubber's findings as {"file" (relative to the bundle), "kind", "count"}, one per pair."""
    counts: dict[tuple[str, str], int] = {}
    for f in found:
        where = Path(f["where"]) if f.get("where") else None
        rel = where.relative_to(root).as_posix() if where is not None and where.is_relative_to(root) else str(where)
        counts[(rel, f["kind"])] = counts.get((rel, f["kind"]), 0) + f["count"]
    return [{"file": file, "kind": kind, "count": n} for (file, kind), n in counts.items()]


class _Steps:
    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress or silent
        self.done: list[tuple[str, float]] = []
        self._t = 0.0

    def start(self, i: int) -> None:
        self._t = time.perf_counter()
        self.progress(ProgressEvent(STEPS[i], "started", i + 1, len(STEPS)))

    def end(self, i: int, detail: str = "") -> None:
        took = time.perf_counter() - self._t
        self.done.append((STEPS[i], round(took, 3)))
        self.progress(ProgressEvent(STEPS[i], "ok", i + 1, len(STEPS), detail, took))


def _export_failure(err: CellExecutionError) -> ModelError | None:
    """The export cell's usage error, as the ModelError it really is."""
    if not err.source_line.startswith("%deploy export"):
        return None
    msg = err.evalue.removeprefix("%deploy export: ")
    return ModelError(msg)


def _shell_word(name: str) -> str:
    """A model's name as a shell takes it: ``models['rf']`` in double quotes, a plain name as it is."""
    if name.isidentifier():
        return name
    return f'"{name}"' if not set(name) & set('"$`\\!') else shlex.quote(name)


def _with_kept(err: ModelError, kept: list[str]) -> ModelError:
    """The several-models error, saying that choosing one now needs no second run."""
    if kept:
        err.message = err.message.removesuffix(")").rstrip() + (
            f"; right after this, --model {' / '.join(map(_shell_word, kept))} reuses this run instead of running "
            "the notebook again)"
            if err.message.endswith(")") else "")
    return err


def _export_message(executed: Path) -> ModelError:
    """Why the export cell wrote nothing: IPython shows a magic's UsageError on stderr, not as an error."""
    from nbdeploy.base.notebook import error_text, first_line, load_notebook

    for cell in reversed(load_notebook(executed).cells):
        if cell.cell_type == "code" and first_line(cell.source).startswith("%deploy export"):
            _, value = error_text(cell)
            if value:
                return ModelError(value.removeprefix("%deploy export: "))
    return ModelError("the notebook run finished but exported no model",
                      hint="the `%deploy export` cell did not run")


def fitted_in_source(cells: list[Any]) -> list[str]:
    """Variables the notebook's code fits, read from its source (``m = Model().fit(X, y)``, ``m.fit(X, y)``).

    Only for an early note: which of them are models is known after the run.
    """
    import ast

    names: set[str] = set()
    for cell in cells:
        if cell.cell_type != "code":
            continue
        src = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in cell.source.splitlines())
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "fit":
                if isinstance(node.func.value, ast.Name):
                    names.add(node.func.value.id)
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                call = node.value
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "fit":
                    names.add(node.targets[0].id)
    return sorted(names)


KEPT_RUN = "last-build-run"  # the run a build that stopped at several models keeps (see .candidates)


def code_sha256(nb_path: Path) -> str:
    """What a run of the notebook depends on in its file: the code cells and the kernel spec.

    Not the file's bytes: JupyterLab saving the notebook (outputs, kernel info, cell ids)
    changes those without changing what a run does, and must not throw a kept run away.
    """
    import hashlib
    import json

    from nbdeploy.base.notebook import load_notebook

    nb = load_notebook(nb_path)
    doc = {"kernel": (nb.metadata.get("kernelspec") or {}).get("name"),
           "code": [c.source for c in nb.cells if c.cell_type == "code"],
           "parameters": [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _run_key(nb_path: Path, given: dict, kernel: str | None) -> dict:
    """What a kept run must match to be reused: the notebook's code, the parameters, the kernel."""
    return {"code_sha256": code_sha256(nb_path),
            "parameters": {k: repr(v) for k, v in sorted(given.items())}, "kernel": kernel or ""}


def _keep_candidates(work: Path, nb_path: Path, key: dict, duration: float) -> list[str]:
    """Keep a run that stopped at "several models" with its exported candidates; their names."""
    from nbdeploy.base.state import NotebookState, atomic_write_json

    candidates = work / "export" / "candidates"
    names = sorted(p.name for p in candidates.iterdir() if (p / "export.json").is_file()) \
        if candidates.is_dir() else []
    if not names:
        return []
    kept = NotebookState.for_notebook(nb_path).root / KEPT_RUN
    shutil.rmtree(kept, ignore_errors=True)
    kept.mkdir(parents=True)
    _without_export_error(work / "executed.ipynb", kept / "executed.ipynb")
    shutil.copytree(work / "state", kept / "state")
    shutil.copytree(candidates, kept / "candidates")
    atomic_write_json(kept / "run.json", {**key, "duration": duration, "candidates": names})
    return names


def _without_export_error(executed: Path, dest: Path) -> None:
    """The executed copy minus the export cell's several-models message (it ships in the bundle)."""
    import nbformat

    from nbdeploy.base.notebook import first_line, load_notebook

    nb = load_notebook(executed)
    for cell in nb.cells:
        if cell.cell_type == "code" and first_line(cell.source).startswith("%deploy export"):
            cell.outputs = []
    nbformat.write(nb, str(dest))


def _kept_candidate(nb_path: Path, key: dict, model: str | None) -> tuple[Path, float] | None:
    """(kept run folder, its duration) when the last build stopped at several models, nothing
    it depends on changed since, and ``model`` is one of its exported candidates."""
    from nbdeploy.base.state import NotebookState, read_json

    kept = NotebookState.for_notebook(nb_path).root / KEPT_RUN
    if not model or not (kept / "run.json").is_file():
        return None
    run = read_json(kept / "run.json")
    if {k: run.get(k) for k in key} != key or not (kept / "candidates" / model / "export.json").is_file():
        return None
    return kept, float(run.get("duration") or 0.0)


def _keep_failed_run(executed: Path, notebook: Path, err: CellExecutionError) -> None:
    from nbdeploy.base.state import NotebookState

    if not executed.exists():
        return
    kept = NotebookState.for_notebook(notebook).root / "last-failed-build.ipynb"
    atomic_write_bytes(kept, executed.read_bytes())
    err.output_path = str(kept)
    err.hint = f"the full traceback is in {kept}; no bundle was written"


def _parameters(nb: Any, cli: list[tuple[str, str]] | None, values: dict | None
                ) -> tuple[Any, dict, dict, int | None]:
    """(job notebook, given values, effective parameters, parameters cell index)."""
    from nbdeploy.job.params import job_notebook, resolve

    nb, pc = job_notebook(nb)
    given = resolve(pc, cli=cli, values=values)
    effective = {**(pc.defaults() if pc else {}), **given}
    return nb, given, effective, pc.index if pc else None


def build_bundle(notebook: str | Path, *, output: str | Path | None = None, model: str | None = None,
                 cli_params: list[tuple[str, str]] | None = None, params: dict | None = None,
                 force: bool = False, progress: Progress | None = None,
                 timeout: float | None = None, kernel: str | None = None,
                 example: str | None = None, wheelhouse: bool = False,
                 wheelhouse_index: bool = True) -> BuildResult:
    """Run ``notebook`` clean, export its model and assemble the bundle at ``output``.

    ``example``: an expression (evaluated after the notebook's last cell) giving the
    example rows, so the notebook need not be edited to add ``%deploy model ... --example``.

    ``kernel``: the kernel spec to run it in (default: the notebook's, else this Python's).

    ``wheelhouse``: also pack the lock's wheels into ``wheelhouse/`` (local sources first,
    the index only for the rest unless ``wheelhouse_index`` is False), so the image builds
    with no package index (:mod:`nbdeploy.bundle.wheelhouse`).
    """
    from nbdeploy.base.notebook import load_notebook
    from nbdeploy.base.state import read_json
    from nbdeploy.bundle import assemble, registry
    from nbdeploy.bundle.manifest import MANIFEST
    from nbdeploy.capture.hashing import sha256_file
    from nbdeploy.job.execute import ExecutionResult, execute
    from nbdeploy.job.kernelspec import choose_kernel

    started = time.perf_counter()
    steps = _Steps(progress)
    steps.start(0)
    nb_path = Path(notebook).resolve()
    nb = load_notebook(nb_path)
    if model is not None and not is_model_name(model):
        raise ModelError(f"--model {model!r} is not a variable name",
                         hint="name a variable, or an item of a dict or list of models: models['rf']")
    if example is not None and "\n" in example:
        raise ModelError("--example must be one line: an expression such as X_test.head(10)")
    job_nb, given, effective, params_cell = _parameters(nb, cli_params, params)
    target = Path(output).resolve() if output else default_bundle_dir(nb_path)
    if target.exists() and not force:
        raise BundleError(f"{target} already exists",
                          hint="pass --force to replace it, or choose another folder with -o")
    if target == nb_path.parent or nb_path.is_relative_to(target):
        raise BundleError(f"{target} holds the notebook itself; choose another output folder")
    choose_kernel(job_nb, nb_path, kernel)  # a missing --kernel fails here, before any run
    target.parent.mkdir(parents=True, exist_ok=True)
    for left in sweep(target):
        steps.progress(note(f"cleared {left.name}, left by a build that was killed"))
    name = k8s_name(nb_path.stem)
    fitted = [] if model or any("%deploy model" in c.source for c in nb.cells) else fitted_in_source(nb.cells)
    if len(fitted) > 1:
        steps.progress(note(f"the notebook fits {', '.join(fitted)}: if more than one is a model, the build "
                            "asks which after the run; to choose now, pass --model VAR"))
    steps.end(0, f"{nb_path.name} -> {target}")

    warm = registry.warm_up(nb_path.parent)
    try:
        with work_dir() as scratch:
            work = Path(scratch)
            export_dir, executed = work / "export", work / "executed.ipynb"
            steps.start(1)
            key = _run_key(nb_path, given, kernel)
            reuse = _kept_candidate(nb_path, key, model) if not example else None
            if reuse is not None:
                kept, duration = reuse
                export_dir, executed = kept / "candidates" / str(model), kept / "executed.ipynb"
                result = ExecutionResult(nb_path, executed, kept / "state", duration, "completed", kernel or "",
                                         read_json(kept / "state" / "capture.json"))
                steps.progress(note(f"reusing the last build's run: it stopped at several models and "
                                    f"exported {model} (the notebook and its parameters are unchanged)"))
            else:
                tail = f"%deploy export --out {shlex.quote(str(export_dir))}"
                tail += f" --model {shlex.quote(model)}" if model else ""
                tail += f" --example {example.strip()}" if example and example.strip() else ""
                result = execute(nb_path, executed, work / "state", nb=job_nb, parameters=given,
                                 tail=[tail], timeout=timeout, recorded=effective, params_cell=params_cell,
                                 kernel_name=kernel, progress=steps.progress)
            if result.error is not None:
                failure = _export_failure(result.error)
                if failure is not None:
                    raise _with_kept(failure, _keep_candidates(work, nb_path, key, result.duration))
                _keep_failed_run(executed, nb_path, result.error)
                raise result.error
            if not (export_dir / "export.json").exists():
                raise _with_kept(_export_message(executed), _keep_candidates(work, nb_path, key, result.duration))
            export = assemble.read_export(export_dir)
            if export.get("derived_inputs"):
                from nbdeploy.bundle.derived import derived_note

                export["derived_note"] = derived_note(export["derived_inputs"], nb.cells)
                steps.progress(note(f"warning: {export['derived_note']}"))
            steps.end(1, f"{export['variable']} ({export['class']}, {export['flavor']}); "
                         f"notebook {result.duration:.1f} s, export {export['seconds']:.1f} s")

            partial = staging_dir(target)
            registered: dict = {}  # the version this build registered, until its bundle is attached
            try:
                partial.chmod(0o755)
                steps.start(2)
                ctx = assemble.Context(
                    notebook=nb_path, name=name, record=cast("CaptureRecord", result.record), export=export,
                    export_dir=export_dir, executed=executed, state_dir=result.state_dir,
                    parameters=effective, created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                    notebook_seconds=result.duration)
                with recording() as found:
                    assemble.write_files(partial, ctx)
                scrubbed = _scrubbed(found, partial)
                for line in scrubbed_lines(scrubbed):
                    steps.progress(note(line))
                if wheelhouse:
                    from nbdeploy.bundle.wheelhouse import pack_wheelhouse

                    packed = pack_wheelhouse(partial, export["python"], index=wheelhouse_index,
                                             progress=steps.progress)
                    ctx.wheelhouse = packed.record()
                    steps.progress(note(packed.text()))
                steps.end(2, f"{len(list(partial.rglob('*')))} files")
                steps.start(3)
                warm.join()
                for gone in registry.clear_unfinished(name, nb_path.parent):
                    steps.progress(note(f"deleted {name} version {gone} from the registry: its build was "
                                        "killed before the bundle was attached"))
                metrics = {k: v.get("value") for k, v in result.record.get("metrics", {}).items()}
                ctx.registry = registry.register(
                    partial / "model", name, nb_path.parent, params=effective, metrics=metrics,
                    tags={"nbdeploy.notebook": nb_path.name, "nbdeploy.notebook_sha256":
                          result.record.get("notebook", {}).get("sha256") or "",
                          "nbdeploy.parameters": registry.json_tag(effective),
                          "nbdeploy.metrics": registry.json_tag(metrics),
                          "nbdeploy.training_data": registry.json_tag(export.get("training_data"))})
                registered = ctx.registry
                steps.end(3, f"{name} version {ctx.registry['version']} in {ctx.registry['tracking_uri']}")
                steps.start(4)
                ctx.build_seconds = time.perf_counter() - started
                with recording() as found:
                    manifest = assemble.finish(partial, ctx)
                late = _scrubbed(found, partial)
                for line in scrubbed_lines(late):
                    steps.progress(note(line))
                scrubbed += late
                registry.attach_bundle(partial, ctx.registry, nb_path.parent, target,
                                       sha256_file(partial / MANIFEST)[0])
                registered = {}  # attached: the version has its bundle in the store whatever comes next
                move_into_place(partial, target, force)
                if reuse is not None:  # used once: a later build runs the notebook again
                    shutil.rmtree(reuse[0], ignore_errors=True)
                steps.end(4, f"{len(manifest['files'])} files checksummed; the sealed bundle is "
                             f"version {ctx.registry['version']}'s artifact")
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                if registered:
                    why = registry.withdraw(registered, nb_path.parent)  # no version without a bundle
                    if why:
                        steps.progress(note(why))
                raise
        return BuildResult(target, name, manifest["version"], export["flavor"],
                           round(time.perf_counter() - started, 3), round(result.duration, 3),
                           export["seconds"], steps.done, manifest, export.get("program") or {}, scrubbed)
    except BaseException:
        # the store is being created in the background: let it finish, or a CLI exiting now
        # would leave a half-migrated mlflow.db that breaks the next build's registration
        warm.join(timeout=120)
        raise

