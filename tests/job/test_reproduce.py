"""nbdeploy reproduce: re-run from a clean kernel and say exactly what matched or differed."""

from __future__ import annotations

import json

from nbdeploy import cli
from nbdeploy.job.reproduce import compare_metrics, reproduce
from nbdeploy.job.run import run_notebook


def _by(report_checks, kind, name):
    return next(c for c in report_checks if c["kind"] == kind and c["name"] == name)


def test_unchanged_notebook_reproduces_its_capture_record(proj, capsys):
    assert cli.main(["capture", str(proj / "tiny.ipynb"), "--json"]) == 0
    capsys.readouterr()
    assert cli.main(["reproduce", str(proj / "tiny.ipynb"), "--tracking", "off"]) == 0
    out = capsys.readouterr().out
    assert "REPRODUCED" in out and "baseline capture record (job session" in out
    assert "matched" in out and "differed" not in out
    runs = sorted((proj / ".nbdeploy" / "tiny" / "runs").iterdir())
    report = json.loads((runs[-1] / "reproduce.json").read_text())
    assert report["ok"] is True
    kinds = {(c["kind"], c["name"]): c["status"] for c in report["checks"]}
    assert kinds == {("status", "run"): "matched", ("input", "data.csv"): "matched",
                     ("output", "out.csv"): "matched", ("metric", "score"): "matched",
                     ("metric", "rows"): "matched"}


def test_one_changed_byte_of_input_is_reported_with_its_consequences(proj, capsys):
    base = run_notebook(proj / "tiny.ipynb", cli=[("alpha", "2")], tracking="off")
    data = proj / "data.csv"
    data.write_bytes(data.read_bytes().replace(b"1,2\n", b"1,3\n", 1))  # one byte
    code = cli.main(["reproduce", str(proj / "tiny.ipynb"), "--run", base.run_id, "--json",
                     "--tracking", "off"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["ok"] is False
    assert doc["baseline"] == f"run {base.run_id}"
    assert doc["run"]["parameters"]["alpha"] == 2.0  # the baseline's parameters were used
    inp = _by(doc["checks"], "input", "data.csv")
    assert inp["status"] == "differed" and inp["expected"] != inp["actual"]
    assert inp["detail"].startswith(f"sha256 {inp['expected'][:12]} -> {inp['actual'][:12]}")
    score = _by(doc["checks"], "metric", "score")
    assert score["status"] == "differed" and (score["expected"], score["actual"]) == (43.0, 45.0)
    assert "43 -> 45 (delta +2" in score["detail"]
    assert _by(doc["checks"], "metric", "rows")["status"] == "matched"
    assert _by(doc["checks"], "output", "out.csv")["status"] == "differed"


def test_metrics_within_tolerance_match_and_others_say_by_how_much():
    checks = compare_metrics({"acc": 0.9, "loss": 1.0, "gone": 1.0},
                             {"acc": 0.9 + 1e-12, "loss": 1.25, "new": 2.0}, 1e-6, 1e-9)
    got = {c.name: c for c in checks}
    assert got["acc"].status == "matched"
    assert got["loss"].status == "differed" and "1 -> 1.25 (delta +0.25, +25.000%" in got["loss"].detail
    assert got["gone"].status == "missing" and got["new"].status == "new"
    assert not any(c.failed for c in [got["acc"], got["new"]])


def test_reproduce_with_a_failing_rerun_reports_the_cell(proj):
    base = run_notebook(proj / "tiny.ipynb", tracking="off")
    # the notebook changed since the baseline: the re-run fails in cell 4
    import nbformat

    nb = nbformat.read(proj / "tiny.ipynb", 4)
    nb.cells[4].source = 'raise RuntimeError("broken since")'
    nbformat.write(nb, proj / "tiny.ipynb")
    report = reproduce(proj / "tiny.ipynb", run_id=base.run_id, tracking="off")
    status = report.checks[0]
    assert not report.ok and status.status == "differed"
    assert "cell 4 ('raise RuntimeError" in status.detail
    assert any(c.kind == "output" and c.status == "missing" for c in report.checks)
