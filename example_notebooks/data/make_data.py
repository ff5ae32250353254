"""Regenerate the example data sets (deterministic; run from example_notebooks/).

churn.csv    synthetic telecom customers with a churn label (numeric + categorical columns)
diabetes.csv scikit-learn's bundled diabetes regression data set, as a CSV
"""

import numpy as np
import pandas as pd
from sklearn.datasets import load_diabetes


def churn(n: int = 2000, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    contract = rng.choice(["month-to-month", "one-year", "two-year"], n, p=[0.55, 0.25, 0.2])
    internet = rng.choice(["dsl", "fiber", "none"], n, p=[0.4, 0.45, 0.15])
    payment = rng.choice(["card", "bank-transfer", "e-check", "mailed-check"], n)
    tenure = rng.integers(1, 73, n)
    monthly = np.round(rng.normal(65, 25, n).clip(18, 120), 2)
    calls = rng.poisson(1.5, n)
    senior = rng.binomial(1, 0.16, n)
    logit = (-1.0 + 1.2 * (contract == "month-to-month") - 0.9 * (contract == "two-year")
             + 0.6 * (internet == "fiber") + 0.5 * (payment == "e-check") - 0.04 * tenure
             + 0.015 * (monthly - 65) + 0.35 * calls + 0.4 * senior)
    churned = rng.binomial(1, 1 / (1 + np.exp(-logit)))
    return pd.DataFrame({
        "customer_id": [f"C{i:05d}" for i in range(n)],
        "tenure_months": tenure, "monthly_charges": monthly,
        "total_charges": np.round(monthly * tenure * rng.uniform(0.9, 1.1, n), 2),
        "contract": contract, "internet_service": internet, "payment_method": payment,
        "support_calls": calls, "senior": senior, "churn": churned,
    })


if __name__ == "__main__":
    churn().to_csv("data/churn.csv", index=False)
    d = load_diabetes(as_frame=True, scaled=False)
    d.frame.to_csv("data/diabetes.csv", index=False)
