"""The jobs of SLA clocks: when a warning or a breach falls due, check again and act.

A job looks at the record again under a row lock (deleted, met meanwhile or its due time
moved: skipped), then sets `breached_field` through the write path and runs the SLA's
actions as the system, recording the run.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import DatabaseBusy, MetacrmError, NotFound, StaleVersion
from metacrm.metadata.sla import Sla
from metacrm.runtime import writes
from metacrm.runtime.actor import Actor
from metacrm.runtime.automation.actions import run_actions
from metacrm.runtime.automation.history import Outcome, record_run
from metacrm.runtime.automation.sla import Stage, active_slas
from metacrm.runtime.compiler import CompiledTenant
from metacrm.runtime.hooks import MAX_AUTOMATION_DEPTH, Intent, Origin
from metacrm.runtime.jobs import Job, JobContext, PermanentFailure
from metacrm.runtime.packs import SYSTEM_USER
from metacrm.runtime.process.expressions import condition_holds
from metacrm.runtime.records import fetch


async def sla_warn(job: Job, ctx: JobContext) -> dict[str, Any]:
    """The job of an SLA's warning: its actions, unless met or moved meanwhile."""
    return await _run(job, ctx, "warn")


async def sla_breach(job: Job, ctx: JobContext) -> dict[str, Any]:
    """The job of an SLA's due time: the breached flag and the escalation actions,
    unless met or moved meanwhile."""
    return await _run(job, ctx, "breach")


async def _run(job: Job, ctx: JobContext, stage: Stage) -> dict[str, Any]:
    began = time.perf_counter()
    name, depth = str(job.payload["sla"]), int(job.payload.get("depth", 1))
    try:
        async with ctx.transaction() as (conn, ct):
            sla = next((s for s in active_slas(ct, job.object or "") if s.api_name == name), None)
            outcome, detail = await _act(conn, ct, sla, job, stage, depth)
            took = int((time.perf_counter() - began) * 1000)
            await record_run(
                conn,
                source="sla",
                name=name,
                trigger=stage,
                outcome=outcome,
                object=job.object,
                record_id=job.record_id,
                job_id=job.id,
                detail=detail,
                depth=depth,
                duration_ms=took,
                at=ctx.now,
            )
            ctx.result = {"outcome": outcome} | detail
            return ctx.result
    except (StaleVersion, DatabaseBusy):
        raise  # a concurrent writer or a busy database: the job is tried again
    except MetacrmError as refused:
        # An escalation the write path refuses will not pass on a retry either.
        detail = {"error": str(refused), "errors": [e.as_dict() for e in refused.errors]}
        async with ctx.transaction(finish=False) as (conn, _ct):
            await record_run(
                conn,
                source="sla",
                name=name,
                trigger=stage,
                outcome="failed",
                object=job.object,
                record_id=job.record_id,
                job_id=job.id,
                detail=detail,
                depth=depth,
                at=ctx.now,
            )
        problems = "".join(f"; {e.field}: {e.message}" for e in refused.errors)
        raise PermanentFailure(f"SLA {name} {stage}: {refused}{problems}") from refused


async def _act(
    conn: AsyncConnection,
    ct: CompiledTenant,
    sla: Sla | None,
    job: Job,
    stage: Stage,
    depth: int,
) -> tuple[Outcome, dict[str, Any]]:
    """Check the record again and, if the SLA still runs late, act on it."""
    if sla is None or job.record_id is None:
        return "skipped", {"reason": "the SLA is no longer active"}
    if depth > MAX_AUTOMATION_DEPTH:
        return "stopped", {"reason": f"automation depth {depth} > {MAX_AUTOMATION_DEPTH}"}
    co = ct.object(sla.object)
    # Hold the row (PostgreSQL) so a save meeting the SLA now is seen or waits for us.
    t = co.table
    await conn.execute(sa.select(t.c.id).where(t.c.id == job.record_id).with_for_update())
    try:
        record = await fetch(conn, co, job.record_id)
    except NotFound:
        return "skipped", {"reason": "the record is deleted"}
    due = record.get(sla.due_field)
    if due is None or due != dt.datetime.fromisoformat(str(job.payload["due"])):
        return "skipped", {"reason": "the due time moved"}
    if await condition_holds(conn, ct, co, sla.met_condition, record, None):
        return "skipped", {"reason": "the SLA is met"}
    intent = Intent(
        Actor(user_id=SYSTEM_USER),
        origin=Origin.AUTOMATION,
        reason=f"SLA {sla.api_name} {'breached' if stage == 'breach' else 'warning'}",
        system=True,
        depth=depth,
    )
    if stage == "breach" and sla.breached_field is not None:
        await writes.update(conn, ct, co, job.record_id, {sla.breached_field: True}, intent)
    actions = sla.on_breach if stage == "breach" else sla.on_warning
    done = await run_actions(conn, ct, co, job.record_id, actions, intent)
    return "done", {"actions": done}
