"""``%deploy`` and ``%%deploy``: the notebook front end. Thin: parse, call the core, render.

The subcommands are one table (:data:`SUBCOMMANDS`) that drives dispatch,
``%deploy --help`` and tab completion. Every :class:`NbdeployError` becomes one
IPython ``UsageError`` line.
"""

from __future__ import annotations

import argparse
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from traitlets import Bool

from nbdeploy.base.errors import NbdeployError
from nbdeploy.base.progress import ProgressEvent
from nbdeploy.frontends.magics_release import ReleaseMagics


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    args: tuple[tuple[tuple[str, ...], dict], ...] = ()
    cell: bool = False  # usable as %%deploy NAME
    hidden: bool = False
    extra: dict = field(default_factory=dict)


def _a(*flags: str, **kw: Any) -> tuple[tuple[str, ...], dict]:
    return flags, kw


SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand("init", "start capture for this notebook (idempotent)", (
        _a("--notebook", help="the notebook file (found automatically in Jupyter)"),
        _a("--state-dir", help=argparse.SUPPRESS),
        _a("--mode", default="interactive", choices=["interactive", "job"], help=argparse.SUPPRESS),
        _a("--no-profile", action="store_true", help="do not profile the data that is read"),
    )),
    Subcommand("status", "dependencies, environment and data read/written"),
    Subcommand("deps", "the pinned requirements, with anything unresolved flagged"),
    Subcommand("lineage", "every data file read or written, with hash, rows, columns"),
    Subcommand("metric", "record a metric of this run: %deploy metric NAME VALUE", (
        _a("name"), _a("value", type=float), _a("--step", type=int),
    )),
    Subcommand("model", "name the model to ship: %deploy model VAR [--example EXPR]", (
        _a("variable"),
        _a("--example", nargs=argparse.REMAINDER, help="an expression giving example input rows"),
    )),
    Subcommand("finish", "write the final record (used by jobs)", hidden=True),
    Subcommand("pip-check", "check that a `pip install` line's packages are installed, installing nothing "
               "(what a job runs instead of the line): %deploy pip-check PIP-ARGS", hidden=True),
    Subcommand("params", "%%deploy params: this cell holds the notebook's parameters", cell=True),
    Subcommand("run", "run a copy of this notebook in a fresh kernel: %deploy run -p NAME VALUE", (
        _a("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
           help="a parameter value (repeatable)"),
        _a("-f", "--params-file", help="a YAML file of parameter values"),
        _a("-o", "--output", help="also write the executed notebook here"),
        _a("--timeout", type=float, help="per-cell timeout in seconds"),
    )),
    Subcommand("reproduce", "re-run from a clean kernel and compare with the captured run", (
        _a("--run", dest="run_id", help="compare with this run (default: the capture record)"),
        _a("--rtol", type=float, default=1e-6, help="relative tolerance for metrics"),
        _a("--atol", type=float, default=1e-9, help="absolute tolerance for metrics"),
    )),
    Subcommand("batch", "run a grid of parameters in parallel on Dask: %deploy batch --grid G.yaml", (
        _a("--grid", required=True, help="YAML: grid: {name: [values]} and/or runs: [{...}]"),
        _a("--workers", type=int, default=2, help="local Dask workers (default 2)"),
        _a("--scheduler", help="a Dask scheduler address, e.g. tcp://HOST:8786"),
        _a("--force", action="store_true", help="re-run parameter sets that already succeeded"),
    )),
    Subcommand("build", "build the handoff bundle from a clean run: %deploy build [-o DIR]", (
        _a("--model", help="the model variable (default: %deploy model, or the one fitted estimator)"),
        _a("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
           help="a notebook parameter for the run"),
        _a("-o", "--output", help="bundle folder (default: NOTEBOOK-bundle beside the notebook)"),
        _a("--force", action="store_true", help="replace an existing bundle folder"),
        _a("--wheelhouse", action="store_true",
           help="pack the lock's wheels into the bundle: its image builds with no package index"),
        _a("--no-index", action="store_true",
           help="with --wheelhouse: only local sources and installed packages, never the index"),
    )),
    Subcommand("verify", "check a bundle: checksums, lock-only environment, its tests against its API", (
        _a("bundle", nargs="?", help="bundle folder (default: this notebook's bundle)"),
        _a("--pip", action="store_true", help="create the environment with pip instead of uv"),
        _a("--no-wheelhouse", action="store_true",
           help="install the lock from the package index even when the bundle has a wheelhouse"),
        _a("--container", action="store_true",
           help="test the bundle's real container instead (built with docker/podman/buildah)"),
        _a("--base", help="with --container: base image (default: $NBDEPLOY_BASE_IMAGE)"),
        _a("--engine", choices=["docker", "podman", "buildah"], help="with --container: engine"),
        _a("--rebuild", action="store_true", help="with --container: always rebuild the image"),
    )),
    Subcommand("image", "build this bundle's container image: %deploy image [BUNDLE] [--base IMAGE]", (
        _a("bundle", nargs="?", help="bundle folder (default: this notebook's bundle)"),
        _a("--base", help="base image (default: $NBDEPLOY_BASE_IMAGE, else python:X.Y-slim)"),
        _a("--engine", choices=["docker", "podman", "buildah"], help="container engine"),
        _a("--tag", help="image tag (default: localhost/nbdeploy-NAME:VERSION)"),
        _a("--save", help="also write an OCI archive to this file"),
        _a("--wheelhouse", action="store_true",
           help="first pack the lock's wheels into the bundle (sealed again): no index in the build"),
        _a("--no-index", action="store_true",
           help="with --wheelhouse: only local sources and installed packages, never the index"),
    )),
    Subcommand("serve", "serve the bundle's API in the background: %deploy serve [BUNDLE] [--stop]", (
        _a("bundle", nargs="?", help="bundle folder, or models:/NAME@champion (default: this notebook's bundle)"),
        _a("--port", type=int, default=0, help="port (default: a free one)"),
        _a("--stop", action="store_true", help="stop this notebook's server"),
    )),
    Subcommand("score", "score files with the bundle: %deploy score [BUNDLE] INPUT -o OUTPUT", (
        _a("paths", nargs="+", metavar="[BUNDLE] INPUT",
           help="the bundle folder (default: this notebook's bundle) and a CSV/Parquet file, folder, glob or URL"),
        _a("-o", "--output", required=True, help="output file (.csv or .parquet)"),
        _a("--workers", type=int, help="a compiled program: threads in this kernel (default: one per CPU); "
                                       "another model: local Dask worker processes (default: one per CPU for "
                                       "2 M rows or more, else this kernel; 1: this kernel)"),
        _a("--scheduler", help="a Dask scheduler address, e.g. tcp://HOST:8786 (local: a Dask LocalCluster)"),
        _a("--chunk-rows", type=int, help="rows read and scored at a time"),
        _a("--id", dest="id_column", help="keep only this id column beside the predictions"),
    )),
    Subcommand("drift", "drift of what this notebook's API has served against the training data, shown inline", (
        _a("source", nargs="?", metavar="URL|BUNDLE",
           help="a running API's URL (default: the one %deploy serve started), or with --log a bundle "
                "folder or models:/NAME@ALIAS (default: this notebook's bundle)"),
        _a("--log", help="a request log to read offline (default, when no API runs: the last %deploy serve's)"),
        _a("--text", action="store_true", help="print the report as text instead of showing it"),
    )),
    Subcommand("performance", "live accuracy (or MAE/RMSE) per version from the labels sent back, against training", (
        _a("source", nargs="?", help="a running API's URL or a request log (default: this notebook's API, "
                                     "else its request log)"),
        _a("--feedback", help="labels kept beside the log: JSON lines or CSV of request_id,label"),
    )),
    Subcommand("live", "what this notebook's API is doing: version, requests, errors, drift, canary, shadow", (
        _a("url", nargs="?", help="a running API (default: the one %deploy serve started)"),
    )),
    Subcommand("versions", "this notebook's registered versions: alias, created, parameters, metrics, verify", (
        _a("name", nargs="?", help="the registered model (default: this notebook's)"),
    )),
    Subcommand("promote", "move champion (or --as challenger) to a verified version: %deploy promote [NAME] VERSION", (
        _a("words", nargs="+", metavar="[NAME] VERSION", help="the version (of this notebook's model, or of NAME)"),
        _a("--as", dest="alias", default="champion", help="the alias: champion (default) or challenger"),
        _a("--force", action="store_true", help="promote without a passing verify (recorded in the history)"),
    )),
    Subcommand("rollback", "move champion back to the version that held it before: %deploy rollback [NAME]", (
        _a("name", nargs="?", help="the registered model (default: this notebook's)"),
        _a("--as", dest="alias", default="champion", help="the alias to move back (default champion)"),
    )),
    Subcommand("history", "which version held champion (and challenger) when, and who moved it", (
        _a("name", nargs="?", help="the registered model (default: this notebook's)"),
    )),
    Subcommand("export", "export the model of this run (used by nbdeploy build)", (
        _a("--out", required=True), _a("--model"),
        _a("--example", nargs=argparse.REMAINDER, help="an expression giving example input rows"),
    ), hidden=True),
)
_BY_NAME = {s.name: s for s in SUBCOMMANDS}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"%deploy {self.prog.split()[-1]}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise _HelpShown()


