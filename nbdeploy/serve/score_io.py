"""Files for batch scoring: list the inputs, read them in bounded chunks, write atomically.

Inputs are CSV or Parquet files, a folder of them, a glob, or a URL (``s3://``, ``gs://``,
... through fsspec, when the filesystem's package is installed). Work is cut into
:class:`Unit` values (a CSV file, or a few row groups of a Parquet file) that one process
scores chunk by chunk, so memory stays bounded whatever the input's size. Outputs are
written to a hidden file beside the target and renamed into place only when complete.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ServeError

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def one_blas_thread() -> None:
    """For a process started to score (``nbdeploy score``, ``python -m nbdeploy_serve score``),
    before numpy loads: OpenBLAS one thread, unless the environment says otherwise. The scoring
    run has its own threads; OpenBLAS would start one more per CPU at numpy's import, which spin
    waiting for work a compiled tree program never gives them (5 % of a 1 M-row run's CPU, in
    every run), and would compete with the scoring threads where a model does call BLAS. (Dask's
    worker processes get the same setting from Dask.) Too late once numpy is loaded: nothing then."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@dataclass(frozen=True)
class Unit:
    """A piece of the input one worker scores: a file, or some of a Parquet file's row groups."""

    path: str
    kind: str  # csv or parquet
    row_groups: tuple[int, ...] | None = None
    first_row: int = 0  # row number (in the file) of the unit's first row
    rows: int | None = None  # known for Parquet


def file_format(path: str, what: str = "input") -> str:
    kind = FORMATS.get(Path(path.split("?")[0]).suffix.lower())
    if kind is None:
        raise ServeError(f"cannot tell the format of the {what} {path}",
                         hint="name it .csv or .parquet (a folder or glob of such files for an input)")
    return kind


def _fs(url: str) -> tuple[Any, str]:
    if "://" not in url or url.startswith("file://"):
        return None, url.removeprefix("file://")
    try:
        import fsspec
    except ImportError:
        raise ServeError(f"reading {url} needs fsspec", hint="pip install fsspec and the filesystem's "
                         "package (s3fs, gcsfs, ...)") from None
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError as e:
        raise ServeError(f"no filesystem package for {url}: {e}", hint="install it (s3fs for s3://, "
                         "gcsfs for gs://)") from None


def open_input(path: str) -> Any:
    fs, p = _fs(path)
    return open(p, "rb") if fs is None else fs.open(p, "rb")


def list_inputs(spec: str) -> list[str]:
    """The input files, sorted: one file, a folder's CSV/Parquet files, or a glob's matches."""
    fs, p = _fs(spec)
    if fs is None:
        if os.path.isdir(p):
            found = sorted(str(f) for f in Path(p).iterdir() if f.suffix.lower() in FORMATS and f.is_file())
        elif any(c in p for c in "*?["):
            found = sorted(glob.glob(p))
        else:
            found = [p] if os.path.isfile(p) else []
    else:
        proto = spec.split("://")[0]
        if fs.isdir(p):
            found = sorted(f"{proto}://{f}" for f in fs.ls(p, detail=False) if Path(f).suffix.lower() in FORMATS)
        else:
            found = sorted(f"{proto}://{f}" for f in fs.glob(p))
    if not found:
        raise ServeError(f"no input files in {spec}", hint="give a CSV or Parquet file, a folder or a glob of them")
    for f in found:
        file_format(f)
    return found


def plan(files: list[str], chunk_rows: int) -> list[Unit]:
    """Units of work in input order: each CSV file whole; Parquet row groups in runs of about one
    chunk (at least one row group), so that many units keep every worker busy."""
    import pyarrow.parquet as pq

    units: list[Unit] = []
    for f in files:
        if file_format(f) == "csv":
            units.append(Unit(f, "csv"))
            continue
        with open_input(f) as fh:
            meta = pq.ParquetFile(fh).metadata
        group: list[int] = []
        start = rows = 0
        for g in range(meta.num_row_groups):
            group.append(g)
            rows += meta.row_group(g).num_rows
            if rows >= chunk_rows:
                units.append(Unit(f, "parquet", tuple(group), start, rows))
                group, start, rows = [], start + rows, 0
        if group or not units or units[-1].path != f:
            units.append(Unit(f, "parquet", tuple(group), start, rows))
    return units


