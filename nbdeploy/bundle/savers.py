"""Save a model in MLflow's format, flavor-natively (runs in the job kernel).

scikit-learn (and LightGBM's sklearn API) go through skops, MLflow 3's safe
format. skops refuses to load types it does not know (tree models' ``Tree``,
for instance) unless they are listed as trusted, so the list is computed with
``skops.io.get_untrusted_types`` and each type is checked: it must come from a
distribution the notebook's environment really uses, or from the notebook's own
helper modules (shipped with the model). Anything else is refused; nbdeploy never
falls back to pickle on its own. Only an object of no known flavor is wrapped in an
MLflow pyfunc model, which MLflow stores with cloudpickle; that is said in the
export record and in the README.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelError


def trusted_types(obj: Any, allowed_dists: set[str], project_dir: Path) -> list[str]:
    """The types skops must be told to trust, each checked against where it comes from."""
    import skops.io as sio

    from ..capture.deps import resolve

    try:
        untrusted = sio.get_untrusted_types(data=sio.dumps(obj))
    except Exception as exc:
        raise ModelError(f"skops cannot serialize the model: {type(exc).__name__}: {exc}",
                         hint="skops needs classes defined at module level in an importable module") from None
    bad = []
    for name in untrusted:
        top = name.split(".")[0]
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


def save_model(obj: Any, flavor: str, path: Path, *, example: Any, predictions: Any,
               requirements: list[str], code_paths: list[str], allowed_dists: set[str],
               project_dir: Path) -> dict:
    from mlflow.models import infer_signature

    signature = infer_signature(example, predictions)
    common: dict[str, Any] = {"signature": signature, "input_example": example,
                              "pip_requirements": requirements, "code_paths": code_paths or None}
    out: dict[str, Any] = {"trusted_types": [], "serialization": None}
    if flavor == "sklearn":
        import mlflow.sklearn

        trusted = trusted_types(obj, allowed_dists, project_dir)
        mlflow.sklearn.save_model(obj, str(path), serialization_format="skops",
                                  skops_trusted_types=trusted or None, **common)
        out.update(trusted_types=trusted, serialization="skops")
    elif flavor == "xgboost":
        import mlflow.xgboost

        mlflow.xgboost.save_model(obj, str(path), model_format="ubj", **common)
        out["serialization"] = "xgboost ubj"
    elif flavor == "lightgbm":
        import lightgbm as lgb
        import mlflow.lightgbm

        if isinstance(obj, lgb.Booster):
            mlflow.lightgbm.save_model(obj, str(path), **common)
            out["serialization"] = "lightgbm text"
        else:
            trusted = trusted_types(obj, allowed_dists, project_dir)
            mlflow.lightgbm.save_model(obj, str(path), serialization_format="skops",
                                       skops_trusted_types=trusted or None, **common)
            out.update(trusted_types=trusted, serialization="skops")
    elif flavor == "pyfunc":
        import cloudpickle
        import mlflow.pyfunc

        from . import pyfunc_wrapper

        cloudpickle.register_pickle_by_value(pyfunc_wrapper)
        try:
            mlflow.pyfunc.save_model(str(path), python_model=pyfunc_wrapper.PredictWrapper(obj),
                                     **common)
        finally:
            cloudpickle.unregister_pickle_by_value(pyfunc_wrapper)
        out["serialization"] = "cloudpickle (MLflow pyfunc wrapper)"
    else:
        raise ModelError(f"unsupported flavor {flavor!r}")
    return out
