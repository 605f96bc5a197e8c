"""An approval run's rows: the run locked, its work items (tasks), its events, step outcomes."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import Conflict, NotFound
from metacrm.metadata.process import ApprovalFlow, ApprovalStep
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.jobs import enqueue
from metacrm.runtime.process.approvers import resolve
from metacrm.runtime.process.delegation import delegate_of, delegators
from metacrm.runtime.records import new_id, utcnow
from metacrm.runtime.tenant_tables import approval_events, approval_tasks, approvals

OPEN = "pending"


async def lock_run(conn: AsyncConnection, approval_id: uuid.UUID) -> dict[str, Any]:
    """The run's row, locked (SELECT ... FOR UPDATE on PostgreSQL; SQLite write
    transactions are serialised by BEGIN IMMEDIATE)."""
    query = sa.select(approvals).where(approvals.c.id == approval_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound("no approval has this id")
    return dict(row)


async def open_run(
    conn: AsyncConnection, approval_id: uuid.UUID
) -> tuple[dict[str, Any], ApprovalFlow]:
    """The run, locked, with the flow definition it started with; Conflict once decided."""
    run = await lock_run(conn, approval_id)
    if run["status"] != OPEN:
        raise Conflict(f"the approval is already {run['status']}")
    return run, ApprovalFlow.model_validate(run["definition"])


async def pending_run(conn: AsyncConnection, object_name: str, record_id: Any) -> Any:
    """The record's pending run, if any."""
    a = approvals
    query = sa.select(a).where(
        a.c.object == object_name, a.c.record_id == record_id, a.c.status == OPEN
    )
    return (await conn.execute(query)).mappings().first()


async def latest_status(
    conn: AsyncConnection, object_name: str, record_id: uuid.UUID, flow: str
) -> str | None:
    """The status of the record's latest run of `flow`."""
    a = approvals
    status: str | None = await conn.scalar(
        sa.select(a.c.status)
        .where(a.c.object == object_name, a.c.record_id == record_id, a.c.flow == flow)
        .order_by(a.c.submitted_at.desc(), a.c.id.desc())
        .limit(1)
    )
    return status


async def event(
    conn: AsyncConnection,
    approval_id: uuid.UUID,
    actor_id: Any,
    action: str,
    *,
    step: str | None = None,
    comment: str | None = None,
    detail: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> None:
    """Append one event to the run's history."""
    await conn.execute(
        approval_events.insert().values(
            id=new_id(),
            approval_id=approval_id,
            at=now or utcnow(),
            actor_id=actor_id,
            action=action,
            step=step,
            comment=comment,
            detail=detail,
        )
    )


async def assignees(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    flow: ApprovalFlow,
    step: ApprovalStep,
    record: dict[str, Any],
    submitter: uuid.UUID,
) -> list[uuid.UUID]:
    """The step's approvers for `record` (never the submitter, unless the flow allows)."""
    found: list[uuid.UUID] = []
    for approver in step.approvers:
        for user_id in await resolve(conn, ct, co, approver, record, submitter):
            if user_id not in found and (flow.allow_self_approval or user_id != submitter):
                found.append(user_id)
    return found


async def open_task(
    conn: AsyncConnection,
    run: dict[str, Any],
    step: ApprovalStep,
    phase: int,
    user_id: uuid.UUID,
    flow: ApprovalFlow,
    now: dt.datetime,
    *,
    delegate: bool = True,
) -> uuid.UUID:
    """Give one approver a work item in the step (to their delegate, if they have one)."""
    on_behalf_of = None
    if delegate:
        delegate_id = await delegate_of(conn, user_id, now)
        if delegate_id is not None and (
            flow.allow_self_approval or delegate_id != run["submitted_by"]
        ):
            user_id, on_behalf_of = delegate_id, user_id
    due = now + dt.timedelta(hours=step.due_in_hours) if step.due_in_hours else None
    remind = (
        due - dt.timedelta(hours=step.remind_before_hours)
        if due is not None and step.remind_before_hours
        else None
    )
    task_id = new_id()
    for when in dict.fromkeys(w for w in (remind, due) if w is not None):
        await enqueue(
            conn, "approvals.due", {}, run_at=when, key=f"approvals.due:{when.isoformat()}"
        )
    await conn.execute(
        approval_tasks.insert().values(
            id=task_id,
            approval_id=run["id"],
            step=step.api_name,
            phase=phase,
            assignee_id=user_id,
            on_behalf_of=on_behalf_of,
            status=OPEN,
            created_at=now,
            due_at=due,
            remind_at=remind,
        )
    )
    return task_id


async def phase_tasks(
    conn: AsyncConnection, approval_id: uuid.UUID, phase: int
) -> list[dict[str, Any]]:
    t = approval_tasks
    rows = await conn.execute(
        sa.select(t).where(t.c.approval_id == approval_id, t.c.phase == phase).order_by(t.c.id)
    )
    return [dict(r) for r in rows.mappings()]


async def actor_tasks(
    conn: AsyncConnection, run: dict[str, Any], actor: Actor, step: str | None, now: dt.datetime
) -> list[dict[str, Any]]:
    """The actor's pending tasks (theirs, or of those delegating to them) in the phase."""
    mine = {actor.user_id, *await delegators(conn, actor.user_id, now)}
    return [
        t
        for t in await phase_tasks(conn, run["id"], run["phase"])
        if t["status"] == OPEN and t["assignee_id"] in mine and (step is None or t["step"] == step)
    ]


def step_outcome(step: ApprovalStep, tasks: list[dict[str, Any]]) -> str | None:
    """approved, rejected, or None while the step's rule is not yet decided."""
    live = [t for t in tasks if t["status"] in (OPEN, "approved", "rejected")]
    approved = sum(t["status"] == "approved" for t in live)
    rejected = sum(t["status"] == "rejected" for t in live)
    pending = sum(t["status"] == OPEN for t in live)
    if step.rule == "any":
        return "approved" if approved else "rejected" if rejected else None
    if step.rule == "all":
        return "rejected" if rejected else "approved" if not pending else None
    needed = min(step.required_count or 1, len(live)) or 1
    if approved >= needed:
        return "approved"
    return "rejected" if approved + pending < needed else None
