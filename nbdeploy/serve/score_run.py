"""Score files with a bundle in this process: ``python -m nbdeploy_serve score BUNDLE INPUT -o OUTPUT``.

:func:`score_unit` scores one unit of work (see :mod:`.score_io`) into writers; the
distributed runner of nbdeploy (``nbdeploy score --workers N``) calls it on each Dask
worker and a :class:`Joiner` joins the parts in order, so both paths write the same files:

* OUTPUT (CSV or Parquet): the scored rows in input order, every input column (or only
  the ``--id`` column) followed by the prediction columns the API answers;
* OUTPUT's name + ``.rejects.csv``: the rows the API would refuse, with their file, row
  number (0-based, in that file), the reason and their values; written even when empty;
* OUTPUT's name + ``.summary.json``: counts (rows, scored, rejected, out of range) and the model.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .bundle import Bundle
from .errors import ServeError
from .score import Scorer, arrow_array, require_pyarrow
from .score_io import (
    AtomicFile,
    TableWriter,
    Unit,
    column_names,
    copy_tables,
    file_format,
    list_inputs,
    plain_text,
    plan,
    read_chunks,
    text_columns,
)

DEFAULT_CHUNK_ROWS = 200_000
REJECT_COLUMNS = ("source", "row", "reason")


@dataclass
class Counts:
    rows: int = 0
    scored: int = 0
    rejected: int = 0
    out_of_range: int = 0  # scored rows with a value out of the training range or an unseen category
    flags: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)  # rows read per input file

    def add(self, other: Counts) -> None:
        self.rows += other.rows
        self.scored += other.scored
        self.rejected += other.rejected
        self.out_of_range += other.out_of_range
        self.flags.update(other.flags)
        self.sources.update(other.sources)


@dataclass
class ScoreSummary:
    model: str
    version: str
    inputs: list[str]
    output: str
    rejects: str
    counts: Counts
    seconds: float
    workers: int = 1
    predictor: str = ""  # what predicted: the model's class, or "... (compiled program)"
    cluster: str = ""  # "" (this process), "LocalCluster(N)" or the scheduler's address

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["counts"]["flags"] = dict(self.counts.flags)
        d["counts"]["sources"] = dict(self.counts.sources)
        return d

    def text(self) -> str:
        c = self.counts
        rate = c.rows / self.seconds if self.seconds else 0.0
        flags = ", ".join(f"{k} {v}" for k, v in sorted(c.flags.items()))
        where = f" on {self.cluster}" if self.cluster else ""
        return (f"scored {c.scored} of {c.rows} rows with {self.model} v{self.version}{where} in {self.seconds:.1f}s "
                f"({rate:,.0f} rows/s); rejected {c.rejected} (see {self.rejects}); out of range {c.out_of_range}"
                + (f" ({flags})" if flags else "") + f"\n-> {self.output}")


def side_paths(output: str) -> tuple[str, str]:
    """The rejects and summary files beside an output."""
    stem = output[: -len(Path(output).suffix)] if Path(output).suffix else output
    return f"{stem}.rejects.csv", f"{stem}.summary.json"


@dataclass
class ScoredChunk:
    """One chunk scored, ready to write: the kept rows (or their id) with the predictions, the
    rows set aside with their reasons (None: none), and the chunk's counts."""

    output: Any
    rejects: Any
    counts: Counts


def score_chunk(scorer: Scorer, unit: Unit, table: Any, start: int, id_column: str | None = None,
                dictionary: dict[str, Any] | None = None) -> ScoredChunk:
    """Score one chunk of ``unit`` (its first row is row ``start`` of the file; ``dictionary``: the
    text columns it was read with dictionary-encoded). Safe to call from several threads at
    once: the scorer and its program are only read."""

    scorer.check_columns(table.column_names, unit.path)
    if id_column is not None and id_column not in table.column_names:
        raise ServeError(f"{unit.path} has no id column {id_column!r}", hint="--id names a column of the input")
    result = scorer.score(table, text=unit.kind == "csv")
    base = plain_text(table.select([id_column]) if id_column is not None else table, dictionary or {})
    if result.rejects:
        base = base.take(arrow_array(result.kept))
    for name, values in result.predictions.items():
        if name in base.column_names:
            raise ServeError(f"{unit.path} already has a column {name!r}, which the predictions would "
                             "overwrite", hint="rename that column, or pass --id to keep only an id column")
        base = base.append_column(name, arrow_array(values))
    rejects = _rejects_table(table, unit.path, start, result.rejects) if result.rejects else None
    return ScoredChunk(base, rejects, Counts(table.num_rows, len(result.kept), len(result.rejects),
                                             result.flagged_rows, result.flags, Counter({unit.path: table.num_rows})))


def _write(chunk: ScoredChunk, out: TableWriter, rejects: TableWriter, counts: Counts,
           on_rows: Callable[[int], None] | None) -> None:
    out.write(chunk.output)
    if chunk.rejects is not None:
        rejects.write(chunk.rejects)
    counts.add(chunk.counts)
    if on_rows is not None:
        on_rows(chunk.counts.rows)


