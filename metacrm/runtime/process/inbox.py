"""Approval queries: a run with its tasks and events, a record's runs, a user's inbox."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import NotFound
from metacrm.metadata.process import ApprovalFlow
from metacrm.runtime.compiler import CompiledObject
from metacrm.runtime.process.delegation import delegators
from metacrm.runtime.process.rows import row_json
from metacrm.runtime.process.work import OPEN
from metacrm.runtime.records import fetch, utcnow
from metacrm.runtime.tenant_tables import approval_events, approval_tasks, approvals


async def get(conn: AsyncConnection, approval_id: uuid.UUID) -> dict[str, Any]:
    """A run with its tasks, its events and the steps of its current phase."""
    row = (
        (await conn.execute(sa.select(approvals).where(approvals.c.id == approval_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound("no approval has this id")
    out = row_json(row)
    t, e = approval_tasks, approval_events
    out["tasks"] = [
        row_json(r)
        for r in (
            await conn.execute(
                sa.select(t).where(t.c.approval_id == approval_id).order_by(t.c.created_at, t.c.id)
            )
        ).mappings()
    ]
    out["events"] = [
        row_json(r)
        for r in (
            await conn.execute(
                sa.select(e).where(e.c.approval_id == approval_id).order_by(e.c.at, e.c.id)
            )
        ).mappings()
    ]
    flow = ApprovalFlow.model_validate(row["definition"])
    out["current_steps"] = (
        [flow.steps[i].api_name for i in flow.phases()[row["phase"]]]
        if row["status"] == OPEN and 0 <= row["phase"] < len(flow.phases())
        else []
    )
    return out


async def for_record(
    conn: AsyncConnection, co: CompiledObject, record_id: uuid.UUID
) -> list[dict[str, Any]]:
    """Every run of the record, oldest first."""
    await fetch(conn, co, record_id)
    a = approvals
    ids: list[uuid.UUID] = list(
        (
            await conn.execute(
                sa.select(a.c.id)
                .where(a.c.object == co.name, a.c.record_id == record_id)
                .order_by(a.c.submitted_at, a.c.id)
            )
        ).scalars()
    )
    return [await get(conn, i) for i in ids]


async def inbox(
    conn: AsyncConnection, user_id: uuid.UUID, *, status: str = OPEN
) -> list[dict[str, Any]]:
    """Tasks assigned to the user, or to those who delegate to them now."""
    now = utcnow()
    people = [user_id, *await delegators(conn, user_id, now)]
    t, a = approval_tasks, approvals
    rows = await conn.execute(
        sa.select(
            t.c.id.label("task_id"),
            t.c.approval_id,
            t.c.step,
            t.c.assignee_id,
            t.c.on_behalf_of,
            t.c.status,
            t.c.created_at,
            t.c.due_at,
            a.c.object,
            a.c.record_id,
            a.c.flow,
            a.c.submitted_by,
            a.c.submitted_at,
        )
        .join(a, a.c.id == t.c.approval_id)
        .where(t.c.assignee_id.in_(people), t.c.status == status)
        .order_by(t.c.created_at, t.c.id)
    )
    out = []
    for row in rows.mappings():
        item = row_json(row)
        item["overdue"] = row["due_at"] is not None and row["due_at"] < now and status == OPEN
        item["delegated"] = row["assignee_id"] != user_id
        out.append(item)
    return out
