"""The scoring run's OpenLineage event, written out by nbdeploy, equals what openlineage-python
builds from the same facts (the client is the reference for the spec; nbdeploy does not import
it on every run: half a second of CPU)."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

from nbdeploy.capture.openlineage import NAMESPACE, PRODUCER
from nbdeploy.score.lineage import _event


def _client_event(s: Any, inputs: dict, output: tuple, rejects: tuple) -> dict:
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.facet_v2 import (
        dataset_version_dataset,
        input_statistics_input_dataset,
        output_statistics_output_dataset,
    )
    from openlineage.client.serde import Serde

    def dataset(cls: Any, path: str, digest: str, size: int, rows: int, out: bool) -> Any:
        namespace = "file" if "://" not in path else path.split("://")[0]
        facets = {"version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=digest)}
        if out:
            return cls(namespace=namespace, name=path, facets=facets, outputFacets={
                "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                    rowCount=rows, size=size)})
        return cls(namespace=namespace, name=path, facets=facets, inputFacets={
            "inputStatistics": input_statistics_input_dataset.InputStatisticsInputDatasetFacet(
                rowCount=rows, size=size)})

    c = s.counts
    event = RunEvent(eventType=RunState.COMPLETE, eventTime="2026-01-01T00:00:00+00:00",
                     run=Run(runId="01079c49-25fa-4e5a-8db7-54d83d216177"),
                     job=Job(namespace=NAMESPACE, name=f"score.{s.model}"), producer=PRODUCER,
                     inputs=[dataset(InputDataset, p, h, n, c.sources[p], False) for p, (h, n) in inputs.items()],
                     outputs=[dataset(OutputDataset, s.output, *output, c.scored, True),
                              dataset(OutputDataset, s.rejects, *rejects, c.rejected, True)])
    return Serde.to_dict(event)


def _facets_producer(doc: Any) -> Any:
    """Each facet's `_producer` set to nbdeploy's (the client names itself there)."""
    if isinstance(doc, dict):
        return {k: PRODUCER if k == "_producer" else _facets_producer(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_facets_producer(v) for v in doc]
    return doc


def test_the_event_is_the_clients() -> None:
    counts = SimpleNamespace(rows=10, scored=8, rejected=2, out_of_range=1,
                             sources=Counter({"/d/a.parquet": 6, "s3://b/c.csv": 4}))
    s = SimpleNamespace(model="churn", version="3", counts=counts, output="/o/out.parquet",
                        rejects="/o/out.rejects.csv", seconds=1.23456, workers=2)
    inputs = {"/d/a.parquet": ("blake3:aa", 100), "s3://b/c.csv": ("blake3:bb", 50)}
    ours = _event(s, inputs, ("blake3:cc", 70), ("blake3:dd", 20))
    facet = ours["run"].pop("facets")["nbdeploy_score"]
    assert facet["modelVersion"] == "3" and facet["seconds"] == 1.235 and facet["workers"] == 2
    ours["eventTime"], ours["run"]["runId"] = "2026-01-01T00:00:00+00:00", "01079c49-25fa-4e5a-8db7-54d83d216177"
    theirs = _facets_producer(_client_event(s, inputs, ("blake3:cc", 70), ("blake3:dd", 20)))
    theirs["run"].pop("facets", None)
    assert ours == theirs
