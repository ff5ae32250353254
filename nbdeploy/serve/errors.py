"""Errors of the serving runtime.

The package is self-contained (it is copied into every bundle as ``nbdeploy_serve``),
so it has its own small exception family instead of importing ``nbdeploy.base.errors``:
everything it raises on purpose derives from :class:`ServingError`, which the core
(:mod:`nbdeploy.bundle.servers`) translates into nbdeploy's own ``ServeError`` in one place.
"""

from __future__ import annotations

from typing import Any


class ServingError(Exception):
    """The base of every error the serving runtime raises on purpose."""


class ServeError(ServingError):
    """A serving failure the caller can act on: ``message`` says what, ``hint`` what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class RequestError(ServingError):
    """A client mistake: answered with a 4xx JSON body, never a 500.

    ``errors`` lists one dict per offending field: ``{"field", "problem", "expected", ...}``;
    ``headers``: response headers the status calls for (``Allow`` on a 405).
    """

    def __init__(
        self, status: int, message: str, errors: list[dict[str, Any]] | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or []
        self.headers = headers or []

    @property
    def code(self) -> str:
        return _CODES.get(self.status, "BAD_REQUEST")


_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "INVALID_PARAMETER_VALUE",
}
