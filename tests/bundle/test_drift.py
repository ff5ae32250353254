"""``nbdeploy drift BUNDLE --log`` and ``%deploy drift``: the report offline, its page, --fail-on, --json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from IPython.core.error import UsageError


def _frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(10.0 + shift, 2.0, n),
                         "kind": rng.choice(["a", "b", "c"], n, p=[0.6, 0.3, 0.1] if not shift else [0.2, 0.3, 0.5])})


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from nbdeploy.capture.profile import profile_frame
    from nbdeploy.serve.seal import checksums

    X = _frame(3000, seed=1)
    y = X["x"] * 2 + (X["kind"] == "b")
    model = make_pipeline(make_column_transformer((OneHotEncoder(), ["kind"]), remainder="passthrough"),
                          LinearRegression()).fit(X, y)
    root = tmp_path_factory.mktemp("drift") / "bundle"
    mlflow.sklearn.save_model(model, str(root / "model"), signature=infer_signature(X, model.predict(X)),
                              serialization_format="cloudpickle")
    (root / "profile.json").write_text(json.dumps(profile_frame(X)))  # no prediction profile: an older bundle
    fmt = yaml.safe_load((root / "model" / "MLmodel").read_text())["flavors"]["sklearn"]["serialization_format"]
    (root / "nbdeploy.json").write_text(json.dumps({"name": "lin", "version": "1", "model": {"serialization": fmt},
                                                    "files": checksums(root)}))
    return root


def _log(path: Path, df: pd.DataFrame) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)  # as a server makes its log's folder
    with path.open("w") as f:
        for i in range(0, len(df), 25):
            part = df.iloc[i:i + 25]
            f.write(json.dumps({"ts": 1.8e9 + i, "endpoint": "invocations", "status": 200, "model": "lin",
                                "version": "1", "inputs": {"columns": list(part.columns),
                                                           "data": part.values.tolist()},
                                "outputs": [0.0] * len(part)}) + "\n")
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbdeploy", "drift", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_offline_report_page_json_and_fail_on(bundle, tmp_path) -> None:
    same = _log(tmp_path / "same.jsonl", _frame(500, seed=2))
    moved = _log(tmp_path / "moved.jsonl", _frame(500, seed=3, shift=1.5))
    ok = _cli(str(bundle), "--log", str(same), "--fail-on", "moderate")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"drift of 500 rows logged in {same} against lin v1: stable")
    assert "no prediction profile" in ok.stdout  # an older bundle: said, not an error

    page = tmp_path / "out" / "report.html"
    bad = _cli(str(bundle), "--log", str(moved), "--html", str(page), "--fail-on", "drift", "--json")
    assert bad.returncode == 3, bad.stderr
    doc = json.loads(bad.stdout)
    assert doc["verdict"] == "drift" and set(doc["drifted"]) == {"x", "kind"}
    assert {f["test"] for f in doc["features"]} == {"ks", "chi2"}
    assert "x, kind at --fail-on drift or worse: exit 3" in bad.stderr or "kind, x at --fail-on" in bad.stderr
    assert page.read_text().count("<svg") == 2

    gate_only_moderate = _cli(str(bundle), "--log", str(same), "--fail-on", "drift")
    assert gate_only_moderate.returncode == 0


@pytest.mark.parametrize(("args", "message"), [
    (["{bundle}", "--log", "{tmp}/nothing.jsonl"], "nbdeploy: error: no request log at {tmp}/nothing.jsonl"),
    (["{bundle}"], "nbdeploy: error: {bundle} is not a URL: a bundle needs --log REQUESTS.jsonl"),
    (["{tmp}/nobundle", "--log", "{tmp}/empty.jsonl"], "nbdeploy: error: no bundle folder at {tmp}/nobundle"),
    (["{bundle}", "--log", "{tmp}/empty.jsonl"], "nbdeploy: error: the request log {tmp}/empty.jsonl has no answered"),
    (["http://127.0.0.1:9", "--log", "{tmp}/empty.jsonl"], "nbdeploy: error: --log reads a request log offline"),
])
def test_cli_bad_input_is_one_line(bundle, tmp_path, args, message) -> None:
    (tmp_path / "empty.jsonl").write_text("")
    fill = {"bundle": str(bundle), "tmp": str(tmp_path)}
    done = _cli(*(a.format(**fill) for a in args))
    assert done.returncode == 2
    assert done.stderr.startswith(message.format(**fill)) and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_magic_shows_the_log_of_the_notebooks_last_api_inline(ipshell, tmp_path, bundle) -> None:
    from nbdeploy.bundle import servers

    (tmp_path / "nb.ipynb").write_text("{}")
    ipshell.run_line_magic("deploy", "init")
    with pytest.raises(UsageError, match="no API of this notebook is running and there is no request log"):
        ipshell.run_line_magic("deploy", "drift")
    log = servers.request_log(tmp_path / "nb.ipynb")
    _log(log, _frame(400, seed=4, shift=2.0))
    report = ipshell.run_line_magic("deploy", f"drift {bundle}")
    html = report._repr_html_()
    assert html.startswith('<div class="nbd-drift" data-verdict="drift">') and html.count("<svg") == 2
    assert "<html" not in html  # a fragment, its style scoped under .nbd-drift
    report = ipshell.run_line_magic("deploy", f"drift {bundle} --log {log} --text")
    assert report is None


def test_the_prediction_profile_written_at_build_time(tmp_path) -> None:
    from nbdeploy.bundle.export import PREDICTION_ROWS, _prediction_profile

    train = _frame(PREDICTION_ROWS + 5000, seed=5)
    train.to_csv(tmp_path / "train.csv", index=False)
    entry = {"kind": "file", "function": "read_csv", "path": str(tmp_path / "train.csv")}
    numbers = _prediction_profile(entry, ["x", "kind"], lambda d: d["x"].to_numpy() * 2)
    assert numbers is not None and numbers["rows"] == PREDICTION_ROWS  # a sample, not every row
    stats = numbers["columns"]["prediction"]
    assert stats["kind"] == "numeric" and len(stats["quantile_grid"]) == 201
    assert stats["mean"] == pytest.approx(2 * train["x"].mean(), rel=0.01)
    labels = _prediction_profile(entry, ["x", "kind"], lambda d: np.where(d["x"] > 10, "high", "low"))
    assert labels is not None and labels["columns"]["prediction"]["kind"] == "categorical"
    # never a reason for the build to fail: no profile when it cannot be made
    assert _prediction_profile({**entry, "path": str(tmp_path / "gone.csv")}, ["x"], lambda d: d["x"]) is None
    assert _prediction_profile(entry, ["x"], lambda d: np.zeros((len(d), 2))) is None


def test_free_text_is_profiled_as_text_and_ids_and_categories_are_not() -> None:
    """Sentences, mostly distinct: "text" (lengths, no values); single-word identifiers, however many,
    and a few repeated phrases stay categories."""
    from nbdeploy.capture.profile import profile_frame

    rng = np.random.default_rng(0)
    words = ["battery", "screen", "lasts", "long", "cracked", "arrived", "late", "works", "fine", "today"]
    frame = pd.DataFrame({
        "note": [" ".join(rng.choice(words, 5)) for _ in range(200)],
        "customer": [f"C{i:05d}" for i in range(200)],
        "phrase": rng.choice(["very good value", "not good at all", "fine"], 200),
    })
    cols = profile_frame(frame)["columns"]
    assert cols["note"]["kind"] == "text" and "values" not in cols["note"] and "top" not in cols["note"]
    lengths = frame["note"].str.len()
    assert cols["note"]["length"] == {"min": int(lengths.min()), "max": int(lengths.max()),
                                      "mean": round(float(lengths.mean()), 2)}
    assert cols["customer"]["kind"] == "categorical" and cols["customer"]["distinct"] == 200
    assert cols["phrase"]["kind"] == "categorical" and cols["phrase"]["values"] == [
        "fine", "not good at all", "very good value"]
