"""The drift report: served inputs counted in the training profile's buckets, PSI per column."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import Client, start

from nbdeploy.capture.profile import profile_frame
from nbdeploy.serve.drift import Drift, psi


def _frame(n: int, seed: int, shift: float = 0.0, city: str | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": rng.integers(18, 80, n) + shift,
        "income": rng.normal(50_000, 12_000, n),
        "city": [city] * n if city else rng.choice(["paris", "lyon", "nice"], n),
        "member": rng.random(n) > 0.5,
    })


def _columns(df: pd.DataFrame) -> dict[str, list]:
    return {c: df[c].tolist() for c in df.columns}


def _by_field(report: dict) -> dict[str, dict]:
    return {c["field"]: c for c in report["columns"]}


def test_rows_like_training_are_ok_and_shifted_columns_are_named() -> None:
    train = _frame(3000, seed=1)
    drift = Drift(profile_frame(train), list(train.columns))
    same = _frame(2000, seed=2)
    for start_row in range(0, 2000, 64):  # in batches, as the server predicts them
        part = same.iloc[start_row:start_row + 64]
        drift.observe(_columns(part), len(part))
    report = drift.report()
    assert report["rows"] == 2000 and report["status"] == "ok" and report["drifted"] == []
    assert all(c["psi"] < 0.1 for c in report["columns"])

    drift = Drift(profile_frame(train), list(train.columns))
    moved = _frame(500, seed=3, shift=40.0, city="nice")
    drift.observe(_columns(moved), 500)
    report = drift.report()
    fields = _by_field(report)
    assert report["status"] == "drift" and set(report["drifted"]) == {"age", "city"}
    assert fields["income"]["status"] == "ok" and fields["member"]["status"] == "ok"
    age = fields["age"]
    assert age["above_training_max"] > 0.4  # ages 58..119 against a training maximum of 79
    assert age["served_mean"] == pytest.approx(moved["age"].mean())
    assert age["training_mean"] == pytest.approx(train["age"].mean())
    top = fields["city"]["largest_shifts"][0]
    assert top["value"] == "nice" and top["served"] == 1.0 and top["training"] == pytest.approx(1 / 3, abs=0.03)
    assert report["columns"][0]["status"] == "drift"  # the worst first


def test_buckets_are_those_of_the_training_histogram() -> None:
    train = pd.DataFrame({"x": np.linspace(0.0, 10.0, 101)})
    profile = profile_frame(train)
    hist = profile["columns"]["x"]["histogram"]
    served = [0.0, 0.5, 5.0, 9.99, 10.0, -1.0, 11.0, None]
    drift = Drift(profile, ["x"])
    drift.observe({"x": served}, len(served))
    counts = drift._counted()[1]["counts"]["x"]
    inside = [v for v in served if v is not None and 0.0 <= v <= 10.0]
    assert counts[1:-2].tolist() == np.histogram(inside, bins=hist["edges"])[0].tolist()
    assert counts[0] == 1 and counts[-2] == 1 and counts[-1] == 1  # below, above, null


def test_rows_served_one_by_one_count_as_rows_served_at_once() -> None:
    """Observed rows wait to be counted in chunks; the report still covers exactly the rows of
    the last generations, ending where they end when every batch is counted at once."""
    train = _frame(2000, seed=11)
    served = _frame(2500, seed=12, shift=3.0)
    one_by_one = Drift(profile_frame(train), list(train.columns), window=1000)
    for i in range(len(served)):
        one_by_one.observe(_columns(served.iloc[i:i + 1]), 1)
    at_once = Drift(profile_frame(train), list(train.columns), window=10_000)
    at_once.observe(_columns(served.iloc[1000:]), 1500)  # the two newest generations: rows 1000..2499
    a, b = one_by_one.report(), at_once.report()
    assert a["rows"] == b["rows"] == 1500
    fa, fb = _by_field(a), _by_field(b)
    for name in fa:  # the means are sums in another order: equal to rounding
        if fa[name]["kind"] == "numeric":
            assert fa[name].pop("served_mean") == pytest.approx(fb[name].pop("served_mean"), rel=1e-12)
    assert fa == fb
    assert one_by_one.state()["old"]["rows"] == 1000 and one_by_one.state()["new"]["rows"] == 500


def test_psi_is_the_textbook_sum() -> None:
    expected = np.array([0.5, 0.5, 0.0])
    served = np.array([30, 60, 10])
    want = sum((a - e) * math.log(a / e)
               for a, e in zip([0.3, 0.6, 0.1], [0.5, 0.5, 1e-4], strict=True))
    assert psi(expected, served) == pytest.approx(want)
    assert psi(expected, np.array([0, 0, 0])) == 0.0


def test_the_report_covers_the_most_recent_rows_only() -> None:
    train = _frame(3000, seed=1)
    drift = Drift(profile_frame(train), list(train.columns), window=300)
    old = _frame(600, seed=4, shift=40.0)
    drift.observe(_columns(old), 600)  # drifted rows, then a full window and more of normal ones
    for seed in (5, 6, 7):
        recent = _frame(300, seed=seed)
        drift.observe(_columns(recent), 300)
    report = drift.report()
    assert report["rows"] == 300 and report["status"] == "ok"
    drift.observe(_columns(_frame(50, seed=8)), 50)
    assert drift.report()["rows"] == 350
    few = Drift(profile_frame(train), list(train.columns))
    few.observe(_columns(_frame(20, seed=9, shift=40.0)), 20)
    assert few.report()["status"] == "insufficient"


@pytest.mark.slow
def test_server_reports_drift_of_what_it_served(classifier_bundle, training_frame, tmp_path):
    handle = start(classifier_bundle, tmp_path)
    c = Client(handle.url)
    try:
        rows = training_frame.head(150)  # rows as in training, nulls in income included
        recs = [{k: None if isinstance(v, float) and v != v else (v.item() if hasattr(v, "item") else v)
                 for k, v in r.items()} for r in rows.to_dict("records")]
        for i in range(0, 150, 50):
            assert c.post("/invocations", {"dataframe_records": recs[i:i + 50]})[0] == 200
        status, _, report = c.get("/drift")
        assert status == 200
        assert report["rows"] == 150  # the start-up prediction of the example is not counted
        assert {col["field"] for col in report["columns"]} == {"age", "income", "city", "member"}
        assert report["status"] in ("ok", "moderate")
        shifted = [{**r, "age": 200, "city": "nice"} for r in recs[:120]]
        assert c.post("/invocations", {"dataframe_records": shifted})[0] == 200
        status, _, report = c.get("/drift")
        assert report["rows"] == 270 and "age" in report["drifted"]
        text = c.get("/metrics")[2]
        assert 'nbdeploy_drift_psi{field="age"}' in text and "nbdeploy_drift_rows 270" in text
    finally:
        c.close()
        handle.stop()