class _HelpShown(Exception):
    pass


def _parser(sub: Subcommand) -> _Parser:
    p = _Parser(prog=f"%deploy {sub.name}", description=sub.help, add_help=True)
    for flags, kw in sub.args:
        p.add_argument(*flags, **kw)
    return p


_RAW_OPTIONS = {"model": "--example", "export": "--example"}  # options whose value is a Python expression, kept verbatim


def _split_raw_tail(line: str) -> tuple[str, list[str]]:
    """Keep a Python expression after ``--example`` as written (shlex would eat its quotes)."""
    words = line.split(None, 1)
    option = _RAW_OPTIONS.get(words[0]) if words else None
    if option and f" {option} " in f" {line} ":
        head, _, expr = f" {line} ".partition(f" {option} ")
        return head.strip(), [option, expr.strip()]
    return line, []


def usage() -> str:
    width = max(len(s.name) for s in SUBCOMMANDS)
    lines = ["%deploy SUBCOMMAND [options]   (%deploy SUBCOMMAND --help for its options)", ""]
    lines += [f"  {s.name.ljust(width)}  {s.help}" for s in SUBCOMMANDS if not s.hidden]
    return "\n".join(lines)


def find_notebook(shell: Any) -> Path:
    """The notebook this kernel belongs to, from what Jupyter and editors tell the kernel."""
    candidates = [
        os.environ.get("NBDEPLOY_NOTEBOOK"),
        shell.user_ns.get("__vsc_ipynb_file__") if shell is not None else None,
        os.environ.get("JPY_SESSION_NAME"),
    ]
    for c in candidates:
        if c and str(c).endswith(".ipynb") and Path(c).exists():
            return Path(c).resolve()
    here = sorted(Path.cwd().glob("*.ipynb"))
    if len(here) == 1:
        return here[0].resolve()
    raise UsageError("%deploy init: cannot tell which notebook this kernel runs; "
                     "use %deploy init --notebook NAME.ipynb")


