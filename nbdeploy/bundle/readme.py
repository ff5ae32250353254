"""The bundle's README: written for the engineer who receives the bundle."""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

from nbdeploy.bundle.deploy_files import PORT, k8s_name
from nbdeploy.bundle.records import ReadmeContext
from nbdeploy.capture.hashing import recorded_hash, short_hash

LAYOUT = [
    ("nbdeploy.json", "manifest: name, version, source notebook and its hash, parameters, metrics, "
                      "git commit, and the sha256 of every file"),
    ("model/", "the model in MLflow's format (MLmodel, signature, input example); "
               "model/nbdeploy_program/: the same model compiled to numpy and checked equal, when it could be"),
    ("nbdeploy_serve/", "the API server (MLflow scoring protocol and Open Inference Protocol V2)"),
    ("requirements.txt", "what the API needs, pinned (direct dependencies)"),
    ("requirements.lock", "the complete transitive lock the API is installed from"),
    ("notebook-requirements.txt / .lock", "the notebook's own dependencies, to rebuild the model"),
    ("environment.json", "Python, OS and machine of the run that trained the model"),
    ("lineage.json", "OpenLineage events of that run: which data was read and written"),
    ("profile.json", "schema and per-column statistics of the training data (validation, drift)"),
    ("openapi.json", "the API's OpenAPI document"),
    ("notebook/", "the source notebook, the executed job notebook, local helper modules"),
    ("tests/", "pytest suite run against a live API (health, metadata, schema, golden predictions)"),
    ("Dockerfile, .dockerignore", "the container recipe (lock only, non-root, HEALTHCHECK)"),
    ("k8s/", "Deployment, Service, HorizontalPodAutoscaler, PodDisruptionBudget; "
             "k8s/kserve/: an optional KServe InferenceService"),
]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _input_rows(inputs: list[dict], profile: dict | None) -> list[str]:
    cols = (profile or {}).get("columns", {})
    rows = ["| column | type | seen in training | nulls in training |", "| --- | --- | --- | --- |"]
    for c in inputs:
        stats = cols.get(c["name"], {})
        if stats.get("kind") == "numeric" and stats.get("min") is not None:
            seen = f"{_fmt(stats['min'])} to {_fmt(stats['max'])} (mean {_fmt(stats.get('mean'))})"
        elif stats.get("kind") == "text" and stats.get("length"):
            n = stats["length"]
            seen = f"free text, {n['min']} to {n['max']} characters (mean {_fmt(n.get('mean'))})"
        elif stats.get("values") is not None:
            seen = ", ".join(f"`{v}`" for v in stats["values"][:20])
            seen += " ..." if len(stats["values"]) > 20 else ""
        elif stats.get("distinct") is not None:
            seen = f"{stats['distinct']} distinct values"
        else:
            seen = "(not profiled)"
        nulls = stats.get("nulls", "?")
        rows.append(f"| `{c['name']}` | {c['type']} | {seen} | {nulls} |")
    return rows


def _param_flags(params: dict, style: str) -> str:
    parts = []
    for k, v in params.items():
        value = json.dumps(v) if not isinstance(v, str) else v
        parts.append(f"-p {k} {shlex.quote(value)}")
    return " ".join(parts)


def _program_text(program: Mapping[str, Any] | None) -> list[str]:
    if not program:
        return []
    if program.get("compiled"):
        return [f"The API serves the model through `model/nbdeploy_program/`: the same arithmetic compiled "
                f"to numpy, which the build checked against the model itself on {program.get('rows')} rows "
                "(identical labels; numbers equal to 1e-12 relative). It starts without importing "
                "scikit-learn and predicts a row in well under a millisecond. `NBDEPLOY_PROGRAM=0` serves "
                "the model through its own library instead; `GET /metadata` says which one answers.", ""]
    return [f"The model is served through its own library (no compiled program: {program.get('reason')}).", ""]


def _source(entry: dict[str, Any]) -> str:
    """Where a lineage entry's data came from: the file's absolute path on the build machine, the
    URL, or the database connection and query (the record keeps them without passwords)."""
    if entry.get("kind") == "sql":
        what = entry.get("query") or entry.get("note") or ""
        return f"`{entry.get('connection') or '?'}`: `{' '.join(str(what).split())[:80]}`"
    return f"`{entry.get('path')}`"


