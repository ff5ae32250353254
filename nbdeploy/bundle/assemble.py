"""Write the files of a bundle from a finished job run and its model export.

:func:`write_files` fills the (still hidden) bundle folder; :func:`finish`
writes the OpenAPI document, the README and the manifest with every file's
checksum, once the registry has given the model its version.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

from nbdeploy._version import __version__
from nbdeploy.base.errors import BundleError, ModelError
from nbdeploy.base.redact import scrub
from nbdeploy.base.state import atomic_write_json, atomic_write_text, read_json
from nbdeploy.bundle import deploy_files, readme
from nbdeploy.bundle.manifest import FORMAT, MANIFEST, checksums
from nbdeploy.bundle.records import Export, Manifest, ModelFacts, ReadmeContext, TrainingData
from nbdeploy.capture.record import CaptureRecord

SERVE_PACKAGE = Path(__file__).resolve().parent.parent / "serve"
SUITE = Path(__file__).resolve().parent / "suite"
V2_TYPES = {"boolean": "BOOL", "integer": "INT32", "long": "INT64", "float": "FP32",
            "double": "FP64", "string": "BYTES", "binary": "BYTES", "datetime": "BYTES"}
TOLERANCE = {"rel": 1e-6, "abs": 1e-9}


@dataclass
class Context:
    notebook: Path
    name: str
    record: CaptureRecord
    export: Export
    export_dir: Path
    executed: Path
    state_dir: Path
    parameters: dict
    created: str
    notebook_seconds: float
    registry: dict = field(default_factory=dict)
    build_seconds: float = 0.0
    signature: dict = field(default_factory=dict)
    #: the manifest's ``wheelhouse`` entry when the build packed one (``--wheelhouse``)
    wheelhouse: dict | None = None


def read_export(export_dir: Path) -> Export:
    path = export_dir / "export.json"
    if not path.exists() or not (export_dir / "model").is_dir():
        raise ModelError("the notebook run finished but exported no model",
                         hint="check the `%deploy export` cell at the end of the executed notebook")
    return cast(Export, read_json(path))


def _lock_text(entries: list[dict], header: str) -> str:
    lines = [f"# {h}" for h in header.splitlines()]
    for p in entries:
        lines.append(f"{p['name']}=={p['version']}")
        if p.get("required_by"):
            lines.append(f"    # via {', '.join(p['required_by'])}")
    return "\n".join(lines) + "\n"


def suite_lock(serving_lock: list[dict]) -> list[dict]:
    """pytest and what it needs, pinned from the environment nbdeploy runs in.

    Not from the notebook's kernel: a kernel without pytest gave an empty list and a
    bundle that could never verify. pytest is a dependency of nbdeploy, so this
    environment has it. What ``serving_lock`` pins already is left out: both files are
    installed together with ``--no-deps``, and two pins of one name would conflict.
    """
    import sys

    from nbdeploy.capture.deps import canonical
    from nbdeploy.capture.lock import build_lock

    lock = build_lock({"pytest": set()}, exclude={canonical(p["name"]) for p in serving_lock})
    if lock.missing:
        names = ", ".join(sorted({m["name"] for m in lock.missing}))
        raise BundleError(f"writing the bundle's tests/requirements.txt: {names} not installed in "
                          f"the environment nbdeploy runs in ({sys.prefix})",
                          hint=f"{sys.executable} -m pip install pytest (a dependency of nbdeploy)")
    return lock.to_list()


def _signature(model_dir: Path) -> dict:
    doc = yaml.safe_load((model_dir / "MLmodel").read_text())
    sig = doc.get("signature") or {}

    def load(v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) else (v or [])
    return {"inputs": load(sig.get("inputs")), "outputs": load(sig.get("outputs"))}


def _description(notebook: Path) -> str:
    from nbdeploy.base.notebook import load_notebook

    for cell in load_notebook(notebook).cells:
        if cell.cell_type == "markdown" and cell.source.strip():
            lines = [ln for ln in cell.source.strip().splitlines() if not ln.startswith("#")]
            return "\n".join(lines).strip()
    return ""


def _git(notebook: Path) -> dict | None:
    def git(*args: str) -> str | None:
        try:
            p = subprocess.run(["git", "-C", str(notebook.parent), *args], capture_output=True,
                               text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return p.stdout.strip() if p.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    dirty = git("status", "--porcelain", "--", notebook.name)
    return {"commit": commit, "notebook_modified": bool(dirty)}


def _copy_project_modules(record: CaptureRecord, dest: Path) -> list[str]:
    out = []
    for mod in record.get("project_modules", []):
        src = Path(mod["path"])
        rel = mod["relative_path"]
        if src.is_dir() or src.name == "__init__.py":
            pkg = src if src.is_dir() else src.parent
            rel = Path(rel).parent.as_posix() if src.name == "__init__.py" else rel
            shutil.copytree(pkg, dest / rel, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                            copy_function=_copy_scrubbed)
        elif src.is_file():
            atomic_write_text(dest / rel, src.read_text(encoding="utf-8"))
        out.append(rel)
    return out


_TEXT_SUFFIXES = {".py", ".txt", ".md", ".json", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".sql", ".env", ".csv"}


def _copy_scrubbed(src: str, dst: str) -> str:
    """Copy one file of a project package: text files through the secret scrubber, others as they are."""
    if Path(src).suffix.lower() in _TEXT_SUFFIXES:
        try:
            text = Path(src).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            pass
        else:
            atomic_write_text(Path(dst), text)
            shutil.copymode(src, dst)
            return dst
    return shutil.copy2(src, dst)


def _keep_program_if_proved_on(model_dir: Path, ex: Export, signature: list[list[Any]]) -> None:
    """The compiled program was proved, in the kernel, on columns typed as the example's dtypes;
    the server builds them from the signature MLflow has just written. If the two differ, the
    proof does not hold for the server: drop the program (the model is served by its library)."""
    from nbdeploy.serve.program import PROGRAM_DIR

    program = ex.get("program") or {}
    proved = program.get("columns")
    if not program.get("compiled") or proved is None or proved == signature:
        return
    shutil.rmtree(model_dir / PROGRAM_DIR, ignore_errors=True)
    ex["program"] = {"compiled": False, "reason": f"the program was proved on the columns {proved}, "
                                                  f"but the signature says {signature}"}


def write_files(root: Path, ctx: Context) -> None:
    ex, record = ctx.export, ctx.record
    python = record.get("environment", {}).get("python", {}).get("version") or "3.11"
    ex["python"] = python
    shutil.move(str(ctx.export_dir / "model"), str(root / "model"))
    if not ex["model_data"].get("mlmodel_written"):
        import warnings

        from nbdeploy.bundle.mlmodel import complete

        with warnings.catch_warnings():  # MLflow's hint about integer columns is for its own users
            warnings.simplefilter("ignore")
            complete(root / "model", ex, ex["requirements"], python)
    ctx.signature = _signature(root / "model")
    types = {c.get("name"): c.get("type") for c in ctx.signature["inputs"]}
    _keep_program_if_proved_on(root / "model", ex, [[c.get("name"), c.get("type")] for c in ctx.signature["inputs"]])
    if ex.get("profile"):
        atomic_write_json(root / "profile.json", ex["profile"])
    # tests: the suite, the golden rows, what the suite needs besides the API
    shutil.copytree(SUITE, root / "tests", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    golden = {"source": ex["example_source"], "columns": ex["example"]["columns"],
              "data": ex["example"]["data"], "types": types, "predictions": ex["predictions"],
              "tolerance": TOLERANCE}
    atomic_write_json(root / "tests" / "golden.json", golden)
    atomic_write_text(root / "tests" / "requirements.txt", _lock_text(
        suite_lock(ex["serving_lock"]), "what the bundle's tests need besides the API, from the "
        f"environment nbdeploy {__version__} ran in"))
    # environments: the API's, and the notebook's own for rebuilding
    if ex.get("serving_lock_missing"):
        missing = ", ".join(m["name"] for m in ex["serving_lock_missing"])
        raise BundleError(f"the serving environment cannot be locked: {missing} not installed in the kernel")
    pins = {p["name"].lower(): p for p in ex["serving_lock"]}
    direct = [f"{pins[d.lower()]['name']}=={pins[d.lower()]['version']}" for d in ex["serving_direct"]
              if d.lower() in pins]
    atomic_write_text(root / "requirements.txt", "\n".join(sorted(direct, key=str.lower)) + "\n")
    atomic_write_text(root / "requirements.lock", _lock_text(
        ex["serving_lock"], f"the API of {ctx.name}: the complete lock, installed with --no-deps\n"
        f"from the versions installed in the kernel that trained the model (nbdeploy {__version__})"))
    atomic_write_text(root / "notebook-requirements.txt", "\n".join(record.get("requirements", [])) + "\n")
    atomic_write_text(root / "notebook-requirements.lock", _lock_text(
        record.get("lock", []), f"the notebook {ctx.notebook.name}: its imports, locked transitively"))
    atomic_write_json(root / "environment.json", record.get("environment", {}))
    lineage = ctx.state_dir / "openlineage.json"
    if lineage.exists():
        atomic_write_json(root / "lineage.json", read_json(lineage))
    else:
        from nbdeploy.capture.openlineage import run_events

        atomic_write_json(root / "lineage.json", run_events(record, finished=True))
    nb_dir = root / "notebook"
    nb_dir.mkdir()
    # text files pass the secret scrubber (a notebook output may have printed a token)
    atomic_write_text(nb_dir / ctx.notebook.name, ctx.notebook.read_text(encoding="utf-8"))
    atomic_write_text(nb_dir / f"{ctx.notebook.stem}.executed.ipynb",
                      ctx.executed.read_text(encoding="utf-8"))
    _copy_project_modules(record, nb_dir)
    shutil.copytree(SERVE_PACKAGE, root / "nbdeploy_serve",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    atomic_write_text(root / ".dockerignore", deploy_files.DOCKERIGNORE)


def _model_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())


def _outputs_text(sig: dict, predictions: list) -> str:
    outs = sig.get("outputs") or []
    if len(outs) == 1 and outs[0].get("type") == "tensor":
        spec = outs[0].get("tensor-spec", {})
        return f"a tensor of {spec.get('dtype')} with shape {spec.get('shape')}"
    kinds = ", ".join(f"{o.get('name') or 'prediction'} ({o.get('type')})" for o in outs)
    return kinds or f"{type(predictions[0]).__name__ if predictions else 'value'}"


def finish(root: Path, ctx: Context) -> Manifest:
    """Manifest (with the registry version), OpenAPI, README, container and k8s files, checksums."""
    ex, record = ctx.export, ctx.record
    version = ctx.registry["version"]
    metrics = {k: v.get("value") for k, v in record.get("metrics", {}).items()}
    description = _description(ctx.notebook)
    nb_info = record.get("notebook", {})
    manifest: Manifest = {
        "format": FORMAT,
        "name": ctx.name,
        "version": version,
        "created": ctx.created,
        "summary": {"description": description, "notebook": ctx.notebook.name, "flavor": ex["flavor"],
                    "model_class": ex["class"], "metrics": metrics, "trained": ctx.created},
        "model": cast(ModelFacts, {k: ex.get(k) for k in ("variable", "flavor", "class", "serialization",
                                         "trusted_types", "inputs", "example_source", "model_code",
                                         "shipped", "derived_inputs", "derived_note", "input_note",
                                         "categorical")}),
        "registry": ctx.registry,
        "source": {"notebook": ctx.notebook.name, "path": str(ctx.notebook),
                   "sha256": nb_info.get("sha256"),
                   "executed": f"notebook/{ctx.notebook.stem}.executed.ipynb"},
        "parameters": ctx.parameters,
        "metrics": metrics,
        "git": _git(ctx.notebook),
        "training_data": ex.get("training_data"),
        "python": ex["python"],
        "nbdeploy_version": __version__,
        "build": {"notebook_seconds": round(ctx.notebook_seconds, 3),
                  "export_seconds": ex.get("seconds")},
        "files": {},
    }
    atomic_write_json(root / MANIFEST, manifest)  # the API's openapi document reads name/version
    from nbdeploy.serve.openapi import openapi_document

    atomic_write_json(root / "openapi.json", openapi_document(root))
    if ctx.wheelhouse:
        manifest["wheelhouse"] = ctx.wheelhouse
    atomic_write_text(root / "Dockerfile", deploy_files.dockerfile(ctx.name, version, ex["python"],
                                                                   wheelhouse=bool(ctx.wheelhouse)))
    for fname, text in deploy_files.k8s_files(ctx.name, version, _model_bytes(root / "model")).items():
        atomic_write_text(root / "k8s" / fname, text)
    types = {c.get("name"): c.get("type") for c in ctx.signature["inputs"]}
    golden = read_json(root / "tests" / "golden.json")
    training: TrainingData | dict[str, Any] = ex.get("training_data") or {}
    facts: ReadmeContext = {
        "name": ctx.name, "version": version, "description": description, "variable": ex["variable"],
        "notebook": ctx.notebook.name, "notebook_sha256": nb_info.get("sha256") or "",
        "created": ctx.created, "class": ex["class"], "flavor": ex["flavor"],
        "serialization": ex.get("serialization") or "MLflow's default", "registry": ctx.registry,
        "inputs": [{"name": c, "type": types.get(c, "?")} for c in ex["inputs"]],
        "profile": ex.get("profile"), "training_path": training.get("relative_path"),
        "outputs_text": _outputs_text(ctx.signature, ex["predictions"]), "golden": golden,
        "v2_types": {c: V2_TYPES.get(t or "", "BYTES") for c, t in types.items()},
        # by name, while the name is beside the value (the README shows "-p api_token VALUE")
        "parameters": scrub(ctx.parameters), "metrics": metrics, "python": ex["python"],
        "lineage": record.get("lineage", []), "git": (manifest["git"] or {}).get("commit"),
        "program": ex.get("program"), "derived_note": ex.get("derived_note"), "input_note": ex.get("input_note"),
    }
    atomic_write_text(root / "README.md", readme.render(facts))
    manifest["build"]["seconds"] = round(ctx.build_seconds, 3)
    manifest["files"] = checksums(root)
    atomic_write_json(root / MANIFEST, manifest)
    return manifest
