"""Nightly tenant backups on the job queue, with retention (settings backup_cron/_dir/_keep).

Each tenant has at most one pending `backup.nightly` job (key `backup:nightly`) in its own
queue, so workers of every process share the work and exactly one of them takes each
night's backup (the queue's claim). The job is a queued job, but its handler is given by
the worker rather than registered in `metacrm.runtime.job_kinds`: a backup reads the whole
storage (SQLite's backup API on the tenant's file, a snapshot of the PostgreSQL schema),
which only the platform's `Database` reaches, not the job's tenant-level context.

A worker arms the job of a tenant the first time it looks at it (moving it when the cron
changed, cancelling it when backups are off). The job first arms the next night's run,
then writes the archive into `backup_dir` and deletes that tenant's archives beyond the
newest `backup_keep`; a failed backup is retried, and the next night's run stays armed.
Cron times are UTC.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from croniter import croniter
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.platform.backup import backup_tenant
from metacrm.platform.db import Database
from metacrm.platform.system_tables import tenants
from metacrm.runtime.jobs import Handler, Job, JobContext, PermanentFailure, cancel, enqueue, jobs

BACKUP_JOB = "backup.nightly"
BACKUP_KEY = "backup:nightly"
#: Tries of one night's backup before it is left dead (the next night's run is armed).
BACKUP_ATTEMPTS = 3


@dataclass(frozen=True)
class BackupSchedule:
    """When nightly backups run, where they go and how many are kept per tenant."""

    directory: Path
    #: A five-field cron in UTC; None: nightly backups are off.
    cron: str | None = None
    keep: int = 7

    def next_run(self, after: dt.datetime) -> dt.datetime:
        assert self.cron is not None
        found: dt.datetime = croniter(self.cron, after.astimezone(dt.UTC)).get_next(dt.datetime)
        return found.astimezone(dt.UTC)


async def arm_backup(conn: AsyncConnection, schedule: BackupSchedule, now: dt.datetime) -> None:
    """Give the tenant on `conn` its next nightly backup (kept when already armed for this
    cron, so a restart never skips a due one), or cancel it when backups are off."""
    if schedule.cron is None:
        await cancel(conn, BACKUP_KEY)
        return
    armed = await conn.scalar(
        sa.select(jobs.c.payload).where(jobs.c.key == BACKUP_KEY, jobs.c.status == "pending")
    )
    if armed is not None and armed.get("cron") == schedule.cron:
        return
    await _arm(conn, schedule, now)


async def _arm(conn: AsyncConnection, schedule: BackupSchedule, now: dt.datetime) -> None:
    await enqueue(
        conn,
        BACKUP_JOB,
        {"cron": schedule.cron},
        run_at=schedule.next_run(now),
        key=BACKUP_KEY,
        max_attempts=BACKUP_ATTEMPTS,
    )


def prune_backups(directory: Path, tenant: str, *, keep: int) -> list[Path]:
    """Delete `tenant`'s archives in `directory` beyond the newest `keep`; the deleted."""
    # Tenant names hold no '-': the prefix names one tenant only.
    pattern = re.compile(rf"^{re.escape(tenant)}-\d{{8}}T\d{{12}}Z\.zip$")
    found = sorted(p for p in directory.iterdir() if pattern.match(p.name))
    old = found[: max(0, len(found) - keep)]
    for path in old:
        path.unlink(missing_ok=True)
    return old


def backup_job(db: Database, schedule: BackupSchedule) -> Handler:
    """The handler of `backup.nightly` jobs for a worker on `db`."""

    async def run(job: Job, context: JobContext) -> dict[str, Any] | None:
        if schedule.cron is None:
            return {"skipped": "nightly backups are off"}
        async with context.transaction(finish=False) as (conn, _compiled):
            await _arm(conn, schedule, context.now)
        async with db.system() as conn:
            name = await conn.scalar(
                sa.select(tenants.c.name).where(tenants.c.storage == context.storage)
            )
        if name is None:
            raise PermanentFailure(f"no tenant keeps its data in {context.storage}")
        written = await backup_tenant(db, name, backup_dir=schedule.directory, now=context.now)
        pruned = prune_backups(schedule.directory, name, keep=schedule.keep)
        return {
            "archive": written.path.name,
            "rows": written.rows,
            "pruned": [p.name for p in pruned],
        }

    return run
