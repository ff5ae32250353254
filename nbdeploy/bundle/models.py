"""What kind of model an object is, which one to ship, and what it needs.

Runs in the job kernel (called by :mod:`.export`). Libraries are looked up in
``sys.modules`` rather than imported: an object can only be an XGBoost model if
the notebook has imported xgboost.

Flavors, most specific first:

``xgboost``   ``xgboost.Booster`` or an ``xgboost.XGBModel`` (sklearn API)
``lightgbm``  ``lightgbm.Booster`` or a ``lightgbm.LGBMModel`` (sklearn API)
``sklearn``   any scikit-learn estimator with ``predict`` (pipelines, ``GridSearchCV``, ...)
``pyfunc``    any other object with a ``predict`` method, through an MLflow pyfunc wrapper
"""

from __future__ import annotations

import sys
from typing import Any

from nbdeploy.base.errors import ModelError

FLAVORS = ("xgboost", "lightgbm", "sklearn", "pyfunc")
_SCALARS = (str, bytes, int, float, bool, complex, type(None))


def _isinstance(obj: Any, module: str, *names: str) -> bool:
    mod = sys.modules.get(module)
    classes = tuple(c for c in (getattr(mod, n, None) for n in names) if isinstance(c, type))
    return bool(classes) and isinstance(obj, classes)


def flavor_of(obj: Any) -> str | None:
    """The MLflow flavor to save ``obj`` with, or None when it is not a model."""
    if _isinstance(obj, "xgboost", "Booster", "XGBModel"):
        return "xgboost"
    if _isinstance(obj, "lightgbm", "Booster", "LGBMModel"):
        return "lightgbm"
    if _isinstance(obj, "sklearn.base", "BaseEstimator") and callable(getattr(obj, "predict", None)):
        return "sklearn"
    if isinstance(obj, type) or not callable(getattr(obj, "predict", None)):
        return None
    return "pyfunc"


def _statsmodels_results(obj: Any) -> bool:
    """A fitted statsmodels model (``sm.OLS(y, X).fit()``): its results predict."""
    return _isinstance(obj, "statsmodels.base.wrapper", "ResultsWrapper") and callable(getattr(obj, "predict", None))


def is_fitted(obj: Any) -> bool:
    if _isinstance(obj, "xgboost", "Booster") or _isinstance(obj, "lightgbm", "Booster") \
            or _statsmodels_results(obj):
        return True
    if _isinstance(obj, "sklearn.base", "BaseEstimator"):
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        try:
            check_is_fitted(obj)
        except (NotFittedError, TypeError, AttributeError):
            return False
        return True
    return False


def _parts(obj: Any) -> list[Any]:
    """The sub-estimators of a fitted meta-estimator (pipeline steps, search results)."""
    out: list[Any] = []
    get_params = getattr(obj, "get_params", None)
    if callable(get_params):
        try:
            out.extend(get_params(deep=True).values())
        except Exception:
            pass
    for attr in ("best_estimator_", "estimators_", "named_transformers_", "steps"):
        value = getattr(obj, attr, None)
        if value is not None:
            out.extend(value if isinstance(value, list | tuple) else [value])
    return out


#: a dict, list or tuple of the notebook with at most this many items is searched for models
#: (``models = {"rf": ..., "lr": ...}`` fitted in a loop)
_MAX_CONTAINER_ITEMS = 100


def _is_model(obj: Any) -> bool:
    return (not isinstance(obj, type) and (flavor_of(obj) in ("xgboost", "lightgbm", "sklearn")
                                           or _statsmodels_results(obj)) and is_fitted(obj))


def _candidates(namespace: dict[str, Any]) -> dict[str, Any]:
    """Fitted models by the expression that names them: a variable, or one item of a dict, list
    or tuple variable (``models['rf']``, ``models[0]``)."""
    found = {}
    for name, obj in list(namespace.items()):
        if name.startswith("_"):
            continue
        if _is_model(obj):
            found[name] = obj
        elif isinstance(obj, dict | list | tuple) and 0 < len(obj) <= _MAX_CONTAINER_ITEMS:
            items = obj.items() if isinstance(obj, dict) else enumerate(obj)
            for key, value in items:
                if isinstance(key, str | int) and not isinstance(key, bool) and _is_model(value):
                    found[f"{name}[{key!r}]"] = value
    return found


