"""The ``nbdeploy`` command: a thin front end over the core.

Each subcommand parses its arguments, calls one core function and prints the
result. Every :class:`NbdeployError` is printed as one line on stderr
(``nbdeploy: error: ...``) with exit code 2; a failing notebook cell exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from . import __version__
from .errors import CellExecutionError, NbdeployError

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(name: str, help: str, configure: Callable[[argparse.ArgumentParser], None]):
    def deco(fn: Handler) -> Handler:
        COMMANDS[name] = (help, configure, fn)
        return fn
    return deco


def _emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")


# -- capture ---------------------------------------------------------------
def _capture_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="the .ipynb file")
    p.add_argument("--json", action="store_true", help="print the capture record as JSON")
    p.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds")


@command("capture", "execute a notebook headlessly with capture on and write its record",
         _capture_args)
def _capture(args: argparse.Namespace) -> int:
    from .capture.headless import capture_notebook
    from .render import status_view

    result = capture_notebook(args.notebook, timeout=args.timeout)
    if result.error is not None:
        raise result.error
    if args.json:
        _emit_json(result.record)
    else:
        print(status_view(result.record, str(result.state_dir)).text())
    return 0


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("notebook", help="the .ipynb file")
    p.add_argument("--json", action="store_true", help="print the capture record as JSON")


@command("status", "show the last capture record of a notebook (no kernel needed)", _status_args)
def _status(args: argparse.Namespace) -> int:
    from .notebook import load_notebook
    from .render import status_view
    from .state import NotebookState

    load_notebook(args.notebook)
    st = NotebookState.for_notebook(args.notebook)
    record = st.read_capture()
    if args.json:
        _emit_json(record)
    else:
        print(status_view(record, str(st.root)).text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nbdeploy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"nbdeploy {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, configure, _) in COMMANDS.items():
        configure(subs.add_parser(name, help=help_, description=help_))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command][2](args)
    except CellExecutionError as exc:
        print(f"nbdeploy: error: {exc}", file=sys.stderr)
        return 1
    except NbdeployError as exc:
        print(f"nbdeploy: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nbdeploy: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
