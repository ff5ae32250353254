"""The release subcommands of ``%deploy``: versions, promote, rollback, history.

Their options are rows of the one subcommand table (:data:`nbdeploy.frontends.magics.SUBCOMMANDS`);
the handlers live here, as a mixin of :class:`~nbdeploy.frontends.magics.DeployMagics`, and work on
this notebook's registered model unless a NAME is given. Errors become one ``UsageError`` line in
``DeployMagics.deploy``, as for every subcommand.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError


class ReleaseMagics:
    """``%deploy versions/promote/rollback/history``; the host class provides ``_notebook()``."""

    def _notebook(self) -> Path:  # provided by DeployMagics
        raise NotImplementedError

    def _model_name(self, name: str | None) -> str:
        from nbdeploy.release import model_name

        return name or model_name(self._notebook())

    def _do_versions(self, args: argparse.Namespace) -> Any:
        from nbdeploy.release import list_versions

        return list_versions(self._model_name(args.name), self._notebook().parent).view()

    def _do_promote(self, args: argparse.Namespace) -> None:
        from nbdeploy.release import promote

        if len(args.words) > 2:
            raise UsageError("%deploy promote: give [NAME] VERSION")
        name, version = (None, *args.words) if len(args.words) == 1 else args.words
        print(promote(self._model_name(name), version, alias=args.alias, force=args.force,
                      project_dir=self._notebook().parent).text())

    def _do_rollback(self, args: argparse.Namespace) -> None:
        from nbdeploy.release import rollback

        print(rollback(self._model_name(args.name), alias=args.alias, project_dir=self._notebook().parent).text())

    def _do_history(self, args: argparse.Namespace) -> Any:
        from nbdeploy.release import read_history

        return read_history(self._model_name(args.name), self._notebook().parent).view()

