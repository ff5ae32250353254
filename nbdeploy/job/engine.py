"""The papermill engine of nbdeploy jobs: papermill's nbclient engine with fewer notebook writes.

Papermill writes the whole executed notebook before and after every cell (its
``NotebookExecutionManager`` serialises, validates and writes it each time), so
a short notebook of ten cells is written twenty times per run, all of it CPU
time of the process that drives the kernels. A job only needs the executed
notebook when the run is over, and a partial one if it stops early. So nbdeploy's
engine writes it:

* when the run starts (the file exists from the beginning),
* as soon as a cell fails (the traceback is on disk before the kernel is shut down),
* at the end, whatever the outcome (papermill's ``notebook_complete``, also after a
  timeout or a dead kernel),
* and in between at most every :data:`SAVE_EVERY` seconds, so the notebook of a long
  run stays current as cells finish (papermill also writes during a long cell's
  output every 30 s).

Imported only by :func:`nbdeploy.job.execute.execute`, which imports papermill anyway.
"""

from __future__ import annotations

from typing import Any

from papermill.engines import (
    NBClientEngine,
    NotebookExecutionManager,
    catch_nb_assignment,
    papermill_engines,
)

NAME = "nbdeploy"
SAVE_EVERY = 10.0  # seconds


class FewerSaves(NotebookExecutionManager):
    written = False
    finished = False

    @catch_nb_assignment
    def save(self, **kwargs: Any) -> None:
        failed = bool(self.nb.metadata.get("papermill", {}).get("exception"))
        due = (self.now() - self.last_save_time).total_seconds() >= SAVE_EVERY
        if not self.written or failed or self.finished or due:
            super().save()
            self.written = True

    @catch_nb_assignment
    def notebook_complete(self, **kwargs: Any) -> None:
        self.finished = True
        super().notebook_complete()


class Engine(NBClientEngine):
    @classmethod
    def execute_notebook(cls, nb: Any, kernel_name: str, output_path: str | None = None,
                         progress_bar: bool = True, log_output: bool = False,
                         autosave_cell_every: int = 30, **kwargs: Any) -> Any:
        # papermill's Engine.execute_notebook, with the manager above
        nb_man = FewerSaves(nb, output_path=output_path, progress_bar=progress_bar,
                            log_output=log_output, autosave_cell_every=autosave_cell_every)
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        return nb_man.nb


papermill_engines.register(NAME, Engine)
