"""API keys: create (shown once), list and revoke; keys act as their user, read or read/write."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from metacrm.errors import FieldError, MetadataInvalid, NotFound, PermissionDenied
from metacrm.platform.auth import make_api_key
from metacrm.platform.body import read_object
from metacrm.platform.state import IdentityDep, StateDep, TenantSession
from metacrm.runtime import audit
from metacrm.runtime.permissions import has_platform_permission
from metacrm.runtime.records import utcnow
from metacrm.runtime.serialize import row_to_record
from metacrm.runtime.tenant_tables import api_keys

router = APIRouter(prefix="/api-keys", tags=["api keys"])
_SHOWN = (
    api_keys.c.id,
    api_keys.c.user_id,
    api_keys.c.name,
    api_keys.c.scope,
    api_keys.c.created_at,
    api_keys.c.last_used_at,
    api_keys.c.revoked_at,
)


def _require_key_manager(session: TenantSession) -> None:
    """Creating and revoking keys needs the platform permission manage_api_keys (or
    administration); another user's keys are for administrators only. A key never
    manages keys: a key minted by a key would outlive the revocation of its parent."""
    if session.actor.api_key_id is not None:
        raise PermissionDenied("API keys cannot create or revoke API keys; sign in as the user")
    if not has_platform_permission(session.ct.model, session.actor, "manage_api_keys"):
        raise PermissionDenied("your role may not manage API keys (manage_api_keys)")


@router.get("")
async def list_keys(state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    """Your keys (administrators: everyone's); never the secrets."""
    async with state.tenant(identity, writes=False) as (conn, _ct, actor):
        query = sa.select(*_SHOWN).order_by(api_keys.c.created_at)
        if not actor.is_admin:
            query = query.where(api_keys.c.user_id == actor.user_id)
        return {"api_keys": [row_to_record(dict(r._mapping)) for r in await conn.execute(query)]}


@router.post("", status_code=201)
async def create_key(request: Request, state: StateDep, identity: IdentityDep) -> JSONResponse:
    """A key acting as you: `{"name": "...", "scope": "read" | "read_write"}`; the key is shown once."""
    body = await read_object(request, state.settings.max_body_bytes)
    errors = [
        FieldError(k[:64], "unknown-field", "not a key property")
        for k in set(body) - {"name", "scope"}
    ]
    name, scope = body.get("name"), body.get("scope", "read")
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        errors.append(FieldError("name", "required", "give the key a name of 1 to 100 characters"))
    if scope not in ("read", "read_write"):
        errors.append(FieldError("scope", "type", "scope is read or read_write"))
    if errors:
        raise MetadataInvalid("the API key is invalid", errors)
    async with state.tenant(identity) as session:
        _require_key_manager(session)
        conn, actor = session.conn, session.actor
        key_id, key, secret_hash = make_api_key(identity.tenant)
        now = utcnow()
        await conn.execute(
            api_keys.insert().values(
                id=key_id,
                user_id=actor.user_id,
                name=name,
                secret_hash=secret_hash,
                scope=scope,
                created_at=now,
            )
        )
        await audit.record(
            conn, "api_key.create", actor=actor, detail={"key_id": str(key_id), "scope": scope}
        )
    return JSONResponse(
        {"id": str(key_id), "name": name, "scope": scope, "key": key}, status_code=201
    )


@router.delete("/{key_id}", status_code=204)
async def revoke_key(key_id: str, state: StateDep, identity: IdentityDep) -> Response:
    """Revoke one of your keys (administrators: anyone's); it stops working at once."""
    try:
        kid = uuid.UUID(key_id)
    except ValueError:
        raise NotFound("no API key has this id") from None
    async with state.tenant(identity) as session:
        _require_key_manager(session)
        conn, actor = session.conn, session.actor
        query = api_keys.update().where(api_keys.c.id == kid, api_keys.c.revoked_at.is_(None))
        if not actor.is_admin:
            query = query.where(api_keys.c.user_id == actor.user_id)
        if (await conn.execute(query.values(revoked_at=utcnow()))).rowcount != 1:
            raise NotFound("no API key has this id")
        await audit.record(conn, "api_key.revoke", actor=actor, detail={"key_id": key_id})
    return Response(status_code=204)
