"""Changing who approves a running step: reassign a task, add a co-approver."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError, PermissionDenied, RecordInvalid
from metacrm.metadata.process import ApprovalFlow
from metacrm.runtime.actor import Actor
from metacrm.runtime.process.approvers import find_user
from metacrm.runtime.process.delegation import delegators
from metacrm.runtime.process.inbox import get
from metacrm.runtime.process.work import OPEN, actor_tasks, event, open_run, open_task, phase_tasks
from metacrm.runtime.records import utcnow
from metacrm.runtime.tenant_tables import approval_tasks


async def _check_target(
    conn: AsyncConnection, run: dict[str, Any], flow: ApprovalFlow, user: str
) -> uuid.UUID:
    target = await find_user(conn, user)
    if target is None:
        raise RecordInvalid(
            "no such user", [FieldError("to", "unknown-user", "no active user has this id")]
        )
    if target == run["submitted_by"] and not flow.allow_self_approval:
        raise RecordInvalid(
            "the submitter cannot approve",
            [FieldError("to", "self-approval", "the submitter cannot approve their submission")],
        )
    return target


async def reassign(
    conn: AsyncConnection,
    approval_id: uuid.UUID,
    actor: Actor,
    *,
    to: str,
    task_id: uuid.UUID | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """Hand a pending task to another user: its assignee may, or an administrator."""
    run, flow = await open_run(conn, approval_id)
    now = utcnow()
    if task_id is not None:
        tasks = [
            x
            for x in await phase_tasks(conn, approval_id, run["phase"])
            if x["id"] == task_id and x["status"] == OPEN
        ]
        if tasks and not actor.is_admin:
            mine = {actor.user_id, *await delegators(conn, actor.user_id, now)}
            tasks = [x for x in tasks if x["assignee_id"] in mine]
    else:
        tasks = await actor_tasks(conn, run, actor, None, now)
    if not tasks:
        raise PermissionDenied("you have no pending task here to reassign")
    target = await _check_target(conn, run, flow, to)
    t = approval_tasks
    for task in tasks[:1]:
        await conn.execute(
            t.update()
            .where(t.c.id == task["id"], t.c.status == OPEN)
            .values(status="reassigned", decided_at=now, decided_by=actor.user_id)
        )
        step = next(s for s in flow.steps if s.api_name == task["step"])
        await open_task(conn, run, step, run["phase"], target, flow, now, delegate=False)
        await event(
            conn,
            approval_id,
            actor.user_id,
            "reassign",
            step=task["step"],
            comment=comment,
            now=now,
            detail={"from": str(task["assignee_id"]), "to": str(target)},
        )
    return await get(conn, approval_id)


async def add_approver(
    conn: AsyncConnection,
    approval_id: uuid.UUID,
    actor: Actor,
    *,
    user: str,
    step: str | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """Add a co-approver to a step of the current phase (by its approvers or an admin)."""
    run, flow = await open_run(conn, approval_id)
    now = utcnow()
    mine = await actor_tasks(conn, run, actor, step, now)
    open_steps = {x["step"] for x in await phase_tasks(conn, approval_id, run["phase"])}
    if not mine and not actor.is_admin:
        raise PermissionDenied("only the step's approvers or an administrator may add one")
    name = step or (mine[0]["step"] if mine else None)
    if name is None or name not in open_steps:
        raise RecordInvalid(
            "name a step of the current phase", [FieldError("step", "unknown-step", str(name))]
        )
    target = await _check_target(conn, run, flow, user)
    existing = [
        x
        for x in await phase_tasks(conn, approval_id, run["phase"])
        if x["step"] == name and x["assignee_id"] == target and x["status"] == OPEN
    ]
    if not existing:
        definition = next(s for s in flow.steps if s.api_name == name)
        await open_task(conn, run, definition, run["phase"], target, flow, now, delegate=False)
        await event(
            conn,
            approval_id,
            actor.user_id,
            "add_approver",
            step=name,
            comment=comment,
            now=now,
            detail={"user_id": str(target)},
        )
    return await get(conn, approval_id)
