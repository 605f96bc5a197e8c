"""Jinja2 rendering of the workspace's templates, with the shell and the page's language."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from fastapi import Request
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse

from metacrm import i18n
from metacrm.platform.web.texts import word

TEMPLATES = Path(__file__).parent / "templates"

environment = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)


def is_htmx(request: Request) -> bool:
    """Whether htmx asked for a fragment (it sends HX-Request on its own requests)."""
    return request.headers.get("hx-request") == "true"


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    language: i18n.Language,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """`template` drawn with `context`, `t` (the workspace's words) and the request."""
    html = environment.get_template(template).render(
        **context, request=request, t=partial(word, language=language), language=language
    )
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Cache-Control": "no-store",
            "Content-Language": language,
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
            "Content-Security-Policy": _POLICY,
            **(headers or {}),
        },
    )


# Scripts and styles from this server only: no inline script can run, even if injected.
_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


LANGUAGE_COOKIE = "metacrm_lang"


def page_language(request: Request) -> i18n.Language:
    """The language of a page: negotiated for the session, else the cookie or the browser's."""
    chosen = getattr(request.state, "language", None)
    if chosen == "zh-CN":
        return "zh-CN"
    return browser_language(request) or "en"


def browser_language(request: Request) -> i18n.Language | None:
    """The language chosen in the workspace (cookie), else the browser's, else None."""
    chosen = i18n.supported(request.cookies.get(LANGUAGE_COOKIE))
    return chosen or i18n.negotiate(request.headers.get("accept-language"))
