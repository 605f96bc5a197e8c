"""The jobs of automation rules: a record trigger's actions, a timer fallen due, a schedule.

Each runs the rule's actions through the write path (`actions.run_actions`) in the job's
finishing transaction, so a rule's writes happen exactly once, and keeps a run in the
history: done, skipped (the condition or the record changed meanwhile), failed.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm import formula
from metacrm.errors import Conflict, MetacrmError, NotFound, PermissionDenied, RecordInvalid
from metacrm.metadata.automation import AutomationRule
from metacrm.runtime.actor import Actor
from metacrm.runtime.automation.actions import current, run_actions
from metacrm.runtime.automation.history import Outcome, record_run
from metacrm.runtime.automation.rules import SCHEDULE_JOB, due_time, next_run, schedule_key
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.hooks import Intent, Origin
from metacrm.runtime.jobs import Job, JobContext, LeaseLost, PermanentFailure, enqueue
from metacrm.runtime.process.approvers import find_user
from metacrm.runtime.process.expressions import condition_holds
from metacrm.runtime.tenant_tables import users

#: Refusals no retry mends: the job dies at once (its run is recorded as failed).
_PERMANENT = (RecordInvalid, Conflict, NotFound, PermissionDenied)


def _rule(ct: CompiledTenant, name: str) -> AutomationRule | None:
    return next((r for r in ct.model.automation_rules if r.api_name == name and r.active), None)


#: Decides, inside the run's transaction, whether the actions run: a reason to skip, or None.
Gate = Callable[
    [AsyncConnection, CompiledTenant, AutomationRule, CompiledObject, dict[str, Any]],
    Awaitable[str | None],
]


async def run_as(conn: AsyncConnection, rule: AutomationRule, fallback: uuid.UUID | None) -> Actor:
    """The actor a rule's actions act as: its `run_as` user, else `fallback` (the user
    whose write triggered it, or the record's owner). NotFound when `run_as` names no
    active user."""
    user_id = fallback
    if rule.run_as is not None:
        user_id = await find_user(conn, rule.run_as)
        if user_id is None:
            raise NotFound(f"run_as: no active user is {rule.run_as!r}")
    if user_id is None:
        raise NotFound("the rule has no user to act as")
    row = (
        await conn.execute(
            sa.select(users.c.is_admin, users.c.role, users.c.manager_id).where(
                users.c.id == user_id
            )
        )
    ).first()
    if row is None:  # a pack's seed, say: its system user has no row
        return Actor(user_id)
    return Actor(user_id, is_admin=row.is_admin, role=row.role, manager_id=row.manager_id)


@dataclass
class _Run:
    """One run of a rule on one record, as the run history keeps it."""

    job: Job
    rule: str
    object: str
    record_id: uuid.UUID
    trigger: str
    depth: int
    at: dt.datetime
    started: float = field(default_factory=time.perf_counter)

    async def record(
        self, conn: AsyncConnection, outcome: Outcome, detail: dict[str, Any] | None
    ) -> None:
        await record_run(
            conn,
            source="rule",
            name=self.rule,
            trigger=self.trigger,
            outcome=outcome,
            object=self.object,
            record_id=self.record_id,
            job_id=self.job.id,
            detail=detail,
            depth=self.depth,
            duration_ms=int((time.perf_counter() - self.started) * 1000),
            at=self.at,
        )

    async def skip(self, conn: AsyncConnection, ctx: JobContext, reason: str) -> dict[str, Any]:
        await self.record(conn, "skipped", {"reason": reason})
        ctx.result = {"outcome": "skipped", "reason": reason}
        return ctx.result


async def _act(
    conn: AsyncConnection,
    ct: CompiledTenant,
    rule: AutomationRule,
    co: CompiledObject,
    record: dict[str, Any],
    run: _Run,
    actor_id: uuid.UUID | None,
) -> dict[str, Any]:
    """Run the actions on `record` and record the run (in the caller's transaction)."""
    actor = await run_as(conn, rule, actor_id or record.get("owner_id"))
    intent = Intent(
        actor,
        origin=Origin.AUTOMATION,
        reason=f"automation rule {rule.api_name}",
        system=True,
        depth=run.depth,
    )
    done = await run_actions(conn, ct, co, record["id"], rule.actions, intent)
    await run.record(conn, "done", {"actions": done, "run_as": str(actor.user_id)})
    return {"outcome": "done", "actions": done}


def problem(error: Exception) -> dict[str, Any]:
    """An error as the run history keeps it."""
    if isinstance(error, MetacrmError):
        return {
            "problem": error.code,
            "detail": error.detail,
            "errors": [e.as_dict() for e in error.errors],
        }
    return {"problem": type(error).__name__, "detail": str(error)[:1000]}


async def _run_one(job: Job, ctx: JobContext, gate: Gate | None) -> dict[str, Any]:
    """A record's rule run (record and time triggers): the gate, the actions, the run
    history; a refused action records a failed run and fails the job (for good when no
    retry can mend it)."""
    payload = job.payload
    run = _Run(
        job,
        payload["rule"],
        payload["object"],
        uuid.UUID(payload["record_id"]),
        payload["trigger"],
        int(payload["depth"]),
        ctx.now,
    )
    actor_id = uuid.UUID(payload["actor"]) if payload.get("actor") else None
    try:
        async with ctx.transaction() as (conn, ct):
            rule = _rule(ct, run.rule)
            if rule is None or rule.object not in ct.objects:
                return await run.skip(conn, ctx, "the rule was removed or deactivated")
            co = ct.object(rule.object)
            try:
                record = await current(conn, co, run.record_id)
            except NotFound:
                return await run.skip(conn, ctx, "the record no longer exists")
            reason = None if gate is None else await gate(conn, ct, rule, co, record)
            if reason is not None:
                return await run.skip(conn, ctx, reason)
            ctx.result = await _act(conn, ct, rule, co, record, run, actor_id)
            return ctx.result
    except LeaseLost:
        raise
    except Exception as error:
        async with ctx.transaction(finish=False) as (conn, _ct):
            await run.record(conn, "failed", problem(error))
        if isinstance(error, _PERMANENT):
            raise PermanentFailure(f"{error.detail}: {problem(error)['errors']}") from error
        raise


async def run_rule(job: Job, ctx: JobContext) -> dict[str, Any]:
    """The `automation.rule` job: a record trigger's actions (its condition held when the
    write was made, with that write's prior values)."""
    return await _run_one(job, ctx, None)


async def run_timer(job: Job, ctx: JobContext) -> dict[str, Any]:
    """The `automation.timer` job: a time rule fallen due; the actions run if the record
    is live, its date has not moved and the condition still holds."""
    due = dt.datetime.fromisoformat(job.payload["due"])

    async def gate(
        conn: AsyncConnection,
        ct: CompiledTenant,
        rule: AutomationRule,
        co: CompiledObject,
        record: dict[str, Any],
    ) -> str | None:
        if record.get("deleted_at") is not None:
            return "the record is in the recycle bin"
        if rule.trigger.on != "time":
            return "the rule is no longer a time rule"
        if rule.trigger.date_field is not None and due_time(rule, record, due) != due:
            # A save that moved the date moved the timer too; this is an offset changed
            # in the rule since (timers set before the change keep their time, unrun).
            return f"the due time moved ({rule.trigger.date_field} or the rule's offset)"
        if rule.condition and not await condition_holds(
            conn, ct, co, rule.condition, record, prior=record
        ):
            return "the condition no longer holds"
        return None

    return await _run_one(job, ctx, gate)


def _schedule_filter(ct: CompiledTenant, co: CompiledObject, condition: str) -> Any:
    """A schedule's condition as SQL (the rule acts with system rights: no access filter)."""
    return ct.views.get_or_build(
        ("automation-schedule", co.name, condition),
        lambda: formula.compile_filter(condition, co.obj, ct.model, ct.table_for),
    )


async def run_schedule(job: Job, ctx: JobContext) -> dict[str, Any]:
    """The `automation.schedule` job: the actions on every record the condition selects
    (at most the trigger's `limit`), each in a savepoint so one refused record does not
    stop the others; then the next occurrence."""
    name = job.payload["rule"]
    async with ctx.transaction() as (conn, ct):
        rule = _rule(ct, name)
        if (
            rule is None
            or rule.trigger.on != "schedule"
            or rule.trigger.cron != job.payload.get("cron")
            or rule.trigger.timezone != job.payload.get("zone")
            or rule.object not in ct.objects
        ):
            # Removed or changed: applying that change cancelled or re-armed the schedule.
            ctx.result = {"outcome": "skipped", "reason": "the schedule changed"}
            return ctx.result
        co = ct.object(rule.object)
        t = co.table
        query = sa.select(t.c.id).where(t.c.deleted_at.is_(None))
        if rule.condition:
            query = query.where(_schedule_filter(ct, co, rule.condition))
        ids: list[uuid.UUID] = list(
            await conn.scalars(query.order_by(t.c.id).limit(rule.trigger.limit))
        )
        counts = {"done": 0, "failed": 0}
        for record_id in ids:
            run = _Run(job, rule.api_name, co.name, record_id, "schedule", 1, ctx.now)
            try:
                async with conn.begin_nested():
                    record = await current(conn, co, record_id)
                    await _act(conn, ct, rule, co, record, run, None)
                counts["done"] += 1
            except (MetacrmError, PermanentFailure) as error:
                await run.record(conn, "failed", problem(error))
                counts["failed"] += 1
        await enqueue(
            conn,
            SCHEDULE_JOB,
            dict(job.payload),
            run_at=next_run(rule, max(ctx.now, job.run_at)),
            key=schedule_key(rule.api_name),
        )
        ctx.result = {"outcome": "done", "records": len(ids), **counts}
        return ctx.result
