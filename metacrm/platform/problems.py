"""Maps every error to an RFC 9457 application/problem+json response; never a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from metacrm import i18n
from metacrm.errors import MetacrmError

PROBLEM_BASE = "https://metacrm.dev/problems/"
log = logging.getLogger("metacrm")


def _printable(text: str) -> str:
    """`text` made encodable: an error may echo input holding lone surrogates."""
    return text.encode("utf-8", "replace").decode("utf-8") if isinstance(text, str) else text


def language_of(request: Request) -> i18n.Language:
    """The language of the request: negotiated once with the caller (state.py), or, for a
    request refused before that, from its Accept-Language alone."""
    negotiated = getattr(request.state, "language", None)
    if negotiated in i18n.LANGUAGES:
        return negotiated
    return i18n.negotiate(request.headers.get("accept-language")) or "en"


def problem(
    status: int,
    code: str,
    title: str,
    detail: str,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    *,
    language: i18n.Language = "en",
) -> Response:
    """A problem+json response; title, detail and built-in messages in `language`."""
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": _printable(i18n.title(code, language, title)),
        "status": status,
        "detail": _printable(i18n.detail(code, language, detail)),
    }
    if errors:
        body["errors"] = [
            {k: _printable(v) for k, v in e.items()}
            | {"message": _printable(i18n.message(e["code"], e["field"], language, e["message"]))}
            for e in errors
        ]
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=headers
    )


async def _metacrm_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, MetacrmError)
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return problem(
        error.status,
        error.code,
        error.title,
        error.detail,
        [e.as_dict() for e in error.errors],
        headers,
        language=language_of(request),
    )


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return "/".join(parts) or ".".join(str(p) for p in loc)


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    errors = [
        {
            "field": _loc(tuple(e.get("loc", ()))),
            "code": str(e.get("type", "invalid")),
            "message": str(e.get("msg", "")),
        }
        for e in error.errors()
    ]
    return problem(
        422,
        "request-invalid",
        "The request is invalid",
        "some parameters are invalid",
        errors,
        language=language_of(request),
    )


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    codes = {404: "not-found", 405: "method-not-allowed", 401: "unauthenticated"}
    code = codes.get(error.status_code, f"http-{error.status_code}")
    detail = error.detail if isinstance(error.detail, str) else "request refused"
    return problem(
        error.status_code,
        code,
        detail,
        detail,
        headers=getattr(error, "headers", None),
        language=language_of(request),
    )


async def _unexpected(request: Request, error: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem(
        500,
        "internal",
        "Internal error",
        "an unexpected error occurred; it has been logged",
        language=language_of(request),
    )


#: Each error kind and the handler that turns it into problem+json.
HANDLERS: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
    MetacrmError: _metacrm_error,
    RequestValidationError: _validation_error,
    StarletteHTTPException: _http_error,
    Exception: _unexpected,
}


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""
    for kind, handler in HANDLERS.items():
        app.add_exception_handler(kind, handler)
