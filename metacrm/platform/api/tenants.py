"""The platform-admin API: create and list tenants (bearer METACRM_PLATFORM_ADMIN_TOKEN)."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse

from metacrm.errors import FieldError, MetadataInvalid, PermissionDenied, Unauthenticated
from metacrm.platform.body import read_object
from metacrm.platform.state import StateDep
from metacrm.platform.tenancy import (
    check_password,
    create_tenant,
    create_user,
    list_tenants,
    normalise_email,
)

router = APIRouter(prefix="/platform", tags=["platform"])


def require_platform_admin(request: Request, state: StateDep) -> None:
    expected = state.settings.platform_admin_token
    if not expected:
        raise PermissionDenied("the platform-admin API is off; set METACRM_PLATFORM_ADMIN_TOKEN")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), expected.encode()
    ):
        raise Unauthenticated("a platform-admin token is required")


PlatformAdmin = Annotated[None, Depends(require_platform_admin)]


@router.get("/tenants")
async def tenants(state: StateDep, _admin: PlatformAdmin) -> dict[str, Any]:
    return {"tenants": [t.as_dict() for t in await list_tenants(state.db)]}


@router.post("/tenants", status_code=201)
async def new_tenant(request: Request, state: StateDep, _admin: PlatformAdmin) -> JSONResponse:
    """Create a tenant and its first administrator: `{name, label?, admin_email, admin_password}`."""
    body = await read_object(request, state.settings.max_body_bytes)
    allowed = {"name", "label", "default_language", "admin_email", "admin_password"}
    errors = [
        FieldError(k[:64], "unknown-field", "not a tenant property")
        for k in sorted(set(body) - allowed)
    ]
    for key in ("name", "admin_email", "admin_password"):
        if not isinstance(body.get(key), str):
            errors.append(FieldError(key, "required", f"{key} is required text"))
    for key in ("label", "default_language"):
        if key in body and not isinstance(body[key], str):
            errors.append(FieldError(key, "type", f"{key} must be text"))
    if errors:
        raise MetadataInvalid("the tenant is invalid", errors)
    check_password(body["admin_password"], login=body["admin_email"])  # before anything is created
    normalise_email(body["admin_email"])
    tenant = await create_tenant(
        state.db,
        body["name"],
        label=body.get("label"),
        default_language=body.get("default_language", "en"),
    )
    await create_user(state.db, tenant, body["admin_email"], body["admin_password"], is_admin=True)
    return JSONResponse(tenant.as_dict(), status_code=201)
