"""Approval flows at run time: submit, decide, recall, reassign, delegate, lock records.

A run (`mc_approval`) keeps the flow definition it started with, so changing the flow
never changes a run in progress. Each approver's work item is an `mc_approval_task`.
Every decision locks the run's row first (SELECT ... FOR UPDATE on PostgreSQL; SQLite
write transactions are serialised by BEGIN IMMEDIATE), then re-reads its state, so two
approvers acting at once on an any-one step, or a recall racing an approval, give one
outcome; task updates are also conditional (`WHERE status = 'pending'`).

This module is also a write hook: while a run of a locking flow is pending, the record
refuses edits except by administrators, by the flow itself, and by the current step's
approvers for the step's `editable_fields`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm import formula
from metacrm.errors import Conflict, FieldError, NotFound, PermissionDenied, RecordInvalid
from metacrm.metadata.process import ApprovalFlow, ApprovalStep, Approver, ProcessAction
from metacrm.runtime import records, stages
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.hooks import WriteContext
from metacrm.runtime.permissions import object_permission
from metacrm.runtime.records import new_id, utcnow
from metacrm.runtime.tenant_tables import (
    approval_events,
    approval_tasks,
    approvals,
    delegations,
    users,
)
from metacrm.runtime.validation import load_paths

OPEN = "pending"


def _iso(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _json(row: Any) -> dict[str, Any]:
    return {k: _iso(v) for k, v in dict(row).items()}


# ------------------------------------------------------------------ approvers


async def _manager_chain(conn: AsyncConnection, user_id: Any, levels: int) -> uuid.UUID | None:
    current = user_id
    for _ in range(levels):
        if current is None:
            return None
        current = await conn.scalar(sa.select(users.c.manager_id).where(users.c.id == current))
    return current


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
        found = [await stages.find_user(conn, approver.user or "")]
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
        found = [await stages.find_user(conn, str(value))] if value is not None else []
    elif approver.kind == "formula":
        checked = stages.checked(ct, co, approver.expression or "", "default")
        values = await load_paths(conn, ct, co, record, checked.paths)
        text = formula.evaluate(checked, values)
        refs = str(text or "").replace(";", ",").split(",")
        found = [await stages.find_user(conn, ref.strip()) for ref in refs if ref.strip()]
    active = []
    for user_id in found:
        if user_id is None or user_id in active:
            continue
        is_active = await conn.scalar(sa.select(users.c.is_active).where(users.c.id == user_id))
        if is_active:
            active.append(user_id)
    return active


async def _delegate_of(conn: AsyncConnection, user_id: uuid.UUID, now: dt.datetime) -> Any:
    d = delegations
    return await conn.scalar(
        sa.select(d.c.delegate_id)
        .where(d.c.user_id == user_id, d.c.starts_at <= now, d.c.ends_at > now)
        .order_by(d.c.created_at.desc())
        .limit(1)
    )


async def _delegators(conn: AsyncConnection, user_id: uuid.UUID, now: dt.datetime) -> list[Any]:
    d = delegations
    rows = await conn.execute(
        sa.select(d.c.user_id).where(
            d.c.delegate_id == user_id, d.c.starts_at <= now, d.c.ends_at > now
        )
    )
    return list(rows.scalars())


# ------------------------------------------------------------------ runs


async def _open_run(
    conn: AsyncConnection, approval_id: uuid.UUID
) -> tuple[dict[str, Any], ApprovalFlow]:
    """The run, locked, with the flow definition it started with; Conflict once decided."""
    run = await _lock_run(conn, approval_id)
    if run["status"] != OPEN:
        raise Conflict(f"the approval is already {run['status']}")
    return run, ApprovalFlow.model_validate(run["definition"])


async def _lock_run(conn: AsyncConnection, approval_id: uuid.UUID) -> dict[str, Any]:
    query = sa.select(approvals).where(approvals.c.id == approval_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound("no approval has this id")
    return dict(row)


async def _event(
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


async def pending_run(conn: AsyncConnection, object_name: str, record_id: Any) -> Any:
    a = approvals
    return (
        (
            await conn.execute(
                sa.select(a).where(
                    a.c.object == object_name, a.c.record_id == record_id, a.c.status == OPEN
                )
            )
        )
        .mappings()
        .first()
    )


def _flow_for(ct: CompiledTenant, co: CompiledObject, name: str | None) -> list[ApprovalFlow]:
    flows = [f for f in ct.model.approval_flows if f.object == co.name]
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
    actor: Any,
    *,
    flow_name: str | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """Start a run of a flow (the named one, or the first whose entry condition holds)."""
    permission = object_permission(ct.model, actor, co.name)
    if not (permission.read or permission.view_all):
        raise PermissionDenied(f"you may not read {co.name} records")
    record = await records.fetch(conn, co, record_id, lock=True)
    if await pending_run(conn, co.name, record_id) is not None:
        raise Conflict("the record already has an approval in progress")
    chosen = None
    errors = []
    for flow in _flow_for(ct, co, flow_name):
        if flow.entry_condition and not await stages.condition_holds(
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
    await _event(conn, approval_id, actor.user_id, "submit", comment=comment, now=now)
    run = await _lock_run(conn, approval_id)
    await _advance(conn, ct, co, run, chosen, record, actor, now)
    await _run_actions(conn, ct, co, record_id, chosen.on_submit, actor, chosen)
    return await get(conn, approval_id)


async def _advance(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    run: dict[str, Any],
    flow: ApprovalFlow,
    record: dict[str, Any],
    actor: Any,
    now: dt.datetime,
) -> None:
    """Open the next phase with work to do; approve the run when none is left."""
    phases = flow.phases()
    phase = run["phase"] + 1
    while phase < len(phases):
        opened = 0
        problems = []
        for index in phases[phase]:
            step = flow.steps[index]
            if step.condition and not await stages.condition_holds(
                conn, ct, co, step.condition, record
            ):
                await _event(conn, run["id"], None, "skip", step=step.api_name, now=now)
                continue
            assignees = await _assignees(conn, ct, co, flow, step, record, run["submitted_by"])
            if not assignees:
                problems.append(
                    FieldError(
                        f"steps/{step.api_name}/approvers",
                        "no-approver",
                        f"step {step.api_name!r} has no active approver"
                        + ("" if flow.allow_self_approval else " other than the submitter"),
                    )
                )
                continue
            for user_id in assignees:
                await _open_task(conn, run, step, phase, user_id, flow, now)
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
    await _event(conn, run["id"], None, "approved", now=now)
    await _run_actions(conn, ct, co, run["record_id"], flow.on_approve, actor, flow)


async def _assignees(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    flow: ApprovalFlow,
    step: ApprovalStep,
    record: dict[str, Any],
    submitter: uuid.UUID,
) -> list[uuid.UUID]:
    found: list[uuid.UUID] = []
    for approver in step.approvers:
        for user_id in await resolve(conn, ct, co, approver, record, submitter):
            if user_id not in found and (flow.allow_self_approval or user_id != submitter):
                found.append(user_id)
    return found


async def _open_task(
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
    on_behalf_of = None
    if delegate:
        delegate_id = await _delegate_of(conn, user_id, now)
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


async def _tasks(conn: AsyncConnection, approval_id: uuid.UUID, phase: int) -> list[dict[str, Any]]:
    t = approval_tasks
    rows = await conn.execute(
        sa.select(t).where(t.c.approval_id == approval_id, t.c.phase == phase).order_by(t.c.id)
    )
    return [dict(r) for r in rows.mappings()]


async def _actor_tasks(
    conn: AsyncConnection, run: dict[str, Any], actor: Any, step: str | None, now: dt.datetime
) -> list[dict[str, Any]]:
    mine = {actor.user_id, *await _delegators(conn, actor.user_id, now)}
    return [
        t
        for t in await _tasks(conn, run["id"], run["phase"])
        if t["status"] == OPEN and t["assignee_id"] in mine and (step is None or t["step"] == step)
    ]


def _step_outcome(step: ApprovalStep, tasks: list[dict[str, Any]]) -> str | None:
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


async def decide(
    conn: AsyncConnection,
    ct: CompiledTenant,
    approval_id: uuid.UUID,
    actor: Any,
    decision: str,
    *,
    comment: str | None = None,
    step: str | None = None,
) -> dict[str, Any]:
    """Approve or reject the actor's pending work in the run's current phase."""
    run, flow = await _open_run(conn, approval_id)
    if actor.user_id == run["submitted_by"] and not flow.allow_self_approval:
        raise PermissionDenied("you cannot approve or reject your own submission")
    now = utcnow()
    mine = await _actor_tasks(conn, run, actor, step, now)
    if not mine:
        t = approval_tasks
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
    t = approval_tasks
    for task in mine:
        result = await conn.execute(
            t.update()
            .where(t.c.id == task["id"], t.c.status == OPEN)
            .values(status=decision, decided_at=now, decided_by=actor.user_id, comment=comment)
        )
        if result.rowcount != 1:
            raise Conflict("the approval changed while you were deciding; reload it")
        await _event(
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
    actor: Any,
    now: dt.datetime,
) -> None:
    """Decide the steps of the current phase that can be decided; move the run on."""
    t = approval_tasks
    tasks = await _tasks(conn, run["id"], run["phase"])
    co = ct.object(run["object"])
    e = approval_events
    announced = set(
        (
            await conn.execute(
                sa.select(e.c.step).where(e.c.approval_id == run["id"], e.c.action.like("step_%"))
            )
        ).scalars()
    )
    outcomes = []
    for index in flow.phases()[run["phase"]]:
        step = flow.steps[index]
        step_tasks = [x for x in tasks if x["step"] == step.api_name]
        if not step_tasks:  # skipped
            outcomes.append("approved")
            continue
        outcome = _step_outcome(step, step_tasks)
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
            await _event(conn, run["id"], None, f"step_{outcome}", step=step.api_name, now=now)
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
        await _event(conn, run["id"], None, "rejected", now=now)
        await _run_actions(conn, ct, co, run["record_id"], flow.on_reject, actor, flow)
        return
    if all(o == "approved" for o in outcomes):
        record = await records.fetch(conn, co, run["record_id"])
        await _advance(conn, ct, co, run, flow, record, actor, now)


async def recall(
    conn: AsyncConnection,
    ct: CompiledTenant,
    approval_id: uuid.UUID,
    actor: Any,
    *,
    comment: str | None = None,
) -> dict[str, Any]:
    run = await _lock_run(conn, approval_id)
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
    await _event(conn, approval_id, actor.user_id, "recall", comment=comment, now=now)
    co = ct.object(run["object"])
    await _run_actions(conn, ct, co, run["record_id"], flow.on_recall, actor, flow)
    return await get(conn, approval_id)


async def _check_target(conn: AsyncConnection, run: dict[str, Any], flow: Any, user: str) -> Any:
    target = await stages.find_user(conn, user)
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
    ct: CompiledTenant,
    approval_id: uuid.UUID,
    actor: Any,
    *,
    to: str,
    task_id: uuid.UUID | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """Hand a pending task to another user: its assignee may, or an administrator."""
    run, flow = await _open_run(conn, approval_id)
    now = utcnow()
    if task_id is not None:
        tasks = [
            x
            for x in await _tasks(conn, approval_id, run["phase"])
            if x["id"] == task_id and x["status"] == OPEN
        ]
        if tasks and not actor.is_admin:
            mine = {actor.user_id, *await _delegators(conn, actor.user_id, now)}
            tasks = [x for x in tasks if x["assignee_id"] in mine]
    else:
        tasks = await _actor_tasks(conn, run, actor, None, now)
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
        await _open_task(conn, run, step, run["phase"], target, flow, now, delegate=False)
        await _event(
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
    ct: CompiledTenant,
    approval_id: uuid.UUID,
    actor: Any,
    *,
    user: str,
    step: str | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """Add a co-approver to a step of the current phase (by its approvers or an admin)."""
    run, flow = await _open_run(conn, approval_id)
    now = utcnow()
    mine = await _actor_tasks(conn, run, actor, step, now)
    open_steps = {x["step"] for x in await _tasks(conn, approval_id, run["phase"])}
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
        for x in await _tasks(conn, approval_id, run["phase"])
        if x["step"] == name and x["assignee_id"] == target and x["status"] == OPEN
    ]
    if not existing:
        definition = next(s for s in flow.steps if s.api_name == name)
        await _open_task(conn, run, definition, run["phase"], target, flow, now, delegate=False)
        await _event(
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


async def _run_actions(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    actions: list[ProcessAction],
    actor: Any,
    flow: ApprovalFlow,
) -> None:
    process_actor = stages.as_process_actor(
        actor, reason=f"approval flow {flow.api_name}", via="approval", system=True
    )
    for action in actions:
        if action.stage is not None:
            await stages.move(
                conn,
                ct,
                co,
                record_id,
                process_actor,
                to=action.stage,
                reason=process_actor.reason,
                via="approval",
            )
        else:
            record = await records.fetch(conn, co, record_id)
            values = await stages.action_values(conn, ct, co, action, record)
            await records.update(conn, ct, co, record_id, values, process_actor)


# ------------------------------------------------------------------ reading


async def get(conn: AsyncConnection, approval_id: uuid.UUID) -> dict[str, Any]:
    row = (
        (await conn.execute(sa.select(approvals).where(approvals.c.id == approval_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound("no approval has this id")
    out = _json(row)
    t, e = approval_tasks, approval_events
    out["tasks"] = [
        _json(r)
        for r in (
            await conn.execute(
                sa.select(t).where(t.c.approval_id == approval_id).order_by(t.c.created_at, t.c.id)
            )
        ).mappings()
    ]
    out["events"] = [
        _json(r)
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
    await records.fetch(conn, co, record_id)
    a = approvals
    ids = (
        await conn.execute(
            sa.select(a.c.id)
            .where(a.c.object == co.name, a.c.record_id == record_id)
            .order_by(a.c.submitted_at, a.c.id)
        )
    ).scalars()
    return [await get(conn, i) for i in list(ids)]


async def inbox(
    conn: AsyncConnection, user_id: uuid.UUID, *, status: str = OPEN
) -> list[dict[str, Any]]:
    """Tasks assigned to the user, or to those who delegate to them now."""
    now = utcnow()
    people = [user_id, *await _delegators(conn, user_id, now)]
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
        item = _json(row)
        item["overdue"] = row["due_at"] is not None and row["due_at"] < now and status == OPEN
        item["delegated"] = row["assignee_id"] != user_id
        out.append(item)
    return out


# ------------------------------------------------------------------ delegation


async def add_delegation(
    conn: AsyncConnection,
    actor: Any,
    *,
    delegate: str,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
    user: str | None = None,
) -> dict[str, Any]:
    owner = actor.user_id
    if user is not None:
        if not actor.is_admin:
            raise PermissionDenied("only administrators set delegations for other users")
        owner = await stages.find_user(conn, user)
    delegate_id = await stages.find_user(conn, delegate)
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
    return _json(row)


async def list_delegations(conn: AsyncConnection, actor: Any) -> list[dict[str, Any]]:
    d = delegations
    query = sa.select(d).order_by(d.c.starts_at)
    if not actor.is_admin:
        query = query.where(sa.or_(d.c.user_id == actor.user_id, d.c.delegate_id == actor.user_id))
    return [_json(r) for r in (await conn.execute(query)).mappings()]


async def remove_delegation(conn: AsyncConnection, actor: Any, delegation_id: uuid.UUID) -> None:
    d = delegations
    owner = await conn.scalar(sa.select(d.c.user_id).where(d.c.id == delegation_id))
    if owner is None:
        raise NotFound("no delegation has this id")
    if owner != actor.user_id and not actor.is_admin:
        raise PermissionDenied("only the delegating user or an administrator may remove it")
    await conn.execute(d.delete().where(d.c.id == delegation_id))


# ------------------------------------------------------------------ due times


async def process_due(
    conn: AsyncConnection, ct: CompiledTenant, *, now: dt.datetime | None = None
) -> dict[str, int]:
    """Record reminders that fell due and escalate overdue tasks to their step's target.

    Nothing calls this on a timer yet (there is no job queue): an operator or a
    scheduler calls `POST /api/v1/approvals/run-due`.
    """
    now = now or utcnow()
    t, a = approval_tasks, approvals
    reminded = escalated = 0
    rows = await conn.execute(
        sa.select(t.c.id, t.c.approval_id, t.c.step)
        .join(a, a.c.id == t.c.approval_id)
        .where(t.c.status == OPEN, a.c.status == OPEN, t.c.remind_at <= now)
    )
    for task_id, approval_id, step in list(rows):
        await conn.execute(t.update().where(t.c.id == task_id).values(remind_at=None))
        await _event(conn, approval_id, None, "reminder", step=step, now=now)
        reminded += 1
    rows = await conn.execute(
        sa.select(t.c.id, t.c.approval_id)
        .join(a, a.c.id == t.c.approval_id)
        .where(
            t.c.status == OPEN, a.c.status == OPEN, t.c.due_at <= now, t.c.escalated_at.is_(None)
        )
    )
    for task_id, approval_id in list(rows):
        run = await _lock_run(conn, approval_id)
        task = (await conn.execute(sa.select(t).where(t.c.id == task_id))).mappings().one()
        if run["status"] != OPEN or task["status"] != OPEN:
            continue
        flow = ApprovalFlow.model_validate(run["definition"])
        step = next(s for s in flow.steps if s.api_name == task["step"])
        await conn.execute(t.update().where(t.c.id == task_id).values(escalated_at=now))
        target = None
        if step.escalate_to is not None:
            co = ct.object(run["object"])
            record = await records.fetch(conn, co, run["record_id"])
            found = await resolve(conn, ct, co, step.escalate_to, record, run["submitted_by"])
            target = next((u for u in found if u != run["submitted_by"]), None)
        if target is not None and target != task["assignee_id"]:
            await conn.execute(
                t.update()
                .where(t.c.id == task_id, t.c.status == OPEN)
                .values(status="reassigned", decided_at=now)
            )
            await _open_task(conn, run, step, run["phase"], target, flow, now, delegate=False)
        await _event(
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


# ------------------------------------------------------------------ the write hook


async def check(ctx: WriteContext) -> list[FieldError]:
    """Refuse edits of a record locked by a pending approval."""
    if ctx.kind not in ("update", "delete") or ctx.before is None:
        return []
    if ctx.actor.is_admin or getattr(ctx.actor, "via", None) == "approval":
        return []
    run = await pending_run(ctx.conn, ctx.co.name, ctx.before["id"])
    if run is None:
        return []
    flow = ApprovalFlow.model_validate(run["definition"])
    if not flow.lock_record:
        return []
    message = f"the record is locked while the {flow.api_name!r} approval is pending"
    if ctx.kind == "delete":
        return [FieldError("record", "record-locked", message)]
    mine = await _actor_tasks(ctx.conn, dict(run), ctx.actor, None, utcnow())
    editable = {
        name
        for task in mine
        for step in flow.steps
        if step.api_name == task["step"]
        for name in step.editable_fields
    }
    changed = [n for n, v in ctx.changes.items() if ctx.before.get(n) != v]
    return [
        FieldError(ctx.prefix + name, "record-locked", message)
        for name in changed
        if name not in editable
    ]


async def after(ctx: WriteContext) -> None:
    return None
