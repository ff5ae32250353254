"""Batch scoring with the serving runtime (``python -m nbdeploy_serve score``): real files, the
fixture bundles, the API's answers for the same rows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from nbdeploy.serve.errors import ServeError
from nbdeploy.serve.score import Scorer
from nbdeploy.serve.score_run import score_files

PACKAGE = Path(__file__).resolve().parents[2] / "nbdeploy" / "serve"


@pytest.fixture(scope="module")
def clf_scorer(classifier_bundle):
    return Scorer(classifier_bundle)


def _rows(training_frame, n=120):
    df = training_frame.head(n).copy()
    df.insert(0, "customer", [f"c{i:04d}" for i in range(n)])
    return df


def _api(client, df: pd.DataFrame) -> tuple[int, dict]:
    split = json.loads(df.to_json(orient="split", index=False))
    status, _, body = client.post("/invocations", {"dataframe_split": {"columns": split["columns"],
                                                                       "data": split["data"]}})
    return status, body


def test_output_equals_the_apis_predictions(classifier_bundle, classifier_server, client_for, clf_scorer,
                                            training_frame, tmp_path):
    df = training_frame.sample(frac=1.0, random_state=3).reset_index(drop=True)  # nulls in income included
    df.to_parquet(tmp_path / "in.parquet")
    df.to_csv(tmp_path / "in.csv", index=False)
    _, api = _api(client_for(classifier_server), df)
    for src, out in (("in.parquet", "out.parquet"), ("in.csv", "out.csv")):
        summary = score_files(classifier_bundle, str(tmp_path / src), str(tmp_path / out), chunk_rows=64,
                              scorer=clf_scorer)
        assert (summary.counts.rows, summary.counts.scored, summary.counts.rejected) == (len(df), len(df), 0)
        got = pd.read_parquet(tmp_path / out) if out.endswith("parquet") else pd.read_csv(tmp_path / out)
        assert got["prediction"].tolist() == api["predictions"]
        assert got.columns.tolist() == [*df.columns, "prediction"]
        assert got["age"].tolist() == df["age"].tolist()  # input order kept


def test_rejects_carry_the_apis_reasons_and_nothing_is_dropped(classifier_bundle, classifier_server,
                                                              client_for, clf_scorer, training_frame, tmp_path):
    df = _rows(training_frame, 30).astype(object)
    df.loc[4, "age"] = "forty"  # wrong type
    df.loc[9, "member"] = None  # null where training had none
    df.loc[12, "age"] = 150  # out of range: scored, counted
    df.loc[13, "city"] = "oslo"  # unseen category: scored, counted
    df.to_csv(tmp_path / "in.csv", index=False)
    s = score_files(classifier_bundle, str(tmp_path / "in.csv"), str(tmp_path / "out.csv"), chunk_rows=8,
                    scorer=clf_scorer)
    c = s.counts
    assert (c.rows, c.scored, c.rejected, c.out_of_range) == (30, 28, 2, 2)
    assert c.flags == {"age:out_of_range": 1, "city:unseen_category": 1}
    rejects = pd.read_csv(tmp_path / "out.rejects.csv")
    assert rejects["row"].tolist() == [4, 9] and rejects["customer"].tolist() == ["c0004", "c0009"]
    assert rejects["reason"][0].startswith("age: wrong_type") and "forty" in rejects["reason"][0]
    assert rejects["reason"][1].startswith("member: null")
    out = pd.read_csv(tmp_path / "out.csv")
    assert out["customer"].tolist() == [f"c{i:04d}" for i in range(30) if i not in (4, 9)]
    summary = json.loads((tmp_path / "out.summary.json").read_text())
    assert summary["counts"]["rejected"] == 2 and summary["model"] == "churn" and summary["version"] == "3"
    # the API refuses the same rows for the same reasons, and scores the rest alike
    client = client_for(classifier_server)
    for i, problem in ((4, "wrong_type"), (9, "null")):
        row = df.drop(columns=["customer"]).iloc[[i]]
        status, _, body = client.post("/invocations", body=row.to_csv(index=False).encode(), content_type="text/csv")
        assert status == 422 and body["errors"][0]["problem"] == problem
    rest = df.drop(index=[4, 9], columns=["customer"])
    status, _, body = client.post("/invocations", body=rest.to_csv(index=False).encode(), content_type="text/csv")
    assert status == 200 and body["predictions"] == out["prediction"].tolist()


def test_chunking_gives_the_same_output_as_one_chunk(classifier_bundle, clf_scorer, training_frame, tmp_path):
    df = _rows(training_frame, 400)
    df.to_parquet(tmp_path / "in.parquet", row_group_size=50)
    for n in (7, 64, 100_000):
        score_files(classifier_bundle, str(tmp_path / "in.parquet"), str(tmp_path / f"out{n}.csv"), chunk_rows=n,
                    scorer=clf_scorer)
    one = (tmp_path / "out100000.csv").read_bytes()
    assert (tmp_path / "out7.csv").read_bytes() == one == (tmp_path / "out64.csv").read_bytes()


def test_id_column_folders_and_globs(classifier_bundle, clf_scorer, training_frame, tmp_path):
    df = _rows(training_frame, 90)
    (tmp_path / "in").mkdir()
    for k in range(3):  # the files are read in name order
        df.iloc[30 * k: 30 * (k + 1)].to_parquet(tmp_path / "in" / f"part-{k}.parquet")
    score_files(classifier_bundle, str(tmp_path / "in"), str(tmp_path / "a.parquet"), id_column="customer",
                chunk_rows=16, scorer=clf_scorer)
    score_files(classifier_bundle, str(tmp_path / "in" / "part-*.parquet"), str(tmp_path / "b.parquet"),
                id_column="customer", scorer=clf_scorer)
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    assert a.columns.tolist() == ["customer", "prediction"] and a["customer"].tolist() == df["customer"].tolist()
    assert a.equals(b)
    with pytest.raises(ServeError, match="no id column 'nope'"):
        score_files(classifier_bundle, str(tmp_path / "in"), str(tmp_path / "c.parquet"), id_column="nope",
                    scorer=clf_scorer)


def test_a_failure_leaves_no_output(classifier_bundle, clf_scorer, training_frame, tmp_path):
    df = _rows(training_frame, 40)
    (tmp_path / "in").mkdir()
    df.to_csv(tmp_path / "in" / "a.csv", index=False)
    df.drop(columns=["city"]).to_csv(tmp_path / "in" / "b.csv", index=False)
    (tmp_path / "out").mkdir()
    with pytest.raises(ServeError, match=r"b\.csv lacks the model's input column\(s\) city"):
        score_files(classifier_bundle, str(tmp_path / "in"), str(tmp_path / "out" / "scored.parquet"),
                    chunk_rows=10, scorer=clf_scorer)
    assert list((tmp_path / "out").iterdir()) == []  # no partial output, no part files left behind
    with pytest.raises(ServeError, match="cannot tell the format of the output"):
        score_files(classifier_bundle, str(tmp_path / "in"), str(tmp_path / "out" / "scored.txt"), scorer=clf_scorer)
    with pytest.raises(ServeError, match="no input files"):
        score_files(classifier_bundle, str(tmp_path / "nothing-*.csv"), str(tmp_path / "o.csv"), scorer=clf_scorer)


def test_the_seal_is_checked_before_scoring(classifier_bundle, tmp_path):
    broken = tmp_path / "bundle"
    shutil.copytree(classifier_bundle, broken)
    (broken / "profile.json").write_text("{}")
    with pytest.raises(ServeError, match="profile.json"):
        Scorer(broken)


def test_regression_predictions_are_floats(regressor_bundle, training_frame, tmp_path):
    df = _rows(training_frame, 50)
    df.to_parquet(tmp_path / "in.parquet")
    score_files(regressor_bundle, str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"))
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["prediction"].dtype == "float64" and len(out) == 50


def test_python_m_nbdeploy_serve_score_from_a_copy_of_the_package(classifier_bundle, training_frame, tmp_path):
    pkgs = tmp_path / "pkgs"
    shutil.copytree(PACKAGE, pkgs / "nbdeploy_serve", ignore=shutil.ignore_patterns("__pycache__"))
    _rows(training_frame, 25).to_csv(tmp_path / "in.csv", index=False)
    env = {**os.environ, "PYTHONPATH": str(pkgs)}
    run = subprocess.run([sys.executable, "-m", "nbdeploy_serve", "score", str(classifier_bundle),
                          str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.parquet"), "--id", "customer"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "scored 25 of 25 rows" in run.stdout
    assert pd.read_parquet(tmp_path / "out.parquet").columns.tolist() == ["customer", "prediction"]
    bad = subprocess.run([sys.executable, "-m", "nbdeploy_serve", "score", str(classifier_bundle),
                          str(tmp_path / "missing.csv"), "-o", str(tmp_path / "o.csv")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: no input files in")


def test_fsspec_urls_in_and_out(classifier_bundle, clf_scorer, training_frame):
    import fsspec

    fs = fsspec.filesystem("memory")
    df = _rows(training_frame, 40)
    with fs.open("/nbd-score/in/a.parquet", "wb") as f:
        df.iloc[:25].to_parquet(f)
    with fs.open("/nbd-score/in/b.parquet", "wb") as f:
        df.iloc[25:].to_parquet(f)
    s = score_files(classifier_bundle, "memory://nbd-score/in/*.parquet", "memory://nbd-score/out/s.csv",
                    id_column="customer", scorer=clf_scorer)
    assert s.counts.scored == 40 and s.inputs == ["memory:///nbd-score/in/a.parquet", "memory:///nbd-score/in/b.parquet"]
    with fs.open("/nbd-score/out/s.csv") as f:
        assert pd.read_csv(f)["customer"].tolist() == df["customer"].tolist()
    assert fs.exists("/nbd-score/out/s.rejects.csv") and fs.exists("/nbd-score/out/s.summary.json")


def test_without_pyarrow_one_line_says_so(classifier_bundle, tmp_path):
    code = ("import sys; sys.modules['pyarrow'] = None; from nbdeploy.serve.__main__ import main; "
            f"sys.exit(main(['score', {str(classifier_bundle)!r}, 'in.csv', '-o', 'out.csv']))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.startswith("error: batch scoring needs pyarrow")


def test_a_compiled_program_on_threads_answers_as_the_api(compiled_classifier_bundle, client_for, training_frame,
                                                          tmp_path):
    """The compiled program scores chunks on several threads (text columns dictionary-encoded,
    numbers read from Arrow's buffers): the API's answers, in input order, rejects with reasons,
    the same files as one thread."""
    from conftest import start

    df = _rows(training_frame, 400).sample(frac=1.0, random_state=5).reset_index(drop=True)
    df.loc[[7, 250], "city"] = "rome"  # unseen: scored and counted
    df.to_parquet(tmp_path / "in.parquet", row_group_size=90)
    bad = df.astype({"age": object})
    bad.loc[33, "age"] = "forty"
    bad.to_csv(tmp_path / "in.csv", index=False)
    handle = start(compiled_classifier_bundle, tmp_path)
    try:
        client = client_for(handle)
        _, _, meta = client.get("/metadata")
        assert "compiled program" in json.dumps(meta)
        _, api = _api(client, df.drop(columns=["customer"]))
    finally:
        handle.stop()
    for src in ("in.parquet", "in.csv"):
        one = score_files(compiled_classifier_bundle, str(tmp_path / src), str(tmp_path / f"1-{src}.parquet"),
                          chunk_rows=40, threads=1)
        three = score_files(compiled_classifier_bundle, str(tmp_path / src), str(tmp_path / f"3-{src}.parquet"),
                            chunk_rows=40, threads=3)
        assert three.cluster == "threads(3)" and three.workers == 3 and "compiled program" in three.predictor
        assert one.cluster == "" and one.counts == three.counts
        a, b = pd.read_parquet(tmp_path / f"1-{src}.parquet"), pd.read_parquet(tmp_path / f"3-{src}.parquet")
        assert a.equals(b)
        if src == "in.parquet":  # text read dictionary-encoded goes out as the text type it came in
            import pyarrow.parquet as pq

            got, came = pq.read_schema(tmp_path / f"3-{src}.parquet"), pq.read_schema(tmp_path / src)
            assert [(f.name, f.type) for f in got][:-1] == [(f.name, f.type) for f in came]
        kept = [i for i in range(len(df)) if not (src == "in.csv" and i == 33)]
        assert b["customer"].tolist() == df["customer"].iloc[kept].tolist()  # input order kept
        assert b["prediction"].tolist() == [api["predictions"][i] for i in kept]
        c = three.counts
        assert (c.rows, c.scored, c.rejected, c.out_of_range) == (400, len(kept), 400 - len(kept), 2)
        assert c.flags["city:unseen_category"] == 2
        rejects = pd.read_csv(tmp_path / f"3-{src}.rejects.csv")
        assert rejects["row"].tolist() == ([33] if src == "in.csv" else [])


def test_the_id_column_is_written_without_a_dictionary(compiled_classifier_bundle, training_frame, tmp_path):
    """An id is unique per row: Parquet writes it plainly (no dictionary built and dropped per
    row group); the predictions keep dictionary encoding; the values are the same either way."""
    import pyarrow.parquet as pq

    df = _rows(training_frame, 300)
    df.to_parquet(tmp_path / "in.parquet")
    score_files(compiled_classifier_bundle, str(tmp_path / "in.parquet"), str(tmp_path / "id.parquet"),
                id_column="customer", chunk_rows=100)
    score_files(compiled_classifier_bundle, str(tmp_path / "in.parquet"), str(tmp_path / "all.parquet"),
                chunk_rows=100)
    meta = pq.ParquetFile(tmp_path / "id.parquet").metadata
    encodings = {meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i).encodings
                 for i in range(meta.num_columns)}
    assert "RLE_DICTIONARY" not in encodings["customer"] and "RLE_DICTIONARY" in encodings["prediction"]
    whole = pq.ParquetFile(tmp_path / "all.parquet").metadata.row_group(0).column(0)
    assert whole.path_in_schema == "customer" and "RLE_DICTIONARY" in whole.encodings  # without --id: as before
    a, b = pd.read_parquet(tmp_path / "id.parquet"), pd.read_parquet(tmp_path / "all.parquet")
    assert a["customer"].tolist() == df["customer"].tolist() and a["prediction"].equals(b["prediction"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc is tuned on Linux only")
def test_arrow_buffers_come_from_the_tuned_malloc_while_scoring(compiled_classifier_bundle, training_frame,
                                                                tmp_path):
    """While the threads score, Arrow allocates with glibc's malloc (which keeps freed pages for the
    next chunk); the process's default pool is put back after, also when the run fails."""
    import pyarrow as pa

    _rows(training_frame, 200).to_parquet(tmp_path / "in.parquet")
    before = pa.default_memory_pool().backend_name
    seen: list[str] = []
    score_files(compiled_classifier_bundle, str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"),
                chunk_rows=50, on_rows=lambda n: seen.append(pa.default_memory_pool().backend_name))
    assert seen == ["system"] * 4 and pa.default_memory_pool().backend_name == before

    def fail(n: int) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        score_files(compiled_classifier_bundle, str(tmp_path / "in.parquet"), str(tmp_path / "x.parquet"),
                    chunk_rows=50, on_rows=fail)
    assert pa.default_memory_pool().backend_name == before and not (tmp_path / "x.parquet").exists()


