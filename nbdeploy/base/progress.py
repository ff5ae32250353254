"""Typed progress of long operations (run, build, verify, reproduce, batch).

The core reports what it is doing as :class:`ProgressEvent` values through a callback
(``progress=``); each front end renders them its own way: the CLI prints
:meth:`ProgressEvent.text`, the notebook's widget moves a bar, and the Jupyter server
extension, which runs the CLI as a subprocess, reads the same events as JSON lines from
the file named by ``NBDEPLOY_EVENTS`` (:func:`event_writer`, :func:`read_events`). No
front end parses another's printed text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

Outcome = Literal["started", "ok", "failed", "note"]
#: environment variable: a file the CLI appends its progress events to, one JSON object a line
EVENTS_ENV = "NBDEPLOY_EVENTS"


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a long operation, or a note about it.

    ``step``/``steps`` place it (step 2 of 5) when the operation has numbered steps;
    ``outcome`` says whether the step starts, ended well, failed, or is a note.
    """

    title: str
    outcome: Outcome = "note"
    step: int | None = None
    steps: int | None = None
    detail: str = ""
    seconds: float | None = None

    def __post_init__(self) -> None:
        # every sink (terminal, CI log, the panel's event file) shows these: a parameter's value
        # in "run X (api_token='...')" is scrubbed once, here
        from nbdeploy.base.redact import scrub_text

        object.__setattr__(self, "title", scrub_text(self.title))
        object.__setattr__(self, "detail", scrub_text(self.detail))

    def text(self) -> str:
        """The line a terminal shows: ``[2/5] assemble the bundle ...`` when a step starts,
        ``      ok in 1.2 s: 14 files`` when a timed step ends, else the title (and detail)."""
        where = f"[{self.step}/{self.steps}] " if self.step is not None and self.steps else ""
        if self.outcome == "started":
            return f"{where}{self.title} ..."
        if self.outcome in ("ok", "failed") and self.seconds is not None:
            word = "ok" if self.outcome == "ok" else "FAILED"
            return f"      {word} in {self.seconds:.1f} s" + (f": {self.detail}" if self.detail else "")
        return f"{where}{self.title}" + (f" ({self.detail})" if self.detail else "")

    @property
    def fraction(self) -> float | None:
        """How far the operation is (0..1) once this event is seen, when it has numbered steps."""
        if self.step is None or not self.steps:
            return None
        done = self.step if self.outcome in ("ok", "failed") else self.step - 1
        return max(0.0, min(1.0, done / self.steps))

    def to_dict(self) -> dict[str, Any]:
        return {"type": "progress", **asdict(self)}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ProgressEvent:
        outcome = doc.get("outcome", "note")
        if outcome not in get_args(Outcome):
            raise ValueError(f"unknown outcome {outcome!r}")
        return cls(title=str(doc.get("title", "")), outcome=outcome, step=doc.get("step"),
                   steps=doc.get("steps"), detail=str(doc.get("detail") or ""), seconds=doc.get("seconds"))


@dataclass(frozen=True)
class Finished:
    """The last event of an operation: how it ended, in one line, with its typed error or result."""

    ok: bool
    summary: str = ""
    #: the error as ``NbdeployError.to_dict()`` (error, message, hint, ...) when it failed
    error: dict[str, Any] | None = None
    #: the result's ``to_dict()`` when it succeeded
    result: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        from nbdeploy.base.redact import scrub

        return scrub({"type": "finished", **asdict(self)})

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Finished:
        return cls(ok=bool(doc.get("ok")), summary=str(doc.get("summary") or ""),
                   error=doc.get("error"), result=doc.get("result"))


Event = ProgressEvent | Finished
Progress = Callable[[ProgressEvent], None]


def note(title: str, detail: str = "") -> ProgressEvent:
    return ProgressEvent(title, "note", detail=detail)


def silent(_event: ProgressEvent) -> None:
    """A progress callback that shows nothing."""


def event_writer(path: str | os.PathLike[str] | None = None) -> Callable[[Event], None] | None:
    """A callback appending each event as a JSON line to ``path`` (default: ``$NBDEPLOY_EVENTS``), or None."""
    target = path or os.environ.get(EVENTS_ENV)
    if not target:
        return None
    out = Path(target)

    def write(event: Event) -> None:
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event.to_dict(), default=str) + "\n")

    return write


def read_events(path: str | os.PathLike[str], offset: int = 0) -> tuple[list[Event], int]:
    """The complete events written to ``path`` after byte ``offset``, and the offset to read from next."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1  # a line still being written waits for the next read
    events = list(_parse(data[:end]))
    return events, offset + end


def _parse(data: bytes) -> Iterator[Event]:
    for line in data.splitlines():
        if line.strip():
            doc = json.loads(line)
            yield Finished.from_dict(doc) if doc.get("type") == "finished" else ProgressEvent.from_dict(doc)


def fan_out(*callbacks: Progress | None) -> Progress:
    """One callback that passes each event to every given one."""
    live = [c for c in callbacks if c is not None]

    def tick(event: ProgressEvent) -> None:
        for c in live:
            c(event)

    return tick
