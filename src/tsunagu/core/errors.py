"""Typed errors, mapped to HTTP status and CLI exit codes in one place."""

from __future__ import annotations

from typing import Any


class TsunaguError(Exception):
    """Base of every error a user may see. ``field`` names the input at fault, when there is one."""

    http_status = 400
    exit_code = 2
    code = "error"

    def __init__(self, message: str, *, field: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        if self.details is not None:
            body["details"] = self.details
        return body


class ValidationError(TsunaguError):
    http_status = 400
    code = "invalid"


class AuthenticationError(TsunaguError):
    http_status = 401
    exit_code = 2
    code = "unauthenticated"


class PermissionDenied(TsunaguError):
    """The actor's role in the workspace does not allow the change (``core.permissions``)."""

    http_status = 403
    exit_code = 3
    code = "forbidden"


class NotFound(TsunaguError):
    http_status = 404
    exit_code = 2  # on the CLI a missing workspace or source is a bad argument
    code = "not_found"


class Conflict(TsunaguError):
    http_status = 409
    exit_code = 1
    code = "conflict"


class PayloadTooLarge(TsunaguError):
    http_status = 413
    code = "too_large"