def score_unit(scorer: Scorer, unit: Unit, chunk_rows: int, out: TableWriter, rejects: TableWriter,
               id_column: str | None = None, on_rows: Callable[[int], None] | None = None) -> Counts:
    """One unit, chunk after chunk, in this thread (what a Dask worker runs)."""
    counts = Counts()
    dictionary = text_columns(unit, scorer.text_names)
    for table, start in read_chunks(unit, chunk_rows, dictionary):
        _write(score_chunk(scorer, unit, table, start, id_column, dictionary), out, rejects, counts, on_rows)
    return counts


def score_units(scorer: Scorer, units: list[Unit], chunk_rows: int, out: TableWriter, rejects: TableWriter,
                id_column: str | None = None, on_rows: Callable[[int], None] | None = None,
                threads: int = 1) -> Counts:
    """Every unit, reading, scoring and writing at once: a reader thread keeps the next chunks
    ready, ``threads`` threads score them, and this thread writes them in input order. The
    compiled program's numpy, and pyarrow's reading and writing, release the GIL, so the
    threads share the CPUs of one process (no worker processes to start, no parts to join).
    At most ``2 * threads + 1`` chunks are held at once: memory stays bounded."""
    from concurrent.futures import Future, ThreadPoolExecutor

    counts = Counts()
    pending: deque[Future[ScoredChunk]] = deque()
    with arrow_memory_reused(), ThreadPoolExecutor(threads, thread_name_prefix="nbdeploy-score") as pool:
        try:
            for unit, table, start, dictionary in read_ahead(units, chunk_rows, scorer.text_names, threads):
                pending.append(pool.submit(score_chunk, scorer, unit, table, start, id_column, dictionary))
                while len(pending) > threads or (pending and pending[0].done()):
                    _write(pending.popleft().result(), out, rejects, counts, on_rows)
            while pending:
                _write(pending.popleft().result(), out, rejects, counts, on_rows)
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    return counts


_END = object()
_MALLOC_TUNED: bool | None = None  # None: not tried yet


def reuse_freed_memory() -> bool:
    """glibc only, once per process: keep freed memory (up to 128 MB) for the next allocations and
    serve arrays under 64 MB from it, instead of mapping fresh pages for every chunk's arrays and
    returning them after (a 10 M-row run took 250,000 page faults, ~10 % of its CPU; 50,000 so).
    The process keeps that memory a little longer; nothing else changes. Whether glibc is tuned so."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED is None:
        _MALLOC_TUNED = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL("libc.so.6")
                libc.mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD
                libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
                _MALLOC_TUNED = True
            except (OSError, AttributeError):  # not glibc (musl, ...): its defaults
                pass
    return _MALLOC_TUNED


@contextmanager
def arrow_memory_reused() -> Iterator[None]:
    """While scoring: Arrow's buffers (the chunks read, the files written) from glibc's malloc,
    tuned by :func:`reuse_freed_memory`, instead of Arrow's default mimalloc, which hands each
    chunk's freed pages back to the system and faults fresh zeroed ones in for the next: a
    10 M-row run spent 0.8 s of its 7.4 CPU s in the kernel so, 0.3 s with this (6.1-6.4 CPU s in
    all). Arrow's default pool is put back after; buffers keep the pool that made them."""
    if not reuse_freed_memory():  # another libc: its malloc untuned, Arrow's default is better
        yield
        return
    import pyarrow as pa

    before = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(before)


