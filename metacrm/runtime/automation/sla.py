"""SLA clocks on records: due times written by the write path, warning and breach jobs set.

A save of a record whose SLA's start condition holds (and whose clock has not run yet)
gets its due time in the SLA's `due_field` (a derived value, so the audit and field
history show it): the start plus the first matching target's working hours on the
business calendar. After the row is written, the save schedules two jobs, `sla.warn`
and `sla.breach`, keyed `sla:{name}:{record id}:warn|breach`: a later save that meets
the SLA cancels them, one that changes which target applies moves the due time and them.
The jobs themselves are in `sla_jobs`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError
from metacrm.metadata.sla import Sla, SlaTarget
from metacrm.runtime.automation.calendar import ALWAYS, Calendar, add_working_time
from metacrm.runtime.automation.history import record_run
from metacrm.runtime.compiler import CompiledTenant
from metacrm.runtime.hooks import Write
from metacrm.runtime.jobs import cancel, enqueue, jobs
from metacrm.runtime.process.expressions import condition_holds
from metacrm.runtime.records import utcnow

Stage = Literal["warn", "breach"]
STAGES: tuple[Stage, ...] = ("warn", "breach")


def active_slas(ct: CompiledTenant, object_name: str) -> list[Sla]:
    """The active SLAs of an object, in the order they were defined."""
    return [s for s in ct.model.slas if s.active and s.object == object_name]


def calendar_of(ct: CompiledTenant, sla: Sla) -> Calendar:
    """The SLA's business calendar (built once per metadata version); none: 24x7 UTC."""
    doc = next((c for c in ct.model.business_calendars if c.api_name == sla.calendar), None)
    if doc is None:
        return ALWAYS
    return ct.views.get_or_build(("business-calendar", doc.api_name), lambda: Calendar.of(doc))


def job_key(sla: Sla, record_id: Any, stage: Stage) -> str:
    return f"sla:{sla.api_name}:{record_id}:{stage}"


async def _holds(
    write: Write, expression: str | None, record: dict[str, Any], prior: dict[str, Any] | None
) -> bool:
    if expression is None:
        return True
    return await condition_holds(write.conn, write.ct, write.co, expression, record, prior)


async def _target(write: Write, sla: Sla, record: dict[str, Any]) -> SlaTarget | None:
    """The first target whose condition holds for `record`."""
    for target in sla.targets:
        if await _holds(write, target.condition, record, None):
            return target
    return None


def _start(write: Write, sla: Sla, calendar: Calendar) -> dt.datetime | None:
    """When the clock starts: the start field's moment (a date: its midnight on the
    calendar), or the save's; None when the start field is blank."""
    if sla.start_field is None:
        created = write.after.get("created_at") if write.kind == "create" else None
        return created if isinstance(created, dt.datetime) else utcnow()
    value = write.after.get(sla.start_field)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(), tzinfo=calendar.zone)
    return None


async def start_clocks(write: Write) -> list[FieldError]:
    """Automation check: give the record the due time of each SLA that starts or whose
    target changes with this save (a derived value, written with the row)."""
    if write.kind not in ("create", "update"):
        return []
    for sla in active_slas(write.ct, write.co.name):
        due = await _new_due(write, sla)
        if due is not None:
            write.derived[sla.due_field] = due
    return []


async def _new_due(write: Write, sla: Sla) -> dt.datetime | None:
    before, after = write.before, write.after
    if await _holds(write, sla.met_condition, after, before):
        return None
    calendar = calendar_of(write.ct, sla)
    old_due = before.get(sla.due_field) if before is not None else None
    if old_due is None:
        if not await _holds(write, sla.start_condition, after, before):
            return None
        start, target = _start(write, sla, calendar), await _target(write, sla, after)
        if start is None or target is None:
            return None
        return add_working_time(start, target.hours, calendar)
    assert before is not None
    old, new = await _target(write, sla, before), await _target(write, sla, after)
    if old is None or new is None or old is new:
        return None
    if not await _running(write.conn, job_key(sla, write.record_id, "breach")):
        return None  # met or breached already: the due time is history
    # The working time already given stays counted: move by the difference.
    return add_working_time(old_due, new.hours - old.hours, calendar)


async def _running(conn: AsyncConnection, key: str) -> bool:
    """Whether the clock of `key` still waits for its due time."""
    found = await conn.scalar(
        sa.select(jobs.c.id).where(jobs.c.key == key, jobs.c.status == "pending")
    )
    return found is not None


async def schedule_clocks(write: Write) -> None:
    """Automation step: schedule, move or cancel the warning and breach jobs of the
    record's SLAs as the saved row asks."""
    for sla in active_slas(write.ct, write.co.name):
        keys = [job_key(sla, write.record_id, s) for s in STAGES]
        if write.kind == "delete":
            for key in keys:
                await cancel(write.conn, key)
            continue
        due = write.after.get(sla.due_field)
        if write.kind == "restore" and due is not None:
            # Deleting cancelled the jobs; a restored record's clock runs on, unless met.
            if not await _holds(write, sla.met_condition, write.after, None):
                await _schedule(write, sla, due)
            continue
        if write.kind not in ("create", "update"):
            continue
        if write.changed(sla.due_field):
            if due is None:
                for key in keys:
                    await cancel(write.conn, key)
            else:
                await _schedule(write, sla, due)
            continue
        running = write.before is not None and write.before.get(sla.due_field) is not None
        if running and await _holds(write, sla.met_condition, write.after, write.before):
            cancelled = sum([await cancel(write.conn, key) for key in keys])
            if cancelled:
                await record_run(
                    write.conn,
                    source="sla",
                    name=sla.api_name,
                    trigger="met",
                    outcome="done",
                    object=write.co.name,
                    record_id=write.record_id,
                    depth=write.intent.depth,
                )


async def _schedule(write: Write, sla: Sla, due: dt.datetime) -> None:
    payload = {"sla": sla.api_name, "due": due.isoformat(), "depth": write.intent.depth + 1}
    common: dict[str, Any] = {"object": write.co.name, "record_id": write.record_id}
    if write.after.get(sla.breached_field or "") is True:
        return  # breached already: the due time is history
    key = job_key(sla, write.record_id, "breach")
    await enqueue(write.conn, "sla.breach", payload, run_at=due, key=key, **common)
    if sla.warn_before_minutes is not None and sla.on_warning:
        warn_at = add_working_time(due, -sla.warn_before_minutes / 60, calendar_of(write.ct, sla))
        key = job_key(sla, write.record_id, "warn")
        await enqueue(write.conn, "sla.warn", payload, run_at=warn_at, key=key, **common)
