"""The automation run history: every rule run, assignment and SLA step, with its outcome."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.metadata.store import tenant_metadata
from metacrm.runtime.records import new_id, utcnow
from metacrm.types import JsonValue, UTCDateTime

#: done: the actions ran; skipped: the condition did not hold when due; failed: an action
#: was refused (the job retries or dies); stopped: the cascade guard stopped the chain.
Outcome = Literal["done", "skipped", "failed", "stopped"]

automation_runs = sa.Table(
    "mc_automation_run",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    #: What ran: "rule", "assignment", "sla", "schedule".
    sa.Column("source", sa.String(16), nullable=False),
    #: The api_name of the rule, assignment rule or SLA.
    sa.Column("name", sa.String(63), nullable=False),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("object", sa.String(63), nullable=True),
    sa.Column("record_id", sa.Uuid(), nullable=True),
    sa.Column("job_id", sa.Uuid(), nullable=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("detail", JsonValue(), nullable=True),
    sa.Column("depth", sa.Integer(), nullable=False),
    sa.Column("duration_ms", sa.Integer(), nullable=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Index("ix_mc_automation_run_at", "at"),
    sa.Index("ix_mc_automation_run_record", "record_id"),
)


async def record_run(
    conn: AsyncConnection,
    *,
    source: str,
    name: str,
    trigger: str,
    outcome: Outcome,
    object: str | None = None,
    record_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
    depth: int = 0,
    duration_ms: int | None = None,
    at: dt.datetime | None = None,
) -> uuid.UUID:
    """Add one entry to the run history (in the caller's transaction)."""
    run_id = new_id()
    await conn.execute(
        automation_runs.insert().values(
            id=run_id,
            source=source,
            name=name,
            trigger=trigger,
            object=object,
            record_id=record_id,
            job_id=job_id,
            outcome=outcome,
            detail=detail,
            depth=depth,
            duration_ms=duration_ms,
            at=at or utcnow(),
        )
    )
    return run_id


async def run_rows(
    conn: AsyncConnection,
    *,
    name: str | None = None,
    record_id: uuid.UUID | None = None,
    outcome: str | None = None,
    before: dt.datetime | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Runs newest first, by rule name, record and outcome."""
    t = automation_runs
    query = sa.select(t).order_by(t.c.at.desc(), t.c.id.desc()).limit(limit)
    if name is not None:
        query = query.where(t.c.name == name)
    if record_id is not None:
        query = query.where(t.c.record_id == record_id)
    if outcome is not None:
        query = query.where(t.c.outcome == outcome)
    if before is not None:
        query = query.where(t.c.at < before)
    return [dict(row) for row in (await conn.execute(query)).mappings()]
