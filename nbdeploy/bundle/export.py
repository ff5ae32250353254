"""Export the model from the job kernel: ``%deploy export --out DIR`` (appended by the build).

Runs at the end of the clean papermill run, so what ships is what that run
trained. It resolves the model (``%deploy model`` or the one fitted estimator in
the namespace), the example rows (the ``--example`` expression, or the first
rows of the training data), computes the golden predictions in the kernel, and
writes into ``DIR``:

``model/``       the MLflow model (flavor-native; scikit-learn through skops with
                 an explicit, checked list of trusted types)
``model/nbdeploy_program/``  the model compiled to a numpy program, when it could be
                 and was proved equal to the model (see nbdeploy.bundle.compiler)
``export.json``  variable, flavor, input columns, example, golden predictions,
                 training profile of the input columns, serving lock, program outcome
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any, cast

from nbdeploy.base.errors import ModelError
from nbdeploy.base.state import atomic_write_json
from nbdeploy.bundle import models
from nbdeploy.bundle.compiler import write_program
from nbdeploy.bundle.records import Export, Flavor, ProgramOutcome
from nbdeploy.bundle.savers import save_pyfunc, write_model_data
from nbdeploy.capture.hashing import recorded_hash

EXAMPLE_ROWS = 10
#: what the API itself imports, besides the model's own libraries (see nbdeploy.serve)
RUNTIME = {"numpy": set(), "pandas": set(), "orjson": set(), "uvicorn": set(),
           "httptools": set(), "uvloop": set(), "pyyaml": set()}
FLAVOR_DISTS = {"sklearn": {"scikit-learn", "skops"}, "xgboost": {"xgboost"},
                "lightgbm": {"lightgbm", "skops"}, "pyfunc": {"mlflow-skinny", "cloudpickle"}}


def _frame(example: Any, columns: list[str] | None) -> Any:
    import pandas as pd

    if isinstance(example, pd.DataFrame):
        return example
    if isinstance(example, pd.Series):
        return example.to_frame().T
    if columns is None:
        raise ModelError(f"the example is a {type(example).__name__} and the model does not "
                         "record its column names", hint="give a DataFrame as --example")
    try:
        return pd.DataFrame(example, columns=columns)
    except Exception as exc:
        raise ModelError(f"the example cannot be read as rows of {len(columns)} columns: {exc}") from None


def _training_entry(record: dict, columns: list[str] | None) -> dict | None:
    """The lineage read whose columns cover the model's inputs (the training data)."""
    reads = [e for e in record.get("lineage", []) if e["role"] == "read" and e.get("columns")]
    if columns is None:
        return reads[0] if len(reads) == 1 else None
    for entry in reads:
        if set(columns) <= {c["name"] for c in entry["columns"]}:
            return entry
    return None


def _training_rows(session: Any, entry: dict, columns: list[str]) -> Any:
    import pandas as pd

    reader = getattr(pd, entry["function"], None)
    if entry["kind"] != "file" or reader is None:
        raise ModelError("no --example given and the training data cannot be re-read",
                         hint="add --example EXPR to `%deploy model`")
    df = reader(entry["path"])  # export_model keeps this read out of the notebook's lineage
    return df[columns].head(EXAMPLE_ROWS).reset_index(drop=True)


def _check_columns(example: Any, inputs: list[str] | None, entry: dict | None) -> Any:
    cols = [str(c) for c in example.columns]
    expected = inputs
    what = "the model was trained on"
    if expected is None and entry is not None:
        known = {c["name"] for c in entry["columns"]}
        expected = [c for c in cols if c in known] if set(cols) <= known else None
        if expected is None:
            missing_from_training = sorted(set(cols) - known)
            raise ModelError(
                f"the example's columns differ from the training data {entry.get('relative_path') or entry['path']}: "
                f"not in training: {missing_from_training}",
                hint="give example rows with the training columns")
    if expected is not None and set(cols) != set(expected):
        missing = [c for c in expected if c not in cols]
        extra = [c for c in cols if c not in expected]
        raise ModelError(
            f"the example's columns differ from the columns {what}: "
            + "; ".join(p for p in (f"missing {missing}" if missing else "",
                                     f"unexpected {extra}" if extra else "") if p),
            hint="give example rows with exactly the training columns, e.g. X_test.head(10)")
    example.columns = cols
    return example[expected] if expected is not None else example


def _jsonable(values: Any) -> Any:
    """Predictions as plain JSON (lists, floats, ints, strings; NaN -> None)."""
    import math

    if hasattr(values, "to_numpy"):
        values = values.to_numpy()
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, list | tuple):
        return [_jsonable(v) for v in values]
    if isinstance(values, dict):
        return {str(k): _jsonable(v) for k, v in values.items()}
    if isinstance(values, float) and (math.isnan(values) or math.isinf(values)):
        return None
    if isinstance(values, bool | int | float | str) or values is None:
        return values
    return str(values)


def _profile(entry: dict | None, columns: list[str]) -> dict | None:
    if entry is None or not isinstance(entry.get("profile"), dict) or "columns" not in entry["profile"]:
        return None
    prof = entry["profile"]
    return {"source": {"path": entry.get("relative_path") or entry["path"], "hash": recorded_hash(entry)},
            "rows": prof.get("rows"), "sampled_rows": prof.get("sampled_rows"),
            "columns": {c: prof["columns"][c] for c in columns if c in prof["columns"]}}


def _distributions(modules: set[str], project_dir: Path) -> tuple[set[str], list[dict]]:
    from nbdeploy.capture.deps import resolve

    dists, project = set(), []
    for mod in sorted(modules):
        if mod in ("__main__", "builtins", "nbdeploy"):
            continue
        res = resolve(mod, project_dir)
        if res.kind == "distribution" and res.distribution:
            dists.add(res.distribution)
        elif res.kind == "project" and res.path:
            project.append({"module": mod, "path": res.path})
    return dists, project


