"""Automation rules at run time: the write step that picks the rules a write triggers,
their timers and schedules, and the jobs that run their actions.

- Record triggers: `on_write` (an automation step of the write path) evaluates each
  active rule of the object on the write, with the prior values for `ISCHANGED` and
  `PRIORVALUE`, and enqueues an `automation.rule` job in the write's transaction.
- Time triggers: the same step sets the record's timer (`automation.timer`, keyed per
  rule and record, so a later save moves it), or cancels it when the condition stops
  holding or the record is deleted. When due, the job reads the record again and runs
  the actions only if the condition still holds and the date has not moved.
- Schedules: `arm_schedules` runs when a metadata change is applied, in its
  transaction: each active schedule rule gets an `automation.schedule` job at its next
  cron time (a changed trigger moves it, a removed rule cancels it). The job runs the
  actions on every record the condition (compiled to SQL) selects, then enqueues the
  next occurrence. Arming at apply time needs no polling and no per-round work in the
  worker, and cannot miss a change: every metadata change goes through apply_change.

Every job passes `depth` (how many automation steps led to it); a write made by a
rule's actions carries it, and a rule it would trigger beyond `MAX_AUTOMATION_DEPTH`
is not enqueued: the stop is kept in the run history instead.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from croniter import croniter
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm import formula
from metacrm.errors import Conflict, MetacrmError, NotFound, PermissionDenied, RecordInvalid
from metacrm.metadata.automation import AutomationRule
from metacrm.metadata.model import MetadataModel
from metacrm.runtime.actor import Actor
from metacrm.runtime.automation.actions import current, run_actions
from metacrm.runtime.automation.history import Outcome, record_run
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.hooks import MAX_AUTOMATION_DEPTH, Intent, Origin, Write
from metacrm.runtime.jobs import (
    Job,
    JobContext,
    LeaseLost,
    PermanentFailure,
    cancel,
    enqueue,
    jobs,
)
from metacrm.runtime.process.approvers import find_user
from metacrm.runtime.process.expressions import condition_holds
from metacrm.runtime.records import utcnow
from metacrm.runtime.tenant_tables import users

RULE_JOB, TIMER_JOB, SCHEDULE_JOB = "automation.rule", "automation.timer", "automation.schedule"
#: Refusals no retry mends: the job dies at once (its run is recorded as failed).
_PERMANENT = (RecordInvalid, Conflict, NotFound, PermissionDenied)


def rules_of(ct: CompiledTenant, object_name: str) -> tuple[AutomationRule, ...]:
    """The active rules of an object, in the order they run (kept per metadata version)."""

    def build() -> tuple[AutomationRule, ...]:
        found = [r for r in ct.model.automation_rules if r.active and r.object == object_name]
        return tuple(sorted(found, key=lambda r: (r.order, r.api_name)))

    return ct.views.get_or_build(("automation-rules", object_name), build)


def _rule(ct: CompiledTenant, name: str) -> AutomationRule | None:
    return next((r for r in ct.model.automation_rules if r.api_name == name and r.active), None)


def timer_key(rule: str, record_id: Any) -> str:
    return f"rule:{rule}:{record_id}"


def schedule_key(rule: str) -> str:
    return f"schedule:{rule}"


# --- the write step -------------------------------------------------------------------


def _fires(rule: AutomationRule, write: Write) -> bool:
    """Whether a record trigger matches the write (the condition is checked apart)."""
    on, kind = rule.trigger.on, write.kind
    if on == "created":
        return kind == "create"
    if on == "updated":
        return kind in ("update", "transfer")
    if on == "saved":
        return kind in ("create", "update", "transfer")
    if on == "deleted":
        return kind == "delete"
    if on == "restored":
        return kind == "restore"
    if on == "transferred":
        return kind == "transfer"
    if on == "field_changed":
        return kind != "delete" and any(write.changed(f) for f in rule.trigger.fields)
    if on == "stage_entered":
        return kind in ("create", "update") and any(
            write.changed(sr.field) and write.after.get(sr.field) == rule.trigger.stage
            for sr in write.co.stage_rules
        )
    return False


async def on_write(write: Write) -> None:
    """The automation step: enqueue the rules this write triggers and set their timers."""
    rules = rules_of(write.ct, write.co.name)
    if not rules:
        return
    depth = write.intent.depth + 1
    record = write.before if write.kind == "delete" and write.before else write.after
    prior = None if write.kind == "create" else write.before
    for rule in rules:
        on = rule.trigger.on
        if on == "schedule":
            continue
        if on == "time":
            await _set_timer(write, rule, record, prior, depth)
            continue
        if not _fires(rule, write):
            continue
        if rule.condition and not await condition_holds(
            write.conn, write.ct, write.co, rule.condition, record, prior
        ):
            continue
        if depth > MAX_AUTOMATION_DEPTH:
            await _stopped(write, rule, depth)
            continue
        await enqueue(
            write.conn,
            RULE_JOB,
            _payload(write, rule, depth),
            object=write.co.name,
            record_id=write.record_id,
        )


def _payload(write: Write, rule: AutomationRule, depth: int) -> dict[str, Any]:
    return {
        "rule": rule.api_name,
        "object": write.co.name,
        "record_id": str(write.record_id),
        "trigger": rule.trigger.on,
        "depth": depth,
        "actor": str(write.actor.user_id),
    }


async def _stopped(write: Write, rule: AutomationRule, depth: int) -> None:
    await record_run(
        write.conn,
        source="rule",
        name=rule.api_name,
        trigger=rule.trigger.on,
        outcome="stopped",
        object=write.co.name,
        record_id=write.record_id,
        depth=depth,
        detail={
            "reason": f"the cascade guard stopped it: {depth - 1} automation steps led to "
            f"this {write.kind}, at most {MAX_AUTOMATION_DEPTH} may follow each other",
            "origin": str(write.intent.origin),
            "by": write.intent.reason,
        },
    )


def due_time(
    rule: AutomationRule, record: dict[str, Any], saved_at: dt.datetime
) -> dt.datetime | None:
    """When a time rule's timer falls due for `record`; None when its date is empty.
    A date (no time of day) counts from midnight UTC."""
    trigger = rule.trigger
    if trigger.date_field is None:
        base = saved_at
    else:
        value = record.get(trigger.date_field)
        if isinstance(value, dt.datetime):
            base = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        elif isinstance(value, dt.date):
            base = dt.datetime.combine(value, dt.time(), dt.UTC)
        else:
            return None
    return base + dt.timedelta(minutes=trigger.offset_minutes)


async def _pending(conn: AsyncConnection, key: str) -> bool:
    found = await conn.scalar(
        sa.select(jobs.c.id).where(jobs.c.key == key, jobs.c.status.in_(("pending", "running")))
    )
    return found is not None


async def _set_timer(
    write: Write,
    rule: AutomationRule,
    record: dict[str, Any],
    prior: dict[str, Any] | None,
    depth: int,
) -> None:
    """Set, move or cancel the record's timer of a time rule.

    A timer is set when the record is created or restored with the condition true, or
    saved so that the condition becomes true; moved when its date field changes;
    cancelled when the condition stops holding, the date is cleared or the record is
    deleted. Other saves leave it alone (so a timer that fired, whose actions save the
    record, is not set again)."""
    conn, key = write.conn, timer_key(rule.api_name, write.record_id)
    if write.kind == "delete":
        await cancel(conn, key)
        return
    holds = not rule.condition or await condition_holds(
        conn, write.ct, write.co, rule.condition, record, prior
    )
    due = due_time(rule, record, utcnow()) if holds else None
    if due is None:
        await cancel(conn, key)
        return
    field = rule.trigger.date_field
    if write.kind not in ("create", "restore") and not (field and write.changed(field)):
        before = write.before or {}
        if not rule.condition or await condition_holds(
            conn, write.ct, write.co, rule.condition, before, before
        ):
            return  # held already: the timer stands (or has fired)
    if depth > MAX_AUTOMATION_DEPTH:
        await _stopped(write, rule, depth)
        return
    # No actor: when due, the rule acts as its run_as user or the record's owner then.
    payload = _payload(write, rule, depth) | {"due": due.isoformat(), "actor": None}
    await enqueue(
        conn,
        TIMER_JOB,
        payload,
        run_at=due,
        key=key,
        object=write.co.name,
        record_id=write.record_id,
    )


# --- running a rule -------------------------------------------------------------------

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


# --- schedules ------------------------------------------------------------------------


def next_run(rule: AutomationRule, after: dt.datetime) -> dt.datetime:
    """The first time after `after` that a schedule rule's cron names, read in its zone."""
    assert rule.trigger.cron is not None
    zone = zoneinfo.ZoneInfo(rule.trigger.timezone or "UTC")
    found: dt.datetime = croniter(rule.trigger.cron, after.astimezone(zone)).get_next(dt.datetime)
    return found.astimezone(dt.UTC)


def _scheduled(rule: AutomationRule) -> bool:
    return rule.active and rule.trigger.on == "schedule"


async def arm_schedules(conn: AsyncConnection, old: MetadataModel, new: MetadataModel) -> None:
    """Give each active schedule rule of `new` its next run, moved when its trigger
    changed; cancel the runs of schedule rules `new` no longer has (in the transaction
    that applies the change)."""
    before = {r.api_name: r for r in old.automation_rules}
    now = utcnow()
    for rule in new.automation_rules:
        if not _scheduled(rule):
            continue
        key = schedule_key(rule.api_name)
        prior = before.get(rule.api_name)
        unchanged = prior is not None and _scheduled(prior) and prior.trigger == rule.trigger
        if unchanged and await _pending(conn, key):
            continue
        payload = {"rule": rule.api_name, "cron": rule.trigger.cron, "zone": rule.trigger.timezone}
        await enqueue(conn, SCHEDULE_JOB, payload, run_at=next_run(rule, now), key=key)
    kept = {r.api_name for r in new.automation_rules if _scheduled(r)}
    for name, prior in before.items():
        if _scheduled(prior) and name not in kept:
            await cancel(conn, schedule_key(name))


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
