"""The drift report people look at: a verdict per feature from SciPy's tests, read from a request
log offline or from a running API, as a self-contained HTML page."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import Client, _write_bundle, seal_bundle, start

from nbdeploy.capture.profile import profile_frame
from nbdeploy.serve.drift_html import document
from nbdeploy.serve.drift_log import log_files, log_report
from nbdeploy.serve.drift_report import GridCDF, buckets, failed, feature
from nbdeploy.serve.errors import ServeError
from nbdeploy.serve.requestlog import RequestLog

COLUMNS = ["age", "income", "city", "member"]


def _frame(n: int, seed: int, age_shift: float = 0.0, income_scale: float = 1.0,
           city_p: tuple[float, float, float] = (0.5, 0.3, 0.2)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "age": (rng.integers(18, 80, n) + age_shift).astype("int64"),
        "income": rng.normal(50_000, 12_000 * income_scale, n).round(2),
        "city": rng.choice(["paris", "lyon", "nice"], n, p=list(city_p)),
        "member": rng.random(n) > 0.5,
    })


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A regressor trained on 5000 rows, its profile with a quantile grid and a prediction profile."""
    from conftest import _pipeline
    from sklearn.linear_model import Ridge

    X = _frame(5000, seed=1)
    y = X["age"] * 3.0 + X["income"] / 1000 + (X["city"] == "lyon") * 10
    model = _pipeline(Ridge()).fit(X, y)
    root = _write_bundle(tmp_path_factory.mktemp("drift") / "bundle", model, X, "spend",
                         skops_trusted_types=["numpy.dtype"])
    profile = json.loads((root / "profile.json").read_text())
    predictions = pd.DataFrame({"prediction": model.predict(X)})
    profile["prediction"] = {"source": "the model's predictions on 5000 training rows", **profile_frame(predictions)}
    (root / "profile.json").write_text(json.dumps(profile))
    seal_bundle(root, {"name": "spend", "version": "3", "model": {"serialization": "skops"}})
    return root


def _records(df: pd.DataFrame, model, per_request: int = 50, name: str = "spend") -> list[dict]:
    out = []
    predictions = model.predict(df) if model is not None else [0.0] * len(df)
    for i in range(0, len(df), per_request):
        part = df.iloc[i:i + per_request]
        out.append({"ts": 1_800_000_000 + i, "id": f"r{i}", "method": "POST", "path": "/invocations",
                    "endpoint": "invocations", "status": 200, "latency_ms": 1.0, "model": name, "version": "3",
                    "inputs": {"columns": list(part.columns),
                               "data": [[v.item() if hasattr(v, "item") else v for v in row]
                                        for row in part.itertuples(index=False)]},
                    "rows": len(part), "outputs": [float(p) for p in predictions[i:i + per_request]]})
    return out


def _write_log(path: Path, records: list[dict]) -> Path:
    """Written by the server's own writer, as a served API writes it."""
    log = RequestLog(path)
    for r in records:
        log.write(r)
    log.close()
    return path


def _model(bundle: Path):
    import mlflow.sklearn

    return mlflow.sklearn.load_model(str(bundle / "model"))


def _verdicts(doc: dict) -> dict[str, str]:
    return {f["field"]: f["verdict"] for f in doc["features"]}


@pytest.mark.parametrize("n", [400, 20_000])
def test_rows_from_the_training_distribution_are_stable(bundle, tmp_path, n) -> None:
    """Both regimes: a test decides up to 1000 values, the size of the shift above."""
    served = _frame(n, seed=2)
    doc = log_report(bundle, _write_log(tmp_path / "requests.jsonl", _records(served, _model(bundle), 100)))
    assert _verdicts(doc) == {c: "stable" for c in [*COLUMNS, "prediction"]}, doc
    assert doc["verdict"] == "stable" and doc["rows"] == n and failed(doc, "moderate") == []
    tests = {f["field"]: f["test"] for f in doc["features"]}
    if n <= 1000:  # KS for the continuous number, chi-squared for the rest, all with SciPy
        assert tests == {"income": "ks", "age": "chi2", "city": "chi2", "member": "chi2", "prediction": "ks"}
    else:
        assert set(tests.values()) == {"psi"}


