"""Complete an MLflow model folder around the data file the kernel wrote.

Writes what ``mlflow.<flavor>.save_model`` writes, with MLflow's own classes:
``MLmodel`` (flavor + ``python_function``, signature, saved example),
``input_example.json``, ``serving_input_example.json``, ``conda.yaml``,
``python_env.yaml``, ``requirements.txt`` and ``code/`` (the notebook's helper
modules the model's classes come from). Versions are the kernel's, not this
process's: the model is loaded where the kernel's lock is installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

LOADERS = {"sklearn": "mlflow.sklearn", "xgboost": "mlflow.xgboost", "lightgbm": "mlflow.lightgbm"}


def example_frame(export: Mapping[str, Any]) -> Any:
    """The example rows as the kernel had them (values and dtypes)."""
    import pandas as pd

    ex = export["example"]
    df = pd.DataFrame(ex["data"], columns=ex["columns"])
    for col, dtype in export.get("dtypes", {}).items():
        try:
            df[col] = df[col].astype(dtype)
        except (TypeError, ValueError):
            pass
    return df


def complete(model_dir: Path, export: Mapping[str, Any], requirements: list[str], python_version: str) -> None:
    import numpy as np
    import pandas as pd
    from mlflow import pyfunc
    from mlflow.models import Model, infer_signature
    from mlflow.models.utils import _save_example
    from mlflow.utils.environment import _mlflow_conda_env, _PythonEnv
    from mlflow.utils.file_utils import get_total_file_size
    from mlflow.utils.model_utils import _validate_and_copy_code_paths

    flavor, facts = export["flavor"], export["model_data"]
    path = str(model_dir)
    example = example_frame(export)
    code = _validate_and_copy_code_paths(export.get("model_code_paths") or None, path)
    model = Model()
    _save_example(model, example, path)
    preds = np.asarray(export["predictions"])
    # 1-D predictions as a column, the way mlflow.<flavor>.save_model infers them
    model.signature = infer_signature(example, pd.Series(preds) if preds.ndim == 1 else preds)
    if flavor == "sklearn":
        pyfunc.add_to_model(model, loader_module=LOADERS[flavor], model_path=facts["data"],
                            conda_env="conda.yaml", python_env="python_env.yaml", code=code,
                            predict_fn="predict")
        model.add_flavor("sklearn", pickled_model=facts["data"], sklearn_version=facts["library_version"],
                         serialization_format="skops", code=code,
                         skops_trusted_types=facts["trusted_types"] or None)
    elif flavor == "xgboost":
        pyfunc.add_to_model(model, loader_module=LOADERS[flavor], data=facts["data"],
                            conda_env="conda.yaml", python_env="python_env.yaml", code=code)
        model.add_flavor("xgboost", xgb_version=facts["library_version"], data=facts["data"],
                         model_class=facts["model_class"], model_format="ubj", code=code)
    elif flavor == "lightgbm":
        pyfunc.add_to_model(model, loader_module=LOADERS[flavor], data=facts["data"],
                            conda_env="conda.yaml", python_env="python_env.yaml", code=code)
        skops = facts["data"].endswith(".skops")
        model.add_flavor("lightgbm", lgb_version=facts["library_version"], data=facts["data"],
                         model_class=facts["model_class"], code=code,
                         serialization_format="skops" if skops else None,
                         skops_trusted_types=facts["trusted_types"] or None)
    else:
        raise ValueError(f"flavor {flavor!r} is saved by MLflow in the kernel")
    model.flavors["python_function"]["python_version"] = python_version
    if size := get_total_file_size(path):
        model.model_size_bytes = size
    model.save(str(model_dir / "MLmodel"))
    conda = _mlflow_conda_env(additional_pip_deps=requirements)
    conda["dependencies"][0] = f"python={python_version}"
    (model_dir / "conda.yaml").write_text(yaml.safe_dump(conda, default_flow_style=False))
    (model_dir / "requirements.txt").write_text("\n".join(requirements))
    _PythonEnv(python=python_version, build_dependencies=["pip"],
               dependencies=["-r requirements.txt"]).to_yaml(str(model_dir / "python_env.yaml"))
