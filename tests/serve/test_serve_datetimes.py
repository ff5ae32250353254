"""A model with a datetime input gets the datetime64 column it was trained on, whatever mix of
ISO 8601 forms a request sends (a date, a date-time, an offset); a value that is no date is a 422
naming the column. Before, pandas guessed one format from the first value and the next value's
form made the request a 500."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import HERE, Client, start

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dated(tmp_path_factory: Any) -> tuple[Path, Any]:
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from fixture_models import date_parts
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"day": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, 200), unit="D"),
                      "temp": rng.normal(15, 8, 200)})
    y = 3 * X["day"].dt.month + X["temp"]
    model = make_pipeline(FunctionTransformer(date_parts), LinearRegression()).fit(X, y)
    path = tmp_path_factory.mktemp("dated") / "model"
    mlflow.sklearn.save_model(model, str(path), signature=infer_signature(X, model.predict(X)),
                              serialization_format="cloudpickle", code_paths=[str(HERE / "fixture_models.py")])
    return path, model


def test_mixed_iso_forms_reach_the_model_as_datetimes(dated: tuple[Path, Any], tmp_path: Path) -> None:
    import pandas as pd

    path, model = dated
    days = ["2024-03-05", "2024-07-01T08:30:00", "2024-11-20T23:00:00+02:00", "2024-02-29T12:00:00Z"]
    handle = start(path, tmp_path)
    c = Client(handle.url)
    try:
        status, _, body = c.post("/invocations", {"dataframe_split": {
            "columns": ["day", "temp"], "data": [[d, 10.0] for d in days]}})
        refused = c.post("/invocations", {"dataframe_records": [{"day": "next tuesday", "temp": 1.0}]})
    finally:
        c.close()
        assert handle.stop() == 0
    assert status == 200, body
    # what the model gives for those instants (the offset ones in UTC: 2024-11-20 21:00)
    want = model.predict(pd.DataFrame({"day": pd.to_datetime(days, format="ISO8601", utc=True), "temp": 10.0}))
    assert body["predictions"] == pytest.approx(list(want))
    assert refused[0] == 422 and refused[2]["errors"][0]["field"] == "day"
