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

from .errors import NbdeployError


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
class DeployMagics(Magics):
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
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%deploy: {exc}") from None
        if not words or words[0] in {"-h", "--help", "help"}:
            print(usage())
            return None
        sub = _BY_NAME.get(words[0])
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
    def _session(self) -> Any:
        from .capture.session import current_session

        s = current_session()
        if s is None:
            raise UsageError("capture is not started: run %deploy init first")
        return s

    def _do_init(self, args: argparse.Namespace) -> None:
        from .capture.session import CaptureSession, current_session

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

    def _do_status(self, args: argparse.Namespace) -> Any:
        from .render import status_view

        s = self._session()
        return status_view(s.sync(), str(s.state.root))

    def _do_deps(self, args: argparse.Namespace) -> Any:
        from .render import deps_view

        return deps_view(self._session().sync())

    def _do_lineage(self, args: argparse.Namespace) -> Any:
        from .render import lineage_view

        return lineage_view(self._session().sync())

    def _do_metric(self, args: argparse.Namespace) -> None:
        self._session().log_metric(args.name, args.value, args.step)

    def _do_model(self, args: argparse.Namespace) -> None:
        if not args.variable.isidentifier() or args.variable not in self.shell.user_ns:
            raise UsageError(f"%deploy model: no variable {args.variable!r} in this notebook")
        example = " ".join(args.example) if args.example else None
        if example:
            try:
                self.shell.ev(example)
            except Exception as exc:
                raise UsageError(f"%deploy model: --example {example!r} raised "
                                 f"{type(exc).__name__}: {exc}") from None
        self._session().set_model(args.variable, example)

    def _do_finish(self, args: argparse.Namespace) -> None:
        self._session().finish()
