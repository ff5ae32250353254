"""Load the model of a bundle, flavor-natively when possible.

Importing all of MLflow costs seconds, so the common flavors are loaded directly:

* ``sklearn`` - MLflow 3 saves with skops (``model.skops``) and records the extra trusted
  types in ``MLmodel`` (``flavors.sklearn.skops_trusted_types``); we load with
  ``skops.io.load(path, trusted=<exactly those types>)``, as ``mlflow.sklearn`` does. The
  ``pickle`` and ``cloudpickle`` formats are read with the matching library.
* ``xgboost`` - instantiate the recorded ``model_class`` and ``load_model`` the data file.
* ``lightgbm`` - a ``Booster`` from its text file, or the sklearn-API model like sklearn.

Anything else goes through ``mlflow.pyfunc.load_model``, the general fallback.

Before any of these: a model folder holding a compiled program (``nbdeploy_program/``,
written and proved equal to the model by ``nbdeploy build``; see :mod:`.program`) is
served by that program, with numpy only. NBDEPLOY_PROGRAM=0 turns that off.
Code shipped with the model (``code_paths``) is put on ``sys.path`` first, as MLflow does.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import program as compiled
from .bundle import Bundle
from .errors import ServeError

logger = logging.getLogger("nbdeploy.serve")


@dataclass
class LoadedModel:
    predict: Callable[[Any], Any]
    flavor: str  # the loader used: sklearn, xgboost, lightgbm or pyfunc (a compiled program: sklearn)
    detail: str  # class or loader module, for /metadata
    #: the compiled program when the model is served by one (the server then never builds a DataFrame)
    program: Any = None
    #: why the model is not served by a compiled program (None when it is)
    program_note: str | None = None


def load_model(bundle: Bundle) -> LoadedModel:
    note = "the bundle has no compiled program"
    folder = bundle.model_dir / compiled.PROGRAM_DIR
    if compiled.present(bundle.model_dir):
        if not compiled.enabled():
            note = "NBDEPLOY_PROGRAM=0"
        else:
            try:
                program = compiled.Program.load(folder)
            except Exception as e:  # a damaged program: the model itself still serves
                logger.warning("not using %s: %s: %s", folder, type(e).__name__, e)
                note = f"the compiled program could not be read: {type(e).__name__}: {e}"
            else:
                return LoadedModel(_frame_predict(program), "sklearn", f"{program.model_class} (compiled program)",
                                   program, None)
    loaded = _load_library_model(bundle)
    loaded.program_note = note
    return loaded


def _frame_predict(program: Any) -> Callable[[Any], Any]:
    def predict(frame: Any) -> Any:  # for callers holding a DataFrame
        return program.predict(compiled.Table([str(c) for c in frame.columns],
                                              [frame[c].to_numpy() for c in frame.columns]))

    return predict


def _allow(bundle: Bundle, loader: str) -> None:
    """Refuse a loader the bundle's manifest did not record: a pickle the build never wrote
    (an ``MLmodel`` edited to point at one) is never opened."""
    if bundle.loaders is not None and loader not in bundle.loaders:
        recorded = ", ".join(sorted(bundle.loaders)) or "none"
        raise ServeError(
            f"refusing to load the model in {bundle.model_dir} as {loader}: the bundle's manifest "
            f"records it as {recorded}",
            hint="the MLmodel file does not match what nbdeploy built: rebuild the bundle",
        )


def _load_library_model(bundle: Bundle) -> LoadedModel:
    flavors = bundle.flavors
    pyfunc = flavors.get("python_function") or {}
    _add_code_paths(bundle.model_dir, [pyfunc, *flavors.values()])
    allowed = bundle.loaders
    try:
        if "sklearn" in flavors and pyfunc.get("loader_module", "mlflow.sklearn") == "mlflow.sklearn":
            return _sklearn(bundle.model_dir, flavors["sklearn"], pyfunc, allowed)
        if "xgboost" in flavors:
            _allow(bundle, "xgboost")
            return _xgboost(bundle.model_dir, flavors["xgboost"])
        if "lightgbm" in flavors:
            return _lightgbm(bundle.model_dir, flavors["lightgbm"], allowed)
        if pyfunc:
            _allow(bundle, "pyfunc")
            return _pyfunc(bundle.model_dir)
    except ServeError:
        raise
    except Exception as e:  # a broken or incompatible artifact
        raise ServeError(
            f"could not load the model in {bundle.model_dir}: {type(e).__name__}: {e}",
            hint="check that the serving environment has the library versions of requirements.txt",
        ) from e
    raise ServeError(
        f"the model in {bundle.model_dir} has no flavor nbdeploy can serve ({', '.join(flavors) or 'none'})",
        hint="save it with mlflow.sklearn, mlflow.xgboost, mlflow.lightgbm or mlflow.pyfunc",
    )


def _add_code_paths(model_dir: Path, confs: list[Any]) -> None:
    for conf in confs:
        code = conf.get("code") if isinstance(conf, dict) else None
        if code:
            path = str(model_dir / code)
            if path not in sys.path:
                sys.path.insert(0, path)


def _sklearn(model_dir: Path, conf: dict[str, Any], pyfunc: dict[str, Any],
             allowed: frozenset[str] | None) -> LoadedModel:
    path = model_dir / conf.get("pickled_model", pyfunc.get("model_path", "model.pkl"))
    estimator = load_serialized(
        path, conf.get("serialization_format", "pickle"), conf.get("skops_trusted_types"), allowed
    )
    method = pyfunc.get("predict_fn") or "predict"
    fn = getattr(estimator, method, None)
    if fn is None:
        raise ServeError(f"the scikit-learn model {type(estimator).__name__} has no {method}()")
    return LoadedModel(fn, "sklearn", f"{_qualname(estimator)}.{method}")


def load_serialized(path: Path, fmt: str, trusted: list[str] | None,
                    allowed: frozenset[str] | None = None) -> Any:
    """Read an estimator the way ``mlflow.sklearn._load_model_from_local_file`` does.

    ``allowed`` (from the bundle's manifest) names the formats that may be read; None
    (a bare MLflow model folder) allows MLflow's own set.
    """
    if allowed is not None and fmt not in allowed:
        raise ServeError(
            f"refusing to load {path}: MLmodel says it is {fmt}, but the bundle's manifest records "
            f"{', '.join(sorted(allowed)) or 'no such format'}",
            hint="the MLmodel file does not match what nbdeploy built: rebuild the bundle",
        )
    if fmt == "skops":
        return import_skops_io().load(path, trusted=trusted)
    if fmt == "cloudpickle":
        import cloudpickle

        with open(path, "rb") as f:
            return cloudpickle.load(f)
    if fmt == "pickle":
        import pickle

        with open(path, "rb") as f:
            return pickle.load(f)
    raise ServeError(f"unknown serialization format {fmt!r} in MLmodel")


def import_skops_io() -> Any:
    """``skops.io``, imported fast when its table of trusted type names is cached.

    Importing ``skops.io`` builds, in ``skops.io._trusted_types``, the lists of type
    names it trusts by default: ``sklearn.utils.all_estimators()`` imports every module
    of scikit-learn (and pytest, and dask when installed) only to collect class names,
    and the ufuncs of numpy and scipy.special are enumerated. That is most of a cold
    start. The first import builds the lists as usual and caches them (JSON, keyed by
    the versions of Python, scikit-learn, skops, scipy and numpy); later imports give
    skops a ``_trusted_types`` module holding exactly those lists, so the default
    trusted set is identical. If this version of skops needs a name the cache lacks,
    skops is imported the usual way. NBDEPLOY_CACHE_DIR sets the cache folder (default
    ~/.cache/nbdeploy); an empty value turns the cache off.
    """
    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    cache = _skops_cache_path()
    names = _read_type_names(cache) if cache is not None else None
    if names is not None:
        stand_in = types.ModuleType(_TRUSTED, "type names cached by nbdeploy")
        vars(stand_in).update(names)
        vars(stand_in).update(PRIMITIVES_TYPES=[int, float, str, bool], CONTAINER_TYPES=[list, set, map, tuple])
        sys.modules[_TRUSTED] = stand_in
        try:
            import skops.io

            return skops.io
        except ImportError:  # a skops that needs more than the cache holds: import it for real
            for name in [m for m in sys.modules if m == "skops" or m.startswith("skops.")]:
                del sys.modules[name]
    import skops.io
    import skops.io._trusted_types as trusted

    if cache is not None:
        table = {k: v for k, v in vars(trusted).items()
                 if k.endswith("_TYPE_NAMES") and isinstance(v, list) and all(isinstance(x, str) for x in v)}
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(table))
            os.replace(tmp, cache)
        except OSError:
            pass
    return skops.io


_TRUSTED = "skops.io._trusted_types"


def _skops_cache_path() -> Path | None:
    from importlib.metadata import PackageNotFoundError, version

    cache_dir = os.environ.get("NBDEPLOY_CACHE_DIR", str(Path.home() / ".cache" / "nbdeploy"))
    if not cache_dir:
        return None
    try:
        versions = [version(d) for d in ("scikit-learn", "skops", "scipy", "numpy")]
    except PackageNotFoundError:
        return None
    key = "-".join([f"py{sys.version_info[0]}.{sys.version_info[1]}", *versions])
    return Path(cache_dir) / f"skops-trusted-types-{key}.json"


def _read_type_names(cache: Path) -> dict[str, list[str]] | None:
    try:
        table = json.loads(cache.read_text())
    except (OSError, ValueError):
        return None
    if (not isinstance(table, dict) or "SKLEARN_ESTIMATOR_TYPE_NAMES" not in table
            or not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in table.values())):
        return None
    return table


def _class(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _xgboost(model_dir: Path, conf: dict[str, Any]) -> LoadedModel:
    import xgboost as xgb

    cls_name = conf.get("model_class", "xgboost.core.Booster")
    model = _class(cls_name)()
    model.load_model(str(model_dir / conf["data"]))
    if isinstance(model, xgb.Booster):

        def predict(df: Any) -> Any:
            return model.predict(xgb.DMatrix(df), validate_features=True)

        return LoadedModel(predict, "xgboost", cls_name)
    return LoadedModel(model.predict, "xgboost", cls_name)


def _lightgbm(model_dir: Path, conf: dict[str, Any], allowed: frozenset[str] | None) -> LoadedModel:
    cls_name = conf.get("model_class", "lightgbm.basic.Booster")
    path = model_dir / conf["data"]
    if cls_name == "lightgbm.basic.Booster":
        if allowed is not None and "lightgbm" not in allowed:
            raise ServeError(f"refusing to load {path} as a LightGBM text model: the bundle's manifest "
                             f"records {', '.join(sorted(allowed)) or 'another format'}",
                             hint="the MLmodel file does not match what nbdeploy built: rebuild the bundle")
        import lightgbm as lgb

        model = lgb.Booster(model_file=str(path))
    else:
        model = load_serialized(
            path, conf.get("serialization_format", "cloudpickle"), conf.get("skops_trusted_types"), allowed
        )
    return LoadedModel(model.predict, "lightgbm", cls_name)


def _pyfunc(model_dir: Path) -> LoadedModel:
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(model_dir))
    return LoadedModel(model.predict, "pyfunc", model.loader_module or "mlflow.pyfunc")


def _qualname(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"