def read_ahead(units: list[Unit], chunk_rows: int, text: Collection[str],
               depth: int) -> Iterator[tuple[Unit, Any, int, dict[str, Any]]]:
    """(unit, chunk, its first row, the ``text`` columns read dictionary-encoded) of every unit in
    order, read by a thread that stays at most ``depth`` chunks ahead; a read error is raised
    here, where the chunks are taken."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for unit in units:
                dictionary = text_columns(unit, text)
                for table, start in read_chunks(unit, chunk_rows, dictionary):
                    if not put((unit, table, start, dictionary)):
                        return
            put(_END)
        except BaseException as e:  # handed to the consumer, which raises it
            put(e)

    reader = threading.Thread(target=read, name="nbdeploy-score-reader", daemon=True)
    reader.start()
    try:
        while (item := ready.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


def _rejects_table(table: Any, source: str, start: int, rejects: dict[int, str]) -> Any:
    import pyarrow as pa

    rows = sorted(rejects)
    picked = table.take(pa.array(rows)).to_pylist()
    records = [{"source": source, "row": start + i, "reason": rejects[i],
                **{k: None if v is None else str(v) for k, v in rec.items()}} for i, rec in zip(rows, picked, strict=True)]
    return pa.Table.from_pylist(records, schema=rejects_schema(table.column_names))


def rejects_schema(names: list[str]) -> Any:
    import pyarrow as pa

    return pa.schema([("source", pa.string()), ("row", pa.int64()), ("reason", pa.string()),
                      *[(n, pa.string()) for n in names if n not in REJECT_COLUMNS]])


class Joiner:
    """Part files (one per unit, written by :func:`score_unit` on workers) joined into OUTPUT and
    its rejects file in input order as they arrive; each part is removed once copied. OUTPUT and
    the rejects file stay hidden until :meth:`commit`; :meth:`abort` removes them."""

    def __init__(self, output: str, parts: str, units: int, input_names: list[str], id_column: str | None) -> None:
        self.parts, self.units = parts, units
        self.names, self.id_column = input_names, id_column
        self.files = [AtomicFile(output), AtomicFile(side_paths(output)[0])]
        self.out = TableWriter(self.files[0].path, file_format(output, "output"), id_columns(id_column))
        self.rejects = TableWriter(self.files[1].path, "csv")
        self.ready: set[int] = set()
        self.next = 0

    def part(self, i: int) -> tuple[str, str]:
        return (os.path.join(self.parts, f"part-{i:06d}.parquet"), os.path.join(self.parts, f"rejects-{i:06d}.parquet"))

    def add(self, i: int) -> None:
        self.ready.add(i)
        while self.next in self.ready:
            out, rejects = self.part(self.next)
            copy_tables([out], self.out.write)
            copy_tables([rejects], self.rejects.write)
            for p in (out, rejects):
                if os.path.exists(p):
                    os.unlink(p)
            self.next += 1

    def commit(self) -> None:
        if self.next != self.units:
            raise ServeError(f"only {self.next} of {self.units} parts were scored")
        self.out.close(_empty_schema(self.names, self.id_column))
        self.rejects.close(rejects_schema(self.names))
        for f in self.files:
            f.commit()

    def abort(self) -> None:
        for w in (self.out, self.rejects):
            try:
                w.close()
            except Exception:  # closing after a failed write: the file goes anyway
                pass
        for f in self.files:
            f.abort()


def score_files(bundle: str | Path | Bundle, input_spec: str, output: str, *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                id_column: str | None = None, on_rows: Callable[[int], None] | None = None,
                scorer: Scorer | None = None, threads: int | None = None) -> ScoreSummary:
    """Score every input file in this process, chunk by chunk, straight into OUTPUT and its rejects
    file (hidden until complete), on ``threads`` threads (see :func:`score_units`; default: one
    per CPU for a compiled program, else one); then the summary. ``bundle``: its folder, or the
    :class:`.bundle.Bundle` the caller read (and sealed) already."""
    t0 = time.perf_counter()
    require_pyarrow()
    kind = file_format(output, "output")
    _local_dir(output)
    scorer = scorer or Scorer(bundle)
    threads = threads or default_threads(scorer.model.program is not None)
    inputs = list_inputs(input_spec)
    units = plan(inputs, chunk_rows)
    names = column_names(units[0])
    rejects_path, summary_path = side_paths(output)
    files = [AtomicFile(output), AtomicFile(rejects_path)]
    counts = Counts()
    try:
        out, rejects = TableWriter(files[0].path, kind, id_columns(id_column)), TableWriter(files[1].path, "csv")
        counts = score_units(scorer, units, chunk_rows, out, rejects, id_column, on_rows, threads)
        out.close(_empty_schema(names, id_column))
        rejects.close(rejects_schema(names))
        for f in files:
            f.commit()
    except BaseException:
        for f in files:
            f.abort()
        raise
    summary = ScoreSummary(scorer.bundle.name, scorer.bundle.version, inputs, output, rejects_path, counts,
                           time.perf_counter() - t0, threads, scorer.model.detail,
                           f"threads({threads})" if threads > 1 else "")
    write_summary(summary_path, summary)
    return summary


def id_columns(id_column: str | None) -> tuple[str, ...]:
    """The output's columns of unique values, written without dictionary (:class:`.score_io.TableWriter`)."""
    return (id_column,) if id_column is not None else ()


def default_threads(compiled: bool) -> int:
    """Scoring threads when none are asked for: a compiled program (numpy, which releases the GIL)
    scales on threads, one per CPU; a model's own library may hold the GIL, or not be safe to
    call from several threads at once: one."""
    if not compiled:
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cpus or 1)


def _empty_schema(names: list[str], id_column: str | None) -> Any:
    import pyarrow as pa

    return pa.schema([(n, pa.string()) for n in ([id_column] if id_column else names)])


def write_summary(path: str, summary: ScoreSummary) -> None:
    write_json(path, summary.to_dict())


def write_json(path: str, doc: Any) -> None:
    """A JSON file replaced in one step: renamed into place, or uploaded whole to a URL."""
    f = AtomicFile(path)
    try:
        Path(f.path).write_text(json.dumps(doc, indent=2))
        f.commit()
    except BaseException:
        f.abort()
        raise


def _local_dir(output: str) -> str | None:
    """The folder of a local output, checked to exist (None for a URL): hidden files go there, so renames are atomic."""
    if "://" in output and not output.startswith("file://"):
        return None
    folder = Path(output.removeprefix("file://")).expanduser().resolve().parent
    if not folder.is_dir():
        raise ServeError(f"the output folder {folder} does not exist", hint="create it first")
    return str(folder)
