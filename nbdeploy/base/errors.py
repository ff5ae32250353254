"""The one exception family of nbdeploy.

Every error a user can cause or meet is an :class:`NbdeployError` with a message
they can act on and, where useful, a ``hint``. Front ends translate these in one
place each: an IPython ``UsageError`` in the magics, one line and an exit code in
the CLI, a JSON body with a 4xx/5xx status in the server extension.
"""

from __future__ import annotations


class NbdeployError(Exception):
    """Base class: ``message`` says what went wrong, ``hint`` what to do about it."""

    status = 400  # the HTTP status a REST front end answers with

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_dict(self) -> dict:
        return {"error": type(self).__name__, "message": self.message, "hint": self.hint}


class NotebookInputError(NbdeployError):
    """The path is not a notebook, or the notebook file cannot be read."""


class ParameterError(NbdeployError):
    """An unknown parameter name or a value of the wrong type."""


class CellExecutionError(NbdeployError):
    """A notebook cell raised while the notebook ran as a job."""

    status = 422

    def __init__(
        self,
        cell_index: int,
        source_line: str,
        ename: str,
        evalue: str,
        output_path: str | None = None,
    ) -> None:
        self.cell_index = cell_index
        self.source_line = source_line
        self.ename = ename
        self.evalue = evalue
        self.output_path = output_path
        where = f"cell {cell_index} ({source_line!r})" if source_line else f"cell {cell_index}"
        msg = f"{where} raised {ename}: {evalue}"
        hint = f"the full traceback is in {output_path}" if output_path else None
        super().__init__(msg, hint)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(cell_index=self.cell_index, source_line=self.source_line, ename=self.ename,
                 evalue=self.evalue, output_path=self.output_path)
        return d


class KernelError(NbdeployError):
    """The kernel asked for (or a fallback for the notebook's) is not on this machine."""


class StateError(NbdeployError):
    """Nothing captured yet, or the state folder is unreadable."""

    status = 404


class DependencyError(NbdeployError):
    """A module is imported but no installed distribution provides it."""


class ModelError(NbdeployError):
    """No model, several candidate models, or an unsupported model object."""


class BundleError(NbdeployError):
    """A bundle cannot be built, or fails its checks."""


class VerifyError(NbdeployError):
    """A bundle failed verification."""

    status = 422


class ServeError(NbdeployError):
    """The API server cannot be started or stopped."""


class ContainerError(NbdeployError):
    """No container engine, a failed image build or an unhealthy container."""


class RegistryError(NbdeployError):
    """No model registry, or no such registered model, version or alias in it."""

    status = 404


class PromoteError(NbdeployError):
    """A promote or rollback the registry's record does not allow (an unverified version, no earlier champion)."""

    status = 409