def export_model(shell: Any, out_dir: str | Path, variable: str | None = None) -> Export:
    """Write the model and its evidence into ``out_dir``; return the export record."""
    from nbdeploy.capture.session import current_session

    session = current_session()
    if session is None:
        raise ModelError("capture is not on in this kernel", hint="run %deploy init first")
    session.lineage._depth.value += 1  # the export's own pandas calls are not the notebook's lineage
    try:
        return _export(shell, session, Path(out_dir), variable)
    finally:
        session.lineage._depth.value -= 1


def _export(shell: Any, session: Any, out_dir: Path, variable: str | None) -> Export:
    from nbdeploy.capture.lock import build_lock

    started = time.perf_counter()
    out = Path(out_dir).resolve()
    record = session.sync()
    marks = {"sync": time.perf_counter() - started}
    named = session.model or {}
    variable = variable or named.get("variable")
    example_expr = named.get("example") if named.get("variable") == variable else None
    variable, obj = models.choose_model(shell.user_ns, variable)
    flavor = models.check_supported(variable, obj)
    inputs = models.input_columns(obj)
    entry = _training_entry(record, inputs)
    if example_expr:
        example = _frame(shell.ev(example_expr), inputs)
        source = f"--example {example_expr}"
    elif inputs is not None and entry is not None:
        example = _training_rows(session, entry, inputs)
        source = f"first {EXAMPLE_ROWS} rows of {entry.get('relative_path') or entry['path']}"
    else:
        raise ModelError(f"no example input for {variable}, and the training data of its columns "
                         "is not among the data the notebook read",
                         hint=f"use `%deploy model {variable} --example X_test.head(10)`")
    example = _check_columns(example.copy(), inputs, entry)
    entry = entry or _training_entry(record, [str(c) for c in example.columns])
    try:
        predictions = models.predict_fn(obj, flavor)(example)
    except Exception as exc:
        raise ModelError(f"{variable}.predict(example) raised {type(exc).__name__}: {exc}") from None
    marks["model_and_example"] = time.perf_counter() - started
    modules = models.class_modules(obj)
    model_dists, project = _distributions(modules, session.project_dir)
    direct = {d: set() for d in model_dists | FLAVOR_DISTS[flavor] | set(RUNTIME)}
    lock = build_lock(direct, exclude={"nbdeploy"})
    allowed = {p.name.lower() for p in lock.packages.values()} | {
        d["name"].lower() for d in record.get("lock", [])}
    requirements = sorted(f"{p.name}=={p.version}" for p in lock.packages.values()
                          if p.name.lower() in {d.lower() for d in direct})
    marks["serving_lock"] = time.perf_counter() - started
    if flavor == "pyfunc":
        with warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")
            facts = save_pyfunc(obj, out / "model", example=example, predictions=predictions,
                                requirements=requirements, code_paths=[p["path"] for p in project])
    else:
        loaded, facts = write_model_data(obj, flavor, out / "model", allowed_dists=allowed,
                                         project_dir=session.project_dir)
        _check_round_trip(models.predict_fn(loaded, flavor)(example), predictions, variable)
    profile = _profile(entry, [str(c) for c in example.columns])
    program = (write_program(obj, out / "model", profile, example=example) if flavor == "sklearn"
               else {"compiled": False, "reason": f"only scikit-learn models are compiled, not {flavor}"})
    marks["program"] = time.perf_counter() - started
    doc: Export = {
        "variable": variable, "flavor": cast(Flavor, flavor), "class": f"{type(obj).__module__}.{type(obj).__qualname__}",
        "inputs": [str(c) for c in example.columns],
        "dtypes": {str(c): str(t) for c, t in example.dtypes.items()},
        "example_source": source,
        "example": json.loads(example.to_json(orient="split", index=False, date_format="iso")),
        "predictions": _jsonable(predictions),
        "profile": profile,
        "program": cast(ProgramOutcome, program),
        "training_data": ({"path": entry.get("path"), "relative_path": entry.get("relative_path"),
                           "hash": recorded_hash(entry), "rows": entry.get("rows")} if entry else None),
        "serving_direct": sorted(direct),
        "serving_lock": lock.to_list(), "serving_lock_missing": lock.missing,
        "tests_lock": build_lock({"pytest": set()}).to_list(),
        "model_code": [p["module"] for p in project],
        "model_code_paths": [p["path"] for p in project],
        "model_data": facts, "serialization": facts["serialization"],
        "trusted_types": facts["trusted_types"], "requirements": requirements,
        "seconds": round(time.perf_counter() - started, 3),
        "timings": {k: round(v, 3) for k, v in marks.items()},
    }
    atomic_write_json(out / "export.json", doc)
    return doc


def _check_round_trip(got: Any, want: Any, variable: str) -> None:
    import numpy as np

    a, b = np.asarray(got), np.asarray(want)
    same = a.shape == b.shape and (
        np.allclose(a, b, rtol=1e-9, atol=0, equal_nan=True) if a.dtype.kind in "fciub"
        and b.dtype.kind in "fciub" else bool((a == b).all()))
    if not same:
        raise ModelError(f"{variable} predicts differently after saving and loading it back",
                         hint="the model's serialization loses state; report this with the model type")


class _quiet:
    """Keep MLflow's INFO/WARNING chatter out of the executed notebook."""

    def __enter__(self) -> None:
        self._log = logging.getLogger("mlflow")
        self._level = self._log.level
        self._log.setLevel(logging.ERROR)

    def __exit__(self, *exc: Any) -> None:
        self._log.setLevel(self._level)
