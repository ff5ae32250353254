"""nbdeploy run / run_notebook on real kernels: parameters, records, failures, MLflow."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nbdeploy.frontends import cli
from nbdeploy.job import tracking
from nbdeploy.job.run import last_run, list_runs, run_notebook


def _mlflow_run(uri: str, run_id: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri).get_run(run_id)


def test_cli_run_records_parameters_metrics_lineage_and_logs_to_embedded_mlflow(proj):
    out = proj / "executed" / "tiny-alpha2.ipynb"
    proc = subprocess.run([sys.executable, "-m", "nbdeploy", "run", str(proj / "tiny.ipynb"),
                           "-p", "alpha", "2", "-p", "label", "cli", "-o", str(out)],
                          capture_output=True, text=True, cwd=proj, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # the kernel talks over Unix sockets: no "TCP without encryption" warning at every start
    assert "without encryption" not in proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("[1/2] run ") and "alpha=2.0" in lines[0]
    assert lines[1].startswith("[2/2] run ") and "completed" in lines[1]
    assert lines[-1].startswith("run ") and "score=43" in lines[-1]
    store = proj / ".nbdeploy" / "mlflow.db"  # where it goes, and how to look at it
    assert lines[2] == (f"MLflow: logging from a background process to the store {store}; "
                        f"browse it with: mlflow ui --backend-store-uri sqlite:///{store}")

    rec = last_run(proj / "tiny.ipynb")
    assert rec.status == "completed" and rec.kind == "run"
    assert rec.parameters == {"alpha": 2.0, "n": 3, "label": "cli", "fail": False,
                              "data_path": "data.csv"}
    assert rec.given == {"alpha": 2.0, "label": "cli"}
    assert rec.metrics == {"score": 43.0, "rows": 4.0}
    assert rec.copied_to == str(out) and out.exists()
    reads = [e for e in rec.lineage if e["role"] == "read"]
    assert reads[0]["relative_path"] == "data.csv"
    assert reads[0]["hash"].startswith("blake3:") and len(reads[0]["hash"]) == len("blake3:") + 64
    assert reads[0]["cell_indices"] == [2]
    capture = json.loads((proj / ".nbdeploy/tiny/runs" / rec.run_id / "capture.json").read_text())
    assert capture["parameters"]["alpha"] == 2.0 and capture["parameters_cell"] == 1
    assert capture["session"]["mode"] == "job"

    doc = tracking.wait_logged(rec.run_dir)  # logged by the detached logger
    assert doc["status"] == "logged", doc
    assert doc["uri"] == f"sqlite:///{proj / '.nbdeploy' / 'mlflow.db'}"
    ml = _mlflow_run(doc["uri"], doc["mlflow_run_id"])
    assert ml.data.params["alpha"] == "2.0" and ml.data.params["label"] == "cli"
    assert ml.data.metrics == {"score": 43.0, "rows": 4.0}
    assert ml.data.tags["nbdeploy.run_id"] == rec.run_id
    assert ml.info.status == "FINISHED"


def test_failing_cell_is_named_and_the_run_still_recorded(proj, capsys):
    code = cli.main(["run", str(proj / "tiny.ipynb"), "-p", "fail", "yes", "--tracking", "off"])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("nbdeploy: error: cell 4 ('if fail:') raised ValueError: "
                          "asked to fail (label=base)")
    rec = last_run(proj / "tiny.ipynb")
    assert rec.status == "failed"
    assert rec.error["cell_index"] == 4 and rec.error["source_line"] == "if fail:"
    assert rec.error["ename"] == "ValueError"
    assert rec.error["output_path"] == rec.output and rec.output in err
    assert "asked to fail" in open(rec.output).read()  # the traceback is kept
    assert rec.metrics["score"] == 13.0  # metrics reported before the failure are kept


@pytest.mark.parametrize(("argv", "match"), [
    (["-p", "alpah", "1"], "unknown parameter 'alpah' (did you mean 'alpha'?)"),
    (["-p", "n", "3.5"], "parameter 'n' expects int (default 3), got '3.5'"),
])
def test_bad_parameters_fail_before_any_kernel_starts(proj, capsys, argv, match):
    assert cli.main(["run", str(proj / "tiny.ipynb"), *argv]) == 2
    assert capsys.readouterr().err.strip() == f"nbdeploy: error: {match}"
    assert list_runs(proj / "tiny.ipynb") == []


def test_magic_parameters_cell_and_json_output(proj, capsys):
    nb = proj / "magic_params.ipynb"
    before = nb.read_bytes()
    code = cli.main(["run", str(nb), "-p", "alpha", "5", "--json", "--tracking", "off"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out)  # one JSON document; progress went to stderr
    assert doc["status"] == "completed" and doc["metrics"] == {"twice": 10.0}
    assert doc["parameters"] == {"alpha": 5, "label": "a"}
    # progress went to stderr as typed events, one JSON object a line
    events = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    started = [e for e in events if e["type"] == "progress" and e["outcome"] == "started"]
    assert (started[0]["step"], started[0]["steps"]) == (1, 2) and "fresh kernel" in started[0]["title"]
    assert events[-1]["type"] == "progress" and events[-1]["outcome"] in ("ok", "note")
    assert nb.read_bytes() == before  # the user's notebook is never rewritten


def test_runs_are_listed_oldest_first(proj, capsys):
    nb = proj / "magic_params.ipynb"
    assert cli.main(["runs", str(nb)]) == 0
    assert capsys.readouterr().out.strip().endswith(
        "no runs of magic_params.ipynb yet: `nbdeploy run magic_params.ipynb` records one")
    a = run_notebook(nb, parameters={"alpha": 1}, tracking="off")
    b = run_notebook(nb, cli=[("label", "b")], tracking="off")
    assert [r.run_id for r in list_runs(nb)] == [a.run_id, b.run_id]
    assert last_run(nb).run_id == b.run_id
    assert cli.main(["runs", str(nb)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["run", "kind", "status", "duration", "parameters", "metrics", "error"]
    rows = [ln for ln in lines if ln.startswith((a.run_id, b.run_id))]
    assert [r.split()[0] for r in rows] == [a.run_id, b.run_id]
    assert "alpha=1 " in rows[0] and "label='b'" in rows[1] and "twice=" in rows[0]