def find_models(namespace: dict[str, Any]) -> dict[str, Any]:
    """Fitted estimators of the namespace that are not part of another candidate."""
    found = _candidates(namespace)
    inner: set[int] = set()
    for obj in found.values():
        stack, seen = list(_parts(obj)), set()
        while stack:
            part = stack.pop()
            if id(part) in seen or isinstance(part, _SCALARS):
                continue
            seen.add(id(part))
            inner.add(id(part))
            if isinstance(part, tuple | list):
                stack.extend(part)
            else:
                stack.extend(_parts(part))
    outer = {name: obj for name, obj in found.items() if id(obj) not in inner}
    # one model under several names (`tree` and the loop's `m`, `models['lr']` and the loop's
    # `model`): listed once, by the name that says most (see rank), then the longest
    names: dict[int, str] = {}

    def rank(name: str) -> tuple[int, int, str]:
        # an item of a dict by a string key (models['rf']) says more than a loop's `model`; a
        # variable says more than an item by position (models[0])
        kind = 2 if "['" in name else 1 if "[" not in name else 0
        return kind, len(name), name

    for name, obj in outer.items():
        kept = names.get(id(obj))
        if kept is None or rank(name) > rank(kept):
            names[id(obj)] = name
    return {name: outer[name] for name in sorted(names.values())}


def _model_name_parts(text: str) -> tuple[str, str | int | None] | None:
    """(variable, key) of a model's name: ``("models", "rf")`` for ``models['rf']``, ``("m", None)``
    for ``m``; None for anything else (nothing else is ever evaluated)."""
    import ast

    if text.isidentifier():
        return text, None
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return None
    if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str | int) and not isinstance(node.slice.value, bool)):
        return node.value.id, node.slice.value
    return None


def is_model_name(text: str) -> bool:
    """Whether ``text`` names a model as :func:`find_models` does: a variable, or an item of one
    by a literal key (``models['rf']``, ``models[0]``)."""
    return _model_name_parts(text) is not None


def lookup(namespace: dict[str, Any], expression: str) -> Any:
    """The value a model's name stands for: a variable, or an item of one (``models['rf']``, ``models[0]``).
    Raises KeyError when the notebook has no such value."""
    parts = _model_name_parts(expression)
    if parts is None or parts[0] not in namespace:
        raise KeyError(expression)
    variable, key = parts
    if key is None:
        return namespace[variable]
    try:
        return namespace[variable][key]
    except (KeyError, IndexError, TypeError):
        raise KeyError(expression) from None


def choose_model(namespace: dict[str, Any], variable: str | None) -> tuple[str, Any]:
    """The model to ship: ``variable`` when given, else the one fitted estimator in the namespace."""
    if variable:
        try:
            return variable, lookup(namespace, variable)
        except KeyError:
            raise ModelError(f"no variable {variable!r} in the notebook",
                             hint="name the variable that holds the fitted model, or an item of a dict or "
                                  "list of models (models['rf'])") from None
    models = find_models(namespace)
    if not models:
        raise ModelError(
            "the notebook names no model and holds no fitted estimator",
            hint="add `%deploy model VAR --example EXPR` after training, or pass --model VAR")
    if len(models) > 1:
        listing = ", ".join(f"{n} ({type(o).__name__})" for n, o in sorted(models.items()))
        raise ModelError(
            f"the notebook holds several fitted models: {listing}",
            hint="choose one with `%deploy model VAR` in the notebook or `--model VAR`")
    return next(iter(models.items()))


def shipped(obj: Any) -> tuple[Any, str | None]:
    """What is saved for ``obj``, and which attribute of it that is (None: ``obj`` itself).

    A fitted hyper-parameter search (``GridSearchCV``, ``RandomizedSearchCV``, ...) predicts
    with its refitted ``best_estimator_``; that is what ships. The search's own state
    (``cv_results_``, the parameter distributions: scipy's frozen distributions do not
    serialize with skops) is not needed to serve.
    """
    if _isinstance(obj, "sklearn.model_selection._search", "BaseSearchCV"):
        best = getattr(obj, "best_estimator_", None)
        if best is not None:
            return best, "best_estimator_"
    return obj, None


def check_supported(variable: str, obj: Any) -> str:
    flavor = flavor_of(obj)
    if flavor is None:
        raise ModelError(
            f"{variable} is a {type(obj).__module__}.{type(obj).__qualname__}, not a model: "
            "it has no predict() method",
            hint="ship a scikit-learn, XGBoost or LightGBM model, or any object with predict()")
    if flavor != "pyfunc" and not is_fitted(obj):
        raise ModelError(f"{variable} ({type(obj).__name__}) is not fitted",
                         hint="fit it in the notebook before `%deploy model`")
    return flavor


