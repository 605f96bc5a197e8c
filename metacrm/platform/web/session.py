"""Web sessions: sign-in and sign-out, the session cookie, the language, and CSRF tokens."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import replace
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import RedirectResponse, Response

from metacrm import i18n
from metacrm.errors import MetacrmError, PermissionDenied, Unauthenticated
from metacrm.platform.auth import Identity, make_session_cookie, read_session_cookie
from metacrm.platform.login import Clock, authenticate, get_clock
from metacrm.platform.state import AppState, StateDep, get_state
from metacrm.platform.web.render import LANGUAGE_COOKIE, browser_language, page_language, render
from metacrm.runtime.records import utcnow
from metacrm.runtime.tenant_tables import web_sessions

SESSION_COOKIE = "metacrm_session"
LOGIN_CSRF_COOKIE = "metacrm_login_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}

router = APIRouter(prefix="/app", include_in_schema=False)


def csrf_token(identity: Identity, signing_key: str) -> str:
    """The CSRF token of a session: bound to its id, so no other session's token passes."""
    message = f"csrf:{identity.session_id}".encode()
    return hmac.new(signing_key.encode(), message, hashlib.sha256).hexdigest()


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of the workspace only (no open redirect)."""
    if (
        target
        and target.startswith("/app")
        and not target.startswith("/app/login")
        and "//" not in target
        and "\\" not in target
    ):
        return target
    return "/app"


async def get_web_identity(request: Request) -> Identity:
    """The signed-in user of a workspace request; unsafe methods must carry the CSRF token."""
    state = get_state(request)
    identity = read_session_cookie(request.cookies.get(SESSION_COOKIE, ""))
    if identity is None or not await state.tenant_exists(identity.storage):
        raise Unauthenticated("sign in to use the workspace")
    if request.method in _UNSAFE:
        sent = request.headers.get(CSRF_HEADER)
        if sent is None and "form" in request.headers.get("content-type", ""):
            value = (await request.form()).get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
        if not sent or not hmac.compare_digest(sent, csrf_token(identity, state.signing_key)):
            raise PermissionDenied("the form is out of date (CSRF token missing or wrong)")
    language = browser_language(request) or await state.tenant_language(identity.storage) or "en"
    request.state.language = language
    ip = request.client.host if request.client else None
    return replace(identity, ip=ip, language=language)


WebIdentityDep = Annotated[Identity, Depends(get_web_identity)]


def render_login(
    request: Request,
    *,
    token: str,
    next: str,
    error: str | None = None,
    status: int = 200,
    tenant: str = "",
    username: str = "",
) -> Response:
    """The sign-in page; `error` is a problem code (unauthenticated, too-many-requests...)."""
    messages = {
        "unauthenticated": "login_failed",
        "too-many-requests": "login_throttled",
        "form-expired": "login_expired",
    }
    context = {
        "login_token": token,
        "next": next,
        "error": messages.get(error or "", "login_failed") if error else None,
        "tenant": tenant,
        "username": username,
    }
    return render(request, "login.html", context, language=page_language(request), status=status)


def _cookie_secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.get("/login")
async def login_page(request: Request, state: StateDep, next: str | None = None) -> Response:
    """The sign-in form, with a login CSRF token bound to a cookie (double submit)."""
    token = secrets.token_urlsafe(24)
    response = render_login(request, token=token, next=safe_next(next))
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_cookie_secure(request),
        path="/app/login",
    )
    return response


@router.post("/login")
async def sign_in(
    request: Request,
    state: StateDep,
    clock: Annotated[Clock, Depends(get_clock)],
    tenant: Annotated[str, Form(max_length=64)] = "",
    username: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/app",
) -> Response:
    """Check the credentials, start a new session (a new id every time), go on to `next`."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, csrf_token):
        return render_login(
            request, token=expected, next=safe_next(next), error="form-expired", status=403
        )
    ip = request.client.host if request.client else None
    try:
        identity = await authenticate(state.db, tenant, username, password, ip=ip, now=clock())
    except MetacrmError as error:
        return render_login(
            request,
            token=expected,
            next=safe_next(next),
            error=error.code,
            status=error.status,
            tenant=tenant,
            username=username,
        )
    cookie = await start_session(state, identity, now=clock())
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=state.settings.session_ttl_hours * 3600,
        httponly=True,
        samesite="lax",
        secure=_cookie_secure(request),
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/app/login")
    return response


async def start_session(state: AppState, identity: Identity, *, now: dt.datetime) -> str:
    """A new session row for a signed-in user; the cookie value that names it."""
    session_id, cookie, secret_hash = make_session_cookie(identity.tenant)
    async with state.db.tenant(identity.storage) as conn:
        await conn.execute(
            web_sessions.insert().values(
                id=session_id,
                user_id=identity.user_id,
                secret_hash=secret_hash,
                token_epoch=identity.token_epoch,
                created_at=now,
                expires_at=now + dt.timedelta(hours=state.settings.session_ttl_hours),
            )
        )
    return cookie


@router.post("/logout")
async def sign_out(request: Request, state: StateDep, identity: WebIdentityDep) -> Response:
    """End the session on the server, so the cookie stops working even if it was copied."""
    async with state.db.tenant(identity.storage) as conn:
        await conn.execute(
            sa.update(web_sessions)
            .where(web_sessions.c.id == identity.session_id, web_sessions.c.ended_at.is_(None))
            .values(ended_at=utcnow())
        )
    response = RedirectResponse("/app/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/language")
async def choose_language(
    request: Request,
    identity: WebIdentityDep,
    language: Annotated[str, Form(max_length=20)] = "en",
    next: Annotated[str, Form(max_length=2000)] = "/app",
) -> Response:
    """Remember the language chosen in this browser."""
    response = RedirectResponse(safe_next(next), status_code=303)
    chosen = i18n.supported(language) or "en"
    response.set_cookie(
        LANGUAGE_COOKIE,
        chosen,
        max_age=365 * 24 * 3600,
        httponly=True,
        samesite="lax",
        secure=_cookie_secure(request),
        path="/",
    )
    return response
