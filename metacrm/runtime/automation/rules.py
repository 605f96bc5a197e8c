"""Automation rules in the write path: the step that picks the rules a write triggers,
sets their timers, and arms schedules (the jobs that run them: `rule_jobs`).

- Record triggers: `on_write` (an automation step of the write path) evaluates each
  active rule of the object on the write, with the prior values for `ISCHANGED` and
  `PRIORVALUE`, and enqueues an `automation.rule` job in the write's transaction.
- Time triggers: the same step sets the record's timer (`automation.timer`, keyed per
  rule and record, so a later save moves it), or cancels it when the condition stops
  holding or the record is deleted.
- Schedules: `arm_schedules` runs when a metadata change is applied, in its
  transaction: each active schedule rule gets an `automation.schedule` job at its next
  cron time (a changed trigger moves it, a removed rule cancels it). Arming at apply time needs no polling and no per-round work in the
  worker, and cannot miss a change: every metadata change goes through apply_change.

Every job passes `depth` (how many automation steps led to it); a write made by a
rule's actions carries it, and a rule it would trigger beyond `MAX_AUTOMATION_DEPTH`
is not enqueued: the stop is kept in the run history instead.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import sqlalchemy as sa
from croniter import croniter
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.metadata.automation import AutomationRule
from metacrm.metadata.model import MetadataModel
from metacrm.runtime.automation.history import record_run
from metacrm.runtime.compiler import CompiledTenant
from metacrm.runtime.hooks import MAX_AUTOMATION_DEPTH, Write
from metacrm.runtime.jobs import cancel, enqueue, jobs
from metacrm.runtime.process.expressions import condition_holds
from metacrm.runtime.records import utcnow

RULE_JOB, TIMER_JOB, SCHEDULE_JOB = "automation.rule", "automation.timer", "automation.schedule"


def rules_of(ct: CompiledTenant, object_name: str) -> tuple[AutomationRule, ...]:
    """The active rules of an object, in the order they run (kept per metadata version)."""

    def build() -> tuple[AutomationRule, ...]:
        found = [r for r in ct.model.automation_rules if r.active and r.object == object_name]
        return tuple(sorted(found, key=lambda r: (r.order, r.api_name)))

    return ct.views.get_or_build(("automation-rules", object_name), build)


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
