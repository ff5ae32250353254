"""Data lineage: every pandas read and write, hashed, sized and profiled.

:class:`LineageRecorder` wraps pandas' readers (``pd.read_*``) and writers
(``DataFrame.to_*``). A call is recorded with the path (absolute and relative
to the notebook), the hash of the full file (``"blake3:<hex>"``, see
:mod:`.hashing`; a read is hashed in a thread while pandas parses), its size,
rows, columns and dtypes, and the cell that made it; a file read twice is one
entry per role that lists both cells. SQL reads keep the query and the connection URL without its
password. Data that is read is also profiled (:mod:`.profile`), in a background
thread so the read returns as fast as without capture.

Pandas is patched when it is imported, not before: ``%deploy init`` must stay
cheap in a kernel that has not imported pandas yet.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nbdeploy.base.redact import strip_url_password
from nbdeploy.capture.hashing import content_hash, url_hash
from nbdeploy.capture.profile import profile_frame, schema_of

log = logging.getLogger("nbdeploy.capture")

READERS = {  # function name -> keyword of its path/sql argument
    "read_csv": "filepath_or_buffer", "read_table": "filepath_or_buffer",
    "read_parquet": "path", "read_json": "path_or_buf", "read_excel": "io",
    "read_feather": "path", "read_orc": "path", "read_pickle": "filepath_or_buffer",
    "read_sql": "sql", "read_sql_query": "sql", "read_sql_table": "table_name",
}
WRITERS = {
    "to_csv": "path_or_buf", "to_parquet": "path", "to_json": "path_or_buf",
    "to_excel": "excel_writer", "to_feather": "path", "to_orc": "path", "to_pickle": "path",
    "to_sql": "name",
}


@dataclass
class LineageEntry:
    path: str  # absolute path, URL, or "sql:<query or table>"
    role: str  # "read" | "write"
    kind: str  # "file" | "sql" | "url" | "buffer"
    function: str
    relative_path: str | None = None
    hash: str | None = None  # "<algorithm>:<hex>" of the full content
    bytes: int | None = None
    rows: int | None = None
    columns: list[dict] = field(default_factory=list)
    cells: list[int] = field(default_factory=list)
    query: str | None = None
    connection: str | None = None
    profile: dict | None = None
    note: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class _Depth(threading.local):
    value = 0


def _arg(fn_name: str, keyword: str, args: tuple, kwargs: dict, *, method: bool) -> Any:
    if keyword in kwargs:
        return kwargs[keyword]
    pos = args[1:] if method else args
    return pos[0] if pos else None


def _connection_url(con: Any) -> str | None:
    if con is None:
        return None
    if isinstance(con, str):
        return strip_url_password(con)
    url = getattr(con, "url", None) or getattr(getattr(con, "engine", None), "url", None)
    if url is not None:
        render = getattr(url, "render_as_string", None)
        return strip_url_password(render(hide_password=True) if render else str(url))
    if type(con).__module__ == "sqlite3":
        try:
            rows = con.execute("PRAGMA database_list").fetchall()
            return f"sqlite:///{rows[0][2]}" if rows and rows[0][2] else "sqlite://"
        except Exception:
            return "sqlite3 connection"
    return type(con).__name__


def _frame_shape(result: Any) -> tuple[int | None, list[dict], Any]:
    """(rows, schema, frame to profile) of a reader's result."""
    if hasattr(result, "dtypes") and hasattr(result, "columns"):
        return len(result), schema_of(result), result
    if hasattr(result, "dtype") and hasattr(result, "name"):  # a Series
        return len(result), [{"name": str(result.name), "dtype": str(result.dtype)}], None
    if isinstance(result, dict):  # read_excel(sheet_name=None)
        frames = [v for v in result.values() if hasattr(v, "dtypes")]
        rows = sum(len(f) for f in frames)
        return rows, (schema_of(frames[0]) if frames else []), None
    return None, [], None