def test_a_scoring_run_imports_only_what_it_uses(compiled_classifier_bundle, training_frame, tmp_path):
    """`nbdeploy score` of a compiled program, in a fresh process: no pandas, scikit-learn, MLflow,
    OpenLineage client, numpy.ma (numpy 2's np.unique asks it) or job machinery imported, the
    bundle's seal checked once (each check hashes every file of the bundle), OpenBLAS on one thread."""
    _rows(training_frame, 100).to_parquet(tmp_path / "in.parquet")
    code = f"""
import sys
import nbdeploy.serve.bundle as b
calls = []
real = b.read_bundle
def counted(*a, **k):
    calls.append(1)
    return real(*a, **k)
b.read_bundle = counted  # (before nbdeploy.serve.score imports it, and numpy)
from nbdeploy.frontends.cli import main
assert main(["score", {str(compiled_classifier_bundle)!r}, {str(tmp_path / "in.parquet")!r}, "-o",
             {str(tmp_path / "out.parquet")!r}, "--id", "customer", "--workers", "1"]) == 0
heavy = ("pandas", "sklearn", "mlflow", "openlineage", "numpy.ma", "nbdeploy.job", "scipy")
print("loaded", sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy)))
print("reads", len(calls))
from threadpoolctl import threadpool_info
print("blas", sorted(set(i["num_threads"] for i in threadpool_info() if i["internal_api"] == "openblas")))
"""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**env, "MLFLOW_TRACKING_URI": ""})
    assert run.returncode == 0, run.stderr
    assert "loaded []" in run.stdout and "reads 1" in run.stdout, run.stdout
    assert "blas [1]" in run.stdout, run.stdout  # OpenBLAS started no threads of its own to spin


def test_arrow_numbers_with_nulls_read_from_their_buffers_as_to_numpy_gives_them():
    """Nulls become NaN (integers as float64), slices keep their offset; what pyarrow's own
    ``to_numpy`` gives, without the pandas it imports."""
    import numpy as np
    import pyarrow as pa

    from nbdeploy.serve.score import _numpy

    cases = [pa.array([1.5, None, 3.0, None]), pa.array([1, None, 3], pa.int32()),
             pa.array([1.0, None, 2.0], pa.float32()), pa.array([None, None], pa.float64()),
             pa.array([2.0, None, 4.0, 5.0, None] * 7).slice(3, 20), pa.array([7, None, 9] * 5, pa.int64()).slice(4),
             pa.array([True, False, None]), pa.array([True, False, True]).slice(1), pa.array([], pa.float64())]
    for arr in cases:
        want, got = np.asarray(arr.to_numpy(zero_copy_only=False)), _numpy(arr)
        assert got.dtype == want.dtype and len(got) == len(want)
        assert [None if v != v else v for v in got.tolist()] == [None if v != v else v for v in want.tolist()]
