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
from typing import TYPE_CHECKING, Any, TypeGuard, cast

from nbdeploy.base.errors import ModelError
from nbdeploy.base.state import atomic_write_json
from nbdeploy.bundle import models
from nbdeploy.bundle.compiler import write_program
from nbdeploy.bundle.derived import derived_inputs
from nbdeploy.bundle.records import Export, Flavor, ProgramOutcome
from nbdeploy.bundle.savers import save_pyfunc, write_model_data
from nbdeploy.capture.hashing import recorded_hash

if TYPE_CHECKING:
    import ast

EXAMPLE_ROWS = 10
#: what the API itself imports, besides the model's own libraries (see nbdeploy.serve)
RUNTIME: dict[str, set[str]] = {"numpy": set(), "pandas": set(), "orjson": set(), "uvicorn": set(),
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
                         "record its column names nor how many it takes", hint="give a DataFrame as --example")
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


#: names notebooks give the frames a model is fitted on or tested with, in the order preferred
_FRAME_NAMES = ("X_test", "X_val", "X_valid", "X_validation", "X_holdout", "X_train", "X", "features", "df_test",
                "test", "df")


def kernel_rows(user_ns: dict[str, Any], columns: list[str]) -> tuple[Any, str] | None:
    """Example rows from a DataFrame the notebook holds whose columns include the model's inputs.

    The kernel's own frame is what the model saw: no file is re-read, so a read with
    options (``header=None, names=...``, ``index_col=``, ``sep=';'``) or a path in a
    variable needs nothing more. Conventional names (``X_test``, ``X_train``, ``X``, ...)
    come first, then any other frame, fewest extra columns first. Returns (rows, source).
    """
    import pandas as pd

    wanted = set(columns)
    found = []
    for name, value in list(user_ns.items()):
        if name.startswith("_") or not isinstance(value, pd.DataFrame) or not len(value):
            continue
        names = {str(c) for c in value.columns}
        if wanted <= names:
            rank = _FRAME_NAMES.index(name) if name in _FRAME_NAMES else len(_FRAME_NAMES)
            found.append((rank, len(names) - len(wanted), name, value))
    if not found:
        return None
    _, _, name, frame = min(found, key=lambda f: f[:3])
    rows = frame.head(EXAMPLE_ROWS).copy()
    rows.columns = [str(c) for c in rows.columns]
    return rows[columns].reset_index(drop=True), f"first {min(len(frame), EXAMPLE_ROWS)} rows of {name}"


def _rank(name: str) -> int:
    return _FRAME_NAMES.index(name) if name in _FRAME_NAMES else len(_FRAME_NAMES)


def kernel_array_rows(user_ns: dict[str, Any], width: int, own: list[str]) -> tuple[Any, str] | None:
    """Example rows for a model fitted without column names (``fit(X.values, y)``, a Booster).

    Any 2-D numeric array or DataFrame of the notebook with ``width`` columns fits, by the
    conventional names first. The columns are named after a DataFrame of the notebook that
    holds the same values (``X`` for ``X.values``), else as the model's library names them
    (``own``: ``x0``, ``Column_0``, ``f0``). Returns (rows, source).
    """
    import numpy as np
    import pandas as pd

    arrays, frames = [], []
    for name, value in list(user_ns.items()):
        if name.startswith("_"):
            continue
        if isinstance(value, np.ndarray) and value.ndim == 2 and value.shape[1] == width and len(value) \
                and value.dtype.kind in "fiub":
            arrays.append((_rank(name), name, value))
        elif isinstance(value, pd.DataFrame) and value.shape[1] == width and len(value) \
                and all(t.kind in "fiub" for t in value.dtypes):
            frames.append((_rank(name), name, value))
    if arrays:
        _, name, array = min(arrays, key=lambda f: f[:2])
        rows = array[:EXAMPLE_ROWS]
        for _, fname, frame in sorted(frames, key=lambda f: f[:2]):
            if any(np.array_equal(rows[0], r, equal_nan=True) for r in frame.to_numpy()[:len(array)]):
                named = pd.DataFrame(rows, columns=[str(c) for c in frame.columns])
                return named, f"first {len(rows)} rows of {name} (columns named as in {fname})"
        return pd.DataFrame(rows, columns=own), f"first {len(rows)} rows of {name}"
    if frames:
        _, name, frame = min(frames, key=lambda f: f[:2])
        rows = frame.head(EXAMPLE_ROWS).reset_index(drop=True)
        rows.columns = [str(c) for c in rows.columns]
        return rows, f"first {len(rows)} rows of {name}"
    return None


