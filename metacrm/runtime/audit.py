"""The audit log and field history: written in the transaction of the change they record."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError
from metacrm.runtime.hooks import WriteContext
from metacrm.runtime.records import new_id, utcnow
from metacrm.runtime.serialize import json_value
from metacrm.runtime.tenant_tables import audit_log, field_history


async def record(
    conn: AsyncConnection,
    action: str,
    *,
    actor: Any = None,
    user_id: uuid.UUID | None = None,
    object_name: str | None = None,
    record_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one entry: who (the actor, or `user_id`), what, on which record, from where."""
    await conn.execute(
        audit_log.insert().values(
            id=new_id(),
            at=utcnow(),
            user_id=getattr(actor, "user_id", None) or user_id,
            api_key_id=getattr(actor, "api_key_id", None),
            ip=getattr(actor, "ip", None),
            action=action,
            object=object_name,
            record_id=record_id,
            detail=detail,
        )
    )


# ---------------------------------------------------------------- the write hook


async def check(ctx: WriteContext) -> list[FieldError]:
    return []


async def after(ctx: WriteContext) -> None:
    """Audit every record write; keep the history of fields that track it."""
    record_id = ctx.after.get("id") or (ctx.before or {}).get("id")
    action = ctx.notes.get("audit_action") or f"record.{ctx.kind}"
    detail = {"fields": sorted(ctx.changes)} if ctx.changes else None
    await record(
        ctx.conn,
        action,
        actor=ctx.actor,
        object_name=ctx.co.name,
        record_id=record_id,
        detail=detail,
    )
    if ctx.kind != "update" or ctx.before is None:
        return
    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "object": ctx.co.name,
            "record_id": record_id,
            "field": name,
            "old_value": json_value(ctx.before.get(name)),
            "new_value": json_value(value),
            "user_id": ctx.actor.user_id,
            "at": now,
        }
        for name, value in ctx.changes.items()
        if getattr(ctx.co.fields.get(name), "track_history", False)
        and ctx.before.get(name) != value
    ]
    if rows:
        await ctx.conn.execute(field_history.insert(), rows)
