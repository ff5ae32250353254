"""The serving tests' fixture bundles (tests/serve/conftest.py), and scoring inputs built from them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("serve_fixtures", Path(__file__).parents[1] / "serve" / "conftest.py")
_serve = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(_serve)  # type: ignore[union-attr]

training_frame = _serve.training_frame
classifier_bundle = _serve.classifier_bundle
compiled_classifier_bundle = _serve.compiled_classifier_bundle


@pytest.fixture(scope="session")
def customers(training_frame, tmp_path_factory) -> Path:
    """2,000 rows in a Parquet file of 8 row groups, with an id column and two bad rows."""
    import pandas as pd

    df = pd.concat([training_frame] * 5, ignore_index=True)
    df.insert(0, "customer", [f"c{i:05d}" for i in range(len(df))])
    df["age"] = df["age"].astype("float64")
    df.loc[17, "age"] = float("nan")  # null where training had none
    df.loc[1203, "age"] = 33.5  # not an integer
    path = tmp_path_factory.mktemp("customers") / "customers.parquet"
    df.to_parquet(path, row_group_size=250)
    return path