def fit_argument(sources: list[str], variable: str) -> str | None:
    """The variable the notebook last passed as ``X`` to the model's ``fit``: ``model.fit(X_tr, y)``,
    ``model = Pipeline([...]).fit(X_tr, y)``, ``fit(X=X_tr, ...)`` or ``fit(X_tr.values, y)``;
    ``sources`` are the executed cells in order (IPython's ``In``: already plain Python)."""
    import ast

    found = None
    for src in sources:
        try:
            tree = ast.parse(src)
        except (SyntaxError, ValueError):
            continue
        owned: set[int] = set()  # fit calls whose result is assigned to the model's variable
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == variable
                                                    for t in node.targets):
                owned.update(id(n) for n in ast.walk(node.value) if _is_fit(n))
        calls = sorted((n for n in ast.walk(tree) if _is_fit(n)), key=lambda n: (n.lineno, n.col_offset))
        for call in calls:
            receiver = call.func.value  # type: ignore[attr-defined]
            if not (id(call) in owned or isinstance(receiver, ast.Name) and receiver.id == variable):
                continue
            x = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg == "X"), None)
            if isinstance(x, ast.Attribute) and x.attr == "values":
                x = x.value
            if isinstance(x, ast.Name):
                found = x.id
    return found


def _is_fit(node: Any) -> TypeGuard[ast.Call]:
    import ast

    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "fit"


def fitted_rows(user_ns: dict[str, Any], variable: str) -> tuple[Any, str] | None:
    """Example rows for a model that records neither its input names nor their number (a
    pipeline starting with a custom transformer): the first rows of the DataFrame the notebook
    fitted it on (:func:`fit_argument`). Returns (rows, source)."""
    import pandas as pd

    name = fit_argument([str(s) for s in user_ns.get("In") or []], variable)
    frame = user_ns.get(name) if name else None
    if not isinstance(frame, pd.DataFrame) or not len(frame):
        return None
    rows = frame.head(EXAMPLE_ROWS).reset_index(drop=True)
    rows.columns = [str(c) for c in rows.columns]
    return rows, f"first {len(rows)} rows of {name} (what {variable} was fitted on)"


def one_column_model(user_ns: dict[str, Any], variable: str, obj: Any) -> tuple[Any, Any, str, str] | None:
    """A model fitted on one column of text or values, not on a frame: ``make_pipeline(TfidfVectorizer(),
    LogisticRegression()).fit(X_train, y)`` with ``X_train = df["review"]``. It predicts on that column
    alone, while an API takes rows of named columns. So the bundle ships a pipeline that takes a
    frame holding the column and hands the model that column: ``Pipeline([("column",
    FunctionTransformer(itemgetter(name))), ("model", obj)])``, plain scikit-learn that MLflow's loader
    runs too. Returns (that pipeline, the example rows, their source, a note for the build), or None."""
    import operator

    import numpy as np
    import pandas as pd
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    name = fit_argument([str(s) for s in user_ns.get("In") or []], variable)
    values = user_ns.get(name) if name else None
    if isinstance(values, pd.Series):
        column = str(values.name) if values.name is not None else "text"
        series = values.head(EXAMPLE_ROWS).reset_index(drop=True)
    elif isinstance(values, list | np.ndarray) and len(values) and np.ndim(values) == 1:
        column = "text" if isinstance(values[0], str) else "x"
        series = pd.Series(list(values[:EXAMPLE_ROWS]))
    else:
        return None
    if not len(series):
        return None
    rows = series.rename(column).to_frame()
    wrapped = Pipeline([("column", FunctionTransformer(operator.itemgetter(column)).fit(rows)), ("model", obj)])
    kind = type(values).__name__
    note = (f"{variable} was fitted on one column ({name}, a {kind}), not on rows of named columns: the "
            f"bundle's model takes rows with the column {column!r} and passes that column to {variable}")
    return wrapped, rows, f"first {len(rows)} values of {name} (what {variable} was fitted on)", note


