"""Lineage entries as OpenLineage run events (spec-conformant JSON via openlineage-python)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbdeploy.capture.hashing import recorded_hash

PRODUCER = "https://github.com/nbdeploy/nbdeploy"
NAMESPACE = "nbdeploy"


def _dataset(entry: dict, cls: Any) -> Any:
    from openlineage.client.facet_v2 import dataset_version_dataset, schema_dataset

    facets: dict[str, Any] = {}
    if entry.get("columns"):
        fields = [schema_dataset.SchemaDatasetFacetFields(name=c["name"], type=c["dtype"])
                  for c in entry["columns"]]
        facets["schema"] = schema_dataset.SchemaDatasetFacet(fields=fields)
    version = recorded_hash(entry)  # "blake3:<hex>" ("sha256:<hex>" in older records)
    if version:
        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=version)
    if entry["kind"] == "file":
        namespace, name = "file", entry["path"]
    elif entry["kind"] == "sql":
        namespace, name = entry.get("connection") or "sql", entry.get("note") or entry["path"]
    else:
        namespace, name = entry["kind"], entry["path"]
    kwargs: dict[str, Any] = {"namespace": namespace, "name": name, "facets": facets}
    if entry["role"] == "write" and entry.get("rows") is not None:
        from openlineage.client.facet_v2 import output_statistics_output_dataset as out

        kwargs["outputFacets"] = {"outputStatistics": out.OutputStatisticsOutputDatasetFacet(
            rowCount=entry["rows"], size=entry.get("bytes"))}
    return cls(**kwargs)


def run_events(record: Mapping[str, Any], *, finished: bool) -> list[dict]:
    """A START event and a RUNNING/COMPLETE/FAIL event for the record's session."""
    from openlineage.client.event_v2 import (
        InputDataset,
        Job,
        OutputDataset,
        Run,
        RunEvent,
        RunState,
    )
    from openlineage.client.facet_v2 import sql_job
    from openlineage.client.serde import Serde

    session = record["session"]
    lineage = record.get("lineage", [])
    job_facets: dict[str, Any] = {}
    queries = [e["query"] for e in lineage if e.get("query")]
    if queries:
        job_facets["sql"] = sql_job.SQLJobFacet(query=";\n".join(queries))
    job = Job(namespace=NAMESPACE, name=record["notebook"]["name"], facets=job_facets)
    run = Run(runId=session["id"])
    start = RunEvent(eventType=RunState.START, eventTime=session["started"], run=run, job=job,
                     producer=PRODUCER)
    state = RunState.RUNNING
    if finished:
        state = RunState.FAIL if session.get("status") == "failed" else RunState.COMPLETE
    current = RunEvent(
        eventType=state, eventTime=record["updated"], run=run, job=job, producer=PRODUCER,
        inputs=[_dataset(e, InputDataset) for e in lineage if e["role"] == "read"],
        outputs=[_dataset(e, OutputDataset) for e in lineage if e["role"] == "write"],
    )
    return [Serde.to_dict(start), Serde.to_dict(current)]
