"""Fast checks of model resolution and the skops trust policy (no kernel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbdeploy.base.errors import ModelError
from nbdeploy.bundle import models
from nbdeploy.bundle.savers import trusted_types


@pytest.fixture
def xy():
    X = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
    return X, X["a"] * 2 + X["b"]


def test_pipeline_parts_are_not_candidates(xy):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = xy
    ridge = Ridge()
    pipe = make_pipeline(StandardScaler(), ridge).fit(X, y)
    found = models.find_models({"pipe": pipe, "ridge": ridge, "_hidden": Ridge().fit(X, y),
                                "unfitted": Ridge(), "X": X})
    assert list(found) == ["pipe"]
    assert models.input_columns(pipe) == ["a", "b"]


def test_choose_lists_candidates(xy):
    from sklearn.linear_model import LinearRegression, Ridge

    X, y = xy
    ns = {"m1": Ridge().fit(X, y), "m2": LinearRegression().fit(X, y)}
    with pytest.raises(ModelError, match=r"m1 \(Ridge\), m2 \(LinearRegression\)"):
        models.choose_model(ns, None)
    assert models.choose_model(ns, "m2")[0] == "m2"


def test_models_in_containers_are_candidates_by_their_item(xy):
    from sklearn.linear_model import LinearRegression, Ridge

    X, y = xy
    a, b, c = Ridge().fit(X, y), LinearRegression().fit(X, y), Ridge(alpha=3).fit(X, y)
    # the loop's `model` is models['lin']; `first` is zoo[0]: a dict's item by name before a variable,
    # a variable before an item by position
    ns = {"models": {"ridge": a, "lin": b}, "model": b, "zoo": [c], "first": c, "nums": [1, 2], "empty": {}}
    assert sorted(models.find_models(ns)) == ["first", "models['lin']", "models['ridge']"]
    assert models.choose_model(ns, "models['ridge']") == ("models['ridge']", a)
    assert models.choose_model(ns, "zoo[0]")[1] is c
    for bad in ("models['nope']", "zoo[5]", "nums[0]()", "__import__('os')", "models[a]", "zoo[True]"):
        with pytest.raises(ModelError, match="no variable"):
            models.choose_model(ns, bad)
    assert [models.is_model_name(t) for t in ("m", "models['rf']", "models[0]", "m.best", "f()", "m[x]")] == [
        True, True, True, False, False, False]


def test_unfitted_and_unsupported():
    from sklearn.linear_model import Ridge

    with pytest.raises(ModelError, match="not fitted"):
        models.check_supported("r", Ridge())
    with pytest.raises(ModelError, match="no predict"):
        models.check_supported("x", object())
    assert models.flavor_of(type("P", (), {"predict": lambda self, x: x})()) == "pyfunc"


def test_trust_policy(tmp_path: Path):
    allowed = {"scikit-learn", "numpy"}
    assert trusted_types(["sklearn.tree._tree.Tree", "collections.OrderedDict"], allowed, tmp_path) == [
        "collections.OrderedDict", "sklearn.tree._tree.Tree"]
    with pytest.raises(ModelError, match="defined in the notebook itself"):
        trusted_types(["__main__.MyTransformer"], allowed, tmp_path)
    with pytest.raises(ModelError, match="which the notebook does not use"):
        trusted_types(["pandas.core.frame.DataFrame"], allowed, tmp_path)
    with pytest.raises(ModelError, match="builtins.eval"):
        trusted_types(["builtins.eval"], allowed, tmp_path)
    # the type `object` (a column selector's dtype) and a partial whose function is checked on its own
    assert trusted_types(["functools.partial", "sklearn.utils.validation.check_array", "builtins.object"], allowed,
                         tmp_path) == ["builtins.object", "functools.partial", "sklearn.utils.validation.check_array"]
    with pytest.raises(ModelError, match=r"os.system \(from os"):  # a partial of a dangerous function
        trusted_types(["functools.partial", "os.system"], allowed, tmp_path)


def test_the_frame_a_model_was_fitted_on_is_found_in_the_notebooks_code():
    """For a model that records neither its input names nor their number (a pipeline that starts
    with a custom transformer), the example rows are the frame the notebook passed to fit."""
    from nbdeploy.bundle.export import fit_argument

    cells = ["import pandas as pd",
             "model = Pipeline([('f', LogArea()), ('reg', Ridge())])\nmodel.fit(X_tr, y_tr)",
             "other = Ridge().fit(Z, y)\nmodel.score(X_te, y_te)"]
    assert fit_argument(cells, "model") == "X_tr"
    assert fit_argument(cells, "other") == "Z"  # the fit whose result the variable holds
    assert fit_argument([*cells, "model.fit(X=X_all, y=y_all)"], "model") == "X_all"  # the last fit wins
    assert fit_argument(["search = GridSearchCV(pipe, grid)\nsearch.fit(X_train.values, y_train)"],
                        "search") == "X_train"
    assert fit_argument(["model = make_pipeline(LogArea(), Ridge()).fit(df[cols], y)"], "model") is None
    assert fit_argument(["not python (", "pipe.fit(X, y)"], "model") is None
