"""ipywidgets for ``%deploy status|build|verify|batch``: the checklist, step progress, a summary.

The widgets render what the core returns (:mod:`nbdeploy.bundle.readiness`, build and
verify results); they hold no logic. Where widgets cannot be shown (papermill
jobs, a terminal IPython, ipywidgets missing) :func:`available` is False and the
magics print plain text instead.

Links are relative to the notebook's folder, so in JupyterLab (``/lab/tree/NB``)
they open the file in JupyterLab.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from nbdeploy.base.progress import ProgressEvent
from nbdeploy.bundle.readiness import Readiness

_COLORS = {"ok": "#2e7d32", "warning": "#ef6c00", "missing": "#757575", "error": "#c62828"}
_MARKS = {"ok": "✓", "warning": "!", "missing": "○", "error": "✗"}


def available(shell: Any = None) -> bool:
    """Can this kernel show widgets? (a Jupyter front end, not a papermill job, ipywidgets installed)"""
    if os.environ.get("NBDEPLOY_WIDGETS", "").lower() in {"0", "false", "no"}:
        return False
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return False
    from nbdeploy.capture.session import current_session

    s = current_session()
    if s is not None and s.mode == "job":  # papermill: nobody to look at widgets
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _link(path: str | None, base: Path | None, text: str | None = None) -> str:
    """An <a> to ``path``, relative to the notebook folder ``base`` when it is below it."""
    if not path:
        return html.escape(text or "")
    href = path
    if base is not None:
        try:
            href = Path(path).resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            href = path
    label = html.escape(text or href)
    return f"<a href='{html.escape(href, quote=True)}' target='_blank'>{label}</a>"


def checklist_html(r: Readiness) -> str:
    base = Path(r.notebook).parent
    head = ("<b style='color:#2e7d32'>Ready to hand off</b>" if r.ready
            else "<b style='color:#ef6c00'>Not ready yet</b>")
    rows = [f"<div class='nbdeploy-checklist'><div>Handoff readiness of "
            f"<code>{html.escape(Path(r.notebook).name)}</code>: {head}</div>"]
    if r.stale:
        rows.append("<div style='color:#ef6c00'>The notebook changed since it was last captured.</div>")
    rows.append("<ul style='list-style:none;padding-left:0;margin:4px 0'>")
    for it in r.items:
        color = _COLORS[it.status]
        li = (f"<li data-key='{it.key}' data-status='{it.status}' style='margin:3px 0'>"
              f"<b style='color:{color}'>{_MARKS[it.status]}</b> <b>{html.escape(it.title)}</b>: "
              f"{html.escape(it.summary)}")
        if it.action and it.status != "ok":
            li += f"<div style='margin-left:1.3em;color:{color}'>→ {html.escape(it.action)}</div>"
        bad = [d for d in it.details if d.status == "error"]
        shown = bad or (it.details if it.key in {"lineage", "bundle"} else [])
        for d in shown[:12]:
            dc = _COLORS[d.status] if d.status != "ok" else "inherit"
            label = _link(d.path, base, d.label) if d.path else html.escape(d.label)
            li += (f"<div style='margin-left:1.3em;color:{dc};font-size:90%'>{label} "
                   f"{html.escape(d.value)} <span style='opacity:.7'>{html.escape(d.note)}</span></div>")
        rows.append(li + "</li>")
    rows.append("</ul></div>")
    return "".join(rows)


def checklist(r: Readiness) -> Any:
    """The readiness checklist as a widget (``.readiness`` keeps the object it shows)."""
    import ipywidgets as w

    box = w.HTML(checklist_html(r))
    box.add_class("nbdeploy-checklist")
    box.readiness = r
    return box


class StepProgress:
    """A progress bar fed by the core's progress events, a log, and a summary at the end.

    Pass the instance as the ``progress=`` callback of ``build_bundle``/``verify_bundle``.
    """

    def __init__(self, title: str) -> None:
        import ipywidgets as w

        self.title = title
        self.bar = w.IntProgress(value=0, min=0, max=1, description=title, bar_style="info",
                                 style={"description_width": "initial"},
                                 layout=w.Layout(width="60%"))
        self.step = w.Label("starting ...")
        self.log = w.Textarea(value="", disabled=True, layout=w.Layout(width="95%", height="120px"))
        self.log_box = w.Accordion(children=[self.log], titles=("log",))
        self.log_box.selected_index = None
        self.summary = w.HTML("")
        self.widget = w.VBox([w.HBox([self.bar, self.step]), self.log_box, self.summary])
        self.lines: list[str] = []

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def __call__(self, event: ProgressEvent) -> None:
        self.lines.append(event.text())
        self.log.value = "\n".join(self.lines[-400:])
        if event.steps:
            self.bar.max = max(event.steps, 1)
            self.bar.value = round((event.fraction or 0.0) * event.steps)
        if event.outcome in ("started", "note"):
            self.step.value = event.title[:120]

    def finish(self, ok: bool, summary_html: str) -> None:
        self.bar.value = self.bar.max
        self.bar.bar_style = "success" if ok else "danger"
        self.step.value = "done" if ok else "failed"
        self.summary.value = summary_html
        if not ok:
            self.log_box.selected_index = 0


def build_summary(result: Any, notebook: Path) -> str:
    """Summary of a :class:`nbdeploy.bundle.build.BuildResult` with links to the bundle and README."""
    base = notebook.parent
    bundle = Path(result.bundle)
    readme = bundle / "README.md"
    return (f"<div class='nbdeploy-summary'><b>Bundle {html.escape(result.name)} "
            f"v{html.escape(str(result.version))}</b> ({html.escape(result.flavor)}) built in "
            f"{result.seconds:.1f} s: {_link(str(bundle), base)}"
            + (f" · {_link(str(readme), base, 'README.md')}" if readme.exists() else "")
            + f"<br>Next: <code>%deploy verify</code> (or <code>nbdeploy verify "
              f"{html.escape(bundle.name)}</code>)</div>")


def verify_summary(report: Any, notebook: Path | None) -> str:
    base = notebook.parent if notebook else None
    rows = "".join(
        f"<li style='color:{_COLORS['ok' if c.ok else 'error']}'>{'✓' if c.ok else '✗'} "
        f"{html.escape(c.name)}: {html.escape(c.detail)}</li>" for c in report.checks)
    verdict = ("<b style='color:#2e7d32'>verified</b>" if report.ok
               else "<b style='color:#c62828'>NOT verified</b>")
    return (f"<div class='nbdeploy-summary'>Bundle {_link(str(report.bundle), base)}: {verdict}"
            f"<ul style='margin:2px 0'>{rows}</ul></div>")


def batch_summary(result: Any) -> str:
    base = Path(result.notebook).parent
    items = "".join(
        f"<li style='color:{_COLORS['ok' if r.ok else 'error']}'>{html.escape(r.status)} "
        f"{html.escape(' '.join(f'{k}={v!r}' for k, v in r.given.items()) or 'defaults')}: "
        f"{_link(r.output, base, 'executed notebook')}</li>" for r in result.runs)
    return (f"<div class='nbdeploy-summary'>{html.escape(result.summary())}<br>"
            f"results: {_link(result.csv, base)}<ul style='margin:2px 0'>{items}</ul></div>")


def summary(html_text: str) -> Any:
    import ipywidgets as w

    return w.HTML(html_text)
