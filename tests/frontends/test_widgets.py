"""Widgets of ``%deploy status|build|verify``: rendered in a real kernel, state checked after a build.

Plus the plain-text fallback where widgets cannot be shown (an in-process shell).
"""

from __future__ import annotations

import json
import queue
import shutil
from pathlib import Path

import pytest

from nbdeploy.bundle.readiness import readiness
from nbdeploy.frontends.widgets import checklist_html

NB = "churn_classifier.ipynb"


def test_checklist_html_flags_problems_in_red(examples: Path) -> None:
    state = examples / ".nbdeploy" / "churn_classifier"
    state.mkdir(parents=True, exist_ok=True)
    (state / "capture.json").write_text(json.dumps({
        "dependencies": [], "lineage": [],
        "unresolved": [{"module": "xgboost", "reason": "not installed", "cells": [1]}]}))
    html = checklist_html(readiness(examples / NB))
    assert "data-key='dependencies' data-status='error'" in html
    assert "color:#c62828;font-size:90%'>xgboost unresolved" in html
    assert "Not ready yet" in html


def test_status_prints_text_without_widgets(ipshell, examples: Path, capsys) -> None:
    ipshell.run_line_magic("deploy", f"init --notebook {examples / NB}")
    ipshell.run_line_magic("deploy", "status")
    out = capsys.readouterr().out
    assert f"Handoff readiness of {NB}: not ready yet" in out
    assert "[✓] Parameters cell: cell 2: 6 parameter(s)" in out
    assert "-> click Build bundle" in out


class _Kernel:
    def __init__(self, cwd: Path) -> None:
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(cwd))

    def run(self, code: str, timeout: float = 600) -> list[dict]:
        """Execute ``code``; return its iopub messages; fail on an error."""
        msg_id = self.kc.execute(code)
        msgs = []
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no answer to {code!r}") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            msgs.append(msg)
            if msg["msg_type"] == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return msgs

    def value(self, expr: str) -> object:
        msgs = self.run(f"import json as _j; print(_j.dumps({expr}))")
        out = "".join(m["content"]["text"] for m in msgs if m["msg_type"] == "stream"
                      and m["content"]["name"] == "stdout")
        return json.loads(out.strip().splitlines()[-1])

    def stop(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.mark.slow
def test_widgets_in_a_kernel_after_a_build(examples: Path) -> None:
    k = _Kernel(examples)
    try:
        k.run(f"%load_ext nbdeploy\n%deploy init --notebook {NB}")
        msgs = k.run("%deploy status")
        views = [m for m in msgs if m["msg_type"] == "display_data"
                 and "application/vnd.jupyter.widget-view+json" in m["content"]["data"]]
        assert views, "the checklist is a widget"
        msgs = k.run("%deploy build", timeout=900)
        opened = [m["content"]["data"]["state"] for m in msgs if m["msg_type"] == "comm_open"]
        assert any(s.get("_model_name") == "IntProgressModel" for s in opened)
        # the state of the widgets, read in the kernel after the build
        state = k.value("""(lambda W: {
            "bars": [(w.bar_style, w.value, w.max) for w in W if type(w).__name__ == 'IntProgress'],
            "html": [w.value for w in W if type(w).__name__ == 'HTML'],
        })(list(__import__('ipywidgets').Widget.widgets.values()))""")
        assert ["success", 5, 5] in state["bars"]
        summary = next(h for h in state["html"] if "nbdeploy-summary" in h)
        assert "href='churn_classifier-bundle'" in summary
        assert "href='churn_classifier-bundle/README.md'" in summary
        checklists = [h for h in state["html"] if "nbdeploy-checklist" in h]
        assert "data-key='bundle' data-status='warning'" in checklists[-1]  # built, not verified
        assert (examples / "churn_classifier-bundle" / "nbdeploy.json").is_file()
    finally:
        k.stop()


@pytest.mark.slow
def test_batch_widgets_in_a_kernel(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    shutil.copytree(Path(__file__).parents[1] / "job" / "fixtures", proj)
    (proj / "grid.yaml").write_text("runs:\n  - {alpha: 1.0}\n  - {alpha: 2.0, fail: true}\n")
    k = _Kernel(proj)
    try:
        k.run("%load_ext nbdeploy\n%deploy init --notebook tiny.ipynb")
        k.run("%deploy batch --grid grid.yaml --workers 1", timeout=900)
        state = k.value("""(lambda W: {
            "bars": [(w.bar_style, w.value, w.max) for w in W if type(w).__name__ == 'IntProgress'],
            "html": [w.value for w in W if type(w).__name__ == 'HTML'],
        })(list(__import__('ipywidgets').Widget.widgets.values()))""")
        assert ["danger", 2, 2] in state["bars"]  # one of the two runs failed
        summary = next(h for h in state["html"] if "nbdeploy-summary" in h)
        assert summary.count("executed notebook</a>") == 2
        assert "color:#c62828'>failed" in summary
        assert "href='.nbdeploy/tiny/" in summary
    finally:
        k.stop()
