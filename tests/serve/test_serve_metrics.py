"""Metrics: batch outputs counted as the per-value rules say, and several workers' counts summed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from nbdeploy.serve.metrics import MAX_LABELS, SMALL_LABELS, VALUE_BUCKETS, Histogram, Metrics


def test_float_outputs_fill_the_same_buckets_as_one_value_at_a_time() -> None:
    values = np.array([-5e6, -1e6, -3.0, 0.0, 0.1, 0.25, 0.5000001, 7.0, 1e6, 2e6, np.inf])
    one = Histogram(VALUE_BUCKETS)
    for v in values.tolist():
        one.observe(v)
    m = Metrics()
    m.outputs(values)
    assert m.prediction_values.counts == one.counts
    assert m.prediction_values.count == one.count == len(values)
    assert m.prediction_values.sum == one.sum
    assert m.prediction_labels == {}


def test_labels_are_counted_by_their_text() -> None:
    m = Metrics()
    m.outputs(np.array([1, 0, 1, 1]))
    m.outputs(np.array([True, False, True]))
    m.outputs(np.array(["yes", "no", "yes"], dtype=object))
    m.outputs(pd.Series(["no", "no"]))
    m.outputs([2, "2", True])  # a list from a pyfunc model: 2 and "2" are one label, True another
    assert m.prediction_labels == {"0": 1, "1": 3, "True": 3, "False": 1, "yes": 2, "no": 3, "2": 2}
    m.outputs(pd.DataFrame({"a": [1.0]}))  # several outputs per row: not counted
    m.outputs(np.array([[0.1, 0.9]]))
    assert m.prediction_values.count == 0


def test_labels_past_the_limit_are_lumped_together() -> None:
    m = Metrics()
    m.outputs(np.arange(MAX_LABELS + 10))
    assert len(m.prediction_labels) == MAX_LABELS + 1
    assert m.prediction_labels["other"] == 10
    big = Metrics()  # past SMALL_LABELS values numpy counts them: the same labels, lumped the same way
    values = np.arange(MAX_LABELS + 10).repeat(3)
    assert values.size > SMALL_LABELS >= MAX_LABELS + 10
    big.outputs(values)
    assert big.prediction_labels == {k: 3 * n for k, n in m.prediction_labels.items()}


def test_workers_counts_are_summed_and_an_exited_workers_requests_in_flight_are_not(tmp_path: Path) -> None:
    # another worker that has exited: its snapshot, written by a real process that is gone now
    script = (
        "import sys; from pathlib import Path; from nbdeploy.serve.metrics import Metrics\n"
        "m = Metrics(); m.shared = Path(sys.argv[1])\n"
        "for _ in range(5): m.request('invocations', 200, 0.003)\n"
        "m.request('invocations', 422, 0.001); m.validation_failure('age', 'missing')\n"
        "m.batch(5, 5, 0.002); m.outputs([1, 1, 0, 1, 1]); m.inflight = 3; m.model_errors = 1\n"
        "m.share()\n"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True)
    (tmp_path / "123456789.json").write_text("not json")  # a damaged file is skipped
    here = Metrics()
    here.shared = tmp_path
    for _ in range(2):
        here.request("invocations", 200, 0.2)
    here.outputs(np.array([0, 0]))
    here.batch(2, 2, 0.001)
    here.inflight = 1
    text = here.render()
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert lines['nbdeploy_requests_total{endpoint="invocations",status="200"}'] == "7"
    assert lines['nbdeploy_requests_total{endpoint="invocations",status="422"}'] == "1"
    assert lines['nbdeploy_request_duration_seconds_bucket{endpoint="invocations",status="200",le="0.005"}'] == "5"
    assert lines['nbdeploy_request_duration_seconds_bucket{endpoint="invocations",status="200",le="0.25"}'] == "7"
    assert lines['nbdeploy_validation_failures_total{field="age",problem="missing"}'] == "1"
    assert lines['nbdeploy_predictions_total{label="0"}'] == "3"
    assert lines['nbdeploy_predictions_total{label="1"}'] == "4"
    assert lines["nbdeploy_batch_rows_sum"] == "7.0"
    assert lines["nbdeploy_model_errors_total"] == "1"
    assert lines["nbdeploy_inflight_requests"] == "1"  # the exited worker's 3 are gone
    assert lines["nbdeploy_workers"] == "1"
    # this worker's own snapshot is in the folder too, as the other workers read it
    mine = json.loads((tmp_path / f"{__import__('os').getpid()}.json").read_text())
    assert mine["inflight"] == 1 and mine["latency"][0][2][2] == 2


def test_one_worker_renders_its_own_counts_without_a_folder() -> None:
    m = Metrics()
    m.request("health", 200, 0.0001)
    text = m.render()
    assert 'nbdeploy_requests_total{endpoint="health",status="200"} 1' in text
    assert "nbdeploy_workers 1" in text
