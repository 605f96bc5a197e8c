"""Stage tasks: work items opened when a record enters a stage, listed and completed."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import NotFound
from metacrm.metadata.base import label_text
from metacrm.metadata.process import Stage, StageRule
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.process.approvers import resolve_assignee
from metacrm.runtime.process.rows import row_json
from metacrm.runtime.records import editable, fetch, new_id, utcnow
from metacrm.runtime.tenant_tables import stage_tasks


async def open_tasks(
    conn: AsyncConnection,
    co: CompiledObject,
    rule: StageRule,
    stage: Stage,
    record: dict[str, Any],
    now: dt.datetime,
) -> None:
    """Open the tasks of the stage the record just entered."""
    for task in stage.tasks:
        user_id, role = await resolve_assignee(conn, task.assignee, record)
        await conn.execute(
            stage_tasks.insert().values(
                id=new_id(),
                object=co.name,
                record_id=record["id"],
                rule=rule.api_name,
                stage=stage.value,
                task=task.api_name,
                subject=label_text(task.subject),
                assignee_id=user_id,
                assignee_role=role,
                optional=task.optional,
                status="open",
                due_at=now + dt.timedelta(days=task.due_in_days)
                if task.due_in_days is not None
                else None,
                created_at=now,
            )
        )


async def open_required(
    conn: AsyncConnection, co: CompiledObject, record_id: uuid.UUID, rule: StageRule, stage: str
) -> list[tuple[str, str]]:
    """(task, subject) of the non-optional tasks still open in the record's stage."""
    t = stage_tasks
    rows = await conn.execute(
        sa.select(t.c.task, t.c.subject).where(
            t.c.object == co.name,
            t.c.record_id == record_id,
            t.c.rule == rule.api_name,
            t.c.stage == stage,
            t.c.status == "open",
            t.c.optional.is_(False),
        )
    )
    return [(str(task), str(subject)) for task, subject in rows]


async def list_tasks(
    conn: AsyncConnection, co: CompiledObject, record_id: uuid.UUID
) -> list[dict[str, Any]]:
    await fetch(conn, co, record_id)
    t = stage_tasks
    rows = await conn.execute(
        sa.select(t)
        .where(t.c.object == co.name, t.c.record_id == record_id)
        .order_by(t.c.created_at, t.c.task)
    )
    return [row_json(r) for r in rows.mappings()]


async def complete_task(
    conn: AsyncConnection,
    ct: CompiledTenant,
    actor: Actor,
    task_id: uuid.UUID,
    *,
    status: str = "done",
) -> dict[str, Any]:
    """Mark a stage task done: by its assignee, a user of its role, or an administrator,
    who must also be allowed to edit the record (403 when they may only read it)."""
    t = stage_tasks
    row = (
        (await conn.execute(sa.select(t).where(t.c.id == task_id).with_for_update()))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound("no stage task has this id")
    allowed = actor.is_admin or row["assignee_id"] == actor.user_id
    allowed = allowed or (row["assignee_role"] is not None and row["assignee_role"] == actor.role)
    co = ct.objects.get(row["object"])
    if not allowed or co is None:
        # Not yours: answer as if it did not exist, so task ids reveal nothing.
        raise NotFound("no stage task has this id")
    await editable(conn, ct, co, row["record_id"], actor)
    if row["status"] == "open":
        await conn.execute(
            t.update()
            .where(t.c.id == task_id, t.c.status == "open")
            .values(status=status, done_at=utcnow(), done_by=actor.user_id)
        )
    row = (await conn.execute(sa.select(t).where(t.c.id == task_id))).mappings().one()
    return row_json(row)
