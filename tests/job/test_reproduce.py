"""nbdeploy reproduce: re-run from a clean kernel and say exactly what matched or differed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from nbdeploy.frontends import cli
from nbdeploy.job.reproduce import compare_files, compare_metrics, count_checks, reproduce
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


def test_a_capture_record_of_the_sha256_format_is_compared_by_sha256(proj, capsys):
    """A baseline written before lineage moved to BLAKE3: the re-run's files are hashed again."""
    assert cli.main(["capture", str(proj / "tiny.ipynb"), "--json"]) == 0
    capsys.readouterr()
    path = proj / ".nbdeploy" / "tiny" / "capture.json"
    record = json.loads(path.read_text())
    record["format"] = "nbdeploy.capture/1"
    for e in record["lineage"]:
        e.pop("hash")
        e["sha256"] = hashlib.sha256(Path(e["path"]).read_bytes()).hexdigest()
    path.write_text(json.dumps(record))
    report = reproduce(proj / "tiny.ipynb", tracking="off")
    inp = next(c for c in report.checks if c.kind == "input")
    assert report.ok and inp.status == "matched"
    assert inp.expected == inp.actual == "sha256:" + hashlib.sha256((proj / "data.csv").read_bytes()).hexdigest()
    assert inp.detail.startswith(inp.expected[:19])


def test_hashes_of_two_algorithms_are_never_compared_as_strings(tmp_path):
    data = tmp_path / "data.csv"
    data.write_bytes(b"a,b\n1,2\n")
    old = [{"role": "read", "kind": "file", "path": str(data), "relative_path": "data.csv",
            "sha256": hashlib.sha256(b"a,b\n1,2\n").hexdigest()}]
    new = [{"role": "read", "kind": "file", "path": str(data), "relative_path": "data.csv",
            "hash": "blake3:" + "0" * 64}]  # what the re-run recorded does not matter: it is redone
    (check,) = compare_files("read", old, new)
    assert check.status == "matched"
    data.write_bytes(b"a,b\n1,3\n")  # one byte
    (check,) = compare_files("read", old, new)
    assert check.status == "differed" and check.actual.startswith("sha256:")
    data.unlink()
    (check,) = compare_files("read", old, new)
    assert check.status == "skipped" and not check.failed
    assert "sha256 hash cannot be compared" in check.detail


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
    assert inp["expected"].startswith("blake3:") and inp["actual"].startswith("blake3:")
    assert inp["detail"].startswith(f"{inp['expected'][:19]} -> {inp['actual'][:19]}")
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


def test_the_verdict_counts_each_check_under_its_own_status(proj, capsys):
    """Issue 15: 'all 6 checks matched' was printed when the table showed a check that did not match."""
    assert cli.main(["capture", str(proj / "tiny.ipynb"), "--json"]) == 0
    capsys.readouterr()
    path = proj / ".nbdeploy" / "tiny" / "capture.json"
    record = json.loads(path.read_text())
    del record["metrics"]["rows"]  # the re-run reports a metric the baseline did not have
    path.write_text(json.dumps(record))
    assert cli.main(["reproduce", str(proj / "tiny.ipynb"), "--tracking", "off"]) == 0
    out = capsys.readouterr().out
    assert "REPRODUCED (4 of 5 checks matched; 1 new: metric rows)" in out
    assert "all 5" not in out


def test_count_checks_names_what_did_not_match():
    def checks(*statuses):
        return [{"kind": "input", "name": f"f{i}.csv", "status": s} for i, s in enumerate(statuses)]

    assert count_checks(checks(*["matched"] * 6)) == "all 6 checks matched"
    assert count_checks(checks(*["matched"] * 5, "skipped")) == \
        "5 of 6 checks matched; 1 skipped: input f5.csv"
    assert count_checks(checks("differed", "missing", "matched", "new", "skipped")) == \
        ("2 of 5 checks differ: input f0.csv, input f1.csv; 1 matched; 1 skipped: input f4.csv; "
         "1 new: input f3.csv")
    assert count_checks(checks(*["skipped"] * 5)).endswith(
        "5 skipped: input f0.csv, input f1.csv, input f2.csv and 2 more")
