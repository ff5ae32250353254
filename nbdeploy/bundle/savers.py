"""Write the model's data file in the job kernel (the MLflow metadata is added host-side).

Only the model itself must come from the kernel that trained it; the rest of
MLflow's model format (``MLmodel``, signature, examples, environment files) is
written by :mod:`.mlmodel` in the build process, where MLflow is imported while
the notebook runs. Importing MLflow in the kernel would cost seconds per build.

scikit-learn (and LightGBM's sklearn API) go through skops, MLflow 3's safe
format. skops refuses to load types it does not know (tree models' ``Tree``, for
instance) unless they are listed as trusted, so the list is computed with
``skops.io.get_untrusted_types`` and each type is checked: it must come from a
distribution of the notebook's environment, or from the notebook's own helper
modules (shipped with the model). Anything else is refused; nbdeploy never falls
back to pickle on its own. The file is loaded back with exactly that list and must
predict what the model predicted: the round trip is proven before anything ships.
Only an object of no known flavor is wrapped in an MLflow pyfunc model, which MLflow
stores with cloudpickle; that is said in the manifest and the README.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nbdeploy.base.errors import ModelError

#: standard-library types that hold data only (MLflow trusts OrderedDict for LightGBM too);
#: ``object``, the type itself (``make_column_selector(dtype_include=object)`` keeps it); and
#: functools.partial: a function with arguments, each of which skops lists and checks on its own
#: (HistGradientBoosting with categorical features keeps ``partial(check_array, ...)``); and
#: operator.itemgetter, which only indexes its argument (a one-column model's selector: export.one_column_model)
STDLIB_DATA_TYPES = {"collections.OrderedDict", "collections.defaultdict", "collections.Counter",
                     "builtins.object", "functools.partial", "operator.itemgetter"}


def trusted_types(untrusted: list[str], allowed_dists: set[str], project_dir: Path) -> list[str]:
    """``untrusted``, once each type is checked against where it comes from."""
    from nbdeploy.capture.deps import resolve

    bad = []
    for name in untrusted:
        top = name.split(".")[0]
        if name in STDLIB_DATA_TYPES:
            continue
        if top == "__main__":
            bad.append(f"{name} (defined in the notebook itself)")
            continue
        res = resolve(top, project_dir)
        if res.kind == "project":
            continue
        if res.kind == "distribution" and (res.distribution or "").lower() in allowed_dists:
            continue
        bad.append(f"{name} (from {res.distribution or top}, which the notebook does not use)")
    if bad:
        raise ModelError(
            "the model holds types that cannot be loaded safely: " + ", ".join(bad),
            hint="define custom classes in a helper .py module beside the notebook and import them")
    return sorted(untrusted)


def _skops(obj: Any, path: Path, allowed_dists: set[str], project_dir: Path, name: str) -> tuple[Any, list[str]]:
    from nbdeploy.serve.model import import_skops_io

    sio = import_skops_io()  # skops' default trusted types from nbdeploy's cache: seconds saved
    try:
        sio.dump(obj, path)
    except Exception as exc:
        raise _unstorable(obj, name, sio, exc) from None
    trusted = trusted_types(sio.get_untrusted_types(file=path), allowed_dists, project_dir)
    try:
        return sio.load(path, trusted=trusted), trusted
    except Exception as exc:
        raise ModelError(f"the model does not load back from skops: {type(exc).__name__}: {exc}") from None


def _unstorable(obj: Any, name: str, sio: Any, exc: Exception) -> ModelError:
    """The error for a model skops cannot store, naming the part it fails on: a custom step that keeps a
    pandas Series as a fitted attribute (``self.means_ = X.mean()``) is the usual one."""
    part = _failing_part(obj, name, sio, depth=0, seen=set())
    if part is None:
        return ModelError(f"skops cannot store the model: {type(exc).__name__}: {exc}",
                          hint="skops needs classes defined at module level in an importable module")
    where, value, owner = part
    kind = f"{type(value).__module__.split('.')[0]}.{type(value).__qualname__}"
    in_owner = f" (in {type(owner).__module__}.{type(owner).__qualname__})" if owner is not None else ""
    if kind.startswith("pandas."):
        return ModelError(f"skops cannot store the model: {where}{in_owner} is a {kind}, and skops stores no "
                          "pandas objects",
                          hint="keep fitted attributes as NumPy arrays, numbers, lists or dicts: e.g. "
                               "X.mean().to_numpy() instead of X.mean(), list(X.columns) instead of X.columns")
    return ModelError(f"skops cannot store the model: {where}{in_owner} is a {kind} it cannot store "
                      f"({type(exc).__name__}: {exc})",
                      hint="keep fitted attributes as NumPy arrays, numbers, strings, lists or dicts, and custom "
                           "classes at module level in an importable module")


def _failing_part(value: Any, where: str, sio: Any, depth: int, seen: set[int],
                  owner: Any = None) -> tuple[str, Any, Any] | None:
    """(where, value, the object holding it) of the innermost part of ``value`` skops cannot store."""
    if id(value) in seen or depth > 8:
        return None
    seen.add(id(value))
    try:
        sio.dumps(value)
        return None
    except Exception:
        pass
    parts: list[tuple[str, Any, Any]] = []
    if isinstance(value, dict):
        parts = [(f"{where}[{k!r}]", v, owner) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        parts = [(f"{where}[{i}]", v, owner) for i, v in enumerate(value)]
    elif hasattr(value, "__dict__") and not type(value).__module__.startswith("pandas"):
        parts = [(f"{where}.{k}", v, value) for k, v in vars(value).items()]
    for sub_where, sub, sub_owner in parts:
        found = _failing_part(sub, sub_where, sio, depth + 1, seen, sub_owner)
        if found is not None:
            return found
    return where, value, owner


def write_model_data(obj: Any, flavor: str, model_dir: Path, *, allowed_dists: set[str],
                     project_dir: Path, name: str = "the model") -> tuple[Any, dict]:
    """Write the data file into ``model_dir``: (the model as loaded back, flavor facts)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    cls = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if flavor == "sklearn":
        import sklearn

        loaded, trusted = _skops(obj, model_dir / "model.skops", allowed_dists, project_dir, name)
        return loaded, {"data": "model.skops", "serialization": "skops", "trusted_types": trusted,
                        "library_version": sklearn.__version__, "model_class": cls}
    if flavor == "xgboost":
        import xgboost as xgb

        obj.save_model(str(model_dir / "model.ubj"))
        loaded = type(obj)()
        loaded.load_model(str(model_dir / "model.ubj"))
        return loaded, {"data": "model.ubj", "serialization": "xgboost ubj", "trusted_types": [],
                        "library_version": xgb.__version__, "model_class": cls}
    if flavor == "lightgbm":
        import lightgbm as lgb

        if isinstance(obj, lgb.Booster):
            obj.save_model(str(model_dir / "model.lgb"))
            loaded = lgb.Booster(model_file=str(model_dir / "model.lgb"))
            return loaded, {"data": "model.lgb", "serialization": "lightgbm text", "trusted_types": [],
                            "library_version": lgb.__version__, "model_class": cls}
        loaded, trusted = _skops(obj, model_dir / "model.skops", allowed_dists, project_dir, name)
        return loaded, {"data": "model.skops", "serialization": "skops", "trusted_types": trusted,
                        "library_version": lgb.__version__, "model_class": cls}
    raise ModelError(f"no data writer for flavor {flavor!r}")


def save_pyfunc(obj: Any, model_dir: Path, *, example: Any, predictions: Any,
                requirements: list[str], code_paths: list[str]) -> dict:
    """An object of no known flavor, as an MLflow pyfunc model (MLflow pickles it with cloudpickle)."""
    import cloudpickle
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    from nbdeploy.bundle import pyfunc_wrapper

    cloudpickle.register_pickle_by_value(pyfunc_wrapper)
    try:
        mlflow.pyfunc.save_model(str(model_dir), python_model=pyfunc_wrapper.PredictWrapper(obj),
                                 signature=infer_signature(example, predictions), input_example=example,
                                 pip_requirements=requirements, code_paths=code_paths or None)
    finally:
        cloudpickle.unregister_pickle_by_value(pyfunc_wrapper)
    return {"data": "python_model.pkl", "serialization": "cloudpickle (MLflow pyfunc wrapper)",
            "trusted_types": [], "library_version": mlflow.__version__,
            "model_class": f"{type(obj).__module__}.{type(obj).__qualname__}", "mlmodel_written": True}