@pytest.mark.parametrize("n", [400, 20_000])
def test_shifted_numbers_and_categories_are_found(bundle, tmp_path, n) -> None:
    served = _frame(n, seed=3, age_shift=12, income_scale=1.6, city_p=(0.15, 0.25, 0.6))
    doc = log_report(bundle, _write_log(tmp_path / "requests.jsonl", _records(served, _model(bundle))))
    verdicts = _verdicts(doc)
    assert verdicts["age"] == verdicts["income"] == verdicts["city"] == "drift", doc
    assert verdicts["member"] == "stable"
    assert verdicts["prediction"] in ("drift", "moderate")  # the inputs moved the predictions
    assert [f["field"] for f in doc["features"]][-1] == "member"  # drifted first, the stable one last
    assert set(failed(doc, "drift")) >= {"age", "income", "city"}
    by_field = {f["field"]: f for f in doc["features"]}
    assert "p" in by_field["income"]["reason"] or "PSI" in by_field["income"]["reason"]
    if n <= 1000:
        assert by_field["income"]["ks"]["p_value"] < 0.001 and by_field["city"]["chi2"]["p_value"] < 0.001


def test_ks_uses_the_training_quantiles(bundle) -> None:
    """The distribution function of the grid is the training one: uniform p-values under the null."""
    from scipy import stats

    profile = json.loads((bundle / "profile.json").read_text())
    grid = profile["columns"]["income"]["quantile_grid"]
    assert len(grid) == 201 and grid == sorted(grid)
    cdf = GridCDF(grid)
    assert cdf.continuous and not GridCDF(profile["columns"]["age"]["quantile_grid"]).continuous
    assert cdf(np.array([grid[0] - 1, grid[100], grid[-1] + 1])).tolist() == [0.0, 0.5, 1.0]
    ps = [stats.kstest(_frame(500, seed=s)["income"].to_numpy(), cdf).pvalue for s in range(10, 40)]
    assert sum(p < 0.01 for p in ps) <= 2


def test_an_old_profile_without_quantiles_gets_psi_and_a_note(bundle, tmp_path) -> None:
    profile = json.loads((bundle / "profile.json").read_text())
    stats = profile["columns"]["income"]
    stats.pop("quantile_grid")
    col = buckets(stats)
    values = _frame(5000, seed=4, income_scale=1.6)["income"].to_numpy(np.float64)
    entry = feature("income", col, stats, col.counts(values)[0], values)
    assert entry["test"] == "psi" and entry["verdict"] == "drift" and "ks" not in entry
    assert any("no quantile grid" in n for n in entry["notes"])


def test_every_file_of_the_log_is_read(bundle, tmp_path) -> None:
    """The server's rotated files (named by time, gzipped), numbered backups of older servers,
    logrotate's NAME.1.gz, the current file and another worker's."""
    from nbdeploy.serve.logfiles import compress, rotated_name

    model = _model(bundle)
    log = tmp_path / "requests.jsonl"
    _write_log(log, _records(_frame(300, seed=5), model))
    compress(log.rename(rotated_name(log)))
    _write_log(log, _records(_frame(200, seed=6), model))
    log.rename(tmp_path / "requests.jsonl.2")
    _write_log(log, _records(_frame(100, seed=7), model))
    (tmp_path / "requests.jsonl.1.gz").write_bytes(gzip.compress(log.read_bytes()))
    log.unlink()
    _write_log(log, _records(_frame(100, seed=8), model))
    _write_log(tmp_path / "requests.4242.jsonl", _records(_frame(50, seed=9), model))
    names = sorted(p.name for p in log_files(log))
    assert len(names) == 5 and {"requests.jsonl.1.gz", "requests.jsonl.2", "requests.jsonl",
                                "requests.4242.jsonl"} < set(names)
    assert any(re.fullmatch(r"requests\.jsonl\.\d{8}T\d{12}Z\.gz", n) for n in names)
    doc = log_report(bundle, log)
    assert doc["rows"] == 750 and doc["source"]["requests"] == 15


def test_bad_logs_are_one_clear_line(bundle, tmp_path) -> None:
    with pytest.raises(ServeError, match="no request log at .*missing.jsonl"):
        log_report(bundle, tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ServeError, match="has no answered predictions with their inputs"):
        log_report(bundle, empty)
    other = _frame(200, seed=8).rename(columns={"age": "a", "income": "b", "city": "c", "member": "d"})
    with pytest.raises(ServeError, match=r"have columns \['a', 'b', 'c', 'd'\].*none in common.*other v3"):
        log_report(bundle, _write_log(tmp_path / "other.jsonl", _records(other, None, name="other")))


