"""Manual shares: one record shared with a user or a role, by someone who may edit it."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError, NotFound, PermissionDenied, RecordInvalid
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.permissions import object_permission, record_filter
from metacrm.runtime.records import active_user, fetch, new_id, utcnow
from metacrm.runtime.tenant_tables import shares


def _share(row: Any) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "user_id": str(row.user_id) if row.user_id else None,
        "role": row.role,
        "access": row.access,
        "created_by": str(row.created_by),
        "created_at": row.created_at.isoformat().replace("+00:00", "Z"),
    }


async def _owned(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    actor: Actor,
) -> dict[str, Any]:
    """The record, if the actor may share it: its owner, a modify-all holder or an admin."""
    record = await fetch(conn, co, record_id, access=record_filter(ct, actor, co, "read"))
    permission = object_permission(ct.model, actor, co.name)
    if not (actor.is_admin or permission.modify_all or record["owner_id"] == actor.user_id):
        raise PermissionDenied(
            "only the owner, a modify-all holder or an administrator may share it"
        )
    return record


async def list_shares(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    actor: Actor,
) -> list[dict[str, Any]]:
    await _owned(conn, ct, co, record_id, actor)
    rows = await conn.execute(
        sa.select(shares).where(shares.c.object == co.name, shares.c.record_id == record_id)
    )
    return [_share(r) for r in rows]


async def add_share(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    body: dict[str, Any],
    actor: Actor,
) -> dict[str, Any]:
    """Share with `{"user_id": ...}` or `{"role": ...}`, `"access": "read" | "edit"`."""
    await _owned(conn, ct, co, record_id, actor)
    if any(link.type == "master_detail" for link in co.references.values()):
        raise RecordInvalid(
            "a detail record is shared through its master",
            [
                FieldError(
                    "record",
                    "detail-object",
                    f"{co.name} records take their access from their master record; "
                    "share the master record instead",
                )
            ],
        )
    errors = [
        FieldError(k[:64], "unknown-field", "not a share property")
        for k in set(body) - {"user_id", "role", "access"}
    ]
    access = body.get("access", "read")
    if access not in ("read", "edit"):
        errors.append(FieldError("access", "type", "access is read or edit"))
    if ("user_id" in body) == ("role" in body):
        errors.append(FieldError("user_id", "required", "give either user_id or role"))
    role = body.get("role")
    if role is not None and not any(r.api_name == role for r in ct.model.roles):
        errors.append(FieldError("role", "unknown-role", "no such role"))
    if errors:
        raise RecordInvalid("the share is invalid", errors)
    user = await active_user(conn, body["user_id"], "user_id") if "user_id" in body else None
    row = {
        "id": new_id(),
        "object": co.name,
        "record_id": record_id,
        "user_id": user,
        "role": role,
        "access": access,
        "created_by": actor.user_id,
        "created_at": utcnow(),
    }
    await conn.execute(shares.insert().values(row))
    return _share(SimpleNamespace(**row))


async def remove_share(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    share_id: uuid.UUID,
    actor: Actor,
) -> None:
    await _owned(conn, ct, co, record_id, actor)
    result = await conn.execute(
        shares.delete().where(shares.c.id == share_id, shares.c.record_id == record_id)
    )
    if result.rowcount != 1:
        raise NotFound("no such share")