def _no_example(variable: str, inputs: list[str] | None, width: int | None) -> ModelError:
    """Why no example rows were found, precisely, and what to add."""
    hint = ("keep the rows the model is fitted on in a variable such as X_train, or pass `--example EXPR` "
            f"to nbdeploy build or `%deploy model {variable} --example EXPR`")
    if inputs is not None:
        shown = ", ".join(inputs[:6]) + (", ..." if len(inputs) > 6 else "")
        return ModelError(f"no example input for {variable}: the notebook holds no DataFrame with its "
                          f"{len(inputs)} input columns ({shown}) and read no file that has them", hint=hint)
    if width is not None:
        return ModelError(f"no example input for {variable}: it was fitted on {width} columns without "
                          f"names, and the notebook holds no numeric array or DataFrame of {width} columns",
                          hint=hint)
    return ModelError(f"no example input for {variable}: it records neither its input columns nor how many "
                      f"it takes, and no DataFrame variable of the notebook is passed to {variable}.fit", hint=hint)


def _training_rows(session: Any, entry: dict, columns: list[str]) -> Any:
    import pandas as pd

    reader = getattr(pd, entry["function"], None)
    if entry["kind"] != "file" or reader is None:
        raise ModelError("no --example given and the training data cannot be re-read",
                         hint="add --example EXPR to `%deploy model`")
    df = reader(entry["path"])  # export_model keeps this read out of the notebook's lineage
    return df[columns].head(EXAMPLE_ROWS).reset_index(drop=True)


#: training rows the model predicts at export for the prediction profile (a deterministic sample)
PREDICTION_ROWS = 20_000


def _prediction_profile(entry: dict, columns: list[str], predict: Any) -> dict | None:
    """The profile of the model's predictions on (a sample of) its training rows: what the
    drift report compares the served predictions with. None, never an error, when the
    training data cannot be re-read or the predictions are not one value per row."""
    import numpy as np
    import pandas as pd

    from nbdeploy.capture.profile import profile_frame

    reader = getattr(pd, entry.get("function") or "", None)
    if entry.get("kind") != "file" or reader is None:
        return None
    try:
        df = reader(entry["path"])[columns]
        if len(df) > PREDICTION_ROWS:
            df = df.iloc[np.sort(np.random.default_rng(0).choice(len(df), PREDICTION_ROWS, replace=False))]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predictions = np.asarray(predict(df.reset_index(drop=True)))
    except Exception:  # the profile is evidence for drift reports; the build does not depend on it
        return None
    if predictions.ndim != 1 or len(predictions) != len(df):
        return None
    prof = profile_frame(pd.DataFrame({"prediction": predictions}))
    return {"source": f"the model's predictions on {len(df)} training rows", **prof}


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


def _categorical(example: Any) -> dict[str, list[Any]]:
    """The categories, in order, of each input the model was given as pandas' category dtype
    (``df["plan"].astype("category")``): XGBoost, LightGBM and HistGradientBoosting read their
    codes, so the server must build that column with exactly these categories."""
    import pandas as pd

    return {str(c): _jsonable(list(t.categories)) for c, t in example.dtypes.items()
            if isinstance(t, pd.CategoricalDtype)}


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
    """The distributions the model's code needs and the project code that ships with it. Shipped
    code's own imports count too, in each of its files this kernel loaded (the model's modules and
    what they pulled in): a helper that imports a library makes the serving lock hold it."""
    from nbdeploy.capture.deps import file_imports, is_stdlib, project_files, resolve

    dists, project, shipped, seen = set(), [], set(), set()
    loaded: set[Path] | None = None  # the kernel's loaded source files, listed once when code ships
    todo = sorted(modules)
    while todo:
        mod = todo.pop(0)
        if mod in seen or mod in ("__main__", "builtins", "nbdeploy") or is_stdlib(mod):
            continue
        seen.add(mod)
        res = resolve(mod, project_dir)
        if res.kind == "distribution" and res.distribution:
            dists.add(res.distribution)
        elif res.kind == "project" and res.path:
            # a package ships whole (its folder), a module as its file: either lands in model/code/
            # under its own name, importable as the notebook imported it
            path = str(Path(res.path).parent) if Path(res.path).name == "__init__.py" else res.path
            if path not in shipped:
                shipped.add(path)
                project.append({"module": mod.split(".")[0], "path": path})
                loaded = _loaded_files() if loaded is None else loaded
                todo += [m for f in project_files(res.path) if f in loaded for m in file_imports(f)]
    return dists, project


