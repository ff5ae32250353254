"""The MLflow pyfunc wrapper for a model object that is not of a known flavor.

Pickled *by value* (cloudpickle), so the bundle's environment needs MLflow but
not nbdeploy to load it.
"""

from __future__ import annotations

from typing import Any

from mlflow.pyfunc import PythonModel


class PredictWrapper(PythonModel):
    """Calls ``model.predict(rows)``."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, context: Any, model_input: Any, params: dict | None = None) -> Any:
        return self.model.predict(model_input)
