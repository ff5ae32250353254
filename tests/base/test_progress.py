"""Typed progress events: what the CLI prints, what travels to the server extension."""

from __future__ import annotations

import json

import pytest

from nbdeploy.base.progress import Finished, ProgressEvent, event_writer, fan_out, read_events


def test_text_of_each_kind_of_event() -> None:
    assert ProgressEvent("run the notebook", "started", 2, 5).text() == "[2/5] run the notebook ..."
    assert ProgressEvent("run the notebook", "ok", 2, 5, "3 cells", 1.25).text() == "      ok in 1.2 s: 3 cells"
    assert ProgressEvent("tests", "failed", 6, 6, "2 failed", 3.0).text() == "      FAILED in 3.0 s: 2 failed"
    assert ProgressEvent("run r1: completed in 2.0s", "ok", 2, 2).text() == "[2/2] run r1: completed in 2.0s"
    assert ProgressEvent("baseline is the capture record").text() == "baseline is the capture record"


@pytest.mark.parametrize("event,fraction", [
    (ProgressEvent("a", "started", 1, 4), 0.0),
    (ProgressEvent("a", "ok", 1, 4, seconds=1.0), 0.25),
    (ProgressEvent("d", "started", 4, 4), 0.75),
    (ProgressEvent("d", "failed", 4, 4, seconds=1.0), 1.0),
    (ProgressEvent("a note"), None),
])
def test_fraction_done(event: ProgressEvent, fraction: float | None) -> None:
    assert event.fraction == fraction


def test_events_travel_through_a_file_and_a_half_written_line_waits(tmp_path) -> None:
    path = tmp_path / "events.jsonl"
    write = event_writer(path)
    assert write is not None
    sent = [ProgressEvent("build", "started", 1, 5), ProgressEvent("build", "ok", 1, 5, "x", 0.5),
            Finished(False, "it broke", {"error": "BundleError", "message": "it broke", "hint": "rebuild"})]
    for e in sent[:2]:
        write(e)
    with open(path, "a") as fh:  # the writer is in the middle of the next line
        fh.write(json.dumps(sent[2].to_dict())[:20])
    got, offset = read_events(path)
    assert got == sent[:2]
    with open(path, "a") as fh:
        fh.write(json.dumps(sent[2].to_dict())[20:] + "\n")
    rest, end = read_events(path, offset)
    assert rest == [sent[2]] and end == path.stat().st_size
    assert read_events(tmp_path / "none.jsonl") == ([], 0)


def test_no_writer_without_a_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NBDEPLOY_EVENTS", raising=False)
    assert event_writer() is None


def test_an_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        ProgressEvent.from_dict({"title": "x", "outcome": "maybe"})


def test_fan_out_passes_each_event_to_every_callback_in_order() -> None:
    seen: list[tuple[str, str]] = []
    tick = fan_out(lambda e: seen.append(("a", e.title)), None, lambda e: seen.append(("b", e.title)))
    tick(ProgressEvent("x"))
    assert seen == [("a", "x"), ("b", "x")]


def test_events_and_what_the_cli_prints_carry_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from nbdeploy.frontends.cli import _Scrubbed

    token, url = "tkn8Hq3ZvR6pL1mX9cW4Param", "postgresql://app:Zq8Param3Lx7Mv2Kp@db/prod"
    event = ProgressEvent(f"run r1: executing (api_token={token!r} db_url={url!r})", "started", 1, 2,
                          detail=f"Bearer {token}")
    shown = json.dumps(event.to_dict()) + event.text()
    assert token not in shown and "Zq8Param3Lx7Mv2Kp" not in shown and "app:***@db" in shown
    done = Finished(False, f"failed with {url}", {"message": f"api_token={token!r}"})
    assert token not in json.dumps(done.to_dict()) and "Zq8Param3Lx7Mv2Kp" not in json.dumps(done.to_dict())
    out = _Scrubbed(sys.stdout)
    print(f"given: api_token={token!r} {url}", file=out)  # type: ignore[arg-type]
    printed = capsys.readouterr().out
    assert token not in printed and "Zq8Param3Lx7Mv2Kp" not in printed and printed.startswith("given: ")
