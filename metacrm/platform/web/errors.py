"""Errors on workspace pages: a sign-in redirect, or an HTML page; never a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response

from metacrm.errors import MetacrmError
from metacrm.platform import problems
from metacrm.platform.web.render import is_htmx, page_language, render

log = logging.getLogger("metacrm")
Handler = Callable[[Request, Exception], Awaitable[Response]]
PREFIX = "/app"
_MESSAGES = {401: "session_ended", 403: "forbidden", 404: "not_found"}


def _status(error: Exception) -> int:
    if isinstance(error, MetacrmError):
        return error.status
    if isinstance(error, StarletteHTTPException):
        return error.status_code
    if isinstance(error, RequestValidationError):
        return 400  # a malformed parameter of a page: a bad request, not a form error
    return 500


def _html_error(api_handler: Handler) -> Handler:
    """A handler that draws workspace errors as pages and leaves the API's to `api_handler`."""

    async def handle(request: Request, error: Exception) -> Response:
        if not request.url.path.startswith(PREFIX + "/") and request.url.path != PREFIX:
            return await api_handler(request, error)
        status = _status(error)
        if status == 500:
            log.exception("unexpected error on %s %s", request.method, request.url.path)
        if status == 401:
            target = f"{PREFIX}/login"
            if request.method == "GET" and not is_htmx(request):
                wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                target += "?" + urlencode({"next": wanted})
            if is_htmx(request):
                return Response(status_code=401, headers={"HX-Redirect": target})
            return RedirectResponse(target, status_code=303)
        detail = error.detail if isinstance(error, MetacrmError) else ""
        context = {"status": status, "message": _MESSAGES.get(status), "detail": detail}
        template = "error_fragment.html" if is_htmx(request) else "error.html"
        return render(request, template, context, language=page_language(request), status=status)

    return handle


def install(app: FastAPI) -> None:
    """Wrap the problem+json handlers so that workspace paths get pages instead."""
    for kind, api_handler in problems.HANDLERS.items():
        app.add_exception_handler(kind, _html_error(api_handler))
