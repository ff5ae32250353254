"""nbdeploy score: in process, on a real LocalCluster, on a `dask scheduler` + `dask worker`
started here; lineage beside the output; the CLI and %deploy score."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from nbdeploy.base.errors import NbdeployError
from nbdeploy.capture.hashing import content_hash
from nbdeploy.score import score


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_local_cluster_gives_the_in_process_output_and_lineage(classifier_bundle, customers, tmp_path):
    one = score(classifier_bundle, str(customers), str(tmp_path / "one.parquet"), workers=1, chunk_rows=100)
    two = score(classifier_bundle, str(customers), str(tmp_path / "two.parquet"), workers=2, chunk_rows=100)
    assert two.summary.workers == 2 and two.summary.cluster == "LocalCluster(2)"
    assert two.summary.predictor == one.summary.predictor == "sklearn.pipeline.Pipeline.predict"
    a, b = pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "two.parquet")
    assert a.equals(b) and len(a) == 1998
    expected = [f"c{i:05d}" for i in range(2000) if i not in (17, 1203)]
    assert b["customer"].tolist() == expected  # input order kept across 8 row groups on 2 workers
    for r in (one, two):
        c = r.summary.counts
        assert (c.rows, c.scored, c.rejected) == (2000, 1998, 2)
    rejects = pd.read_csv(tmp_path / "two.rejects.csv")
    assert rejects["row"].tolist() == [17, 1203] and rejects["reason"].str.startswith("age: ").all()
    event = json.loads((tmp_path / "two.lineage.json").read_text())
    assert event["eventType"] == "COMPLETE" and event["run"]["facets"]["nbdeploy_score"]["modelVersion"] == "3"
    (inp,), outs = event["inputs"], {o["name"]: o for o in event["outputs"]}
    assert inp["facets"]["version"]["datasetVersion"] == content_hash(customers)[0]
    assert inp["inputFacets"]["inputStatistics"]["rowCount"] == 2000
    out = outs[str(tmp_path / "two.parquet")]
    assert out["facets"]["version"]["datasetVersion"] == content_hash(tmp_path / "two.parquet")[0]
    assert out["outputFacets"]["outputStatistics"]["rowCount"] == 1998
    assert outs[str(tmp_path / "two.rejects.csv")]["outputFacets"]["outputStatistics"]["rowCount"] == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no part folders left


def test_a_compiled_program_scores_on_threads_and_local_starts_a_local_cluster(compiled_classifier_bundle,
                                                                              customers, tmp_path):
    """--workers N of a compiled program: N threads in this process (no LocalCluster); --scheduler
    local: a LocalCluster of N worker processes all the same; the same files either way."""
    threads = score(compiled_classifier_bundle, str(customers), str(tmp_path / "t.parquet"), workers=2,
                    chunk_rows=100)
    assert threads.summary.cluster == "threads(2)" and threads.summary.workers == 2
    assert threads.summary.predictor.endswith("(compiled program)")
    default = score(compiled_classifier_bundle, str(customers), str(tmp_path / "d.parquet"), chunk_rows=100)
    assert default.summary.workers == len(os.sched_getaffinity(0))  # a thread per CPU
    processes = score(compiled_classifier_bundle, str(customers), str(tmp_path / "p.parquet"), workers=2,
                      chunk_rows=100, scheduler="local")
    assert processes.summary.cluster == "LocalCluster(2)" and processes.summary.workers == 2
    a, b, c = (pd.read_parquet(tmp_path / f"{n}.parquet") for n in "tdp")
    assert a.equals(b) and a.equals(c) and len(a) == 1998
    assert a["customer"].tolist() == [f"c{i:05d}" for i in range(2000) if i not in (17, 1203)]
    for r in (threads, default, processes):
        assert (r.summary.counts.scored, r.summary.counts.rejected) == (1998, 2)
    assert pd.read_csv(tmp_path / "t.rejects.csv")["row"].tolist() == [17, 1203]


def test_a_dask_scheduler_and_workers_started_as_processes(classifier_bundle, customers, tmp_path):
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    dask = [sys.executable, "-m", "distributed.cli.dask_"]
    procs = [subprocess.Popen([*dask[:2], "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                               str(port), "--no-dashboard"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([*dask[:2], "distributed.cli.dask_worker", addr, "--nthreads", "1",
                                           "--no-dashboard", "--host", "127.0.0.1", "--no-nanny"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from dask.distributed import Client

        deadline = time.monotonic() + 120
        while True:
            try:
                with Client(addr, timeout="5s") as c:
                    if len(c.scheduler_info()["workers"]) == 2:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the dask workers did not join"
            time.sleep(0.5)
        r = score(classifier_bundle, str(customers), str(tmp_path / "out.parquet"), scheduler=addr,
                  chunk_rows=100, id_column="customer")
        assert r.summary.workers == 2 and r.summary.counts.scored == 1998
        out = pd.read_parquet(tmp_path / "out.parquet")
        score(classifier_bundle, str(customers), str(tmp_path / "local.parquet"), workers=1,
              id_column="customer")
        assert out.equals(pd.read_parquet(tmp_path / "local.parquet"))
        assert out.columns.tolist() == ["customer", "prediction"]
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_a_failing_unit_leaves_no_output(classifier_bundle, training_frame, tmp_path):
    (tmp_path / "in").mkdir()
    training_frame.to_parquet(tmp_path / "in" / "a.parquet")
    training_frame.drop(columns=["member"]).to_parquet(tmp_path / "in" / "b.parquet")
    (tmp_path / "out").mkdir()
    with pytest.raises(NbdeployError, match=r"b\.parquet failed on a Dask worker: .*lacks the model's input"):
        score(classifier_bundle, str(tmp_path / "in"), str(tmp_path / "out" / "s.parquet"), workers=2)
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(NbdeployError, match="cannot reach the Dask scheduler"):
        score(classifier_bundle, str(tmp_path / "in"), str(tmp_path / "out" / "s.parquet"),
              scheduler=f"tcp://127.0.0.1:{_free_port()}")


def test_cli(classifier_bundle, customers, tmp_path, capsys):
    from nbdeploy.frontends.cli import main

    assert main(["score", str(classifier_bundle), str(customers), "-o", str(tmp_path / "o.csv"), "--workers", "1",
                 "--id", "customer", "--chunk-rows", "300"]) == 0
    out = capsys.readouterr().out
    assert "scored 1998 of 2000 rows" in out and "rejected 2" in out
    assert pd.read_csv(tmp_path / "o.csv")["customer"].iloc[-1] == "c01999"
    assert main(["score", str(classifier_bundle), str(customers), "-o", str(tmp_path / "o.txt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nbdeploy: error: cannot tell the format of the output")
    assert main(["score", str(classifier_bundle), str(customers), "-o", str(tmp_path / "j.parquet"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["cluster"] == ""  # 2,000 rows: scored in this process by default, no LocalCluster to start
    assert doc["counts"]["rejected"] == 2 and doc["hashes"][str(tmp_path / "j.parquet")].startswith("blake3:")


def test_deploy_score_magic(ipshell, classifier_bundle, customers, tmp_path, capsys):
    from IPython.core.error import UsageError

    ipshell.run_line_magic("deploy", f"score {classifier_bundle} {customers} -o {tmp_path / 'm.parquet'} "
                                     "--workers 1")
    assert "scored 1998 of 2000 rows" in capsys.readouterr().out
    assert len(pd.read_parquet(tmp_path / "m.parquet")) == 1998
    with pytest.raises(UsageError, match="%deploy score: no input files"):
        ipshell.run_line_magic("deploy", f"score {classifier_bundle} {tmp_path / 'none.csv'} -o {tmp_path / 'x.csv'}")


def test_lineage_of_urls_is_written_beside_them(classifier_bundle, customers):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.put(str(customers), "/nbd-lineage/customers.parquet")
    r = score(classifier_bundle, "memory://nbd-lineage/customers.parquet", "memory://nbd-lineage/o.parquet",
              workers=1)
    with fs.open("/nbd-lineage/o.lineage.json") as f:
        event = json.load(f)
    assert event["inputs"][0]["facets"]["version"]["datasetVersion"] == content_hash(customers)[0]
    assert r.hashes["memory://nbd-lineage/o.parquet"].startswith("blake3:")


def test_logged_to_mlflow_when_tracking_is_configured(classifier_bundle, customers, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    r = score(classifier_bundle, str(customers), str(tmp_path / "o.parquet"), workers=1)
    from mlflow.tracking import MlflowClient

    run = MlflowClient(tracking_uri=uri).get_run(r.mlflow_run_id)
    assert run.data.metrics["scored"] == 1998 and run.data.metrics["rejected"] == 2
    assert run.data.params["model_version"] == "3"
    assert run.data.tags["nbdeploy.hash.o.parquet"] == content_hash(tmp_path / "o.parquet")[0]
