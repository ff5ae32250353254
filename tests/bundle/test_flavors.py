"""XGBoost, LightGBM (sklearn API and native Booster), GridSearchCV found automatically,
and an arbitrary object with predict() through the MLflow pyfunc wrapper.

Each bundle is built from a real papermill run of a small fixture notebook and served
by its own ``nbdeploy_serve`` (with this interpreter, which has these libraries), and
the bundle's own tests run against it: golden predictions included.
"""

from __future__ import annotations

import json

import pytest
import yaml

from nbdeploy.bundle import build_bundle

from .conftest import READ, make_notebook, serve_and_test

pytestmark = pytest.mark.slow

XGB = ("import xgboost as xgb\n"
       "xgb_clf = xgb.XGBClassifier(n_estimators=15, max_depth=3).fit(X, df['y'])\n"
       "booster = xgb.train({'max_depth': 3, 'objective': 'reg:squarederror'},\n"
       "                    xgb.DMatrix(X, label=df['t']), num_boost_round=15)")
LGB = ("import lightgbm as lgb\n"
       "lgb_reg = lgb.LGBMRegressor(n_estimators=15, verbose=-1).fit(X, df['t'])\n"
       "lgb_booster = lgb.train({'objective': 'binary', 'verbose': -1},\n"
       "                        lgb.Dataset(X, label=df['y']), num_boost_round=15)")


@pytest.fixture(scope="module")
def xgb_nb(fixture_dir):
    return make_notebook(fixture_dir / "xgb_models.ipynb", READ, XGB,
                         "%deploy model xgb_clf --example X.head(8)")


@pytest.fixture(scope="module")
def lgb_nb(fixture_dir):
    return make_notebook(fixture_dir / "lgb_models.ipynb", READ, LGB,
                         "%deploy model lgb_reg --example X.head(8)")


def _check(result, flavor: str, model_class: str) -> dict:
    manifest = json.loads((result.bundle / "nbdeploy.json").read_text())
    assert manifest["model"]["flavor"] == flavor
    assert manifest["model"]["class"] == model_class
    ok, out = serve_and_test(result.bundle)
    assert ok, out
    return yaml.safe_load((result.bundle / "model" / "MLmodel").read_text())


def test_xgboost_sklearn_api(xgb_nb, fixture_dir):
    r = build_bundle(xgb_nb, output=fixture_dir / "xgb-sk")
    mlmodel = _check(r, "xgboost", "xgboost.sklearn.XGBClassifier")
    assert mlmodel["flavors"]["xgboost"]["model_format"] == "ubj"
    assert "xgboost==" in (r.bundle / "requirements.txt").read_text()


def test_xgboost_native_booster_with_training_rows_as_example(xgb_nb, fixture_dir):
    r = build_bundle(xgb_nb, output=fixture_dir / "xgb-booster", model="booster")
    _check(r, "xgboost", "xgboost.core.Booster")
    golden = json.loads((r.bundle / "tests" / "golden.json").read_text())
    # the rows come from the kernel's own frame X (the training rows), not from re-reading the file
    assert golden["source"] == "first 10 rows of X"
    assert golden["columns"] == ["a", "b", "c"]
    import pandas as pd

    want = pd.read_csv(fixture_dir / "data.csv")[["a", "b", "c"]].head(10).values.tolist()
    assert golden["data"] == [pytest.approx(row, rel=1e-9) for row in want]


def test_lightgbm_sklearn_api(lgb_nb, fixture_dir):
    r = build_bundle(lgb_nb, output=fixture_dir / "lgb-sk")
    mlmodel = _check(r, "lightgbm", "lightgbm.sklearn.LGBMRegressor")
    assert mlmodel["flavors"]["lightgbm"]["serialization_format"] == "skops"


def test_lightgbm_native_booster(lgb_nb, fixture_dir):
    r = build_bundle(lgb_nb, output=fixture_dir / "lgb-booster", model="lgb_booster")
    mlmodel = _check(r, "lightgbm", "lightgbm.basic.Booster")
    assert mlmodel["flavors"]["lightgbm"]["data"] == "model.lgb"


def test_grid_search_found_without_deploy_model(fixture_dir):
    nb = make_notebook(fixture_dir / "search.ipynb", READ,
                       "from sklearn.linear_model import Ridge\n"
                       "from sklearn.model_selection import GridSearchCV\n"
                       "search = GridSearchCV(Ridge(), {'alpha': [0.1, 1.0, 10.0]}, cv=3).fit(X, df['t'])")
    r = build_bundle(nb, output=fixture_dir / "search-bundle")
    manifest = json.loads((r.bundle / "nbdeploy.json").read_text())
    assert manifest["model"]["variable"] == "search"
    assert manifest["model"]["shipped"] == "search.best_estimator_"  # what the search predicts with
    _check(r, "sklearn", "sklearn.linear_model._ridge.Ridge")


def test_any_object_with_predict_through_pyfunc(fixture_dir):
    nb = make_notebook(fixture_dir / "custom.ipynb", READ,
                       "class Scaled:\n"
                       "    def __init__(self, k):\n"
                       "        self.k = k\n"
                       "    def predict(self, rows):\n"
                       "        return (rows['a'] * self.k + rows['b']).to_numpy()\n"
                       "model = Scaled(3.0)",
                       "%deploy model model --example X.head(5)")
    r = build_bundle(nb, output=fixture_dir / "custom-bundle")
    mlmodel = _check(r, "pyfunc", "__main__.Scaled")
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "mlflow.pyfunc.model"
    manifest = json.loads((r.bundle / "nbdeploy.json").read_text())
    assert "cloudpickle" in manifest["model"]["serialization"]
    lock = (r.bundle / "requirements.lock").read_text()
    assert "mlflow-skinny==" in lock and "\nmlflow==" not in lock
