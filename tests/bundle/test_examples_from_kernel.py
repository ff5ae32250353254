"""Notebooks in the shapes real ones take: the example rows come from the kernel's own
frames, so reads with options and paths held in variables build with no flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nbdeploy.bundle import build_bundle

from .conftest import make_notebook, serve_and_test

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose data lives in ../data/raw, as starter repositories lay it out."""
    root = tmp_path_factory.mktemp("realworld")
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(3)
    n = 240
    df = pd.DataFrame({"sepal_len": rng.normal(5.8, 0.8, n).round(2), "sepal_wid": rng.normal(3.0, 0.4, n).round(2),
                       "petal_len": rng.normal(3.7, 1.7, n).round(2)})
    df["target"] = (2 * df["sepal_len"] - df["petal_len"] + rng.normal(0, 0.1, n)).round(3)
    df.to_csv(raw / "headerless.csv", header=False, index=False)  # no header line: read with names=
    indexed = df.copy()
    indexed.insert(0, "id", [f"r{i}" for i in range(n)])
    indexed.loc[::17, "sepal_wid"] = np.nan  # an imputer has something to do
    indexed.to_csv(raw / "indexed.csv", sep=";", index=False)
    (root / "notebooks").mkdir()
    return root


def test_read_with_header_none_and_names_through_a_path_variable(raw_dir: Path) -> None:
    nb = make_notebook(
        raw_dir / "notebooks" / "regression.ipynb",
        'import pandas as pd\nfrom sklearn.model_selection import train_test_split\n'
        'from sklearn.linear_model import LinearRegression',
        'input_data = "../data/raw/headerless.csv"\n'
        'cols = ["sepal_len", "sepal_wid", "petal_len", "target"]\n'
        'df = pd.read_csv(input_data, header=None, names=cols)',
        'feature_cols = cols[:3]\nX = df[feature_cols]\ny = df["target"]\n'
        'X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)',
        "model = LinearRegression().fit(X_train, y_train)\nprint(model.score(X_test, y_test))",
    )
    result = build_bundle(nb)
    golden = json.loads((result.bundle / "tests" / "golden.json").read_text())
    assert golden["source"] == "first 10 rows of X_test"
    assert golden["columns"] == ["sepal_len", "sepal_wid", "petal_len"]
    # the lineage found the read although its path sat in a variable
    manifest = json.loads((result.bundle / "nbdeploy.json").read_text())
    assert manifest["training_data"]["relative_path"].endswith("data/raw/headerless.csv")
    ok, out = serve_and_test(result.bundle)
    assert ok, out


def test_grid_search_over_a_pipeline_on_a_frame_read_with_index_col_and_sep(raw_dir: Path) -> None:
    nb = make_notebook(
        raw_dir / "notebooks" / "svr.ipynb",
        'import pandas as pd\nfrom sklearn.compose import ColumnTransformer\n'
        'from sklearn.impute import SimpleImputer\nfrom sklearn.model_selection import GridSearchCV\n'
        'from sklearn.pipeline import Pipeline\nfrom sklearn.preprocessing import StandardScaler\n'
        'from sklearn.svm import SVR',
        'df = pd.read_csv("../data/raw/indexed.csv", sep=";", index_col="id")\n'
        'X = df.drop(columns="target")\ny = df["target"]',
        'pre = ColumnTransformer([("num", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]),\n'
        '                          list(X.columns))])\n'
        'search = GridSearchCV(Pipeline([("pre", pre), ("svr", SVR())]), {"svr__C": [0.5, 2.0]}, cv=3)\n'
        'search.fit(X, y)',
    )
    result = build_bundle(nb)
    golden = json.loads((result.bundle / "tests" / "golden.json").read_text())
    assert golden["source"] == "first 10 rows of X"
    assert golden["columns"] == ["sepal_len", "sepal_wid", "petal_len"]
    assert "id" not in golden["columns"]  # the index the read set is not an input
    ok, out = serve_and_test(result.bundle)
    assert ok, out
