"""A test model shipped with its bundle through MLflow's ``code_paths``.

``Tripwire.predict`` returns ``2 * x`` for every row, sleeps 2 ms per call (so that
concurrent requests pile up and get batched), raises on ``x == -1`` and sleeps 0.5 s on
``x == -2`` (requests that stay in flight long enough to test graceful shutdown).
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

RAISE = -1
SLOW = -2


class Tripwire(RegressorMixin, BaseEstimator):
    def fit(self, X, y=None):
        self.fitted_ = True
        return self

    def predict(self, X):
        x = np.asarray(X["x"], dtype="float64")
        if (x == RAISE).any():
            raise ValueError("tripwire: x == -1 is the magic failing input")
        time.sleep(0.5 if (x == SLOW).any() else 0.002)
        return 2 * x


class Sleepy(RegressorMixin, BaseEstimator):
    """A slow shadow: ``3 * x``, after sleeping ``delay`` seconds on every call."""

    def __init__(self, delay: float = 0.3):
        self.delay = delay

    def fit(self, X, y=None):
        self.fitted_ = True
        return self

    def predict(self, X):
        time.sleep(self.delay)
        return 3 * np.asarray(X["x"], dtype="float64")


def date_parts(X):
    """A date column as month and day of week, as a notebook's FunctionTransformer computes them:
    ``.dt`` works only on the datetime64 column the training frame held (read with parse_dates)."""
    X = X.copy()
    day = X.pop("day")
    X["month"], X["dow"] = day.dt.month, day.dt.dayofweek
    return X
