"""Compiled programs: equal to the scikit-learn model they come from, or not written at all.

Each model is trained here, compiled, and then both predict fresh rows (not the rows the
compiler checked) built the way the server builds them. Tree ensembles must agree bit for
bit, labels exactly, linear outputs to 1e-12 relative.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nbdeploy.bundle.compiler import (
    Mismatch,
    compile_model,
    generated_columns,
    prove,
    write_program,
)
from nbdeploy.serve.bundle import Column, read_bundle
from nbdeploy.serve.payload import Frame
from nbdeploy.serve.predictor import build_frame, build_table
from nbdeploy.serve.program import PROGRAM_DIR, Program
from nbdeploy.serve.validation import Validator


def _frame(n: int, seed: int, nulls: bool = False):
    import pandas as pd

    rng = np.random.default_rng(seed)
    income = rng.normal(50_000, 12_000, n).round(2)
    if nulls:
        income[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({
        "age": rng.integers(18, 80, n).astype("int64"),
        "income": income,
        "tenure": rng.exponential(5, n),
        "city": rng.choice(["paris", "lyon", "nice", "lille"], n),
        "member": rng.random(n) > 0.5,
    })


def _pre(impute: bool = False, scaler: str = "standard", drop: str | None = None, remainder: str = "drop"):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

    scale = StandardScaler() if scaler == "standard" else MinMaxScaler(clip=True)
    num = make_pipeline(SimpleImputer(strategy="median"), scale) if impute else scale
    return ColumnTransformer([
        ("num", num, ["age", "income"]),
        ("cat", OneHotEncoder(handle_unknown="ignore", drop=drop), ["city", "member"]),
    ], remainder=remainder)


def _models() -> dict[str, Any]:
    from sklearn.ensemble import (
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    def pipe(pre: Any, est: Any) -> Any:
        return Pipeline([("pre", pre), ("model", est)])

    return {
        "gb-binary": ("binary", pipe(_pre(), GradientBoostingClassifier(n_estimators=40, random_state=0))),
        "gb-multiclass": ("multi", pipe(_pre(remainder="passthrough"),
                                        GradientBoostingClassifier(n_estimators=20, max_depth=4, random_state=0))),
        "gb-regressor": ("reg", pipe(_pre(impute=True), GradientBoostingRegressor(n_estimators=50, random_state=0))),
        "forest": ("reg", pipe(_pre(drop="first"), RandomForestRegressor(n_estimators=15, random_state=0))),
        "extra-trees": ("reg", pipe(_pre(scaler="minmax"), ExtraTreesRegressor(n_estimators=10, random_state=0))),
        "tree-classifier": ("multi", pipe(_pre(), DecisionTreeClassifier(max_depth=6, random_state=0))),
        "forest-classifier": ("multi", pipe(_pre(), RandomForestClassifier(n_estimators=12, random_state=0))),
        "hist-gb-binary": ("binary", pipe(_pre(), HistGradientBoostingClassifier(max_iter=40, random_state=0))),
        "hist-gb-multiclass": ("multi", pipe(_pre(), HistGradientBoostingClassifier(max_iter=15, random_state=0))),
        "hist-gb-regressor-nan": ("reg-num", HistGradientBoostingRegressor(max_iter=40, random_state=0)),
        "ridge": ("reg", pipe(_pre(impute=True), Ridge(alpha=0.5))),
        "logistic": ("binary", pipe(_pre(scaler="minmax"), LogisticRegression(max_iter=500))),
        "scaler-ridge-on-numbers": ("reg-num", make_pipeline(StandardScaler(), Ridge())),
        "linear-on-numbers": ("reg-num", LinearRegression()),
    }


def _target(kind: str, X: Any) -> Any:
    score = X["age"] / 10 + (X["city"] == "nice") * 2 + X["tenure"] / 3 + X["member"] * 1.5
    if kind == "binary":
        return (score > score.median()).astype(int)
    if kind == "multi":
        return np.asarray(["low", "mid", "high"])[np.digitize(score, np.quantile(score, [0.33, 0.66]))]
    return score * 100.0


def _columns(X: Any) -> list[Column]:
    types = {"int64": "long", "float64": "double", "bool": "boolean"}
    return [Column(str(c), types.get(str(t), "string")) for c, t in X.dtypes.items()]


def _merged(X: Any) -> dict[str, list]:
    return {c: [None if isinstance(v, float) and v != v else v for v in X[c].tolist()] for c in X.columns}


@pytest.mark.parametrize("name", list(_models()))
def test_program_predicts_what_the_model_predicts(name: str) -> None:
    kind, model = _models()[name]
    numeric_only = kind == "reg-num"
    imputes = name in ("gb-regressor", "ridge", "hist-gb-regressor-nan")  # trained with nulls in income
    train = _frame(600, seed=1, nulls=imputes)
    if numeric_only:
        train = train[["age", "income", "tenure"]]
    model.fit(train, _target(kind.split("-")[0], _frame(600, seed=1)))
    program = Program.load(_saved(compile_model(model)))
    fresh = _frame(500, seed=99, nulls=imputes)
    fresh.loc[:3, "city"] = "unseen-city"  # categories never seen in training
    if numeric_only:
        fresh = fresh[["age", "income", "tenure"]]
        fresh = fresh if imputes else fresh.fillna(1.0)
    cols = _columns(train)
    for rows in (fresh.head(1), fresh.head(37), fresh):
        merged = _merged(rows)
        want = np.asarray(model.predict(build_frame(cols, merged)))
        got = program.predict(build_table(cols, merged))
        assert got.shape == want.shape
        if want.dtype.kind == "f" and name in ("ridge", "scaler-ridge-on-numbers", "linear-on-numbers"):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
        else:  # trees and labels: identical
            assert np.array_equal(got, want), f"{name}: {np.flatnonzero(got != want)[:5]}"
    if not imputes:  # nulls the model was not trained with: the program refuses or predicts them as it does
        merged = _merged(_frame(5, seed=5, nulls=True).iloc[:, :len(cols)].assign(income=np.nan))
        try:
            want = np.asarray(model.predict(build_frame(cols, merged)))
        except ValueError:
            with pytest.raises(ValueError):
                program.predict(build_table(cols, merged))
        else:  # forests send a missing value to a fitted side
            assert np.array_equal(program.predict(build_table(cols, merged)), want)


def _saved(program: Program) -> Path:
    import tempfile

    folder = Path(tempfile.mkdtemp()) / PROGRAM_DIR
    program.save(folder)
    return folder


def test_boosting_raw_scores_are_bit_for_bit() -> None:
    from sklearn.ensemble import GradientBoostingRegressor

    X = _frame(800, seed=3)[["age", "income", "tenure"]]
    model = GradientBoostingRegressor(n_estimators=200, learning_rate=0.07, random_state=0)
    model.fit(X, _target("reg", _frame(800, seed=3)))
    fresh = _frame(300, seed=4)[["age", "income", "tenure"]]
    got = compile_model(model).predict(build_table(_columns(X), _merged(fresh)))
    want = model.predict(fresh)
    assert got.dtype == want.dtype == np.float64
    assert got.tobytes() == want.tobytes()


def test_unsupported_parts_are_named_and_nothing_is_written(tmp_path: Path, training_frame: Any) -> None:
    from conftest import _pipeline, _write_bundle
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.preprocessing import FunctionTransformer

    X = training_frame
    y = (X["age"] > 40).astype(int)
    model = _pipeline(GradientBoostingClassifier(n_estimators=5, random_state=0))
    model.steps.insert(0, ("log", FunctionTransformer(lambda d: d)))
    model.fit(X, y)
    bundle = _write_bundle(tmp_path / "b", model, X, "custom", serialization_format="cloudpickle")
    outcome = write_program(model, bundle / "model", json.loads((bundle / "profile.json").read_text()))
    assert outcome == {"compiled": False, "reason": "FunctionTransformer is not among the compiled steps"}
    assert not (bundle / "model" / PROGRAM_DIR).exists()
    assert write_program(model.fit(X, y), bundle / "model", None, predict_fn="predict_proba")["compiled"] is False


def test_a_program_that_disagrees_is_refused(classifier_bundle: Path, training_frame: Any) -> None:
    from conftest import _pipeline
    from sklearn.ensemble import GradientBoostingClassifier

    X = training_frame
    model = _pipeline(GradientBoostingClassifier(n_estimators=15, random_state=0)).fit(
        X, ((X["age"] > 45) ^ (X["city"] == "nice")).astype(int))
    program = compile_model(model)
    bundle = read_bundle(classifier_bundle)
    batches = [generated_columns(bundle.columns, bundle.profile, 500)]
    assert prove(program, model.predict, bundle, batches) == 500
    trees = program.root.steps[-1]
    trees.value = -trees.value  # a compiler bug: the leaves' sign lost
    with pytest.raises(Mismatch, match="row"):
        prove(program, model.predict, bundle, batches)


def test_generated_rows_pass_the_servers_validation(classifier_bundle: Path) -> None:
    bundle = read_bundle(classifier_bundle)
    cols = generated_columns(bundle.columns, bundle.profile, 300)
    checked, flags = Validator(bundle).check(Frame(cols, 300))
    assert set(checked) == {c.name for c in bundle.columns}
    assert any(f["field"] == "city" for f in flags)  # the unseen category is in there
    assert None in checked["income"]  # training had nulls in income


# -- the server runs the program ---------------------------------------------------


@pytest.fixture(scope="module")
def program_bundle(classifier_bundle: Path, tmp_path_factory: Any) -> Path:
    import shutil

    from nbdeploy.serve.model import load_model

    root = tmp_path_factory.mktemp("prog") / "bundle"
    shutil.copytree(classifier_bundle, root)
    model = load_model(read_bundle(root))  # the library model: no program yet
    assert model.program is None
    estimator = model.predict.__self__
    outcome = write_program(estimator, root / "model", json.loads((root / "profile.json").read_text()))
    assert outcome["compiled"] is True and outcome["rows"] > 2000
    from conftest import seal_bundle

    seal_bundle(root, json.loads((root / "nbdeploy.json").read_text()))  # as the build seals it
    return root


def _library_predict(bundle: Path) -> Any:
    import os

    from nbdeploy.serve.model import load_model

    os.environ["NBDEPLOY_PROGRAM"] = "0"
    try:
        model = load_model(read_bundle(bundle))
    finally:
        del os.environ["NBDEPLOY_PROGRAM"]
    assert model.program is None and model.program_note == "NBDEPLOY_PROGRAM=0"
    return model.predict


def test_server_answers_from_the_program_without_scikit_learn(program_bundle: Path, tmp_path: Path,
                                                              client_for: Any) -> None:
    import concurrent.futures

    from conftest import Client, start

    handle = start(program_bundle, tmp_path)
    try:
        c = client_for(handle)
        status, _, meta = c.get("/metadata")
        assert status == 200 and meta["program"]["used"] is True and meta["program"]["checked_rows"] > 2000
        assert meta["model"].endswith("(compiled program)")
        maps = Path(f"/proc/{handle.pid}/maps").read_text()
        assert "/sklearn/" not in maps and "/scipy/" not in maps and "/pandas/" not in maps

        bundle = read_bundle(program_bundle)
        rows = generated_columns(bundle.columns, bundle.profile, 120, seed=11)
        merged, _ = Validator(bundle).check(Frame(rows, 120))
        want = _library_predict(program_bundle)(build_frame(bundle.columns, merged)).tolist()

        records = [{k: rows[k][i] for k in rows} for i in range(120)]
        status, _, body = c.post("/invocations", {"dataframe_records": records})
        assert status == 200 and body["predictions"] == want
        names = list(rows)
        status, _, body = c.post("/invocations", {"dataframe_split": {
            "columns": names, "data": [[rows[k][i] for k in names] for i in range(120)]}})
        assert status == 200 and body["predictions"] == want
        status, _, body = c.post("/invocations", {"dataframe_records": [{**records[0], "age": "old"}]})
        assert status == 422 and body["errors"][0]["field"] == "age"

        def one(i: int) -> tuple[int, Any]:  # distinct rows from many clients at once, through the batcher
            client = Client(handle.url)
            try:
                return i, client.post("/invocations", {"dataframe_records": [records[i]]})[2]["predictions"]
            finally:
                client.close()

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            for i, got in pool.map(one, range(120)):
                assert got == [want[i]], i
    finally:
        handle.stop()


def test_program_can_be_turned_off(program_bundle: Path, tmp_path: Path, client_for: Any) -> None:
    from nbdeploy.serve import ServeConfig, launch

    handle = launch(program_bundle, ServeConfig(port=0, log_path=""), env={**__import__("os").environ,
                                                                          "NBDEPLOY_PROGRAM": "0"})
    try:
        status, _, meta = client_for(handle).get("/metadata")
        assert meta["program"] == {"used": False, "why": "NBDEPLOY_PROGRAM=0"}
        assert "/sklearn/" in Path(f"/proc/{handle.pid}/maps").read_text()
    finally:
        handle.stop()


def test_object_labels_come_back_as_the_models_own_strings() -> None:
    from sklearn.linear_model import LogisticRegression

    X = _frame(300, seed=8)[["age", "income", "tenure"]]
    y = np.asarray(_target("multi", _frame(300, seed=8)), dtype=object)
    model = LogisticRegression(max_iter=1000).fit(X, y)
    assert model.classes_.dtype == object
    program = Program.load(_saved(compile_model(model)))
    fresh = _frame(50, seed=9)[["age", "income", "tenure"]]
    got = program.predict(build_table(_columns(X), _merged(fresh)))
    want = model.predict(fresh)
    assert got.dtype == object and got.tolist() == want.tolist()


@pytest.mark.parametrize("rows", [1, 2, 3, 7, 64, 1000])
@pytest.mark.parametrize("width", [1, 3])
def test_tree_sums_are_added_in_tree_order(rows: int, width: int) -> None:
    """in_order_sum is the left-to-right sum, not numpy's pairwise one: on terms of very
    different sizes the two round differently, so an unordered sum would show here."""
    from nbdeploy.serve.program import in_order_sum

    rng = np.random.default_rng(rows * 10 + width)
    terms = rng.normal(size=(301, rows, width)) * 10.0 ** rng.integers(-8, 9, size=(301, rows, width))
    want = terms[0].copy()
    for t in terms[1:]:
        want = want + t
    assert in_order_sum(terms).tobytes() == want.tobytes()
    assert in_order_sum(terms[:, :, 0]).tobytes() == want[:, 0].tobytes()


def test_one_hot_with_drop_and_unknown_error_behaves_as_scikit_learn() -> None:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    X = pd.DataFrame({"city": ["paris", "lyon", "nice", "lille"] * 20, "plan": ["a", "b"] * 40})
    y = (X["city"] == "nice").astype(int)
    model = make_pipeline(OneHotEncoder(drop="first", handle_unknown="error"), LogisticRegression()).fit(X, y)
    program = compile_model(model)
    cols = _columns(X)
    merged = {"city": ["lyon", "paris", "nice", "lille"], "plan": ["b", "a", "a", "b"]}
    assert np.array_equal(program.predict(build_table(cols, merged)), model.predict(build_frame(cols, merged)))
    merged["city"][2] = "rome"
    with pytest.raises(ValueError, match="rome"):
        model.predict(build_frame(cols, merged))
    with pytest.raises(ValueError, match="unknown categories \\['rome'\\] in column 0"):
        program.predict(build_table(cols, merged))


def _edge_rows(model: Any, X: Any, seed: int) -> Any:
    """Rows at, just below and just above every threshold the trees test (in float32), with
    signed zeros and random values: where a wrong comparison would pick another leaf."""
    import pandas as pd

    trees = list(np.ravel(getattr(model, "estimators_", [model])))
    cols: list[list[float]] = [[] for _ in X.columns]
    for tree in trees:
        t = tree.tree_
        for f, thr in zip(t.feature, t.threshold, strict=True):
            if f >= 0:
                t32 = np.float32(thr)
                cols[f] += [float(t32), float(np.nextafter(t32, np.float32(-np.inf))),
                            float(np.nextafter(t32, np.float32(np.inf))), thr]
    rng = np.random.default_rng(seed)
    n = max(len(c) for c in cols) + 40
    data = {}
    for j, name in enumerate(X.columns):
        base = np.asarray(cols[j] + [0.0, -0.0], dtype=np.float64)
        extra = rng.choice(X[name].to_numpy(np.float64), n - len(base))
        data[name] = rng.permutation(np.concatenate([base, extra]))
    return pd.DataFrame(data)


@pytest.mark.parametrize("name", ["gb-depth3", "gb-multiclass-depth3", "forest-classifier-8-leaves",
                                  "gb-multiclass-depth5", "tree-depth6", "extra-trees-16-leaves"])
def test_leaf_masks_find_the_leaves_the_walk_finds(name: str) -> None:
    """Trees of up to 64 leaves find their leaves from bit masks (8, 16, 32 and 64 bits per tree
    here; of 8, the byte looks the term up); on values at each threshold, and on more rows than
    one block of the masks' path, both ways give scikit-learn's predictions bit for bit."""
    import pandas as pd
    from sklearn.ensemble import (
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
    )
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.default_rng(7)
    X = pd.DataFrame({"a": rng.normal(0, 1, 700), "b": rng.integers(-3, 4, 700).astype(np.float64),
                      "c": rng.exponential(2, 700) - 1})
    score = X["a"] * 2 + X["b"] - X["c"] ** 2
    model, bits = {
        "gb-depth3": (GradientBoostingRegressor(n_estimators=30, random_state=0), 8),
        "gb-multiclass-depth3": (GradientBoostingClassifier(n_estimators=12, random_state=0), 8),
        "forest-classifier-8-leaves": (RandomForestClassifier(n_estimators=9, max_leaf_nodes=8, random_state=0), 8),
        "gb-multiclass-depth5": (GradientBoostingClassifier(n_estimators=8, max_depth=5, random_state=0), 32),
        "tree-depth6": (DecisionTreeRegressor(max_depth=6, random_state=0), 64),
        "extra-trees-16-leaves": (ExtraTreesRegressor(n_estimators=6, max_leaf_nodes=16, random_state=0), 16),
    }[name]
    y = np.digitize(score, np.quantile(score, [0.3, 0.7])) if "class" in name else score
    model.fit(X, y)
    program = Program.load(_saved(compile_model(model)))
    trees = program.root if not hasattr(program.root, "steps") else program.root.steps[-1]
    assert trees._masks is not None and trees._masks.dtype.itemsize * 8 == bits
    assert (trees._bit_terms is not None) == (bits == 8)
    fresh = _edge_rows(model, X, seed=1)
    fresh = pd.concat([fresh, X.sample(5000 - len(fresh), replace=True, random_state=2)], ignore_index=True)
    table = build_table(_columns(X), _merged(fresh))
    want = np.asarray(model.predict(fresh))
    by_masks = program.predict(table)
    few = build_table(_columns(X), _merged(fresh.head(200)))  # a request's rows: all features searched at once
    assert program.predict(few).tobytes() == want[:200].tobytes()
    trees._masks = None  # the level-by-level walk
    by_walk = program.predict(table)
    assert by_masks.tobytes() == want.tobytes()
    assert by_walk.tobytes() == want.tobytes()


@pytest.mark.parametrize("unknown", ["ignore", "error"])
def test_a_coded_text_column_is_one_hot_encoded_as_its_values(unknown: str) -> None:
    """Batch scoring hands text columns over as distinct values and row indices (Coded): the
    program answers as with the plain object array, and names the same unknown category."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from nbdeploy.serve.program import Coded, Table

    X = _frame(400, seed=5)[["age", "city"]]
    model = Pipeline([("pre", ColumnTransformer([("cat", OneHotEncoder(handle_unknown=unknown), ["city"])],
                                                remainder="passthrough")),
                      ("gb", GradientBoostingClassifier(n_estimators=5, random_state=0))]).fit(X, X["age"] > 40)
    program = Program.load(_saved(compile_model(model)))
    values = np.array(["lille", "nice", "rome", "paris", "lyon"], dtype=object)  # "rome": not in training
    codes = np.array([0, 1, 3, 4, 4, 1, 0], dtype=np.intp)  # no row is "rome"
    age = np.arange(30, 37, dtype=np.int64)
    coded = program.predict(Table(["age", "city"], [age, Coded(values, codes)]))
    plain = program.predict(Table(["age", "city"], [age, values.take(codes)]))
    assert coded.tobytes() == plain.tobytes()
    assert coded.tolist() == model.predict(pd.DataFrame({"age": age, "city": values.take(codes)})).tolist()
    codes[4] = 2  # now a row is "rome"
    if unknown == "error":
        with pytest.raises(ValueError) as coded_error:
            program.predict(Table(["age", "city"], [age, Coded(values, codes)]))
        with pytest.raises(ValueError) as plain_error:
            program.predict(Table(["age", "city"], [age, values.take(codes)]))
        assert str(coded_error.value) == str(plain_error.value) and "'rome'" in str(coded_error.value)
    else:
        coded = program.predict(Table(["age", "city"], [age, Coded(values, codes)]))
        assert coded.tobytes() == program.predict(Table(["age", "city"], [age, values.take(codes)])).tobytes()