def render(ctx: ReadmeContext) -> str:
    name, version = ctx["name"], ctx["version"]
    example_row = dict(zip(ctx["golden"]["columns"], ctx["golden"]["data"][0], strict=True))
    split = {"dataframe_split": {"columns": ctx["golden"]["columns"], "data": ctx["golden"]["data"][:2]}}
    v2 = {"inputs": [{"name": c, "shape": [1], "datatype": ctx["v2_types"].get(c, "BYTES"), "data": [v]}
                     for c, v in example_row.items()]}
    nb = ctx["notebook"]
    params = ctx["parameters"]
    metrics = ctx["metrics"]
    out: list[str] = [
        f"# {name} — model API, version {version}",
        "",
        ctx.get("description") or f"The model `{ctx['variable']}` trained by `{nb}`.",
        "",
        f"This bundle was built by nbdeploy on {ctx['created']} from a clean run of `{nb}` "
        f"(sha256 `{ctx['notebook_sha256'][:16]}…`). The model is `{ctx['class']}` "
        f"(MLflow flavor `{ctx['flavor']}`, saved as {ctx['serialization']}). "
        f"It is registered in the MLflow model registry as `{ctx['registry']['name']}` "
        f"version {ctx['registry']['version']}.",
        "",
        *_program_text(ctx.get("program")),
        *([f"**Computed inputs.** Some {ctx['derived_note']}.", ""] if ctx.get("derived_note") else []),
        *([f"**One input column.** {ctx['input_note']}.", ""] if ctx.get("input_note") else []),
        "## What it takes",
        "",
        f"One row per prediction, with these {len(ctx['inputs'])} columns (all required). Ranges are "
        f"from the training data `{ctx.get('training_path') or '?'}`; the API flags values outside them.",
        "",
        *_input_rows(ctx["inputs"], ctx["profile"]),
        "",
        "## What it returns",
        "",
        f"One prediction per row: {ctx['outputs_text']}. For the first row of the curl examples "
        f"below the notebook predicted `{json.dumps(ctx['golden']['predictions'][0])}`.",
        "",
        "## Run it locally",
        "",
        "```sh",
        "python -m venv .venv",
        ".venv/bin/pip install --no-deps -r requirements.lock",
        f".venv/bin/python -m nbdeploy_serve . --host 127.0.0.1 --port {PORT}",
        "```",
        "",
        "MLflow scoring protocol:",
        "",
        "```sh",
        f"curl -s http://127.0.0.1:{PORT}/invocations -H 'Content-Type: application/json' \\",
        f"  -d '{json.dumps(split)}'",
        "```",
        "",
        "Open Inference Protocol (V2):",
        "",
        "```sh",
        f"curl -s http://127.0.0.1:{PORT}/v2/models/{name}/infer -H 'Content-Type: application/json' \\",
        f"  -d '{json.dumps(v2)}'",
        "```",
        "",
        "Also: `GET /health`, `GET /metadata`, `GET /metrics` (Prometheus), `GET /drift` (the served "
        "inputs against the training profile: PSI per column; `?format=html` a page with a verdict and "
        "a chart per feature), `POST /feedback` (the true label of an answered request, by its "
        "`X-Request-ID`) and `GET /performance` (live accuracy or MAE/RMSE per version against the "
        "training metric; offline: `python -m nbdeploy_serve performance LOG`), `GET /openapi.json`, "
        "`GET /docs`. A request missing a column gets a 422 naming it.",
        "",
        "Check that the API answers like the notebook did (the golden predictions in `tests/`):",
        "",
        "```sh",
        ".venv/bin/pip install --no-deps -r tests/requirements.txt",
        f"NBDEPLOY_API_URL=http://127.0.0.1:{PORT} .venv/bin/python -m pytest tests",
        "```",
        "",
        "Or all of it in a fresh environment, with checksums: `nbdeploy verify .`",
        "",
        "## Build and run the container",
        "",
        "```sh",
        f"podman build -t {k8s_name(name)}:{version} .          # or: docker build",
        f"podman run --rm -p {PORT}:{PORT} {k8s_name(name)}:{version}",
        f"# another base image: --build-arg BASE=python:{ctx['python']}-slim-bookworm",
        "kubectl apply -f k8s/                              # Deployment, Service, HPA, PDB",
        "```",
        "",
        "## Rebuild the model",
        "",
        f"The model comes from `notebook/{nb}` with these parameters:",
        "",
        "```sh",
        f"nbdeploy build {nb} {_param_flags(params, 'nbdeploy')}".rstrip(),
        f"# or the bare run: papermill {nb} out.ipynb {_param_flags(params, 'papermill')}".rstrip(),
        "```",
        "",
        "The notebook's own dependencies are pinned in `notebook-requirements.txt` (transitive: "
        "`notebook-requirements.lock`). It needs the data it read, with the same hashes: put each "
        "file where the notebook reads it (\"read as\", relative to the notebook); \"source\" says "
        "where it was on the machine that built this bundle (URLs and connections without passwords).",
        "",
        "## Lineage",
        "",
        "| role | read as | source | hash | rows |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {e['role']} | `{e.get('relative_path') or e['path']}` | {_source(e)} | "
          f"`{short_hash(recorded_hash(e), 16)}` | {e.get('rows', '')} |" for e in ctx["lineage"]],
        "",
        "The full record, as OpenLineage events, is `lineage.json`; the run's environment is "
        "`environment.json`.",
        "",
        "## Metrics of this run",
        "",
        *([f"| {k} | {_fmt(v)} |" for k, v in metrics.items()] and
          ["| metric | value |", "| --- | --- |", *[f"| {k} | {_fmt(v)} |" for k, v in metrics.items()]]
          or ["(the notebook recorded no metrics)"]),
        "",
        "## Layout",
        "",
        "| path | what |",
        "| --- | --- |",
        *[f"| `{p}` | {w} |" for p, w in LAYOUT],
        "",
        f"Git commit of the notebook: `{ctx['git'] or 'not in a git repository'}`.",
        "",
    ]
    return "\n".join(out)
