"""Feature steps the notebooks share (imported after `sys.path.append("..")`)."""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class AreaFeatures(BaseEstimator, TransformerMixin):
    """Adds log(area) and area per room to the raw columns."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        X = X.copy()
        X["log_area"] = np.log(X["area"])
        X["area_per_room"] = X["area"] / X["rooms"]
        return X
