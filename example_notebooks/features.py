"""Project helper for the churn notebook: which columns are features, and the split."""

import pandas as pd

TARGET = "churn"
ID_COLUMNS = ["customer_id"]
NUMERIC = ["tenure_months", "monthly_charges", "total_charges", "support_calls", "senior"]
CATEGORICAL = ["contract", "internet_service", "payment_method"]


def split_xy(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Features (numeric + categorical columns) and the churn label."""
    return df[NUMERIC + CATEGORICAL], df[TARGET]
