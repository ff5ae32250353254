"""Progress of a batch for the front ends: a tqdm bar, ``[i/n]`` lines, or an ipywidgets bar.

Each factory returns a callback ``(done, total, record | None)`` for
:func:`nbdeploy.job.batch.run_batch`; ``record`` is the run that just finished
(None for the first call, made before any run starts).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

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
