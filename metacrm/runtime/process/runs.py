"""The approval run state machine: submit, advance through phases, decide, settle, recall.

A run (`mc_approval`) keeps the flow definition it started with, so changing the flow
never changes a run in progress. Each approver's work item is an `mc_approval_task`.
Every decision locks the run's row first, then re-reads its state, so two approvers
acting at once on an any-one step, or a recall racing an approval, give one outcome;
task updates are also conditional (`WHERE status = 'pending'`). The flow's actions
(field updates, stage moves) are writes through the one write path, with system rights.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import Conflict, FieldError, NotFound, PermissionDenied, RecordInvalid
from metacrm.metadata.process import ApprovalFlow, ProcessAction
from metacrm.runtime import writes
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.hooks import Intent, Origin
from metacrm.runtime.process import stages
from metacrm.runtime.process.expressions import action_values, condition_holds
from metacrm.runtime.process.inbox import get
from metacrm.runtime.process.work import (
    OPEN,
    actor_tasks,
    assignees,
    event,
    lock_run,
    open_run,
    open_task,
    phase_tasks,
    step_outcome,
)
from metacrm.runtime.records import editable, fetch, new_id, utcnow
from metacrm.runtime.tenant_tables import approval_events, approval_tasks, approvals


def _flows_for(co: CompiledObject, name: str | None) -> list[ApprovalFlow]:
    flows = list(co.approval_flows)
    if name is not None:
        flows = [f for f in flows if f.api_name == name]
        if not flows:
            raise NotFound(f"{co.name} has no approval flow named {name[:64]!r}")
    if not flows:
        raise NotFound(f"{co.name} has no approval flow")
    return flows


async def submit(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    intent: Intent,
    *,
    flow_name: str | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """Start a run of a flow (the named one, or the first whose entry condition holds) as
    `intent.actor`. Submitting is acting on the record: it needs edit access (403 when only
    readable) unless the intent has system rights (an automation rule's submit action). The
    flow's actions run at the intent's automation depth: they are steps of its chain."""
    actor = intent.actor
    record, pending = await editable(conn, ct, co, record_id, actor, system=intent.system)
    if pending:
        raise Conflict("the record already has an approval in progress")
    chosen = None
    errors = []
    for flow in _flows_for(co, flow_name):
        if flow.entry_condition and not await condition_holds(
            conn, ct, co, flow.entry_condition, record
        ):
            errors.append(
                FieldError(
                    f"approval_flows/{flow.api_name}/entry_condition",
                    "entry-condition",
                    f"the record does not meet the entry condition of {flow.api_name!r}: "
                    f"{flow.entry_condition}",
                )
            )
            continue
        chosen = flow
        break
    if chosen is None:
        raise RecordInvalid("no approval flow accepts this record", errors)
    now = utcnow()
    approval_id = new_id()
    await conn.execute(
        approvals.insert().values(
            id=approval_id,
            object=co.name,
            record_id=record_id,
            flow=chosen.api_name,
            metadata_version=ct.version,
            definition=chosen.model_dump(mode="json", exclude_none=True),
            status=OPEN,
            phase=-1,
            submitted_by=actor.user_id,
            submitted_at=now,
            comment=comment,
        )
    )
    await event(conn, approval_id, actor.user_id, "submit", comment=comment, now=now)
    run = await lock_run(conn, approval_id)
    await _advance(conn, ct, co, run, chosen, record, actor, now, depth=intent.depth)
    await _run_actions(conn, ct, co, record_id, chosen.on_submit, actor, chosen, intent.depth)
    return await get(conn, approval_id)


async def _advance(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    run: dict[str, Any],
    flow: ApprovalFlow,
    record: dict[str, Any],
    actor: Actor,
    now: dt.datetime,
    *,
    depth: int = 0,
) -> None:
    """Open the next phase with work to do; approve the run when none is left (its actions
    at automation `depth`: a rule's submit approved at once stays in the rule's chain)."""
    phases = flow.phases()
    phase = run["phase"] + 1
    while phase < len(phases):
        opened = 0
        problems = []
        for index in phases[phase]:
            step = flow.steps[index]
            if step.condition and not await condition_holds(conn, ct, co, step.condition, record):
                await event(conn, run["id"], None, "skip", step=step.api_name, now=now)
                continue
            found = await assignees(conn, ct, co, flow, step, record, run["submitted_by"])
            if not found:
                problems.append(
                    FieldError(
                        f"steps/{step.api_name}/approvers",
                        "no-approver",
                        f"step {step.api_name!r} has no active approver"
                        + ("" if flow.allow_self_approval else " other than the submitter"),
                    )
                )
                continue
            for user_id in found:
                await open_task(conn, run, step, phase, user_id, flow, now)
            opened += 1
        if problems:
            raise RecordInvalid("the approval cannot proceed", problems)
        if opened:
            await conn.execute(
                approvals.update().where(approvals.c.id == run["id"]).values(phase=phase)
            )
            return
        phase += 1
    await conn.execute(
        approvals.update()
        .where(approvals.c.id == run["id"])
        .values(phase=len(phases), status="approved", decided_at=now)
    )
    await event(conn, run["id"], None, "approved", now=now)
    await _run_actions(conn, ct, co, run["record_id"], flow.on_approve, actor, flow, depth)


async def decide(
    conn: AsyncConnection,
    ct: CompiledTenant,
    approval_id: uuid.UUID,
    actor: Actor,
    decision: str,
    *,
    comment: str | None = None,
    step: str | None = None,
) -> dict[str, Any]:
    """Approve or reject the actor's pending work in the run's current phase."""
    run, flow = await open_run(conn, approval_id)
    if actor.user_id == run["submitted_by"] and not flow.allow_self_approval:
        raise PermissionDenied("you cannot approve or reject your own submission")
    now = utcnow()
    mine = await actor_tasks(conn, run, actor, step, now)
    t = approval_tasks
    if not mine:
        had = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(t)
            .where(
                t.c.approval_id == approval_id,
                t.c.phase == run["phase"],
                t.c.assignee_id == actor.user_id,
                t.c.status == "closed",
            )
        )
        if had:  # e.g. another approver decided the any-one step a moment earlier
            raise Conflict("your part of this approval was already decided")
        raise PermissionDenied("you have no pending approval work on this record")
    for task in mine:
        result = await conn.execute(
            t.update()
            .where(t.c.id == task["id"], t.c.status == OPEN)
            .values(status=decision, decided_at=now, decided_by=actor.user_id, comment=comment)
        )
        if result.rowcount != 1:
            raise Conflict("the approval changed while you were deciding; reload it")
        await event(
            conn,
            approval_id,
            actor.user_id,
            "approve" if decision == "approved" else "reject",
            step=task["step"],
            comment=comment,
            now=now,
            detail={"on_behalf_of": str(task["assignee_id"])}
            if task["assignee_id"] != actor.user_id
            else None,
        )
    await _settle(conn, ct, run, flow, actor, now)
    return await get(conn, approval_id)


async def _settle(
    conn: AsyncConnection,
    ct: CompiledTenant,
    run: dict[str, Any],
    flow: ApprovalFlow,
    actor: Actor,
    now: dt.datetime,
) -> None:
    """Decide the steps of the current phase that can be decided; move the run on."""
    t = approval_tasks
    tasks = await phase_tasks(conn, run["id"], run["phase"])
    co = ct.object(run["object"])
    e = approval_events
    announced: set[str] = set(
        (
            await conn.execute(
                sa.select(e.c.step).where(e.c.approval_id == run["id"], e.c.action.like("step_%"))
            )
        ).scalars()
    )
    outcomes: list[str | None] = []
    for index in flow.phases()[run["phase"]]:
        step = flow.steps[index]
        step_tasks = [x for x in tasks if x["step"] == step.api_name]
        if not step_tasks:  # skipped
            outcomes.append("approved")
            continue
        outcome = step_outcome(step, step_tasks)
        outcomes.append(outcome)
        if outcome is None:
            continue
        await conn.execute(
            t.update()
            .where(
                t.c.approval_id == run["id"],
                t.c.step == step.api_name,
                t.c.phase == run["phase"],
                t.c.status == OPEN,
            )
            .values(status="closed", decided_at=now)
        )
        if step.api_name not in announced:
            await event(conn, run["id"], None, f"step_{outcome}", step=step.api_name, now=now)
    if "rejected" in outcomes:
        await conn.execute(
            t.update()
            .where(t.c.approval_id == run["id"], t.c.status == OPEN)
            .values(status="closed", decided_at=now)
        )
        await conn.execute(
            approvals.update()
            .where(approvals.c.id == run["id"])
            .values(status="rejected", decided_at=now)
        )
        await event(conn, run["id"], None, "rejected", now=now)
        await _run_actions(conn, ct, co, run["record_id"], flow.on_reject, actor, flow)
        return
    if all(o == "approved" for o in outcomes):
        record = await fetch(conn, co, run["record_id"])
        await _advance(conn, ct, co, run, flow, record, actor, now)


async def recall(
    conn: AsyncConnection,
    ct: CompiledTenant,
    approval_id: uuid.UUID,
    actor: Actor,
    *,
    comment: str | None = None,
) -> dict[str, Any]:
    """Withdraw a pending run (by whom the flow's `recall_by` allows)."""
    run = await lock_run(conn, approval_id)
    flow = ApprovalFlow.model_validate(run["definition"])
    submitter = actor.user_id == run["submitted_by"]
    allowed = {
        "submitter": submitter,
        "submitter_or_admin": submitter or actor.is_admin,
        "admin": actor.is_admin,
    }[flow.recall_by]
    if not allowed:
        raise PermissionDenied(f"this flow may be recalled by: {flow.recall_by}")
    if run["status"] != OPEN:
        raise Conflict(f"the approval is already {run['status']}")
    now = utcnow()
    t = approval_tasks
    await conn.execute(
        t.update()
        .where(t.c.approval_id == approval_id, t.c.status == OPEN)
        .values(status="closed", decided_at=now)
    )
    result = await conn.execute(
        approvals.update()
        .where(approvals.c.id == approval_id, approvals.c.status == OPEN)
        .values(status="recalled", decided_at=now)
    )
    if result.rowcount != 1:
        raise Conflict("the approval changed while it was being recalled")
    await event(conn, approval_id, actor.user_id, "recall", comment=comment, now=now)
    co = ct.object(run["object"])
    await _run_actions(conn, ct, co, run["record_id"], flow.on_recall, actor, flow)
    return await get(conn, approval_id)


async def _run_actions(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    actions: list[ProcessAction],
    actor: Actor,
    flow: ApprovalFlow,
    depth: int = 0,
) -> None:
    """The flow's actions, as writes with system rights (an administrator defined them), at
    automation `depth` (how many automation steps led to them)."""
    intent = Intent(
        actor,
        origin=Origin.APPROVAL,
        reason=f"approval flow {flow.api_name}",
        system=True,
        depth=depth,
    )
    for action in actions:
        if action.stage is not None:
            await stages.move(conn, ct, co, record_id, intent, to=action.stage)
        else:
            record = await fetch(conn, co, record_id)
            values = await action_values(conn, ct, co, action, record)
            await writes.update(conn, ct, co, record_id, values, intent)
