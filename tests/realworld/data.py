"""The corpus' data files, generated (small, seeded) so the repository holds no binaries.

``write_data(root)`` writes ``root/data/...``; the notebooks sit in ``root/notebooks/``
and read ``../data/...`` as starter repositories lay it out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ROWS = 300


def houses(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    area = rng.uniform(30, 200, ROWS).round(1)
    rooms = rng.integers(1, 7, ROWS)
    age = rng.integers(0, 80, ROWS)
    city = rng.choice(["north", "south", "east", "west"], ROWS)
    built = pd.Timestamp("2000-01-01") + pd.to_timedelta(rng.integers(0, 8000, ROWS), unit="D")
    bonus = pd.Series(city).map({"north": 30.0, "south": 10.0, "east": 0.0, "west": 20.0}).to_numpy()
    price = (2.5 * area + 8 * rooms - 0.6 * age + bonus + rng.normal(0, 10, ROWS)).round(2)
    return pd.DataFrame({"area": area, "rooms": rooms, "age": age, "city": city,
                         "built": built.strftime("%Y-%m-%d"), "price": price})


def customers(seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, ROWS)
    monthly = rng.uniform(15, 120, ROWS).round(2)
    calls = rng.poisson(1.5, ROWS)
    plan = rng.choice(["basic", "plus", "pro"], ROWS)
    score = 0.04 * monthly - 0.06 * tenure + 0.5 * calls + rng.normal(0, 1, ROWS)
    return pd.DataFrame({"customer_id": [f"C{i:04d}" for i in range(ROWS)], "tenure": tenure,
                         "monthly": monthly, "support_calls": calls, "plan": plan,
                         "churn": (score > np.median(score)).astype(int)})


def reviews(seed: int = 2) -> pd.DataFrame:
    """Short product reviews and their sentiment (a text-classification tutorial's shape)."""
    rng = np.random.default_rng(seed)
    opener = ["honestly", "overall", "in short", "to be fair", "well", "so far"]
    good = ["great product", "loved it", "works well", "excellent value", "very happy with it", "fast delivery"]
    bad = ["terrible", "broke after a week", "waste of money", "very bad", "not happy at all", "arrived damaged"]
    extra = ["", "really", "would not say more", "five words is enough", "the box was fine", "my kids use it"]
    positive = rng.integers(0, 2, ROWS)
    text = [f"{rng.choice(opener)} {rng.choice(good if p else bad)} {rng.choice(extra)}".strip() for p in positive]
    return pd.DataFrame({"review": text, "sentiment": np.where(positive == 1, "positive", "negative")})


def write_data(root: Path) -> Path:
    """Write every data file the corpus reads into ``root/data``; return that folder."""
    data = root / "data"
    (data / "raw").mkdir(parents=True, exist_ok=True)
    h, c = houses(), customers()
    h.to_csv(data / "houses.csv", index=False)
    h.to_csv(data / "raw" / "houses_noheader.csv", index=False, header=False)
    with_id = h.copy()
    with_id.insert(0, "listing", [f"L{i}" for i in range(ROWS)])
    with_id.to_csv(data / "raw" / "houses_eu.csv", sep=";", index=False)
    h.drop(columns="built").to_excel(data / "houses.xlsx", index=False, sheet_name="listings")
    h.drop(columns="built").to_parquet(data / "houses.parquet", index=False)
    h.drop(columns="built").to_json(data / "houses.json", orient="records", lines=True)
    c.to_csv(data / "customers.csv", index=False)
    fr = c.rename(columns={"tenure": "anciennete", "monthly": "montant_mensuel",
                           "support_calls": "appels_support", "plan": "formule", "churn": "resiliation"})
    fr.to_csv(data / "clients.csv", index=False)
    reviews().to_csv(data / "reviews.csv", index=False)
    return data
