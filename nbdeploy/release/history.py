"""Who moved which alias when: kept in the registry itself, one registered-model tag per move.

Every promote and rollback writes a tag ``nbdeploy.history.<ms since epoch>-<random>`` on
the registered model, holding one JSON event (alias, from, to, action, user, time, forced).
The keys sort in time, and a real ``mlflow server`` keeps them like any other tag, so the
history survives the process and is the same for everyone who reads the registry.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

from nbdeploy.base.tables import View

PREFIX = "nbdeploy.history."
Action = Literal["promote", "rollback"]


@dataclass
class Move:
    """One move of an alias: ``from_version`` is None when the alias was not set before."""

    name: str
    alias: str
    action: Action
    from_version: str | None
    to_version: str
    user: str
    time: str  # ISO 8601, UTC
    forced: bool = False
    verified: str = ""  # what verify said of the version's bundle, when promote checked it

    def text(self) -> str:
        if self.from_version == self.to_version:
            return f"{self.name}@{self.alias} is already version {self.to_version}: nothing moved"
        was = f"version {self.from_version}" if self.from_version else "no version"
        forced = " (forced: not verified)" if self.forced else ""
        return (f"{self.name}@{self.alias}: {was} -> version {self.to_version} "
                f"({self.action} by {self.user} at {self.time}){forced}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class History:
    """The moves of a registered model's aliases, oldest first."""

    name: str
    moves: list[Move]

    def current(self, alias: str) -> str | None:
        mine = [m for m in self.moves if m.alias == alias]
        return mine[-1].to_version if mine else None

    def held(self, alias: str) -> list[str]:
        """The versions that held ``alias`` in turn, a rollback undoing the move it reverts."""
        stack: list[str] = []
        for m in self.moves:
            if m.alias != alias:
                continue
            if m.action == "rollback":
                while stack and stack[-1] != m.to_version:
                    stack.pop()
            if not stack or stack[-1] != m.to_version:
                stack.append(m.to_version)
        return stack

    def previous(self, alias: str, current: str | None) -> str | None:
        """The version that held ``alias`` before ``current`` did (what rollback goes back to)."""
        stack = self.held(alias)
        while stack and stack[-1] == current:
            stack.pop()
        return stack[-1] if stack else None

    def view(self) -> View:
        rows = [[m.time, m.alias, m.from_version or "-", m.to_version, m.action, m.user,
                 "yes" if m.forced else ""] for m in self.moves]
        bad = {i for i, m in enumerate(self.moves) if m.forced}
        return View([(f"{self.name}: who moved which alias when", ["time (UTC)", "alias", "from", "to",
                                                                   "action", "user", "forced"], rows, bad)])

    def text(self) -> str:
        return self.view().text()

    def to_dict(self) -> dict:
        return {"name": self.name, "moves": [m.to_dict() for m in self.moves]}


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def read(model: Any) -> History:
    """The history of a registered model (an MLflow ``RegisteredModel``)."""
    moves = []
    for key, value in sorted((getattr(model, "tags", None) or {}).items()):
        if not key.startswith(PREFIX):
            continue
        try:
            doc = json.loads(value)
            fields = {k: doc[k] for k in Move.__dataclass_fields__ if k in doc and k != "name"}
            moves.append(Move(name=model.name, **fields))
        except (ValueError, TypeError):
            continue  # a tag someone else wrote by hand: not a move
    return History(model.name, moves)


def record(client: Any, move: Move) -> None:
    """Write ``move`` as the next history tag of its registered model."""
    key = f"{PREFIX}{time.time_ns() // 1_000_000:013d}-{secrets.token_hex(3)}"  # sorts in time
    doc = {k: v for k, v in move.to_dict().items() if k != "name"}
    client.set_registered_model_tag(move.name, key, json.dumps(doc, sort_keys=True))