def read_chunks(unit: Unit, chunk_rows: int, dictionary: Collection[str] = ()) -> Iterator[tuple[Any, int]]:
    """(Arrow table of at most ``chunk_rows`` rows, row number of its first row in the file).

    The Parquet columns named in ``dictionary`` (text in the file: :func:`text_columns`) are read
    dictionary-encoded, as Parquet mostly stores them: no string made per row;
    :func:`plain_text` turns them back into text."""
    import pyarrow as pa

    start = unit.first_row
    with open_input(unit.path) as fh:
        if unit.kind == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(fh, read_dictionary=list(dictionary) or None)
            if not unit.row_groups:
                yield pa.Table.from_batches([], schema=pf.schema_arrow), start
                return
            for batch in pf.iter_batches(batch_size=chunk_rows, row_groups=list(unit.row_groups)):
                yield pa.Table.from_batches([batch]), start
                start += batch.num_rows
            return
        import pyarrow.csv as pcsv

        names = pcsv.open_csv(fh, read_options=pcsv.ReadOptions(block_size=1 << 16)).schema.names
        fh.seek(0)
        convert = pcsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                      strings_can_be_null=True, null_values=[""])
        reader = pcsv.open_csv(fh, read_options=pcsv.ReadOptions(block_size=1 << 22), convert_options=convert)
        pending: list[Any] = []
        have = 0
        for batch in reader:
            pending.append(batch)
            have += batch.num_rows
            while have >= chunk_rows:
                table = pa.Table.from_batches(pending)
                yield table.slice(0, chunk_rows), start
                start += chunk_rows
                rest = table.slice(chunk_rows)
                pending, have = rest.to_batches(), rest.num_rows
        if have or start == unit.first_row:
            yield (pa.Table.from_batches(pending) if pending else pa.table({n: pa.array([], pa.string()) for n in names})), start


def text_columns(unit: Unit, names: Collection[str]) -> dict[str, Any]:
    """Which of ``names`` a unit's Parquet file holds as plain text, with their Arrow types (none for CSV)."""
    if unit.kind != "parquet" or not names:
        return {}
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open_input(unit.path) as fh:
        schema = pq.ParquetFile(fh).schema_arrow
    return {f.name: f.type for f in schema
            if f.name in names and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))}


def plain_text(table: Any, dictionary: dict[str, Any]) -> Any:
    """A table of :func:`read_chunks` with the columns it read dictionary-encoded as the text they
    are in the file (``dictionary``: their types there): the output keeps the input's types."""
    import pyarrow as pa

    for i, f in enumerate(table.schema):
        if f.name in dictionary and pa.types.is_dictionary(f.type):
            typ = dictionary[f.name]
            table = table.set_column(i, pa.field(f.name, typ, f.nullable, f.metadata), table.column(i).cast(typ))
    return table


class AtomicFile:
    """A file written beside its target under a hidden name, renamed into place by ``commit``
    (uploaded in one piece for a URL); ``abort`` removes it, so no partial output remains."""

    def __init__(self, target: str, suffix: str = "") -> None:
        self.target = target
        self.fs, p = _fs(target)
        if self.fs is None:
            folder = Path(p).expanduser().resolve().parent
            if not folder.is_dir():
                raise ServeError(f"the output folder {folder} does not exist", hint="create it first")
            self.path = str(folder / f".{Path(p).name}.{os.getpid()}{suffix}.tmp")
        else:
            import tempfile

            self.path = os.path.join(tempfile.mkdtemp(prefix="nbdeploy-score-"), Path(p).name)

    def commit(self) -> None:
        if self.fs is None:
            os.replace(self.path, _fs(self.target)[1])
        else:
            self.fs.put(self.path, _fs(self.target)[1])
            self.abort()  # the local copy

    def abort(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        if self.fs is not None:  # the private folder of a URL's local copy
            shutil.rmtree(os.path.dirname(self.path), ignore_errors=True)


class TableWriter:
    """Arrow tables appended to one CSV or Parquet file; every table is cast to the first one's schema.

    ``plain``: columns written to Parquet without dictionary encoding, for the ``--id`` column:
    an id is unique per row, so Parquet would build a dictionary of every value of a row group,
    find it too large and write the values plainly anyway (a third of the writing's CPU, for a
    larger file). The other columns are dictionary-encoded where Parquet finds it pays."""

    def __init__(self, path: str, kind: str, plain: Collection[str] = ()) -> None:
        self.path, self.kind, self.plain = path, kind, frozenset(plain)
        self._writer: Any = None
        self.schema: Any = None
        self.rows = 0

    def write(self, table: Any) -> None:
        if self._writer is None:
            self.schema = table.schema
            if self.kind == "parquet":
                import pyarrow.parquet as pq

                dictionary = [n for n in table.schema.names if n not in self.plain] if self.plain else True
                self._writer = pq.ParquetWriter(self.path, table.schema, use_dictionary=dictionary)
            else:
                import pyarrow.csv as pcsv

                self._writer = pcsv.CSVWriter(self.path, table.schema)
        elif table.schema != self.schema:
            table = table.cast(self.schema)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self, empty_schema: Any = None) -> None:
        if self._writer is None and empty_schema is not None:
            import pyarrow as pa

            self.write(pa.Table.from_batches([], schema=empty_schema))  # (empty_table() imports pandas)
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def copy_tables(paths: list[str], write: Callable[[Any], None]) -> None:
    """Stream the row groups of Parquet part files into ``write``, in order (missing parts: none)."""
    import pyarrow.parquet as pq

    for p in paths:
        if os.path.exists(p):
            pf = pq.ParquetFile(p)
            for g in range(pf.metadata.num_row_groups):
                write(pf.read_row_group(g))


def column_names(unit: Unit) -> list[str]:
    """The input columns of a unit's file (its Parquet schema, or its CSV header)."""
    with open_input(unit.path) as fh:
        if unit.kind == "parquet":
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(fh).schema_arrow.names)
        import pyarrow.csv as pcsv

        return list(pcsv.open_csv(fh, read_options=pcsv.ReadOptions(block_size=1 << 16)).schema.names)
