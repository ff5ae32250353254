"""The release commands of ``nbdeploy``: versions, promote, rollback, history (and ``models:/`` arguments).

Thin like the rest of the CLI: parse, call :mod:`nbdeploy.release`, show the result. The
commands are listed in :data:`COMMANDS`, which :mod:`nbdeploy.frontends.cli` registers in its
one ``@command`` table (passing its ``show``), so dispatch, help and errors stay in one place.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

Show = Callable[[argparse.Namespace, Any], None]


def project_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project", metavar="DIR", default=None,
                   help="the notebook's folder, whose .nbdeploy/mlflow.db is the registry (default: the "
                        "current folder; MLFLOW_TRACKING_URI, when set, names the registry instead)")


def bundle_folder(args: argparse.Namespace) -> str:
    """The folder of ``args.bundle``: itself, or the sealed bundle a ``models:/`` URI resolves to."""
    from nbdeploy.release import is_models_uri, resolve

    if not is_models_uri(args.bundle):
        return args.bundle
    resolved = resolve(args.bundle, args.project)
    print(f"nbdeploy: {resolved.text()}", file=sys.stderr, flush=True)
    return str(resolved.bundle)


def _promote_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the registered model")
    p.add_argument("version", help="the version number to move the alias to")
    p.add_argument("--as", dest="alias", default="champion",
                   help="the alias: champion (live, the default) or challenger (tried)")
    p.add_argument("--force", action="store_true",
                   help="promote even without a passing verify of the version's bundle (recorded)")
    project_arg(p)
    p.add_argument("--json", action="store_true", help="print the move as JSON")


def _promote(args: argparse.Namespace, show: Show) -> int:
    from nbdeploy.release import promote

    show(args, promote(args.name, args.version, alias=args.alias, force=args.force, project_dir=args.project))
    return 0


def _rollback_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the registered model")
    p.add_argument("--as", dest="alias", default="champion", help="the alias to move back (default champion)")
    project_arg(p)
    p.add_argument("--json", action="store_true", help="print the move as JSON")


def _rollback(args: argparse.Namespace, show: Show) -> int:
    from nbdeploy.release import rollback

    show(args, rollback(args.name, alias=args.alias, project_dir=args.project))
    return 0


def _name_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="the registered model")
    project_arg(p)
    p.add_argument("--json", action="store_true", help="print as JSON")


def _versions(args: argparse.Namespace, show: Show) -> int:
    from nbdeploy.release import list_versions

    show(args, list_versions(args.name, args.project))
    return 0


def _history(args: argparse.Namespace, show: Show) -> int:
    from nbdeploy.release import read_history

    show(args, read_history(args.name, args.project))
    return 0


#: (name, help, configure, handler): registered by :mod:`nbdeploy.frontends.cli`
COMMANDS: tuple[tuple[str, str, Callable[[argparse.ArgumentParser], None],
                      Callable[[argparse.Namespace, Show], int]], ...] = (
    ("versions", "list a model's versions: alias, created, notebook, parameters, metrics, data, verify",
     _name_args, _versions),
    ("promote", "move an alias (champion, or --as challenger) to a verified version", _promote_args, _promote),
    ("rollback", "move champion back to the version that held it before", _rollback_args, _rollback),
    ("history", "which version held champion (and challenger) when, and who moved it", _name_args, _history),
)
