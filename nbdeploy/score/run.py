"""``nbdeploy score``: a bundle's model over files, in this process or on Dask, with lineage.

1. Read the bundle (its seal checked first) and list the inputs; cut them into units.
2. Score: a compiled program in this process on ``workers`` threads (one per CPU by default:
   its numpy releases the GIL); a model served by its own library in this process for one
   unit or ``workers == 1``, else each unit as a task on a LocalCluster of worker processes;
   with ``scheduler`` (``local``: a LocalCluster even for a compiled program), each unit as a
   task on that cluster, part files beside the output.
3. Join the parts into the output and its rejects file, renamed into place only when
   complete (see :mod:`nbdeploy.serve.score_run`): a failure leaves no output behind.
4. Lineage: full-content hashes and row counts of the input and output, and the model's
   version, as an OpenLineage event beside the output, and as an MLflow run when
   ``MLFLOW_TRACKING_URI`` (or ``tracking``) names a tracking server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbdeploy.base.errors import NbdeployError
from nbdeploy.serve.errors import ServeError

#: progress: (rows done, rows in all, or None when not known before reading: CSV)
RowProgress = Callable[[int, int | None], None]


class ScoreError(NbdeployError):
    """Batch scoring could not run: a bundle, an input or an output it cannot use."""


@dataclass
class ScoreResult:
    summary: Any  # nbdeploy.serve.score_run.ScoreSummary
    lineage: str = ""
    mlflow_run_id: str | None = None
    hashes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary.to_dict(), "lineage": self.lineage, "mlflow_run_id": self.mlflow_run_id,
                "hashes": self.hashes}

    def text(self) -> str:
        extra = f"\nlineage: {self.lineage}" if self.lineage else ""
        if self.mlflow_run_id:
            extra += f"\nMLflow run: {self.mlflow_run_id}"
        return self.summary.text() + extra


#: below this many rows (known from Parquet metadata), starting a LocalCluster (worker processes
#: importing and loading the bundle: seconds) costs more than it saves: the default scores in process
AUTO_LOCAL_ROWS = 2_000_000


def score(bundle: str | Path, input: str, output: str, *, workers: int | None = None, scheduler: str | None = None,
          chunk_rows: int | None = None, id_column: str | None = None, progress: RowProgress | None = None,
          tracking: str | None = None, lineage: bool = True) -> ScoreResult:
    from nbdeploy.serve import score_io, score_run

    chunk_rows = chunk_rows or score_run.DEFAULT_CHUNK_ROWS
    if chunk_rows < 1 or (workers is not None and workers < 1):
        raise ScoreError("--chunk-rows and --workers must be at least 1")
    try:
        from nbdeploy.serve.bundle import read_bundle

        b = read_bundle(bundle)  # the seal, once, before any work is sent anywhere (the in-process runs reuse it)
        score_io.file_format(output, "output")
        inputs = score_io.list_inputs(input)
        units = score_io.plan(inputs, chunk_rows)
        total = sum(u.rows or 0 for u in units) if all(u.rows is not None for u in units) else None
        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(done[0], total)

        if progress is not None:
            progress(0, total)
        in_process = scheduler is None
        if scheduler == "local":  # a LocalCluster of worker processes, whatever the model
            scheduler = None
        if in_process and _compiled(b):  # numpy releases the GIL: threads, no processes to start
            summary = score_run.score_files(b, input, output, chunk_rows=chunk_rows, id_column=id_column,
                                            on_rows=tick, threads=workers)
        elif in_process and (workers == 1 or len(units) == 1 or (workers is None and (
                total is not None and total < AUTO_LOCAL_ROWS))):  # a LocalCluster's start would cost more
            summary = score_run.score_files(b, input, output, chunk_rows=chunk_rows, id_column=id_column,
                                            on_rows=tick, threads=1)
        else:
            if workers is None:  # a worker process per CPU
                workers = max(1, min(os.cpu_count() or 1, len(units)))
            summary = _distributed(str(b.root), (b.name, b.version), inputs, units, output, chunk_rows,
                                   id_column, workers, scheduler, tick)
    except ServeError as e:
        raise ScoreError(e.message, hint=e.hint) from None
    result = ScoreResult(summary)
    if lineage:
        from nbdeploy.score.lineage import record

        record(result, tracking)
    return result


def _compiled(b: Any) -> bool:
    """Whether the bundle's model is served by its compiled program (as :func:`.model.load_model` decides)."""
    from nbdeploy.serve import program

    return program.enabled() and program.present(b.model_dir)


def _distributed(bundle: str, model: tuple[str, str], inputs: list[str], units: list[Any], output: str,
                 chunk_rows: int, id_column: str | None, workers: int, scheduler: str | None,
                 tick: Callable[[int], None]) -> Any:
    from nbdeploy.score import cluster
    from nbdeploy.serve.score_io import column_names
    from nbdeploy.serve.score_run import Counts, Joiner, ScoreSummary, side_paths, write_summary

    t0 = time.perf_counter()
    local = "://" not in output or output.startswith("file://")
    where = str(Path(output.removeprefix("file://")).expanduser().resolve().parent) if local else None
    if where is not None and not os.path.isdir(where):
        raise ScoreError(f"the output folder {where} does not exist", hint="create it first")
    parts = tempfile.mkdtemp(prefix=".nbdeploy-score-", dir=where)
    joiner = Joiner(output, parts, len(units), column_names(units[0]), id_column)
    try:
        counts = Counts()
        predictor = [""]

        def on_unit(i: int, c: dict) -> None:
            predictor[0] = c["predictor"]
            counts.add(Counts(c["rows"], c["scored"], c["rejected"], c["out_of_range"], Counter(c["flags"]),
                              Counter(c["sources"])))
            joiner.add(i)  # parts are copied in input order while later ones are still being scored
            tick(c["rows"])

        with cluster.client(workers, scheduler) as client:
            n_workers = len(client.scheduler_info().get("workers", {})) or workers
            if scheduler and n_workers == 0:
                raise ScoreError(f"the Dask scheduler at {scheduler} has no workers",
                                 hint="start some with `dask worker " + scheduler + "`")
            cluster.run_units(client, bundle, units, chunk_rows, id_column, parts, on_unit)
        joiner.commit()
    except BaseException:
        joiner.abort()
        raise
    finally:
        shutil.rmtree(parts, ignore_errors=True)
    summary = ScoreSummary(*model, inputs, output, side_paths(output)[0], counts, time.perf_counter() - t0,
                           n_workers, predictor[0], scheduler or f"LocalCluster({workers})")
    write_summary(side_paths(output)[1], summary)
    return summary
