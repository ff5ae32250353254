"""Lineage of a scoring run: content hashes, row counts and the model's version.

Written beside the output as ``<output>.lineage.json`` (an OpenLineage COMPLETE run
event: the input files and the output and rejects files as datasets, each with its
full-content hash as dataset version and its row count), and logged as an MLflow run
when a tracking server is configured (``MLFLOW_TRACKING_URI``, or ``tracking``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from nbdeploy.capture.hashing import LINEAGE_ALGORITHM, _hasher, content_hash
from nbdeploy.capture.openlineage import NAMESPACE, PRODUCER
from nbdeploy.serve.score_run import write_json


def file_hash(path: str) -> tuple[str, int]:
    """("blake3:<hex>", bytes) of a local file or of a URL's content (read through fsspec)."""
    if "://" not in path or path.startswith("file://"):
        return content_hash(path.removeprefix("file://"))
    from nbdeploy.serve.score_io import open_input

    h, size = _hasher(LINEAGE_ALGORITHM), 0
    with open_input(path) as fh:
        while block := fh.read(8 << 20):
            h.update(block)
            size += len(block)
    return f"{LINEAGE_ALGORITHM}:{h.hexdigest()}", size


def record(result: Any, tracking: str | None = None) -> None:
    """Hash the files, write the OpenLineage event beside the output, log to MLflow if configured."""
    s = result.summary
    inputs = {p: file_hash(p) for p in s.inputs}
    output, rejects = file_hash(s.output), file_hash(s.rejects)
    result.hashes = {**{p: h for p, (h, _) in inputs.items()}, s.output: output[0], s.rejects: rejects[0]}
    stem = s.output[: -len(Path(s.output).suffix)]
    result.lineage = f"{stem}.lineage.json"
    event = _event(s, inputs, output, rejects)
    write_json(result.lineage, event)
    uri = tracking or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        result.mlflow_run_id = _log_mlflow(uri, result, event)


#: where the OpenLineage spec defines what the event holds (the versions openlineage-python writes;
#: tests/score/test_lineage.py checks the event against the client's own)
_SPEC = "https://openlineage.io/spec"
_RUN_EVENT = f"{_SPEC}/2-0-2/OpenLineage.json#/$defs/RunEvent"
_FACETS = {
    "version": f"{_SPEC}/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet",
    "inputStatistics": f"{_SPEC}/facets/1-0-0/InputStatisticsInputDatasetFacet.json"
                       "#/$defs/InputStatisticsInputDatasetFacet",
    "outputStatistics": f"{_SPEC}/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json"
                        "#/$defs/OutputStatisticsOutputDatasetFacet",
}


def _facet(kind: str, **fields: Any) -> dict:
    return {"_producer": PRODUCER, "_schemaURL": _FACETS[kind], **fields}


def _dataset(path: str, digest: str, size: int, rows: int, output: bool) -> dict:
    namespace, name = ("file", path) if "://" not in path else (path.split("://")[0], path)
    facets, stats = ("outputFacets", "outputStatistics") if output else ("inputFacets", "inputStatistics")
    return {"namespace": namespace, "name": name, "facets": {"version": _facet("version", datasetVersion=digest)},
            facets: {stats: _facet(stats, rowCount=rows, size=size)}}


def _event(s: Any, inputs: dict[str, tuple[str, int]], output: tuple[str, int],
           rejects: tuple[str, int]) -> dict:
    """The run event as JSON, written out here: the OpenLineage client takes about half a second
    of CPU to import (its HTTP transports), a quarter of a small scoring run."""
    c = s.counts
    return {
        "eventTime": dt.datetime.now(dt.UTC).isoformat(), "producer": PRODUCER, "schemaURL": _RUN_EVENT,
        "run": {"runId": str(uuid.uuid4()), "facets": {"nbdeploy_score": {
            "_producer": PRODUCER, "_schemaURL": f"{PRODUCER}/score-run-facet.json",
            "model": s.model, "modelVersion": s.version, "rows": c.rows, "scored": c.scored,
            "rejected": c.rejected, "outOfRange": c.out_of_range, "seconds": round(s.seconds, 3),
            "workers": s.workers}}},
        "job": {"namespace": NAMESPACE, "name": f"score.{s.model}", "facets": {}},
        "eventType": "COMPLETE",
        "inputs": [_dataset(p, h, n, c.sources.get(p, 0), False) for p, (h, n) in inputs.items()],
        "outputs": [_dataset(s.output, *output, c.scored, True), _dataset(s.rejects, *rejects, c.rejected, True)],
    }


def _log_mlflow(uri: str, result: Any, event: dict) -> str:
    import logging

    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    s, c = result.summary, result.summary.counts
    with contextlib.redirect_stdout(sys.stderr):  # MLflow prints "View run ..." on stdout
        client = MlflowClient(tracking_uri=uri)
        name = f"nbdeploy-score-{s.model}"
        exp = client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp else client.create_experiment(name)
        run = client.create_run(exp_id, tags={"mlflow.runName": f"score {s.model} v{s.version}",
                                              "nbdeploy.kind": "score", "nbdeploy.model": s.model,
                                              "nbdeploy.model_version": s.version})
        rid = run.info.run_id
        for k, v in {"inputs": ",".join(s.inputs)[:6000], "output": s.output, "workers": s.workers,
                     "model_version": s.version}.items():
            client.log_param(rid, k, str(v))
        for k, v in {"rows": c.rows, "scored": c.scored, "rejected": c.rejected, "out_of_range": c.out_of_range,
                     "seconds": s.seconds, "rows_per_s": c.rows / s.seconds if s.seconds else 0.0}.items():
            client.log_metric(rid, k, float(v))
        for path, digest in result.hashes.items():
            client.set_tag(rid, f"nbdeploy.hash.{Path(path).name}"[:250], digest)
        client.log_dict(rid, event, "openlineage.json")
        client.set_terminated(rid, "FINISHED")
    return rid
