"""Missing-value steps, as tutorials write them: the medians kept as a pandas Series."""
from sklearn.base import BaseEstimator, TransformerMixin


class MedianFill(BaseEstimator, TransformerMixin):
    """Fills each column's missing values with its training median."""

    def fit(self, X, y=None):
        self.medians_ = X.median()
        return self

    def transform(self, X):
        return X.fillna(self.medians_)