class LineageRecorder:
    """Records pandas I/O into ``entries`` while installed."""

    def __init__(self, project_dir: Path, cell: Callable[[], int | None],
                 on_change: Callable[[], None] = lambda: None, profile: bool = True) -> None:
        self.project_dir = project_dir
        self.cell = cell
        self.on_change = on_change
        self.profile = profile
        self.entries: dict[tuple[str, str], LineageEntry] = {}
        self._lock = threading.RLock()
        self._depth = _Depth()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nbdeploy-lineage")
        self._pending: list[Future] = []
        self._frames: dict[int, tuple[LineageEntry, Any]] = {}  # frames not yet profiled
        self._originals: list[tuple[Any, str, Any]] = []
        self._hook: _PostImportHook | None = None

    # -- installing -------------------------------------------------------
    def install(self) -> None:
        if self._originals or self._hook:
            return
        if "pandas" in sys.modules:
            self._patch(sys.modules["pandas"])
        else:
            self._hook = _PostImportHook("pandas", self._patch)
            sys.meta_path.insert(0, self._hook)

    def ensure_patched(self) -> None:
        """Patch pandas now if it was imported and is not patched yet (called before each cell).

        The post-import hook patches pandas as it is imported; this is the second line:
        however pandas got imported (a finder ahead of ours, a reload), the next cell's
        reads are recorded.
        """
        if self._hook is not None and not self._originals and "pandas" in sys.modules:
            self._hook.fire(sys.modules["pandas"])

    def uninstall(self) -> None:
        if self._hook and self._hook in sys.meta_path:
            sys.meta_path.remove(self._hook)
        self._hook = None
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals.clear()

    def _patch(self, pd: Any) -> None:
        if self._originals:
            return
        for name, keyword in READERS.items():
            if hasattr(pd, name):
                self._swap(pd, name, self._wrap(getattr(pd, name), name, keyword, "read", False))
        for name, keyword in WRITERS.items():
            if hasattr(pd.DataFrame, name):
                self._swap(pd.DataFrame, name,
                           self._wrap(getattr(pd.DataFrame, name), name, keyword, "write", True))

    def _swap(self, owner: Any, name: str, new: Any) -> None:
        self._originals.append((owner, name, getattr(owner, name)))
        setattr(owner, name, new)

    def _wrap(self, fn: Any, name: str, keyword: str, role: str, method: bool) -> Any:
        recorder = self

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if recorder._depth.value:
                return fn(*args, **kwargs)
            target = _arg(name, keyword, args, kwargs, method=method)
            local = recorder._local_file(target) if role == "read" else None
            digest = recorder._pool.submit(content_hash, local) if local else None
            if role == "read" and local is None and _is_http(target):  # downloaded again, beside pandas
                options = kwargs.get("storage_options")
                digest = recorder._pool.submit(url_hash, os.fspath(target),
                                               options if isinstance(options, dict) else None)
            recorder._depth.value += 1
            try:
                result = fn(*args, **kwargs)
            finally:
                recorder._depth.value -= 1
            try:
                frame = args[0] if method else result
                recorder._record(name, role, target, frame, digest, args, kwargs, method)
            except Exception as exc:  # capture must never break the user's code
                log.warning("nbdeploy: could not record %s(%r): %s", name, target, exc)
            return result

        wrapper.__nbdeploy_wrapped__ = True  # type: ignore[attr-defined]
        return wrapper

    # -- recording --------------------------------------------------------
    def _local_file(self, target: Any) -> Path | None:
        if isinstance(target, str | os.PathLike):
            s = os.fspath(target)
            if isinstance(s, bytes) or ("://" in s and not s.startswith("file://")):
                return None
            p = Path(s.removeprefix("file://")).expanduser()
            p = p if p.is_absolute() else Path.cwd() / p
            return p.resolve() if p.exists() else None
        return None

    def _record(self, name: str, role: str, target: Any, frame: Any, digest: Future | None,
                args: tuple, kwargs: dict, method: bool) -> None:
        is_sql = name.endswith("_sql") or name.startswith("read_sql")
        entry_kw: dict[str, Any] = {}
        if is_sql:
            con = kwargs.get("con", (args[2] if method else args[1]) if len(args) > (2 if method else 1) else None)
            text = str(target)
            key, kind = f"sql:{' '.join(text.split())[:500]}", "sql"
            entry_kw.update(query=text if name != "read_sql_table" and name != "to_sql" else None,
                            connection=_connection_url(con))
            if name in ("read_sql_table", "to_sql"):
                entry_kw["note"] = f"table {text}"
        else:
            local = self._local_file(target)
            if local is not None:
                key, kind = str(local), "file"
                entry_kw["relative_path"] = os.path.relpath(local, self.project_dir)
                if digest is None:  # writes: hash what was written
                    digest = _done(content_hash(local))
            elif isinstance(target, str | os.PathLike):
                key, kind = strip_url_password(os.fspath(target)), "url"
            else:
                key, kind = f"<{type(target).__name__}>", "buffer"
        rows, columns, to_profile = _frame_shape(frame)
        with self._lock:
            entry = self.entries.get((key, role))
            if entry is None:
                entry = self.entries[(key, role)] = LineageEntry(key, role, kind, name, **entry_kw)
            entry.function = name
            if digest is not None:
                try:
                    entry.hash, entry.bytes = digest.result()
                    if kind == "url":
                        entry.note = "hashed from a second download of the URL, made beside pandas' read"
                except OSError as exc:  # the read itself worked: keep it, say why it has no hash
                    entry.hash, entry.bytes = None, None
                    entry.note = f"not hashed: {kind} could not be read again ({strip_url_password(str(exc))})"
            entry.rows, entry.columns = rows, columns
            cell = self.cell()
            if cell is not None and cell not in entry.cells:
                entry.cells.append(cell)
        if role == "read" and to_profile is not None and self.profile:
            snapshot = to_profile.copy(deep=False)  # copy-on-write: later edits don't leak in
            self._frames[id(entry)] = (entry, snapshot)
            fut = self._pool.submit(self._profile, entry, snapshot)
            self._pending.append(fut)
        self.on_change()

    def _profile(self, entry: LineageEntry, frame: Any) -> None:
        try:
            prof = profile_frame(frame)
        except Exception as exc:
            prof = {"error": f"{type(exc).__name__}: {exc}"}
        with self._lock:
            entry.profile = prof
            if "error" not in prof and self._frames.get(id(entry), (None, None))[1] is frame:
                del self._frames[id(entry)]
        self.on_change()

    def wait(self) -> None:
        """Block until every pending profile is done; profile again, here, what failed there.

        A profile that failed in the background thread (pandas is not guaranteed to be
        thread-safe while the notebook goes on working) is computed once more in the
        calling thread, so a record handed to a later stage always has its profiles.
        """
        pending, self._pending = self._pending, []
        for f in pending:
            f.result()
        with self._lock:
            retry = [(e, f) for e, f in self._frames.values() if e.profile is None or "error" in e.profile]
        for entry, frame in retry:
            self._profile(entry, frame)

    @property
    def busy(self) -> bool:
        return any(not f.done() for f in self._pending)

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [e.to_dict() for e in self.entries.values()]


