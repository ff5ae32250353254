"""Progress of a batch for the front ends: a tqdm bar, ``[i/n]`` lines, or an ipywidgets bar.

Each factory returns a callback ``(done, total, record | None)`` for
:func:`nbdeploy.job.batch.run_batch`; ``record`` is the run that just finished
(None for the first call, made before any run starts).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # (the annotations only: `nbdeploy score`'s bars need no job machinery imported)
    from nbdeploy.job.run import RunRecord


def _line(done: int, total: int, rec: RunRecord) -> str:
    given = " ".join(f"{k}={v!r}" for k, v in rec.given.items())
    line = f"[{done}/{total}] {rec.status}: {given or 'defaults'}"
    if rec.duration is not None:
        line += f" in {rec.duration:.1f}s"
    if rec.error:
        line += f" ({rec.error.get('message')})"
    return line


def lines(stream: TextIO | None = None) -> Any:
    """``[i/n] completed: alpha=0.1 in 3.2s`` per finished run (what the panel parses)."""
    def tick(done: int, total: int, rec: RunRecord | None) -> None:
        out = stream or sys.stdout
        if rec is None:
            print(f"[{done}/{total}] batch of {total} runs started"
                  + (f" ({done} already completed)" if done else ""), file=out, flush=True)
        else:
            print(_line(done, total, rec), file=out, flush=True)
    return tick


def tqdm_bar(stream: TextIO | None = None) -> Any:
    from tqdm.auto import tqdm

    state: dict[str, Any] = {}

    def tick(done: int, total: int, rec: RunRecord | None) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, initial=done, unit="run", desc="batch",
                                      file=stream or sys.stderr)
        if rec is not None:
            state["failed"] = state.get("failed", 0) + (0 if rec.ok else 1)
            bar.update(done - bar.n)
            bar.set_postfix_str(f"failed={state['failed']}")
        if done >= total:
            bar.close()
    return tick


def widget_bar() -> Any:
    """An ipywidgets progress bar with a status line (for the notebook front end)."""
    import ipywidgets as w
    from IPython.display import display

    state: dict[str, Any] = {}

    def tick(done: int, total: int, rec: RunRecord | None) -> None:
        if "bar" not in state:
            state["bar"] = w.IntProgress(value=done, min=0, max=total, description="batch",
                                         bar_style="info")
            state["label"] = w.Label(f"{done}/{total}")
            display(w.HBox([state["bar"], state["label"]]))
        state["bar"].value = done
        if rec is not None:
            state["failed"] = state.get("failed", 0) + (0 if rec.ok else 1)
            state["label"].value = _line(done, total, rec)
        if done >= total:
            state["bar"].bar_style = "danger" if state.get("failed") else "success"
    return tick


# -- rows of a scoring run (nbdeploy score / %deploy score) ----------------------------
def rows_tqdm(stream: TextIO | None = None) -> Any:
    """A tqdm bar of rows scored, with rows/s; for :func:`nbdeploy.score.score`'s ``progress``."""
    from tqdm.auto import tqdm

    state: dict[str, Any] = {}

    def tick(done: int, total: int | None) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, unit="rows", unit_scale=True, desc="score",
                                      file=stream or sys.stderr, smoothing=0.1)
        bar.update(done - bar.n)
        if total is not None and done >= total:
            bar.close()
    return tick


def rows_widget() -> Any:
    """An ipywidgets bar of rows scored with a rows/s label (the notebook front end)."""
    import time

    import ipywidgets as w
    from IPython.display import display

    state: dict[str, Any] = {}

    def tick(done: int, total: int | None) -> None:
        if "bar" not in state:
            state["t0"] = time.perf_counter()
            state["bar"] = w.IntProgress(value=0, min=0, max=max(total or 1, 1), description="score",
                                         bar_style="info")
            state["label"] = w.Label("starting")
            display(w.HBox([state["bar"], state["label"]]))
        seconds = time.perf_counter() - state["t0"]
        if total is None:  # CSV: the number of rows is known only at the end
            state["bar"].max = max(done, 1)
        state["bar"].value = done
        rate = done / seconds if seconds > 0 else 0.0
        state["label"].value = f"{done:,}" + (f" / {total:,}" if total else "") + f" rows, {rate:,.0f} rows/s"
        if total is not None and done >= total:
            state["bar"].bar_style = "success"
    return tick


def rows_lines(stream: TextIO | None = None, every: float = 5.0) -> Any:
    """``score: N rows (R rows/s)`` lines at most every ``every`` seconds (logs, not a terminal)."""
    import time

    state = {"t0": time.perf_counter(), "last": 0.0}

    def tick(done: int, total: int | None) -> None:
        now = time.perf_counter()
        if done and (now - state["last"] >= every or (total is not None and done >= total)):
            state["last"] = now
            rate = done / (now - state["t0"]) if now > state["t0"] else 0.0
            print(f"score: {done:,}" + (f"/{total:,}" if total else "") + f" rows ({rate:,.0f} rows/s)",
                  file=stream or sys.stderr, flush=True)
    return tick
