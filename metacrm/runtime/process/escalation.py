"""Due times of approval tasks: reminders that fell due, and escalation of overdue tasks."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.metadata.process import ApprovalFlow
from metacrm.runtime.automation.notify import notify_users
from metacrm.runtime.compiler import CompiledTenant
from metacrm.runtime.jobs import Job, JobContext
from metacrm.runtime.process.approvers import resolve
from metacrm.runtime.process.work import OPEN, event, lock_run, open_task
from metacrm.runtime.records import fetch, utcnow
from metacrm.runtime.tenant_tables import approval_tasks, approvals

#: What the approver of a task is told when its reminder falls due, or when an overdue
#: task is escalated to them (the notification links to the record).
_REMINDER = {
    "en": "Reminder: an approval is waiting for you",
    "zh-CN": "提醒：有一项审批在等待您处理",
}
_ESCALATED = {
    "en": "An overdue approval was escalated to you",
    "zh-CN": "一项逾期审批已升级给您",
}


async def process_due(
    conn: AsyncConnection, ct: CompiledTenant, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Record reminders that fell due and escalate overdue tasks to their step's target,
    notifying the approver in the app.

    Run by the `approvals.due` jobs each task schedules for its reminder and its due
    time (`open_task`); `POST /api/v1/approvals/run-due` runs it at once.
    """
    now = now or utcnow()
    t, a = approval_tasks, approvals
    reminded = escalated = 0
    rows = await conn.execute(
        sa.select(t.c.id, t.c.approval_id, t.c.step, t.c.assignee_id, a.c.object, a.c.record_id)
        .join(a, a.c.id == t.c.approval_id)
        .where(t.c.status == OPEN, a.c.status == OPEN, t.c.remind_at <= now)
    )
    for row in list(rows.mappings()):
        await conn.execute(t.update().where(t.c.id == row["id"]).values(remind_at=None))
        await event(conn, row["approval_id"], None, "reminder", step=row["step"], now=now)
        await notify_users(
            conn, [row["assignee_id"]], _REMINDER, object=row["object"], record_id=row["record_id"]
        )
        reminded += 1
    escalating = await conn.execute(
        sa.select(t.c.id, t.c.approval_id)
        .join(a, a.c.id == t.c.approval_id)
        .where(
            t.c.status == OPEN, a.c.status == OPEN, t.c.due_at <= now, t.c.escalated_at.is_(None)
        )
    )
    for due in list(escalating.mappings()):
        task_id, approval_id = due["id"], due["approval_id"]
        run = await lock_run(conn, approval_id)
        task = (await conn.execute(sa.select(t).where(t.c.id == task_id))).mappings().one()
        if run["status"] != OPEN or task["status"] != OPEN:
            continue
        flow = ApprovalFlow.model_validate(run["definition"])
        step = next(s for s in flow.steps if s.api_name == task["step"])
        await conn.execute(t.update().where(t.c.id == task_id).values(escalated_at=now))
        target = None
        if step.escalate_to is not None:
            co = ct.object(run["object"])
            record = await fetch(conn, co, run["record_id"])
            found = await resolve(conn, ct, co, step.escalate_to, record, run["submitted_by"])
            target = next((u for u in found if u != run["submitted_by"]), None)
        if target is not None and target != task["assignee_id"]:
            await conn.execute(
                t.update()
                .where(t.c.id == task_id, t.c.status == OPEN)
                .values(status="reassigned", decided_at=now)
            )
            await open_task(conn, run, step, run["phase"], target, flow, now, delegate=False)
            await notify_users(
                conn, [target], _ESCALATED, object=run["object"], record_id=run["record_id"]
            )
        await event(
            conn,
            approval_id,
            None,
            "escalate",
            step=task["step"],
            now=now,
            detail={"from": str(task["assignee_id"]), "to": str(target) if target else None},
        )
        escalated += 1
    return {"reminded": reminded, "escalated": escalated}


async def approvals_due(job: Job, ctx: JobContext) -> dict[str, int]:
    """The job a task's reminder or due time runs: every due reminder and escalation."""
    async with ctx.transaction() as (conn, ct):
        counts = await process_due(conn, ct, now=ctx.now)
        ctx.result = dict(counts)
        return counts
