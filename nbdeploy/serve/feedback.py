"""Ground truth sent after the fact: ``POST /feedback`` and ``GET /performance``.

A client that learns the true label (or value) of a prediction later sends it with the
request id every response carries (``x-request-id``). Labels are not kept only in memory:
the feedback request's own request-log record holds them (``"endpoint": "feedback"``,
``"labels"``), beside the predictions the log already holds, so they survive a restart,
and every worker of a ``--workers N`` server sees all of them by reading every worker's
log file (:class:`Ledger`, which reads only what the files gained since its last look).
The same :class:`Ledger` and :func:`.performance.report` make ``nbdeploy performance LOG``,
so the offline table and ``GET /performance`` are one computation.

A label joins every answer logged for its request: the version that answered it (the live
model or the canary) and, with a shadow, the shadow's answer too.
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import sys
import threading
from pathlib import Path
from typing import Any

import orjson

from .compare import INFER_ENDPOINTS
from .errors import RequestError, ServeError
from .logfiles import family_files, read_lines

#: feedback items in one request
MAX_ITEMS = 10_000
#: request ids kept with their answers (a few hundred MB at most); past this the first read are forgotten
MAX_ANSWERS = 1_000_000
FIELDS = ("request_id", "label")
_READ_CHUNK = 8 * 1024 * 1024
JSON = b"application/json"
#: how many unknown or mismatched ids a feedback answer lists
EXAMPLES = 10


# -- the body ---------------------------------------------------------------
def parse_feedback(body: bytes) -> list[tuple[str, Any]]:
    """``{"request_id", "label"}`` or a list of them: (request id, label) pairs, or a RequestError
    that names the offending field (``[3].label``)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise RequestError(400, f"the body is not valid JSON: {e}") from None
    return check_items(doc)


def check_items(doc: Any) -> list[tuple[str, Any]]:
    if isinstance(doc, dict):
        return [_item(doc, "")]
    if not isinstance(doc, list):
        raise _field(422, "body", "wrong_type", 'send {"request_id": ID, "label": LABEL} or a list of them',
                     type(doc).__name__)
    if not doc:
        raise _field(422, "body", "empty", "at least one feedback item")
    if len(doc) > MAX_ITEMS:
        raise _field(422, "body", "too_many", f"at most {MAX_ITEMS} items a request", str(len(doc)))
    return [_item(item, f"[{i}].") for i, item in enumerate(doc)]


def _item(item: Any, where: str) -> tuple[str, Any]:
    if not isinstance(item, dict):
        raise _field(422, where.rstrip(".") or "body", "wrong_type",
                     'an object {"request_id": ID, "label": LABEL}', type(item).__name__)
    for key in item:
        if key not in FIELDS:
            raise _field(422, f"{where}{key}", "unexpected", "only request_id and label")
    for key in FIELDS:
        if key not in item:
            raise _field(422, f"{where}{key}", "missing", "request_id: the x-request-id of the answer; "
                                                           "label: its true class or value")
    rid = item["request_id"]
    if not isinstance(rid, str) or not rid.strip() or len(rid) > 128:
        raise _field(422, f"{where}request_id", "wrong_type",
                     "the x-request-id header of the answer (a non-empty string)", _show(rid))
    label = item["label"]
    if isinstance(label, list):
        if not label:
            raise _field(422, f"{where}label", "empty", "one label per row of the request")
        for j, value in enumerate(label):
            _scalar(value, f"{where}label[{j}]")
    else:
        _scalar(label, f"{where}label")
    return rid, label


def _scalar(value: Any, field: str) -> None:
    if value is None:
        raise _field(422, field, "null", "the true class or value (a string, number or boolean)")
    if isinstance(value, float) and not math.isfinite(value):
        raise _field(422, field, "wrong_type", "a finite number", _show(value))
    if not isinstance(value, str | int | float | bool):
        raise _field(422, field, "wrong_type", "a string, number or boolean (a list: one per row)",
                     type(value).__name__)


