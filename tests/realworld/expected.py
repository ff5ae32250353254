"""The corpus' expected outcomes: each notebook -> "verified" or the exact one-line message.

``kind``, ``libraries`` and ``model`` feed the README's "Works with" table
(``python tests/realworld/works_with.py``); ``note`` is text the build must say about a
bundle that verifies (inputs computed in the notebook, not by the model).
"""

from __future__ import annotations

from typing import NamedTuple

VERIFIED = "verified"


class Case(NamedTuple):
    outcome: str  # VERIFIED, or the error's exact message
    kind: str  # what the notebook does, as the README's table says it
    libraries: str
    model: str
    note: str = ""  # for a verified bundle: what the build must warn about


_HINT = ("keep the rows the model is fitted on in a variable such as X_train, or pass `--example EXPR` to nbdeploy "
         "build or `%deploy model reg --example EXPR`")
_COMPUTED = "are computed in the notebook"

CORPUS: dict[str, Case] = {
    "csv_header_none_names": Case(VERIFIED, "`read_csv(header=None, names=...)`, train/test split", "pandas, scikit-learn",
                                  "LinearRegression"),
    "csv_sep_index_col": Case(VERIFIED, "`read_csv(sep=';', index_col=...)` from `../data/raw`", "pandas, scikit-learn",
                              "RandomForestRegressor"),
    "csv_usecols_dtype": Case(VERIFIED, "`read_csv(usecols=..., dtype=...)`", "pandas, scikit-learn",
                              "LogisticRegression"),
    "csv_parse_dates": Case(VERIFIED, "`read_csv(parse_dates=...)`, time-based split", "pandas, scikit-learn",
                            "DecisionTreeRegressor"),
    "path_variables": Case(VERIFIED, "paths built in variables (`Path.cwd().parent / 'data'`, `os.path.join`)",
                           "pandas, scikit-learn", "Ridge"),
    "read_excel": Case(VERIFIED, "`pd.read_excel(sheet_name=...)`", "pandas, openpyxl, scikit-learn", "Lasso"),
    "read_parquet": Case(VERIFIED, "`pd.read_parquet`", "pandas, pyarrow, scikit-learn", "KNeighborsRegressor"),
    "read_json_lines": Case(VERIFIED, "`pd.read_json(lines=True)`", "pandas, scikit-learn",
                            "GradientBoostingRegressor"),
    "hist_gradient_boosting_category": Case(VERIFIED, "`astype('category')` columns, `categorical_features='from_dtype'`",
                                            "pandas, scikit-learn", "HistGradientBoostingClassifier"),
    "sklearn_iris_frame": Case(VERIFIED, "`sklearn.datasets` loader, `as_frame=True` (no file)", "scikit-learn",
                               "SVC"),
    "sklearn_diabetes_numpy": Case(VERIFIED, "`sklearn.datasets` loader, numpy arrays without column names",
                                   "scikit-learn, numpy", "ElasticNet (inputs `x0`...`x9`)"),
    "numpy_values": Case(VERIFIED, "`model.fit(X.values, y)`", "pandas, scikit-learn",
                         "RandomForestClassifier (inputs named after `X`)"),
    "numpy_no_match": Case(
        "no example input for reg: it was fitted on 3 columns without names, and the notebook holds no numeric "
        f"array or DataFrame of 3 columns ({_HINT})",
        "a model fitted on an array built inline (no variable holds its rows)", "numpy, scikit-learn",
        "LinearRegression: pass `--example EXPR`"),
    "pipeline_column_transformer": Case(VERIFIED, "`Pipeline` + `ColumnTransformer` (scaling, one-hot)",
                                        "pandas, scikit-learn", "Pipeline(LogisticRegression)"),
    "column_selector_stacking": Case(VERIFIED, "`make_column_selector(dtype_include=object)`, `StackingClassifier` "
                                     "(scikit-learn's own examples)", "pandas, scikit-learn",
                                     "Pipeline(StackingClassifier)"),
    "grid_search_best_estimator": Case(VERIFIED, "`GridSearchCV` over a pipeline, `best_estimator_` kept",
                                       "pandas, scikit-learn", "the search's `best_estimator_` (SVR pipeline)"),
    "randomized_search": Case(VERIFIED, "`RandomizedSearchCV` with scipy distributions", "pandas, scipy, scikit-learn",
                              "the search's `best_estimator_` (ExtraTreesClassifier)"),
    "models_in_a_dict": Case(
        "the notebook holds several fitted models: models['boosting'] (GradientBoostingClassifier), models['forest'] "
        "(RandomForestClassifier), models['logreg'] (LogisticRegression) (choose one with `%deploy model VAR` in the "
        "notebook or `--model VAR`; right after this, --model \"models['boosting']\" / \"models['forest']\" / "
        "\"models['logreg']\" reuses this run instead of running the notebook again)",
        "models compared in a dict (`for name, model in models.items(): model.fit(X, y)`)", "pandas, scikit-learn",
        "none: the message names each as `models['forest']`, which `--model` takes"),
    "several_models": Case(
        "the notebook holds several fitted models: linear (LinearRegression), ridge (Ridge), tree "
        "(DecisionTreeRegressor) (choose one with `%deploy model VAR` in the notebook or `--model VAR`; right "
        "after this, --model linear / ridge / tree reuses this run instead of running the notebook again)",
        "several models compared in one notebook", "pandas, scikit-learn", "choose one with `--model VAR`"),
    "xgboost_sklearn_api": Case(VERIFIED, "XGBoost, scikit-learn API", "pandas, xgboost", "XGBClassifier"),
    "xgboost_native_booster": Case(VERIFIED, "XGBoost `xgb.train` on a `DMatrix` of a numpy array", "pandas, xgboost",
                                   "Booster (inputs named after `X`)"),
    "lightgbm_sklearn_api": Case(VERIFIED, "LightGBM, scikit-learn API", "pandas, lightgbm", "LGBMRegressor"),
    "lightgbm_native_booster": Case(VERIFIED, "LightGBM `lgb.train` on `.values` arrays", "pandas, lightgbm",
                                    "Booster (inputs `Column_0`...)"),
    "statsmodels_ols": Case(VERIFIED, "statsmodels `sm.OLS(y, sm.add_constant(X)).fit()`", "pandas, statsmodels",
                            "OLS results (callers send `const`)",
                            note=f"inputs const {_COMPUTED} (cell 1: X = sm.add_constant("),
    "statsmodels_formula": Case(VERIFIED, "statsmodels formula API (`smf.ols('price ~ area + np.log(rooms) + C(city)')`)",
                                "numpy, pandas, statsmodels", "OLS results (takes the raw columns)"),
    "statsmodels_arrays": Case(VERIFIED, "statsmodels `sm.GLM` on numpy arrays", "numpy, scikit-learn, statsmodels",
                               "GLM results (inputs `const`, `x1`...)"),
    "lightgbm_category_dtype": Case(VERIFIED, "`astype('category')` columns, early stopping on a validation set",
                                    "lightgbm, pandas", "LGBMClassifier (the category's codes served as trained)"),
    "xgboost_enable_categorical": Case(VERIFIED, "`astype('category')` with `enable_categorical=True`",
                                       "pandas, xgboost", "XGBClassifier (the category's codes served as trained)"),
    "mlflow_autolog": Case(VERIFIED, "`mlflow.autolog()` in the notebook", "mlflow, pandas, scikit-learn",
                           "RandomForestRegressor"),
    "mlflow_log_model": Case(VERIFIED, "`mlflow.sklearn.log_model` in the notebook", "mlflow, pandas, scikit-learn",
                             "LogisticRegression"),
    "joblib_dump": Case(VERIFIED, "`joblib.dump` of the model", "joblib, pandas, scikit-learn", "GaussianNB"),
    "pickle_dump": Case(VERIFIED, "`pickle.dump` of the model", "pandas, scikit-learn", "LinearRegression"),
    "engineered_assign": Case(VERIFIED, "features from `df.assign(...)` outside the model", "pandas, scikit-learn",
                              "LinearRegression (callers send the computed columns)",
                              note=f"inputs area_per_room, is_new {_COMPUTED} (cell 1: df = df.assign("),
    "engineered_get_dummies": Case(VERIFIED, "features from `pd.get_dummies` outside the model", "pandas, scikit-learn",
                                   "RandomForestClassifier (callers send the dummy columns)",
                                   note=f"inputs plan_basic, plan_plus, plan_pro {_COMPUTED} (cell 1: X = pd.get_dummies("),
    "engineered_in_pipeline": Case(VERIFIED, "the same steps inside a `Pipeline` (`FunctionTransformer`, one-hot)",
                                   "numpy, pandas, scikit-learn", "Pipeline(Ridge): takes the raw columns"),
    "non_english": Case(VERIFIED, "French, Japanese and Chinese comments and outputs, accented names",
                        "pandas, scikit-learn", "LogisticRegression"),
    "missing_kernelspec": Case(VERIFIED, "no kernelspec in the notebook's metadata", "pandas, scikit-learn",
                               "LinearRegression"),
    "custom_step_helper_module": Case(VERIFIED, "a custom transformer from a helper module beside the notebook, first in "
                                      "a `Pipeline` fitted on `X_tr`", "numpy, pandas, scikit-learn",
                                      "Pipeline(Ridge): the helper module ships as project code"),
    "helper_package": Case(VERIFIED, "a helper package beside the notebook (`from housing_steps.steps import ...`)",
                           "numpy, pandas, scikit-learn", "Pipeline(Ridge): the package ships whole"),
    "cookiecutter_src_package": Case(VERIFIED, "cookiecutter-data-science layout: `sys.path.append('..')`, "
                                     "`from src.features import ...`, `%autoreload 2`", "numpy, pandas, scikit-learn",
                                     "Pipeline(Ridge): `src/` ships with the model"),
    "custom_step_in_notebook": Case(
        "the model holds types that cannot be loaded safely: __main__.LogArea (defined in the notebook itself) "
        "(define custom classes in a helper .py module beside the notebook and import them)",
        "the same transformer class defined in a cell", "numpy, pandas, scikit-learn",
        "none: move the class to a helper module"),
    "custom_step_pandas_state": Case(
        "skops cannot store the model: model.steps[0][1].medians_ (in houses_impute.MedianFill) is a pandas.Series, "
        "and skops stores no pandas objects (keep fitted attributes as NumPy arrays, numbers, lists or dicts: e.g. "
        "X.mean().to_numpy() instead of X.mean(), list(X.columns) instead of X.columns)",
        "a custom imputer that keeps its medians as a pandas Series (`self.medians_ = X.median()`)",
        "pandas, scikit-learn", "none: the message names the attribute and says to keep NumPy arrays"),
    "colab_pip_install": Case(VERIFIED, "Colab-style `!pip install -q ...` and `%pip install --upgrade ...` cells, "
                              "`%matplotlib inline`, a `%%time` cell", "pandas, scikit-learn",
                              "BayesianRidge (the install lines are checked, not run)"),
    "colab_pip_missing": Case(
        "cell 0 ('!pip install -q catboost') raised UsageError: catboost is not installed, and nbdeploy's runs "
        "do not run `pip install` lines (a run installs nothing into the environment it runs in): install "
        "catboost into the kernel's environment, then try again",
        "`!pip install` of a package the environment lacks", "catboost", "none: the message names the package"),
    "text_tfidf_series": Case(VERIFIED, "text classification: `TfidfVectorizer` + `LogisticRegression` fitted on "
                              "`df['review']` (a Series, not a frame)", "pandas, scikit-learn",
                              "Pipeline(LogisticRegression): served on a `review` column",
                              note="text_clf was fitted on one column (X_train, a Series)"),
    "display_and_plots": Case(VERIFIED, "`display()`, matplotlib and `df.plot` cells", "matplotlib, pandas, scikit-learn",
                              "LinearRegression"),
    "failing_cell": Case("cell 2 ('X = df[[\"area\", \"room\"]]') raised KeyError: \"['room'] not in index\"",
                         "a cell that raises", "pandas", "none: the message names the cell"),
    "missing_data_file": Case("cell 1 ('df = pd.read_csv(\"../data/houses_2024.csv\")') raised FileNotFoundError: "
                              "[Errno 2] No such file or directory: '../data/houses_2024.csv'",
                              "a data file that is not there", "pandas", "none: the message names the cell and file"),
}

#: built and then verified the slow way too (a fresh venv from the bundle's lock): one per
#: way a model is saved and served (see the docstring of test_corpus.py)
FULL_VERIFY = ("pipeline_column_transformer", "lightgbm_native_booster", "statsmodels_ols",
               "cookiecutter_src_package")
