"""Which version rollback goes back to, from the recorded moves alone (no registry needed)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from nbdeploy.release.history import PREFIX, History, Move, read


def _history(*moves: tuple[str, str, str | None, str]) -> History:
    return History("m", [Move("m", alias, action, before, to, "u", f"2026-01-01T00:00:{i:02d}Z")
                         for i, (alias, action, before, to) in enumerate(moves)])


@pytest.mark.parametrize("moves,current,expected", [
    ([], None, None),
    ([("champion", "promote", None, "1")], "1", None),
    ([("champion", "promote", None, "1"), ("champion", "promote", "1", "2")], "2", "1"),
    # each rollback walks one step further back
    ([("champion", "promote", None, "1"), ("champion", "promote", "1", "2"), ("champion", "promote", "2", "3"),
      ("champion", "rollback", "3", "2")], "2", "1"),
    # a promote after a rollback: going back returns to the version rolled back to
    ([("champion", "promote", None, "1"), ("champion", "promote", "1", "2"), ("champion", "rollback", "2", "1"),
      ("champion", "promote", "1", "3")], "3", "1"),
    # the challenger's moves do not count for champion
    ([("champion", "promote", None, "1"), ("challenger", "promote", None, "2")], "1", None),
    # the alias was moved by hand (not in the history): back to the last one nbdeploy set
    ([("champion", "promote", None, "1"), ("champion", "promote", "1", "2")], "5", "2"),
])
def test_previous(moves, current, expected) -> None:
    assert _history(*moves).previous("champion", current) == expected


def test_read_keeps_the_order_of_the_tags_and_skips_foreign_ones() -> None:
    def tag(to: str) -> str:
        return json.dumps({"alias": "champion", "action": "promote", "from_version": None, "to_version": to,
                           "user": "u", "time": "t", "forced": to == "2"})

    model = SimpleNamespace(name="m", tags={f"{PREFIX}0000000000002-aa": tag("2"),
                                            f"{PREFIX}0000000000001-bb": tag("1"),
                                            f"{PREFIX}0000000000003-cc": "not json", "other": "x"})
    moves = read(model).moves
    assert [(m.to_version, m.forced) for m in moves] == [("1", False), ("2", True)]
    assert "forced" in read(model).text()
