"""Compile a fitted scikit-learn model into a numpy program, and prove it equal first.

See :mod:`nbdeploy.serve.program` for what a program is and what it supports. The
compiler reads fitted attributes only; :func:`write_program` then predicts the same
rows with the model and with the program - the rows the server would build from JSON
for the example, and rows generated from the training profile - and writes the program
into the model folder only when every prediction agrees. The outcome (compiled, or why
not) is returned for ``export.json`` and the bundle README.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, cast

import numpy as np

from nbdeploy.serve.bundle import Column
from nbdeploy.serve.program import (
    PROGRAM_DIR,
    RTOL,
    Affine,
    Chain,
    Columns,
    Impute,
    Linear,
    Mismatch,
    OneHot,
    Program,
    Step,
    Trees,
    Unsupported,
)

LINEAR = {"LinearRegression", "Ridge", "Lasso", "ElasticNet", "LogisticRegression"}
GENERATED_ROWS = 2000


def compile_model(model: Any, predict_fn: str = "predict") -> Program:
    """The program of ``model``; raises Unsupported naming the part it cannot compile."""
    if predict_fn != "predict":
        raise Unsupported(f"only predict() is compiled, not {predict_fn}()")
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        raise Unsupported(f"{type(model).__name__} was fitted without column names")
    names = [str(n) for n in names]
    root = _compile(model, names, table=True)
    return Program(names, root, f"{type(model).__module__}.{type(model).__qualname__}")


def _name(est: Any) -> str:
    cls = type(est)
    if not cls.__module__.startswith("sklearn."):
        raise Unsupported(f"{cls.__module__}.{cls.__qualname__} is not a scikit-learn class")
    config = getattr(est, "_sklearn_output_config", None) or {}
    if config.get("transform") not in (None, "default"):
        raise Unsupported(f"{cls.__name__} is set to output {config['transform']}")
    return cls.__name__


def _compile(est: Any, names: list[str], table: bool) -> Step:
    kind = _name(est)
    if kind == "Pipeline":
        steps: list[Step] = []
        for _, step in est.steps:
            if step is None or step == "passthrough":
                continue
            steps.append(_compile(step, names, table=table and not steps))
        return Chain(steps)
    if kind == "ColumnTransformer":
        if not table:
            raise Unsupported("a ColumnTransformer after another step")
        return _columns(est, names)
    if kind == "StandardScaler":
        return Affine("standard", est.mean_ if est.with_mean else None, est.scale_ if est.with_std else None)
    if kind == "MinMaxScaler":
        clip = tuple(float(v) for v in est.feature_range) if est.clip else None
        return Affine("minmax", est.scale_, est.min_, clip)  # type: ignore[arg-type]
    if kind == "SimpleImputer":
        return _imputer(est)
    if kind == "OneHotEncoder":
        return _onehot(est)
    if kind in ("GradientBoostingClassifier", "GradientBoostingRegressor"):
        return _boosting(est)
    if kind in ("DecisionTreeClassifier", "DecisionTreeRegressor"):
        return _forest(est, [est], "single")
    if kind in ("RandomForestRegressor", "ExtraTreesRegressor", "RandomForestClassifier", "ExtraTreesClassifier"):
        return _forest(est, list(est.estimators_), "mean")
    if kind in ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor"):
        return _hist_boosting(est)
    if kind in LINEAR:
        return _linear(est)
    raise Unsupported(f"{kind} is not among the compiled steps")


def _columns(est: Any, names: list[str]) -> Columns:
    if getattr(est, "transformer_weights", None):
        raise Unsupported("ColumnTransformer with transformer_weights")
    fitted_names = [str(n) for n in getattr(est, "feature_names_in_", names)]
    parts: list[tuple[Step | None, list[str]]] = []
    for _, trans, cols in est.transformers_:
        selected = _select(cols, fitted_names)
        if isinstance(trans, str) and trans == "drop" or not selected:
            continue
        if isinstance(trans, str) and trans == "passthrough":
            parts.append((None, selected))
        elif type(trans).__name__ == "FunctionTransformer" and trans.func is None:
            parts.append((None, selected))
        else:
            parts.append((_compile(trans, selected, table=True), selected))
    return Columns(parts)


def _select(cols: Any, names: list[str]) -> list[str]:
    if isinstance(cols, str):
        return [cols]
    if isinstance(cols, slice):
        return names[cols]
    if callable(cols):
        raise Unsupported("a ColumnTransformer column selector that is a function")
    cols = list(np.asarray(cols).tolist()) if not isinstance(cols, list) else cols
    if cols and all(isinstance(c, bool) for c in cols):
        return [n for n, keep in zip(names, cols, strict=True) if keep]
    if all(isinstance(c, int) for c in cols):
        return [names[c] for c in cols]
    if all(isinstance(c, str) for c in cols):
        return list(cols)
    raise Unsupported(f"ColumnTransformer columns {cols!r}")


def _imputer(est: Any) -> Impute:
    missing = est.missing_values
    if not (isinstance(missing, float) and missing != missing):
        raise Unsupported("SimpleImputer with missing_values other than NaN")
    if getattr(est, "add_indicator", False):
        raise Unsupported("SimpleImputer with add_indicator")
    stats = np.asarray(est.statistics_)
    if stats.dtype.kind not in "fiub" or not np.isfinite(stats.astype(np.float64)).all():
        raise Unsupported("SimpleImputer with non-numeric or empty-column statistics")
    return Impute(stats.astype(np.float64))


def _onehot(est: Any) -> OneHot:
    if getattr(est, "_infrequent_enabled", False):
        raise Unsupported("OneHotEncoder with infrequent categories")
    if est.handle_unknown not in ("ignore", "error", "warn", "infrequent_if_exist"):
        raise Unsupported(f"OneHotEncoder(handle_unknown={est.handle_unknown!r})")
    drop = getattr(est, "_drop_idx_after_grouping", None)
    n = len(est.categories_)
    drops: list[int | None] = [None if d is None else int(d) for d in drop] if drop is not None else [None] * n
    cats = [list(c.tolist()) for c in est.categories_]
    return OneHot(cats, drops, "error" if est.handle_unknown == "error" else "ignore", np.dtype(est.dtype).name)


def _tree_arrays(trees: list[Any], offset_value: bool) -> dict[str, Any]:
    feature, threshold, left, right, nan_left, value, roots = [], [], [], [], [], [], []
    start, depth = 0, 0
    for tree in trees:
        t = tree.tree_
        if t.n_outputs != 1:
            raise Unsupported("a tree with several outputs")
        n = t.node_count
        leaf = t.children_left == -1
        ids = np.arange(start, start + n)
        left.append(np.where(leaf, ids, t.children_left + start))
        right.append(np.where(leaf, ids, t.children_right + start))
        feature.append(np.where(leaf, 0, t.feature))
        threshold.append(np.where(leaf, 0.0, t.threshold))
        mgl = getattr(t, "missing_go_to_left", None)
        nan_left.append(np.zeros(n, bool) if mgl is None else np.asarray(mgl, bool))
        value.append(t.value[:, 0, 0] if offset_value else t.value[:, 0, :])
        roots.append(start)
        start += n
        depth = max(depth, int(t.max_depth))
    return {"feature": np.concatenate(feature).astype(np.intp), "threshold": np.concatenate(threshold),
            "left": np.concatenate(left).astype(np.intp), "right": np.concatenate(right).astype(np.intp),
            "nan_left": np.concatenate(nan_left), "value": np.concatenate(value).astype(np.float64),
            "roots": np.asarray(roots, dtype=np.intp), "depth": depth}


def _boosting(est: Any) -> Trees:
    init = est.init_
    if not (isinstance(init, str) and init == "zero"):
        if type(init).__name__ not in ("DummyClassifier", "DummyRegressor") or getattr(
                init, "strategy", "prior") in ("stratified", "uniform"):
            raise Unsupported(f"GradientBoosting with init={type(init).__name__}")
    stages, k = est.estimators_.shape
    arrays = _tree_arrays([est.estimators_[s, j] for s in range(stages) for j in range(k)], offset_value=True)
    arrays["roots"] = arrays["roots"].reshape(stages, k)
    probe = np.zeros((1, est.n_features_in_), dtype=np.float32)
    start = np.asarray(est._raw_predict_init(probe), dtype=np.float64)[0]
    classifier = hasattr(est, "classes_")
    output = "raw" if not classifier else ("binary" if k == 1 else "argmax")
    return Trees("boosting", output, init=start, rate=float(est.learning_rate),
                 classes=np.asarray(est.classes_) if classifier else None, n_features=int(est.n_features_in_),
                 **arrays)


def _hist_boosting(est: Any) -> Trees:
    """HistGradientBoosting walks float64 input; leaf values already carry the learning rate."""
    if getattr(est, "_preprocessor", None) is not None or (
            getattr(est, "is_categorical_", None) is not None and np.any(est.is_categorical_)):
        raise Unsupported("HistGradientBoosting with categorical features")
    link = type(est._loss.link).__name__
    classifier = hasattr(est, "classes_")
    if not classifier and link != "IdentityLink":
        raise Unsupported(f"HistGradientBoostingRegressor with a {link}")
    k = est.n_trees_per_iteration_
    feature, threshold, left, right, nan_left, value, roots = [], [], [], [], [], [], []
    start, depth = 0, 0
    for iteration in est._predictors:
        for predictor in iteration:
            nodes = predictor.nodes
            if np.any(nodes["is_categorical"]):
                raise Unsupported("HistGradientBoosting with categorical splits")
            n = len(nodes)
            leaf = nodes["is_leaf"].astype(bool)
            ids = np.arange(start, start + n)
            left.append(np.where(leaf, ids, nodes["left"].astype(np.intp) + start))
            right.append(np.where(leaf, ids, nodes["right"].astype(np.intp) + start))
            feature.append(np.where(leaf, 0, nodes["feature_idx"]))
            threshold.append(np.where(leaf, 0.0, nodes["num_threshold"]))
            nan_left.append(nodes["missing_go_to_left"].astype(bool))
            value.append(nodes["value"].astype(np.float64))
            roots.append(start)
            start += n
            depth = max(depth, int(nodes["depth"].max()))
    init = np.asarray(est._baseline_prediction, dtype=np.float64).ravel()
    output = "raw" if not classifier else ("binary_positive" if k == 1 else "argmax")
    return Trees("boosting", output, feature=np.concatenate(feature).astype(np.intp),
                 threshold=np.concatenate(threshold), left=np.concatenate(left).astype(np.intp),
                 right=np.concatenate(right).astype(np.intp), nan_left=np.concatenate(nan_left),
                 value=np.concatenate(value), roots=np.asarray(roots, dtype=np.intp).reshape(-1, k), depth=depth,
                 init=init, rate=1.0, classes=np.asarray(est.classes_) if classifier else None,
                 n_features=int(est.n_features_in_), dtype="float64", check="none")


def _forest(est: Any, trees: list[Any], how: str) -> Trees:
    if getattr(est, "n_outputs_", 1) != 1:
        raise Unsupported("a multi-output tree model")
    arrays = _tree_arrays(trees, offset_value=False)
    arrays["roots"] = arrays["roots"].reshape(len(trees), 1)
    classifier = hasattr(est, "classes_")
    return Trees(how, "proba_argmax" if classifier else "raw", init=np.zeros(1), rate=1.0,
                 classes=np.asarray(est.classes_) if classifier else None, n_features=int(est.n_features_in_),
                 **arrays)


def _linear(est: Any) -> Linear:
    coef = np.asarray(est.coef_)
    intercept = est.intercept_
    # (a scalar intercept is a real number; np.isscalar's TypeGuard allows complex, str, bytes)
    intercept = np.asarray(intercept) if not np.isscalar(intercept) else np.float64(cast(float, intercept))
    classes = np.asarray(est.classes_) if hasattr(est, "classes_") else None
    if classes is not None and type(est).__name__ != "LogisticRegression":
        raise Unsupported(f"{type(est).__name__} classifier")
    return Linear(coef, intercept, classes)


# -- proof ----------------------------------------------------------------------


def generated_columns(columns: list[Any], profile: dict | None, rows: int, seed: int = 0,
                      unseen: bool = True) -> dict[str, list]:
    """Rows as a client would send them: every seen category and an unseen one, numbers across
    (and at the ends of) the training range, nulls where training had them."""
    rng = np.random.default_rng(seed)
    stats = (profile or {}).get("columns") or {}
    out: dict[str, list] = {}
    for col in columns:
        s = stats.get(col.name) or {}
        if col.type in ("long", "integer"):
            lo, hi = int(np.floor(s.get("min", -10))), int(np.ceil(s.get("max", 10)))
            values: list = rng.integers(lo, hi + 1, rows).tolist()
            values[:2] = [lo, hi]
        elif col.type in ("double", "float"):
            low, high = float(s.get("min", -10.0)), float(s.get("max", 10.0))
            span = high - low or 1.0
            values = rng.uniform(low - 0.1 * span, high + 0.1 * span, rows).tolist()
            values[:2] = [low, high]
        elif col.type == "boolean":
            values = (rng.random(rows) > 0.5).tolist()
        elif col.type == "string":
            seen = [str(v) for v in s.get("values") or [t["value"] for t in s.get("top", [])] if v is not None]
            pool = seen + ["__unseen__"] if unseen or not seen else seen
            values = [pool[i] for i in rng.integers(0, len(pool), rows)]
        else:
            raise Unsupported(f"input column {col.name!r} of type {col.type}")
        if s.get("nulls"):
            values = [None if i % 17 == 5 else v for i, v in enumerate(values)]
        out[col.name] = values
    return out


def prove(program: Program, predict: Any, bundle: Any, batches: list[dict[str, list]]) -> int:
    """Predict every batch both ways, from the columns the server's validator makes of a
    request, as the server builds them; return the number of rows checked."""
    from nbdeploy.serve.payload import Frame
    from nbdeploy.serve.predictor import build_frame, build_table
    from nbdeploy.serve.validation import Validator

    validator = Validator(bundle)
    checked = 0
    for batch in batches:
        merged, _ = validator.check(Frame(batch, len(next(iter(batch.values())))))
        try:
            want = np.asarray(predict(build_frame(bundle.columns, merged)))
        except Exception:  # the model refuses these rows (say, an unknown category): so must the program
            try:
                program.predict(build_table(bundle.columns, merged))
            except Exception:
                continue
            raise Mismatch("the program predicted rows that the model refused") from None
        try:
            got = np.asarray(program.predict(build_table(bundle.columns, merged)))
        except Exception as e:
            raise Mismatch(f"the program failed where the model did not: {type(e).__name__}: {e}") from None
        _same(got, want)
        checked += len(want)
    return checked


def _same(got: np.ndarray, want: np.ndarray) -> None:
    if got.shape != want.shape:
        raise Mismatch(f"the program gave shape {got.shape}, the model {want.shape}")
    if want.dtype.kind == "f" and got.dtype.kind == "f":
        close = np.isclose(got, want, rtol=RTOL, atol=0, equal_nan=True)
        if not close.all():
            i = int(np.flatnonzero(~close.ravel())[0])
            raise Mismatch(f"row {i}: program {got.ravel()[i]!r}, model {want.ravel()[i]!r}")
        return
    if got.dtype != want.dtype and not (got.dtype.kind in "iub" and want.dtype.kind in "iub"):
        raise Mismatch(f"the program gave {got.dtype}, the model {want.dtype}")
    bad = got != want
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        raise Mismatch(f"row {i}: program {got.ravel()[i]!r}, model {want.ravel()[i]!r}")


def write_program(model: Any, model_dir: Path, profile: dict | None = None,
                  predict_fn: str = "predict", example: Any = None) -> dict[str, Any]:
    """Compile, prove and write ``model_dir/program``; return {"compiled": bool, "reason"/"rows"}.

    The columns (and example rows) come from ``model_dir/MLmodel``, or, where the MLmodel
    is written later (``nbdeploy build`` writes it outside the kernel), from ``example``,
    the DataFrame the signature will be inferred from: with MLflow's types for its dtypes.
    The result's ``columns`` ([name, type] pairs) say which, so the build can check them
    against the signature MLflow writes.
    """
    from types import SimpleNamespace

    from nbdeploy.serve.bundle import read_bundle

    target = Path(model_dir) / PROGRAM_DIR
    try:
        program = compile_model(model, predict_fn)
        if example is not None:
            bundle: Any = SimpleNamespace(columns=example_columns(example), profile=profile)
        else:
            bundle = read_bundle(model_dir)
            bundle.profile = profile
        columns = bundle.columns
        if not columns:
            raise Unsupported("the model's signature has no named columns")
        if [c.name for c in columns] != program.inputs and set(program.inputs) - {c.name for c in columns}:
            raise Unsupported("the signature lacks columns the model was fitted on")
        rows = _example(model_dir, columns) if example is None else [
            {c.name: [None if v is None or v != v else v for v in example[c.name].tolist()] for c in columns}]
        gen = generated_columns(columns, profile, GENERATED_ROWS)
        known = generated_columns(columns, profile, GENERATED_ROWS // 4, seed=1, unseen=False)
        batches = [*rows, {k: v[:1] for k, v in gen.items()}, {k: v[1:8] for k, v in gen.items()},
                   {k: v[8:72] for k, v in gen.items()}, gen, known]
        program.checked_rows = prove(program, getattr(model, predict_fn), bundle, batches)
        if program.checked_rows < GENERATED_ROWS // 4:
            raise Unsupported(f"the model refused most rows generated from its profile ({program.checked_rows} "
                              "checked), so the program could not be proved")
    except (Unsupported, Mismatch) as e:
        return {"compiled": False, "reason": str(e)}
    except Exception as e:  # never let the fast path break a build: the model is served as it is
        return {"compiled": False, "reason": f"could not check the program: {type(e).__name__}: {e}"}
    try:
        with tempfile.TemporaryDirectory(dir=model_dir) as tmp:
            staged = Path(tmp) / PROGRAM_DIR
            program.save(staged)
            again = Program.load(staged)  # what the server will read must predict what was proved
            prove(again, getattr(model, predict_fn), bundle, batches[-2:])
            if target.exists():
                shutil.rmtree(target)
            staged.rename(target)
    except Exception as e:
        return {"compiled": False, "reason": f"the program could not be saved: {type(e).__name__}: {e}"}
    return {"compiled": True, "rows": program.checked_rows, "path": f"{Path(model_dir).name}/{PROGRAM_DIR}",
            "columns": [[c.name, c.type] for c in columns]}


def example_columns(example: Any) -> list[Column]:
    """The signature MLflow's ``infer_signature`` gives a DataFrame, for the dtypes a program takes."""
    out = []
    for name, dtype in example.dtypes.items():
        kind, size = getattr(dtype, "kind", ""), getattr(dtype, "itemsize", 0)
        if kind == "i":
            type_ = "long" if size == 8 else "integer"
        elif kind == "f":
            type_ = "double" if size == 8 else "float"
        elif kind == "b":
            type_ = "boolean"
        elif str(dtype) in ("str", "string") or (
                kind == "O" and all(isinstance(v, str) for v in example[name].dropna().tolist())):
            type_ = "string"
        else:
            raise Unsupported(f"input column {name!r} of dtype {dtype}")
        out.append(Column(str(name), type_, required=not bool(example[name].isna().any())))
    return out


def _example(model_dir: Path, columns: list[Any]) -> list[dict[str, list]]:
    import json

    path = Path(model_dir) / "input_example.json"
    if not path.is_file():
        return []
    doc = json.loads(path.read_text())
    if isinstance(doc, dict) and "columns" in doc:
        rows = [dict(zip(doc["columns"], r, strict=True)) for r in doc["data"]]
    elif isinstance(doc, list):
        rows = doc
    else:
        return []
    return [{c.name: [r.get(c.name) for r in rows] for c in columns}]