def _field(status: int, field: str, problem: str, expected: str, got: str | None = None) -> RequestError:
    err: dict[str, Any] = {"field": field, "problem": problem, "expected": expected}
    if got is not None:
        err["got"] = got
    return RequestError(status, f"feedback field {field}: {problem}" + (f" ({got})" if got else "")
                        + f"; expected {expected}", errors=[err])


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- what the logs say --------------------------------------------------------
class Ledger:
    """Answers and labels by request id, read from a server's request log files.

    ``scan()`` reads what each file (every worker's, with their rotated backups) gained
    since the last scan; a file is known by its inode, so a rotation does not read a
    file twice. A label sent again for the same request replaces the first.
    """

    def __init__(self, path: str | Path | None = None, max_answers: int = MAX_ANSWERS) -> None:
        self.path = Path(path) if path else None
        self.max_answers = max_answers
        #: request id -> ((version, "answered" | "shadow", outputs), ...)
        self.answers: dict[str, tuple[tuple[str, str, Any], ...]] = {}
        #: request id -> label (a list: one per row)
        self.labels: dict[str, Any] = {}
        #: version -> the metrics the notebook recorded at training
        self.training: dict[str, dict[str, Any]] = {}
        self._offsets: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()
        #: rotated .gz files already read (their plain file may have been read in part before)
        self._compressed: set[Path] = set()
        #: one scan at a time from the event loop (the reading itself runs in a thread)
        self.busy = asyncio.Lock()

    def scan(self) -> None:
        if self.path is None:
            return
        with self._lock:
            for f in family_files(self.path):
                if f.suffix != ".gz":
                    self._read(f)
                elif f not in self._compressed:  # a rotated file, written whole: read once
                    for line in read_lines(f):
                        self._line(line)
                    self._compressed.add(f)

    def _read(self, f: Path) -> None:
        try:
            handle = f.open("rb")
        except OSError:
            return  # rotated away between listing and opening
        with handle:
            st = _stat(handle)
            key = (st.st_dev, st.st_ino)
            offset = self._offsets.get(key, 0)
            if st.st_size < offset:  # a new file on a reused inode
                offset = 0
            handle.seek(offset)
            rest = b""
            while True:
                chunk = handle.read(_READ_CHUNK)
                if not chunk:
                    break
                data = rest + chunk
                end = data.rfind(b"\n") + 1  # a line still being written waits for the next scan
                self._lines(data[:end])
                rest = data[end:]
                offset += end
            self._offsets[key] = offset

    def _lines(self, data: bytes) -> None:
        for line in data.splitlines():
            self._line(line)

    def _line(self, line: bytes) -> None:
        if b'"outputs"' not in line and b'"labels"' not in line:
            return  # neither an answer nor feedback: not parsed
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return  # a line cut off by a killed server
        if isinstance(record, dict):
            self.take(record)  # taking a record twice changes nothing (a rotated file read again)

    def take(self, r: dict[str, Any]) -> None:
        """One request-log record: an answer, a shadow's answer or feedback (anything else is ignored)."""
        endpoint = r.get("endpoint")
        if endpoint in INFER_ENDPOINTS and r.get("status") == 200 and "outputs" in r:
            self._answer(str(r.get("id")), str(r.get("version")), "answered", r["outputs"])
        elif endpoint == "shadow" and r.get("shadow") == "ok" and "outputs" in r:
            self._answer(str(r.get("id")), str(r.get("version")), "shadow", r["outputs"])
        elif endpoint == "feedback" and r.get("status") == 200:
            for pair in r.get("labels") or []:
                if isinstance(pair, list) and len(pair) == 2:
                    self.labels[str(pair[0])] = pair[1]
            for version, metrics in (r.get("training") or {}).items():
                if isinstance(metrics, dict) and metrics:
                    self.training[str(version)] = metrics

    def _answer(self, rid: str, version: str, role: str, outputs: Any) -> None:
        entry = (sys.intern(version), role, outputs)  # one string per version, however many answers
        seen = self.answers.get(rid)
        if seen is None:
            if len(self.answers) >= self.max_answers:
                del self.answers[next(iter(self.answers))]
            self.answers[rid] = (entry,)
        elif (version, role) not in [(v, ro) for v, ro, _ in seen]:
            self.answers[rid] = (*seen, entry)

    def add_labels(self, pairs: list[tuple[str, Any]]) -> None:
        for rid, label in pairs:
            self.labels[rid] = label


def _stat(handle: Any) -> Any:
    import os

    return os.fstat(handle.fileno())


def rows_of(outputs: Any) -> int:
    from .compare import _rows

    return len(_rows(outputs))