def input_columns(obj: Any) -> list[str] | None:
    """The column names the model was fitted on, when it knows them."""
    names = getattr(obj, "feature_names_in_", None)
    if names is not None:
        return [str(n) for n in names]
    if _isinstance(obj, "xgboost", "Booster"):
        return list(obj.feature_names) if obj.feature_names else None
    if _isinstance(obj, "lightgbm", "Booster"):
        cols = obj.feature_name()
        return None if all(c.startswith("Column_") for c in cols) else list(cols)
    if _statsmodels_results(obj) and getattr(obj.model, "formula", None) is not None:
        return _formula_columns(obj)
    if _statsmodels_results(obj) and getattr(obj.model, "formula", None) is None:
        # the design's columns, `const` included, when it was a DataFrame (arrays get x1, x2, ...)
        exog: Any = getattr(getattr(obj.model, "data", None), "orig_exog", None)
        return [str(c) for c in exog.columns] if hasattr(exog, "columns") else None
    return None


def _formula_columns(obj: Any) -> list[str] | None:
    """The data's columns the right-hand side of a statsmodels formula uses (``price ~ area +
    C(city)``: area, city): predict() takes them raw and builds the design itself."""
    import re

    frame = getattr(getattr(obj.model, "data", None), "frame", None)
    formula = str(obj.model.formula)
    if frame is None or "~" not in formula:
        return None
    rhs = formula.split("~", 1)[1]
    used = [str(c) for c in frame.columns if re.search(rf"(?<![\w.]){re.escape(str(c))}(?!\w)", rhs)]
    return used or None


def input_width(obj: Any) -> int | None:
    """How many input columns the model takes, when it knows (also when it knows no names)."""
    if _isinstance(obj, "xgboost", "Booster"):
        return int(obj.num_features())
    if _isinstance(obj, "lightgbm", "Booster"):
        return int(obj.num_feature())
    if _statsmodels_results(obj):
        names = getattr(obj.model, "exog_names", None)
        return len(names) if names else None
    width = getattr(obj, "n_features_in_", None)
    return int(width) if isinstance(width, int) else None


def own_names(obj: Any, width: int) -> list[str]:
    """The names the model's library gives columns it was fitted on without names."""
    if _isinstance(obj, "lightgbm", "Booster") or _isinstance(obj, "lightgbm", "LGBMModel"):
        return [f"Column_{i}" for i in range(width)]
    if _isinstance(obj, "xgboost", "Booster") or _isinstance(obj, "xgboost", "XGBModel"):
        return [f"f{i}" for i in range(width)]
    if _statsmodels_results(obj) and len(obj.model.exog_names or []) == width:
        return [str(n) for n in obj.model.exog_names]  # const, x1, x2, ...
    return [f"x{i}" for i in range(width)]  # scikit-learn's get_feature_names_out


def predict_fn(obj: Any, flavor: str) -> Any:
    """The call the API makes for this model (see ``nbdeploy.serve.model``)."""
    if _isinstance(obj, "xgboost", "Booster"):
        import xgboost as xgb

        return lambda df: obj.predict(xgb.DMatrix(df), validate_features=True)
    return obj.predict


def class_modules(obj: Any, limit: int = 50_000) -> set[str]:
    """Top-level modules of every class and function reachable from ``obj``."""
    import numpy as np

    mods: set[str] = set()
    seen: set[int]  # ids of the objects walked
    stack, seen = [obj], set()
    while stack and len(seen) < limit:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, type):
            mods.add(o.__module__.split(".")[0])
            continue
        mods.add(type(o).__module__.split(".")[0])
        if isinstance(o, _SCALARS):
            continue
        if callable(o) and getattr(o, "__module__", None):
            mods.add(str(o.__module__).split(".")[0])
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, list | tuple | set | frozenset):
            stack.extend(o)
        elif isinstance(o, np.ndarray):
            if o.dtype == object:
                stack.extend(o.ravel()[:10_000].tolist())
        elif hasattr(o, "__dict__") and not isinstance(o, type(sys)):
            try:
                stack.extend(vars(o).values())
            except TypeError:
                pass
    return mods


def pickled_modules(obj: Any) -> set[str]:
    """Top-level modules that unpickling ``obj`` imports (what a cloudpickled pyfunc model needs).

    Found by loading the pickle back and recording every class it looks up, so it also sees
    what attribute walks miss: pandas 3 keeps strings in pyarrow arrays inside objects that
    hide their state in slots.
    """
    import io
    import pickle

    import cloudpickle

    mods: set[str] = set()

    class _Recording(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            mods.add(module.split(".")[0])
            return super().find_class(module, name)

    _Recording(io.BytesIO(cloudpickle.dumps(obj))).load()
    return mods