@magics_class
class DeployMagics(ReleaseMagics, Magics):
    widgets = Bool(True, help="render ipywidgets where a front end can show them").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        if shell is not None and hasattr(shell, "set_hook"):
            shell.set_hook("complete_command", self._complete, str_key="%deploy")

    def _complete(self, _self: Any, event: Any) -> list[str]:
        words = event.line.split()
        if len(words) <= 1 or (len(words) == 2 and not event.line.endswith(" ")):
            return [s.name for s in SUBCOMMANDS if not s.hidden]
        sub = _BY_NAME.get(words[1])
        return [f for flags, _ in (sub.args if sub else ()) for f in flags if f.startswith("-")]

    @line_cell_magic
    def deploy(self, line: str, cell: str | None = None) -> Any:
        line, raw_tail = _split_raw_tail(line)
        try:
            words = shlex.split(line) + raw_tail
        except ValueError as exc:
            raise UsageError(f"%deploy: {exc}") from None
        if not words or words[0] in {"-h", "--help", "help"}:
            print(usage())
            return None
        sub = _BY_NAME.get(words[0])
        if sub is not None and sub.name == "pip-check":  # pip's own arguments, kept as written
            return self._do_pip_check(line.split(None, 1)[1] if len(words) > 1 else "")
        if sub is None:
            raise UsageError(f"%deploy: unknown subcommand {words[0]!r}; try %deploy --help")
        if cell is not None and not sub.cell:
            raise UsageError(f"%%deploy {sub.name} is not a cell magic; use %deploy {sub.name}")
        try:
            args = _parser(sub).parse_args(words[1:])
        except _HelpShown:
            _parser(sub).print_help()
            return None
        handler = getattr(self, f"_do_{sub.name.replace('-', '_')}")
        try:
            return handler(args, cell) if sub.cell else handler(args)
        except NbdeployError as exc:
            raise UsageError(f"%deploy {sub.name}: {exc}") from None

    # -- capture ----------------------------------------------------------
    def _do_pip_check(self, args: str) -> None:
        from nbdeploy.base.redact import scrub_text
        from nbdeploy.capture.deps import check_requirements
        from nbdeploy.capture.session import current_session

        pip_args = args.split(" #", 1)[0]  # the rest is the comment a job leaves on the line
        check = check_requirements(pip_args, Path.cwd())
        pip_args = scrub_text(pip_args)  # what is said: an index URL's password never reaches an output
        s = current_session()
        if s is not None:
            s.add_pip_installs(check.requirements)
        if check.missing:
            names = check.to_install
            raise UsageError(
                f"{'; '.join(check.missing)}, and nbdeploy's runs do not run `pip install` lines (a run installs "
                f"nothing into the environment it runs in): install {', '.join(names)} into the kernel's "
                "environment, then try again")
        said = f"already installed: {', '.join(check.installed)}" if check.installed else "nothing to check"
        if check.unchecked:
            said += f"; not checked: {', '.join(check.unchecked)}"
        print(f"nbdeploy: `pip install {pip_args.strip()}` not run in this job ({said})")

    def _session(self) -> Any:
        from nbdeploy.capture.session import current_session

        s = current_session()
        if s is None:
            raise UsageError("capture is not started: run %deploy init first")
        return s

    def _do_init(self, args: argparse.Namespace) -> None:
        from nbdeploy.capture.session import CaptureSession, current_session

        s = current_session()
        if s is not None and not args.notebook and not args.state_dir:
            if args.mode == "interactive" and s.mode == "interactive":
                print(f"nbdeploy: capture already on for {s.notebook.name}")
            return
        nb = Path(args.notebook).resolve() if args.notebook else find_notebook(self.shell)
        if s is not None and s.notebook == nb and (not args.state_dir or
                                                   s.state.root == Path(args.state_dir).resolve()):
            print(f"nbdeploy: capture already on for {nb.name}")
            return
        state_dir = Path(args.state_dir) if args.state_dir else None
        s = CaptureSession(nb, self.shell, state_dir=state_dir, mode=args.mode,
                           profile=not args.no_profile).start()
        if args.mode == "interactive":
            print(f"nbdeploy: capturing {nb.name} -> {s.state.root}")

    def _widgets(self) -> bool:
        from nbdeploy.frontends.widgets import available

        return bool(self.widgets) and available(self.shell)

    def _do_status(self, args: argparse.Namespace) -> Any:
        from nbdeploy.bundle.readiness import readiness
        from nbdeploy.frontends.render import readiness_text, status_view

        s = self._session()
        view = status_view(s.sync(), str(s.state.root))
        ready = readiness(s.notebook)
        if self._widgets():
            from IPython.display import display

            from nbdeploy.frontends.widgets import checklist

            display(checklist(ready))
        else:
            print(readiness_text(ready) + "\n")
        return view

    def _do_deps(self, args: argparse.Namespace) -> Any:
        from nbdeploy.frontends.render import deps_view

        return deps_view(self._session().sync())

    def _do_lineage(self, args: argparse.Namespace) -> Any:
        from nbdeploy.frontends.render import lineage_view

        return lineage_view(self._session().sync())

    def _do_metric(self, args: argparse.Namespace) -> None:
        self._session().log_metric(args.name, args.value, args.step)

    def _do_model(self, args: argparse.Namespace) -> None:
        shell = self.shell
        if shell is None:  # magics made without an IPython shell: no notebook to take a variable from
            raise UsageError("%deploy model: no IPython shell")
        from nbdeploy.bundle.models import lookup

        try:
            lookup(shell.user_ns, args.variable)  # a variable, or an item of one: models['rf']
        except KeyError:
            raise UsageError(f"%deploy model: no variable {args.variable!r} in this notebook") from None
        example = " ".join(args.example) if args.example else None
        if example:
            try:
                shell.ev(example)
            except Exception as exc:
                raise UsageError(f"%deploy model: --example {example!r} raised "
                                 f"{type(exc).__name__}: {exc}") from None
        self._session().set_model(args.variable, example)

    def _do_finish(self, args: argparse.Namespace) -> None:
        self._session().finish()

    # -- bundle -----------------------------------------------------------
    def _notebook(self) -> Path:
        from nbdeploy.capture.session import current_session

        s = current_session()
        return s.notebook if s is not None else find_notebook(self.shell)

    def _do_build(self, args: argparse.Namespace) -> None:
        from nbdeploy.bundle import build_bundle

        ui = self._progress("Build bundle")
        try:
            result = build_bundle(self._notebook(), output=args.output, model=args.model,
                                  cli_params=[tuple(p) for p in args.param], force=args.force,
                                  wheelhouse=args.wheelhouse, wheelhouse_index=not args.no_index,
                                  progress=ui or _print_event)
        except Exception as exc:
            if ui is not None:
                ui.finish(False, f"<b style='color:#c62828'>build failed</b>: {exc}")
            raise
        if ui is None:
            print(result.text())
            return
        from nbdeploy.frontends.widgets import build_summary

        ui.finish(True, build_summary(result, self._notebook()))
        self._show_checklist()

    def _progress(self, title: str) -> Any:
        """A StepProgress widget on display, or None for plain-text output."""
        if not self._widgets():
            return None
        from IPython.display import display

        from nbdeploy.frontends.widgets import StepProgress

        ui = StepProgress(title)
        display(ui)
        return ui

    def _show_checklist(self) -> None:
        from IPython.display import display

        from nbdeploy.bundle.readiness import readiness
        from nbdeploy.frontends.widgets import checklist

        try:
            display(checklist(readiness(self._notebook())))
        except NbdeployError:
            pass

    def _do_verify(self, args: argparse.Namespace) -> None:
        from nbdeploy.base.state import default_bundle_dir
        from nbdeploy.bundle import verify_bundle

        bundle = Path(args.bundle) if args.bundle else default_bundle_dir(self._notebook())
        if args.container:
            return self._verify_container(bundle, args)
        ui = self._progress("Verify")
        report = verify_bundle(bundle, installer="pip" if args.pip else "auto",
                               progress=ui or _print_event, wheelhouse=not args.no_wheelhouse)
        if ui is None:
            print(report.text(checks=False))
        else:
            from nbdeploy.frontends.widgets import verify_summary

            ui.finish(report.ok, verify_summary(report, self._notebook()))
            self._show_checklist()
        if not report.ok:
            raise UsageError(f"%deploy verify: {report.failure}")

    def _verify_container(self, bundle: Path, args: argparse.Namespace) -> None:
        from nbdeploy.container import ContainerOptions, verify_container

        opts = ContainerOptions.from_env(base=args.base, engine=args.engine)
        result = verify_container(bundle, opts, rebuild=args.rebuild,
                                  on_line=_print_line)
        print(result.text())
        if not result.passed:
            raise UsageError(f"%deploy verify --container: {result.summary}")

    def _do_image(self, args: argparse.Namespace) -> None:
        from nbdeploy.base.state import default_bundle_dir
        from nbdeploy.container import ContainerOptions, build_image

        bundle = Path(args.bundle) if args.bundle else default_bundle_dir(self._notebook())
        opts = ContainerOptions.from_env(base=args.base, engine=args.engine, tag=args.tag)
        if args.wheelhouse:
            from nbdeploy.bundle.wheelhouse import add_wheelhouse

            print(add_wheelhouse(bundle, index=not args.no_index, progress=_print_event).text())
        print(build_image(bundle, opts, save=args.save,
                          on_line=_print_line).text())

    def _do_serve(self, args: argparse.Namespace) -> None:
        from nbdeploy.base.state import default_bundle_dir
        from nbdeploy.bundle import servers

        nb = self._notebook()
        if args.stop:
            stopped = servers.stop(nb)
            print(f"nbdeploy: stopped {stopped.url}" if stopped else "nbdeploy: no server running")
            return
        if args.bundle and args.bundle.startswith("models:/"):
            from nbdeploy.release import resolve

            resolved = resolve(args.bundle, nb.parent)
            print(f"nbdeploy: {resolved.text()}")
            bundle = resolved.bundle
        else:
            bundle = Path(args.bundle).resolve() if args.bundle else default_bundle_dir(nb)
        handle = servers.start(nb, bundle, port=args.port)
        print(f"nbdeploy: serving {bundle.name} at {handle.url} (docs: {handle.url}/docs; "
              f"stop with %deploy serve --stop)\n{servers.sample_curl(handle.url, bundle)}")

    def _do_score(self, args: argparse.Namespace) -> None:
        from nbdeploy.base.state import default_bundle_dir
        from nbdeploy.frontends import progress
        from nbdeploy.score import score

        if len(args.paths) > 2:
            raise UsageError("%deploy score: give [BUNDLE] INPUT, then -o OUTPUT")
        bundle = Path(args.paths[0]) if len(args.paths) == 2 else default_bundle_dir(self._notebook())
        try:
            tick = progress.rows_widget()
        except ImportError:
            import sys

            tick = progress.rows_lines(sys.stdout)
        result = score(bundle, args.paths[-1], args.output, workers=args.workers, scheduler=args.scheduler,
                       chunk_rows=args.chunk_rows, id_column=args.id_column, progress=tick)
        print(result.text())

    def _api_url(self, args: argparse.Namespace, sub: str) -> str:
        """The URL given, else the API `%deploy serve` started for this notebook."""
        from nbdeploy.bundle import servers

        if args.url is not None:
            return args.url
        handle = servers.running(self._notebook())
        if handle is None:
            raise UsageError(f"%deploy {sub}: no API of this notebook is running; start one with "
                             "%deploy serve, or give its URL")
        return handle.url

    def _do_drift(self, args: argparse.Namespace) -> Any:
        import os

        from nbdeploy.bundle import drift

        nb, source = self._notebook(), args.source
        if source and source.startswith("models:/"):
            from nbdeploy.release import resolve

            source = resolve(source, nb.parent).bundle
        report = drift.for_notebook(nb, source, args.log, os.environ.get("NBDEPLOY_API_TOKEN"))
        if args.text:
            print(report.text())
            return None
        return report  # shown inline: the HTML report (its text where HTML is not shown)

    def _do_performance(self, args: argparse.Namespace) -> None:
        import os

        from nbdeploy.bundle import servers
        from nbdeploy.bundle.performance import performance

        source = args.source
        if source is None:
            handle = servers.running(self._notebook())
            log = servers.request_log(self._notebook())
            if handle is None and not log.exists():
                raise UsageError("%deploy performance: no API of this notebook is running and it has no request "
                                 "log; start one with %deploy serve, or give a URL or a log file")
            source = handle.url if handle is not None and args.feedback is None else str(log)
        print(performance(source, args.feedback, os.environ.get("NBDEPLOY_API_TOKEN")).text())

    def _do_live(self, args: argparse.Namespace) -> None:
        import os

        from nbdeploy.bundle.live import live_status

        print(live_status(self._api_url(args, "live"), os.environ.get("NBDEPLOY_API_TOKEN")).text())

    def _do_export(self, args: argparse.Namespace) -> None:
        from nbdeploy.bundle.export import export_model

        example = " ".join(args.example) if args.example else None
        doc = export_model(self.shell, args.out, args.model, example)
        print(f"nbdeploy: exported {doc['variable']} ({doc['class']}, {doc['flavor']}) "
              f"with {len(doc['example']['data'])} golden rows")

    # -- job --------------------------------------------------------------
    def _job_notebook(self) -> Path:
        from nbdeploy.capture.session import current_session

        s = current_session()
        return s.notebook if s is not None else find_notebook(self.shell)

    def _do_params(self, args: argparse.Namespace, cell: str | None) -> None:
        from nbdeploy.job.params import run_params_cell

        if cell is None:
            raise UsageError("%deploy params is a cell magic: put %%deploy params on the first "
                             "line of the parameters cell")
        run_params_cell(self.shell, cell)

    def _do_run(self, args: argparse.Namespace) -> None:
        from nbdeploy.job.run import run_notebook

        rec = run_notebook(self._job_notebook(), cli=[tuple(p) for p in args.param],
                           params_file=args.params_file, output=args.output, timeout=args.timeout,
                           progress=_print_event)
        print(rec.summary())
        if rec.error:
            raise UsageError(f"%deploy run: {rec.cell_error() or rec.error.get('message')}")

    def _do_reproduce(self, args: argparse.Namespace) -> Any:
        from nbdeploy.job.reproduce import reproduce

        report = reproduce(self._job_notebook(), run_id=args.run_id, rtol=args.rtol,
                           atol=args.atol, progress=_print_event)
        return report.view()

    def _do_batch(self, args: argparse.Namespace) -> Any:
        from nbdeploy.frontends import progress
        from nbdeploy.job.batch import run_batch

        result = run_batch(self._job_notebook(), args.grid, workers=args.workers,
                           scheduler=args.scheduler, force=args.force,
                           progress=progress.widget_bar() if self._widgets() else progress.lines())
        if self._widgets():
            from IPython.display import display

            from nbdeploy.frontends.widgets import batch_summary, summary

            display(summary(batch_summary(result)))
        return result.view()


def _print_event(event: ProgressEvent) -> None:
    print(event.text(), flush=True)


def _print_line(line: str) -> None:
    print(line, flush=True)
