"""Who a step or a task goes to: users, roles, managers, user fields and formulas."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm import formula
from metacrm.metadata.process import Approver, Assignee
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.process.expressions import checked
from metacrm.runtime.tenant_tables import users
from metacrm.runtime.validation import load_paths


async def find_user(conn: AsyncConnection, ref: str) -> uuid.UUID | None:
    """An active user by id or e-mail."""
    try:
        condition = users.c.id == uuid.UUID(str(ref))
    except ValueError:
        condition = users.c.email == str(ref).strip().lower()
    found: uuid.UUID | None = await conn.scalar(
        sa.select(users.c.id).where(condition, users.c.is_active.is_(True))
    )
    return found


async def _manager_chain(conn: AsyncConnection, user_id: Any, levels: int) -> uuid.UUID | None:
    current = user_id
    for _ in range(levels):
        if current is None:
            return None
        current = await conn.scalar(sa.select(users.c.manager_id).where(users.c.id == current))
    return current  # type: ignore[no-any-return]


async def resolve(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    approver: Approver,
    record: dict[str, Any],
    submitter: uuid.UUID,
) -> list[uuid.UUID]:
    """The active users an approver definition names for `record`."""
    found: list[Any] = []
    if approver.kind == "user":
        found = [await find_user(conn, approver.user or "")]
    elif approver.kind == "role":
        found = list(
            (
                await conn.execute(
                    sa.select(users.c.id)
                    .where(users.c.role == approver.role, users.c.is_active.is_(True))
                    .order_by(users.c.email)
                )
            ).scalars()
        )
    elif approver.kind == "manager":
        start = record.get("owner_id") if approver.of == "owner" else submitter
        found = [await _manager_chain(conn, start, approver.levels)]
    elif approver.kind == "field":
        value = record.get(approver.field or "")
        found = [await find_user(conn, str(value))] if value is not None else []
    elif approver.kind == "formula":
        expr = checked(ct, co, approver.expression or "", "default")
        values = await load_paths(conn, ct, co, record, expr.paths)
        text = formula.evaluate(expr, values)
        refs = str(text or "").replace(";", ",").split(",")
        found = [await find_user(conn, ref.strip()) for ref in refs if ref.strip()]
    active: list[uuid.UUID] = []
    for user_id in found:
        if user_id is None or user_id in active:
            continue
        is_active = await conn.scalar(sa.select(users.c.is_active).where(users.c.id == user_id))
        if is_active:
            active.append(user_id)
    return active


async def resolve_assignee(
    conn: AsyncConnection, assignee: Assignee, record: dict[str, Any]
) -> tuple[uuid.UUID | None, str | None]:
    """(user id, role) a stage task goes to."""
    if assignee.kind == "role":
        return None, assignee.role
    if assignee.kind == "user":
        return await find_user(conn, assignee.user or ""), None
    owner = record.get("owner_id")
    if assignee.kind == "owner":
        return owner, None
    manager = await conn.scalar(sa.select(users.c.manager_id).where(users.c.id == owner))
    return manager or owner, None