def _is_http(target: Any) -> bool:
    return isinstance(target, str) and target[:8].lower().startswith(("http://", "https://"))


def _done(value: Any) -> Future:
    f: Future = Future()
    f.set_result(value)
    return f


class _PostImportHook(importlib.abc.MetaPathFinder):
    """Calls ``callback(module)`` right after ``name`` has been imported, and only then.

    The hook stays on ``sys.meta_path`` until the module has really been executed: a
    probe such as ``importlib.util.find_spec(name)`` (made by the user's code, by a
    library, or by capture's own writer thread while it resolves a cell's imports)
    gets a spec and leaves the hook armed. While the hook looks up the real spec it
    steps aside for its own thread only, so a probe in another thread at that moment
    still finds it.
    """

    def __init__(self, name: str, callback: Callable[[Any], None]) -> None:
        self.name = name
        self.callback = callback
        self._busy = threading.local()
        self._fired = False

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name or getattr(self._busy, "value", False) or self._fired:
            return None
        self._busy.value = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy.value = False
        if spec is None or spec.loader is None:
            return spec
        loader, hook = spec.loader, self

        class _Loader(importlib.abc.Loader):
            def create_module(self, spec: Any) -> Any:
                return loader.create_module(spec)

            def exec_module(self, module: Any) -> None:
                module.__loader__ = loader  # the real loader, for resource readers
                module.__spec__.loader = loader
                loader.exec_module(module)
                hook.fire(module)

        spec.loader = _Loader()
        return spec

    def fire(self, module: Any) -> None:
        if self._fired:
            return
        self._fired = True
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        self.callback(module)
