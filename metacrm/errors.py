"""The one error tree of metacrm; only platform/problems.py turns it into HTTP."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One problem with one field (or JSON pointer) of an input."""

    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class MetacrmError(Exception):
    """Root of every error metacrm raises on purpose."""

    status = 500
    code = "internal"
    title = "Internal error"

    def __init__(self, detail: str = "", errors: list[FieldError] | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = list(errors or [])


class BadRequest(MetacrmError):
    status, code, title = 400, "bad-request", "Bad request"


class Unauthenticated(MetacrmError):
    status, code, title = 401, "unauthenticated", "Authentication required"


class PermissionDenied(MetacrmError):
    status, code, title = 403, "permission-denied", "Permission denied"


class NotFound(MetacrmError):
    status, code, title = 404, "not-found", "Not found"


class Conflict(MetacrmError):
    status, code, title = 409, "conflict", "Conflict"


class StaleVersion(MetacrmError):
    status, code, title = 412, "stale-version", "The record has changed since it was read"


class PayloadTooLarge(MetacrmError):
    status, code, title = 413, "payload-too-large", "Request body too large"


class UnsupportedMediaType(MetacrmError):
    status, code, title = 415, "unsupported-media-type", "Unsupported media type"


class RecordInvalid(MetacrmError):
    status, code, title = 422, "record-invalid", "The record is invalid"


class QueryInvalid(MetacrmError):
    status, code, title = 422, "query-invalid", "The query is invalid"


class MetadataInvalid(MetacrmError):
    status, code, title = 422, "metadata-invalid", "The metadata is invalid"


class DestructiveChange(MetacrmError):
    status, code, title = 409, "destructive-change", "The change would destroy data"


class FormulaError(MetacrmError):
    """An expression that does not parse, type-check or evaluate; carries its position."""

    status, code, title = 422, "formula-invalid", "The expression is invalid"

    def __init__(
        self, detail: str, *, line: int = 1, column: int = 1, field: str = "expression"
    ) -> None:
        self.line, self.column = line, column
        message = f"{detail} (line {line}, column {column})"
        super().__init__(message, [FieldError(field, "formula", message)])


class SchemaBusy(MetacrmError):
    status, code, title = 503, "schema-busy", "The table is busy; try the change again"


class DatabaseBusy(MetacrmError):
    status, code, title = 503, "database-busy", "The database is busy; try again"


class TooManyRequests(MetacrmError):
    status, code, title = 429, "too-many-requests", "Too many requests"