def _loaded_files() -> set[Path]:
    """The source files of the modules this interpreter has imported."""
    import sys

    files = set()
    for m in list(sys.modules.values()):
        f = getattr(m, "__file__", None)
        if isinstance(f, str) and f.endswith(".py"):
            files.add(Path(f).resolve())
    return files


def export_model(shell: Any, out_dir: str | Path, variable: str | None = None,
                 example: str | None = None) -> Export:
    """Write the model and its evidence into ``out_dir``; return the export record.

    ``example``: an expression giving the example rows (``nbdeploy build --example``), which
    wins over the one ``%deploy model`` named.
    """
    from nbdeploy.capture.session import current_session

    session = current_session()
    if session is None:
        raise ModelError("capture is not on in this kernel", hint="run %deploy init first")
    session.lineage._depth.value += 1  # the export's own pandas calls are not the notebook's lineage
    try:
        return _export(shell, session, Path(out_dir), variable, example)
    finally:
        session.lineage._depth.value -= 1


def _export(shell: Any, session: Any, out_dir: Path, variable: str | None, example_given: str | None) -> Export:
    from nbdeploy.capture.lock import build_lock

    started = time.perf_counter()
    out = Path(out_dir).resolve()
    record = session.sync()
    marks = {"sync": time.perf_counter() - started}
    named = session.model or {}
    variable = variable or named.get("variable")
    example_expr = example_given or (named.get("example") if named.get("variable") == variable else None)
    if not variable:
        candidates = models.find_models(shell.user_ns)
        if len(candidates) > 1:
            _export_candidates(shell, session, out, list(candidates), example_given)
    variable, obj = models.choose_model(shell.user_ns, variable)
    obj, part = models.shipped(obj)
    shipped = f"{variable}.{part}" if part else variable
    flavor = models.check_supported(variable, obj)
    input_note: str | None = None
    inputs = models.input_columns(obj)
    width = models.input_width(obj) if inputs is None else None
    entry = _training_entry(record, inputs)
    if example_expr:
        try:
            given = shell.ev(example_expr)
        except Exception as exc:
            raise ModelError(f"--example {example_expr} raised {type(exc).__name__}: {exc}",
                             hint="give an expression the notebook can evaluate after its last cell") from None
        if inputs is None and width is not None and not hasattr(given, "columns"):
            import numpy as np

            named = kernel_array_rows({"example": np.asarray(given)[:EXAMPLE_ROWS], **shell.user_ns}, width,
                                      models.own_names(obj, width))
            given = named[0] if named is not None else given
        example = _frame(given, inputs)
        source = f"--example {example_expr}"
    elif (in_kernel := kernel_rows(shell.user_ns, inputs) if inputs is not None else
          kernel_array_rows(shell.user_ns, width, models.own_names(obj, width)) if width is not None
          else None) is not None:
        example, source = in_kernel
    elif inputs is None and width is None and (fitted := fitted_rows(shell.user_ns, variable)) is not None:
        example, source = fitted
    elif inputs is None and width is None and flavor == "sklearn" and (
            one := one_column_model(shell.user_ns, variable, obj)) is not None:
        obj, example, source, input_note = one
        inputs = models.input_columns(obj)
    elif inputs is not None and entry is not None:
        example = _training_rows(session, entry, inputs)
        source = f"first {EXAMPLE_ROWS} rows of {entry.get('relative_path') or entry['path']}"
    else:
        raise _no_example(variable, inputs, width)
    if inputs is None and width is not None:
        if example.shape[1] != width:
            raise ModelError(f"the example has {example.shape[1]} columns; {variable} was fitted on {width}",
                             hint="give example rows with exactly the training columns, e.g. X_test[:10]")
        entry = None  # positional inputs: no file's columns to hold them to
        example.columns = [str(c) for c in example.columns]
    else:
        example = _check_columns(example.copy(), inputs, entry)
    entry = entry or _training_entry(record, [str(c) for c in example.columns])
    try:
        with warnings.catch_warnings():  # "X has feature names, but ... was fitted without"
            warnings.simplefilter("ignore", UserWarning)
            predictions = models.predict_fn(obj, flavor)(example)
    except Exception as exc:
        raise ModelError(f"{variable}.predict(example) raised {type(exc).__name__}: {exc}") from None
    marks["model_and_example"] = time.perf_counter() - started
    modules = models.class_modules(obj) | (models.pickled_modules(obj) if flavor == "pyfunc" else set())
    model_dists, project = _distributions(modules, session.project_dir)
    direct: dict[str, set[str]] = {d: set() for d in model_dists | FLAVOR_DISTS[flavor] | set(RUNTIME)}
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
                                         project_dir=session.project_dir, name=shipped)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            _check_round_trip(models.predict_fn(loaded, flavor)(example), predictions, variable)
    profile = _profile(entry, [str(c) for c in example.columns])
    if profile is not None and entry is not None:
        profile["prediction"] = _prediction_profile(entry, [str(c) for c in example.columns],
                                                    models.predict_fn(obj, flavor))
    marks["prediction_profile"] = time.perf_counter() - started
    program = (write_program(obj, out / "model", profile, example=example) if flavor == "sklearn"
               else {"compiled": False, "reason": f"only scikit-learn models are compiled, not {flavor}"})
    marks["program"] = time.perf_counter() - started
    doc: Export = {
        "variable": variable, "flavor": cast(Flavor, flavor), "class": f"{type(obj).__module__}.{type(obj).__qualname__}",
        "inputs": [str(c) for c in example.columns],
        "dtypes": {str(c): str(t) for c, t in example.dtypes.items()},
        "categorical": _categorical(example),
        "example_source": source,
        "example": json.loads(example.to_json(orient="split", index=False, date_format="iso")),
        "predictions": _jsonable(predictions),
        "profile": profile,
        "program": cast(ProgramOutcome, program),
        "training_data": ({"path": entry.get("path"), "relative_path": entry.get("relative_path"),
                           "hash": recorded_hash(entry), "rows": entry.get("rows")} if entry else None),
        "serving_direct": sorted(direct),
        "serving_lock": lock.to_list(), "serving_lock_missing": lock.missing,
        "derived_inputs": ([] if width is not None and list(example.columns) == models.own_names(obj, width)
                           else derived_inputs([str(c) for c in example.columns], record.get("lineage", []))),
        "shipped": shipped,
        "input_note": input_note,
        "model_code": [p["module"] for p in project],
        "model_code_paths": [p["path"] for p in project],
        "model_data": facts, "serialization": facts["serialization"],
        "trusted_types": facts["trusted_types"], "requirements": requirements,
        "seconds": round(time.perf_counter() - started, 3),
        "timings": {k: round(v, 3) for k, v in marks.items()},
    }
    atomic_write_json(out / "export.json", doc)
    return doc


def _export_candidates(shell: Any, session: Any, out: Path, names: list[str], example: str | None) -> None:
    """Export every candidate into ``out/candidates/NAME`` before the several-models error,
    so ``nbdeploy build --model NAME`` right after builds from this run instead of a second
    one. A candidate that cannot be exported is left out (its build will run and say why)."""
    import shutil

    from nbdeploy.base.errors import NbdeployError

    for name in names:
        try:
            _export(shell, session, out / "candidates" / name, name, example)
        except NbdeployError:
            shutil.rmtree(out / "candidates" / name, ignore_errors=True)


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
