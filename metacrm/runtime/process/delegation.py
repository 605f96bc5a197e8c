"""Delegation: while a user is away, their approval work goes to (or is shared with) a delegate."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError, NotFound, PermissionDenied, RecordInvalid
from metacrm.runtime.actor import Actor
from metacrm.runtime.process.approvers import find_user
from metacrm.runtime.process.rows import row_json
from metacrm.runtime.records import new_id, utcnow
from metacrm.runtime.tenant_tables import delegations


async def delegate_of(
    conn: AsyncConnection, user_id: uuid.UUID, now: dt.datetime
) -> uuid.UUID | None:
    """Who receives the user's new approval tasks now (the latest delegation wins)."""
    d = delegations
    found: uuid.UUID | None = await conn.scalar(
        sa.select(d.c.delegate_id)
        .where(d.c.user_id == user_id, d.c.starts_at <= now, d.c.ends_at > now)
        .order_by(d.c.created_at.desc())
        .limit(1)
    )
    return found


async def delegators(conn: AsyncConnection, user_id: uuid.UUID, now: dt.datetime) -> list[Any]:
    """The users who delegate to `user_id` now: their pending tasks are theirs too."""
    d = delegations
    rows = await conn.execute(
        sa.select(d.c.user_id).where(
            d.c.delegate_id == user_id, d.c.starts_at <= now, d.c.ends_at > now
        )
    )
    return list(rows.scalars())


async def add_delegation(
    conn: AsyncConnection,
    actor: Actor,
    *,
    delegate: str,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
    user: str | None = None,
) -> dict[str, Any]:
    owner: uuid.UUID | None = actor.user_id
    if user is not None:
        if not actor.is_admin:
            raise PermissionDenied("only administrators set delegations for other users")
        owner = await find_user(conn, user)
    delegate_id = await find_user(conn, delegate)
    errors = []
    if owner is None:
        errors.append(FieldError("user", "unknown-user", "no active user has this id"))
    if delegate_id is None:
        errors.append(FieldError("delegate", "unknown-user", "no active user has this id"))
    if delegate_id is not None and delegate_id == owner:
        errors.append(FieldError("delegate", "self", "a user cannot delegate to themselves"))
    if ends_at <= starts_at:
        errors.append(FieldError("ends_at", "range", "ends_at must be after starts_at"))
    if errors:
        raise RecordInvalid("the delegation is invalid", errors)
    row = {
        "id": new_id(),
        "user_id": owner,
        "delegate_id": delegate_id,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "created_by": actor.user_id,
        "created_at": utcnow(),
    }
    await conn.execute(delegations.insert().values(row))
    return row_json(row)


async def list_delegations(conn: AsyncConnection, actor: Actor) -> list[dict[str, Any]]:
    d = delegations
    query = sa.select(d).order_by(d.c.starts_at)
    if not actor.is_admin:
        query = query.where(sa.or_(d.c.user_id == actor.user_id, d.c.delegate_id == actor.user_id))
    return [row_json(r) for r in (await conn.execute(query)).mappings()]


async def remove_delegation(conn: AsyncConnection, actor: Actor, delegation_id: uuid.UUID) -> None:
    d = delegations
    owner = await conn.scalar(sa.select(d.c.user_id).where(d.c.id == delegation_id))
    if owner is None:
        raise NotFound("no delegation has this id")
    if owner != actor.user_id and not actor.is_admin:
        raise PermissionDenied("only the delegating user or an administrator may remove it")
    await conn.execute(d.delete().where(d.c.id == delegation_id))
