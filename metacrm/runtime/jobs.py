"""The durable job queue: jobs written in the transaction of the change that causes them.

A job is a row of `mc_job` in the tenant's own storage, inserted by `enqueue` on the
connection of the write that causes it (an outbox): a rolled-back save leaves no job
and a committed one always has its job. Workers (`metacrm.platform.worker`) `claim` due
jobs under a lease: PostgreSQL hands each row to one worker (`FOR UPDATE SKIP LOCKED`),
SQLite has one writer at a time anyway. A claimed job whose worker died is claimed again
once its lease has run out, so no job is lost; `attempts` counts every claim.

A handler that changes data does it in `JobContext.transaction()`, which marks the job
done in that same transaction: if the lease was lost meanwhile (another worker took the
job over) the mark finds no row and the handler's changes roll back, so data changes
happen exactly once. A handler with an outside effect (an e-mail, a webhook) passes an
idempotency key to the outside (the job's id) and is retried on failure with backoff; a
job that keeps failing ends `dead` with its last error, to be retried by hand.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.metadata.store import tenant_metadata
from metacrm.runtime.compiler import CompiledTenant
from metacrm.runtime.events import outbox_of
from metacrm.runtime.records import new_id, utcnow
from metacrm.types import JsonValue, UTCDateTime

JobStatus = Literal["pending", "running", "done", "dead", "cancelled"]
STATUSES: tuple[JobStatus, ...] = ("pending", "running", "done", "dead", "cancelled")

jobs = sa.Table(
    "mc_job",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("payload", JsonValue(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("run_at", UTCDateTime(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("max_attempts", sa.Integer(), nullable=False),
    #: Names one pending job (a record's timer) so a later write can move or cancel it.
    sa.Column("key", sa.String(255), nullable=True, index=True),
    #: The record the job is about, when it is about one (run history, privacy scans).
    sa.Column("object", sa.String(63), nullable=True),
    sa.Column("record_id", sa.Uuid(), nullable=True),
    sa.Column("locked_by", sa.String(64), nullable=True),
    sa.Column("locked_until", UTCDateTime(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("result", JsonValue(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("duration_ms", sa.Integer(), nullable=True),
    # Due jobs are found by this index, however many timers wait for later.
    sa.Index("ix_mc_job_due", "status", "run_at"),
)

#: Attempts before a job is dead, unless its kind or the enqueuer says otherwise.
DEFAULT_MAX_ATTEMPTS = 8


def default_backoff(attempts: int) -> dt.timedelta:
    """The wait before the next try after `attempts` failed ones: 10 s, 40 s, 2.7 min,
    ... doubling twice a step, at most 6 hours."""
    return dt.timedelta(seconds=min(10 * 4 ** (attempts - 1), 6 * 3600))


@dataclass(frozen=True)
class Job:
    """One claimed job, as its handler sees it."""

    id: uuid.UUID
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    run_at: dt.datetime
    object: str | None = None
    record_id: uuid.UUID | None = None


class PermanentFailure(Exception):
    """A failure no retry can mend (the record is gone, the target refuses for good):
    the job goes straight to `dead` with this message."""


class LeaseLost(Exception):
    """Another worker took the job over while this one ran it: nothing is committed."""


class JobContext(Protocol):
    """What a handler gets besides its job: the clock, the tenant's transactions, the
    outbound settings (`metacrm.platform.worker` implements it)."""

    job: Job
    now: dt.datetime
    storage: str
    outbound: Outbound
    #: The tenant's default language: e-mails to its users are written in it.
    language: str
    #: What a finishing transaction records as the job's result (set it inside it).
    result: dict[str, Any] | None

    def transaction(
        self, *, finish: bool = True
    ) -> AbstractAsyncContextManager[tuple[AsyncConnection, CompiledTenant]]:
        """A write transaction in the job's tenant; with `finish`, it also marks the job
        done (raising LeaseLost, so rolling back, when the job is no longer this
        worker's). Writes made in it enqueue the jobs they cause, like any write."""
        ...


@dataclass(frozen=True)
class Outbound:
    """How jobs reach the outside: SMTP for e-mail, the rules for webhook targets."""

    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    mail_from: str = "metacrm@localhost"
    #: Whether webhooks may target loopback, link-local and private addresses.
    webhooks_allow_private: bool = False
    webhook_timeout_seconds: float = 10.0
    #: The public address of the web workspace, for links in e-mails and notifications.
    base_url: str = "http://127.0.0.1:8000"


Handler = Callable[[Job, JobContext], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True)
class JobKind:
    """How a kind of job is run: its handler, its tries and the waits between them."""

    handler: Handler
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    backoff: Callable[[int], dt.timedelta] = default_backoff


@dataclass
class Registry:
    """The kinds of job a worker can run, registered explicitly by name."""

    kinds: dict[str, JobKind] = field(default_factory=dict)

    def add(self, name: str, kind: JobKind) -> None:
        if name in self.kinds:
            raise ValueError(f"job kind {name!r} registered twice")
        self.kinds[name] = kind


async def enqueue(
    conn: AsyncConnection,
    kind: str,
    payload: dict[str, Any],
    *,
    run_at: dt.datetime | None = None,
    key: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    object: str | None = None,
    record_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Add a job in the transaction on `conn`; with a `key`, a pending job of that key
    is moved to the new time and payload instead (a record's timer set again)."""
    now = utcnow()
    if key is not None:
        moved = await conn.execute(
            jobs.update()
            .where(jobs.c.key == key, jobs.c.status == "pending")
            .values(payload=payload, run_at=run_at or now)
            .returning(jobs.c.id)
        )
        found: uuid.UUID | None = moved.scalar()
        if found is not None:
            return found
    job_id = new_id()
    outbox = outbox_of(conn)
    if outbox is not None:
        outbox.jobs += 1
    await conn.execute(
        jobs.insert().values(
            id=job_id,
            kind=kind,
            payload=payload,
            status="pending",
            run_at=run_at or now,
            attempts=0,
            max_attempts=max_attempts,
            key=key,
            object=object,
            record_id=record_id,
            created_at=now,
        )
    )
    return job_id


async def cancel(conn: AsyncConnection, key: str) -> int:
    """Cancel the pending job of `key` (a timer whose condition no longer holds)."""
    result = await conn.execute(
        jobs.update()
        .where(jobs.c.key == key, jobs.c.status == "pending")
        .values(status="cancelled", finished_at=utcnow(), key=None)
    )
    return int(result.rowcount)


async def claim(
    conn: AsyncConnection,
    worker: str,
    now: dt.datetime,
    *,
    limit: int,
    lease: dt.timedelta,
    skip_locked: bool,
) -> list[Job]:
    """Take up to `limit` due jobs for `worker`: pending ones whose time has come, and
    running ones whose worker's lease ran out (it died)."""
    due = sa.or_(
        sa.and_(jobs.c.status == "pending", jobs.c.run_at <= now),
        sa.and_(jobs.c.status == "running", jobs.c.locked_until < now),
    )
    chosen = sa.select(jobs.c.id).where(due).order_by(jobs.c.run_at).limit(limit)
    if skip_locked:
        chosen = chosen.with_for_update(skip_locked=True)
    result = await conn.execute(
        jobs.update()
        .where(jobs.c.id.in_(chosen.scalar_subquery()))
        .values(
            status="running",
            locked_by=worker,
            locked_until=now + lease,
            attempts=jobs.c.attempts + 1,
            started_at=now,
        )
        .returning(
            jobs.c.id,
            jobs.c.kind,
            jobs.c.payload,
            jobs.c.attempts,
            jobs.c.max_attempts,
            jobs.c.run_at,
            jobs.c.object,
            jobs.c.record_id,
        )
    )
    found = [Job(**row) for row in result.mappings()]
    return sorted(found, key=lambda job: job.run_at)


def _mine(job_id: uuid.UUID, worker: str) -> sa.ColumnElement[bool]:
    return sa.and_(jobs.c.id == job_id, jobs.c.status == "running", jobs.c.locked_by == worker)


async def finish(
    conn: AsyncConnection,
    job: Job,
    worker: str,
    now: dt.datetime,
    started: dt.datetime,
    result: dict[str, Any] | None,
) -> None:
    """Mark `job` done in the transaction on `conn`; LeaseLost when it is not this
    worker's any more (the transaction must then roll back)."""
    done = await conn.execute(
        jobs.update()
        .where(_mine(job.id, worker))
        .values(
            status="done",
            finished_at=now,
            duration_ms=_milliseconds(now - started),
            result=result,
            key=None,
            locked_until=None,
            last_error=None,
        )
    )
    if done.rowcount != 1:
        raise LeaseLost(f"job {job.id} is no longer held by {worker}")


async def fail(
    conn: AsyncConnection,
    job: Job,
    worker: str,
    now: dt.datetime,
    started: dt.datetime,
    error: str,
    *,
    retry_in: dt.timedelta | None,
) -> JobStatus:
    """Record a failed try: pending again after `retry_in`, or dead (None, or no tries
    left). Returns the job's new status."""
    status: JobStatus = "pending" if retry_in is not None else "dead"
    values: dict[str, Any] = {
        "status": status,
        "last_error": error[:4000],
        "locked_until": None,
        "duration_ms": _milliseconds(now - started),
    }
    if retry_in is not None:
        values["run_at"] = now + retry_in
    else:
        values |= {"finished_at": now, "key": None}
    await conn.execute(jobs.update().where(_mine(job.id, worker)).values(values))
    return status


async def retry(conn: AsyncConnection, job_id: uuid.UUID, now: dt.datetime) -> bool:
    """Put a dead or cancelled job back in the queue with fresh tries."""
    result = await conn.execute(
        jobs.update()
        .where(jobs.c.id == job_id, jobs.c.status.in_(("dead", "cancelled")))
        .values(status="pending", run_at=now, attempts=0, finished_at=None, last_error=None)
    )
    return bool(result.rowcount)


async def next_due(conn: AsyncConnection) -> dt.datetime | None:
    """When the earliest pending job falls due (how long a worker may sleep)."""
    found: dt.datetime | None = await conn.scalar(
        sa.select(sa.func.min(jobs.c.run_at)).where(jobs.c.status == "pending")
    )
    return found


async def job_rows(
    conn: AsyncConnection,
    *,
    statuses: Sequence[str] = (),
    kind: str | None = None,
    record_id: uuid.UUID | None = None,
    limit: int = 50,
    before: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Jobs newest first, for administrators: by status, kind and record."""
    query = sa.select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit)
    if statuses:
        query = query.where(jobs.c.status.in_(list(statuses)))
    if kind is not None:
        query = query.where(jobs.c.kind == kind)
    if record_id is not None:
        query = query.where(jobs.c.record_id == record_id)
    if before is not None:
        query = query.where(jobs.c.created_at < before)
    return [dict(row) for row in (await conn.execute(query)).mappings()]


def _milliseconds(delta: dt.timedelta) -> int:
    return max(0, int(delta.total_seconds() * 1000))