def test_the_page_is_small_self_contained_and_escaped(bundle, tmp_path) -> None:
    """20 features, one of them named like markup: < 300 kB, no script or remote resource."""
    from nbdeploy.serve.drift_report import assemble

    rng = np.random.default_rng(9)
    train = pd.DataFrame({f"x{i}": rng.normal(size=3000) for i in range(18)})
    train["<b>city</b>"] = rng.choice(["<script>alert(1)</script>", "a&b", "c"], 3000)
    train["flag"] = rng.random(3000) > 0.3
    profile = profile_frame(train)
    served = pd.DataFrame({c: train[c].sample(2000, replace=True, random_state=1).to_numpy() for c in train})
    served["x3"] = served["x3"] + 1.5
    features = []
    for name, stats in profile["columns"].items():
        col = buckets(stats)
        if stats["kind"] == "numeric":
            values = served[name].to_numpy(np.float64)
            features.append(feature(name, col, stats, col.counts(values)[0], values))
        else:
            features.append(feature(name, col, stats, col.counts(served[name].tolist())))
    page = document(assemble(features, source={"text": "test", "model": "m<", "version": "1"}, rows=2000))
    assert len(page.encode()) < 300_000
    assert "<script" not in page and "&lt;script&gt;" in page and "&lt;b&gt;city&lt;/b&gt;" in page
    assert not re.search(r"(src|href)=|@import|url\(", page)
    assert 'name="viewport"' in page and page.count("<svg") == 20
    assert page.index('data-field="x3"') < page.index('data-field="x0"')  # drifted first


@pytest.mark.slow
def test_a_served_bundle_gives_its_report_as_html_and_its_log_offline(bundle, tmp_path) -> None:
    handle = start(bundle, tmp_path)
    c = Client(handle.url)
    try:
        served = _frame(600, seed=11, age_shift=15)
        for r in _records(served, None, 100):
            status, _, _ = c.post("/invocations", {"dataframe_split": r["inputs"]})
            assert status == 200
        status, headers, page = c.get("/drift?format=html")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert page.count('class="feature"') == 4 and 'data-field="age" data-verdict="drift"' in page
        status, _, doc = c.get("/drift?format=report")
        assert status == 200 and doc["drifted"] == ["age"] and doc["source"]["kind"] == "api"
        assert c.get("/drift?format=pdf")[0] == 400
        assert c.get("/drift?format=")[0] == 400  # blank is a mistake, not the default (schemathesis found it)
        assert c.get("/drift")[2]["status"] == "drift"  # the PSI document is unchanged
    finally:
        c.close()
        handle.stop()
    offline = log_report(bundle, tmp_path / "requests.jsonl")
    # the predictions moved with the ages; the prediction comes first among drifted features
    assert offline["rows"] == 600 and offline["drifted"] == ["prediction", "age"]
    assert {f["field"] for f in offline["features"]} == {*COLUMNS, "prediction"}


def test_a_log_read_by_worker_processes_counts_what_one_process_counts(bundle, tmp_path, monkeypatch) -> None:
    import nbdeploy.serve.drift_log as dl

    log = _write_log(tmp_path / "requests.jsonl", _records(_frame(3000, seed=12, age_shift=3), _model(bundle), 10))
    alone = log_report(bundle, log)
    monkeypatch.setattr(dl, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(dl, "PART_BYTES", 16 * 1024)
    monkeypatch.setattr(dl.os, "cpu_count", lambda: 3)
    parts = dl._parts(dl.log_files(log))
    assert len(parts) > 6 and parts[0][1] == 0 and all(a[2] == b[1] for a, b in zip(parts, parts[1:], strict=False))
    together = log_report(bundle, log)
    alone.pop("created")
    together.pop("created")
    for f in alone["features"]:
        if f.get("served_mean") is not None:
            f["served_mean"] = pytest.approx(f["served_mean"], rel=1e-12)  # sums in another order
    assert together == alone and together["rows"] == 3000


def test_without_scipy_the_report_is_psi_and_says_so(monkeypatch) -> None:
    """A bundle whose lock has no SciPy (no scikit-learn) still gets a report: PSI, and a note."""
    import nbdeploy.serve.drift_report as dr

    monkeypatch.setattr(dr, "_stats", lambda: None)
    train = _frame(3000, seed=13)
    stats = profile_frame(train)["columns"]["city"]
    col = buckets(stats)
    entry = feature("city", col, stats, col.counts(_frame(400, seed=14, city_p=(0.1, 0.1, 0.8))["city"].tolist()))
    assert entry["test"] == "psi" and entry["verdict"] == "drift" and "chi2" not in entry
    assert "no SciPy" in entry["reason"] and any("SciPy is not installed" in n for n in entry["notes"])