# -- feedback files ---------------------------------------------------------------
def read_feedback_file(path: str | Path) -> list[tuple[str, Any]]:
    """Labels kept beside a log: JSON lines (or one JSON list) of ``{"request_id", "label"}``,
    or a CSV file with ``request_id`` and ``label`` columns."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ServeError(f"cannot read the feedback file {p}: {e.strerror or e}") from None
    try:
        if p.suffix.lower() == ".csv":
            rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
            if rows and not set(FIELDS) <= set(rows[0]):
                raise ServeError(f"{p} has the columns {sorted(rows[0])}; a feedback CSV needs request_id and label")
            return check_items([{k: r[k] for k in FIELDS} for r in rows]) if rows else []
        text = raw.strip()
        if text.startswith(b"["):
            return check_items(orjson.loads(text))
        pairs = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    pairs += check_items(orjson.loads(line))
                except orjson.JSONDecodeError as e:
                    raise ServeError(f"{p} line {n} is not JSON: {e}") from None
                except RequestError as e:
                    raise ServeError(f"{p} line {n}: {e.message}") from None
        return pairs
    except RequestError as e:
        raise ServeError(f"{p}: {e.message}") from None
    except (orjson.JSONDecodeError, UnicodeDecodeError) as e:
        raise ServeError(f"{p} is neither JSON lines nor CSV: {e}") from None


def performance_log(path: str | Path, feedback: str | Path | None = None) -> dict[str, Any]:
    """``nbdeploy performance LOG [--feedback FILE]``: the same table as ``GET /performance``."""
    from .compare import read_records
    from .performance import report

    read_records(path)  # the same "no request log at ..." error as compare
    ledger = Ledger(path)
    ledger.scan()
    if feedback is not None:
        ledger.add_labels(read_feedback_file(feedback))
    if not ledger.labels:
        raise ServeError(f"{path} holds no feedback" + (f" and {feedback} no labels" if feedback else ""),
                         hint="POST the true labels to /feedback (request_id, label), or pass --feedback FILE")
    return report(ledger)


# -- the endpoints ------------------------------------------------------------------
def _ledger(app: Any) -> Ledger:
    if app.config.log_path == "" or app.log is None:
        raise RequestError(409, "feedback is joined to the predictions in the request log, and the log is "
                                "off: start the server with --log-path (NBDEPLOY_LOG_PATH)")
    if not app.config.log_payloads:
        raise RequestError(409, "the request log keeps no predictions (NBDEPLOY_LOG_PAYLOADS is off), so "
                                "feedback has nothing to be joined to")
    if app.ledger is None:
        app.ledger = Ledger(app.config.log_path)
    ledger: Ledger = app.ledger
    return ledger


async def _refresh(app: Any, ledger: Ledger) -> None:
    """This worker's log written out, then every worker's files read up to date (in a thread)."""
    app.log.flush()
    await asyncio.get_running_loop().run_in_executor(None, ledger.scan)


def training_metrics(app: Any) -> dict[str, dict[str, Any]]:
    """version -> the metrics its bundle's manifest recorded at training, for every version served."""
    out = {}
    for variant in served_variants(app):
        metrics = (variant.bundle.summary or {}).get("metrics")
        if isinstance(metrics, dict) and metrics:
            out[variant.version] = metrics
    return out


def served_variants(app: Any) -> list[Any]:
    found = [app.live]
    if app.canary is not None:
        found.append(app.canary)
    if app.shadow is not None:
        found.append(app.shadow.variant)
    return found


async def post_feedback(app: Any, scope: Any, receive: Any, headers: Any, record: dict[str, Any]) -> Any:
    ledger = _ledger(app)
    mime = headers.get(b"content-type", b"").partition(b";")[0].strip().lower()
    if mime not in (b"application/json", b""):
        raise RequestError(415, f"content type {mime.decode('latin-1')!r} is not accepted; send feedback as "
                                "application/json")
    pairs = parse_feedback(await app.read_body(receive, headers))
    async with ledger.busy:
        await _refresh(app, ledger)
        unknown = [rid for rid, _ in pairs if rid not in ledger.answers]
        if unknown and app.config.workers > 1:  # another worker may not have written its answer out yet
            await asyncio.sleep(app.log.flush_interval + 0.1)
            await asyncio.get_running_loop().run_in_executor(None, ledger.scan)
        joined, unknown, mismatched = [], [], []
        for rid, label in pairs:
            answers = ledger.answers.get(rid)
            if answers is None:
                unknown.append(rid)
            elif (len(label) if isinstance(label, list) else 1) != rows_of(answers[0][2]):
                mismatched.append(rid)
            else:
                joined.append([rid, label])
        ledger.add_labels([(rid, label) for rid, label in joined])
    # the request's own log record keeps the labels: what a restart and the other workers read
    record["labels"] = joined
    record["training"] = training_metrics(app)
    doc: dict[str, Any] = {"received": len(pairs), "joined": len(joined), "unknown": len(unknown),
           "mismatched": len(mismatched)}
    if unknown:
        doc["unknown_ids"] = unknown[:EXAMPLES]
    if mismatched:
        doc["mismatched_ids"] = mismatched[:EXAMPLES]
        doc["mismatched_note"] = "a label list needs one label per row of the request"
    return 200, app.json(doc), JSON, []


async def get_performance(app: Any, *_: Any) -> Any:
    from .performance import report

    ledger = _ledger(app)
    async with ledger.busy:
        await _refresh(app, ledger)
        doc = report(ledger, training_metrics(app))
    return 200, app.json(doc), JSON, []
