"""Login: POST /api/v1/auth/token (OAuth2 password form with a tenant), and /auth/me."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request

from metacrm.platform.auth import issue_token
from metacrm.platform.login import Clock, authenticate, get_clock
from metacrm.platform.state import IdentityDep, StateDep

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/token")
async def token(
    request: Request,
    state: StateDep,
    clock: Annotated[Clock, Depends(get_clock)],
    username: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=1024)],
    tenant: Annotated[str, Form(max_length=64)],
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> dict[str, Any]:
    """Exchange a tenant, user name and password for a bearer token."""
    ip = request.client.host if request.client else None
    identity = await authenticate(state.db, tenant, username, password, ip=ip, now=clock())
    access_token, expires_in = issue_token(
        identity, state.signing_key, state.settings.token_ttl_minutes
    )
    return {"access_token": access_token, "token_type": "bearer", "expires_in": expires_in}


@router.get("/me")
async def me(state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    """The caller as the tenant knows them now."""
    async with state.tenant(identity, writes=False) as session:
        actor = session.actor
    return {
        "user_id": str(identity.user_id),
        "tenant": identity.tenant,
        "is_admin": actor.is_admin,
        "role": actor.role,
        "manager_id": str(actor.manager_id) if actor.manager_id else None,
    }
