"""Job workers: take due jobs from every tenant's queue and run their handlers.

One `Worker` runs inside each server process by default (`jobs_in_process`), and
`metacrm worker` runs them apart from the web processes. Workers of several processes
share the queues safely: a job is claimed by one of them at a time (see
`metacrm.runtime.jobs`). Tests drive a worker by hand with a clock of their own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.metadata.store import current_version
from metacrm.platform.backup_schedule import (
    BACKUP_ATTEMPTS,
    BACKUP_JOB,
    BackupSchedule,
    arm_backup,
    backup_job,
)
from metacrm.platform.db import Database
from metacrm.platform.system_tables import tenants
from metacrm.runtime.cache import TenantCache
from metacrm.runtime.compiler import CompiledTenant
from metacrm.runtime.events import Subscribers, collecting
from metacrm.runtime.job_kinds import REGISTRY
from metacrm.runtime.jobs import (
    Job,
    JobKind,
    LeaseLost,
    Outbound,
    PermanentFailure,
    Registry,
    claim,
    fail,
    finish,
    jobs,
)
from metacrm.runtime.records import utcnow
from metacrm.runtime.tenant_tables import create_tenant_tables

_log = logging.getLogger(__name__)
Clock = Callable[[], dt.datetime]
#: The longest a worker leaves a tenant whose queue looked idle before it looks again.
#: A tenant with work is looked at every poll; jobs this process enqueues wake the worker
#: for their tenant at once, and a known due time is looked at when it comes. Only jobs
#: another process enqueues for an idle tenant wait up to this long.
IDLE_LOOK_SECONDS = 10.0


class Worker:
    """Runs the due jobs of every active tenant, one job at a time per loop."""

    def __init__(
        self,
        db: Database,
        cache: TenantCache,
        outbound: Outbound,
        *,
        registry: Registry = REGISTRY,
        events: Subscribers | None = None,
        clock: Clock = utcnow,
        lease: dt.timedelta = dt.timedelta(minutes=5),
        poll_seconds: float = 1.0,
        batch: int = 10,
        name: str | None = None,
        backups: BackupSchedule | None = None,
    ) -> None:
        self.db, self.cache, self.outbound = db, cache, outbound
        #: Nightly backups (off unless given a cron): their jobs need this worker's db.
        self.backups = backups or BackupSchedule(db.data_dir / "backups")
        self.registry = Registry({**registry.kinds})
        self.registry.add(
            BACKUP_JOB, JobKind(backup_job(db, self.backups), max_attempts=BACKUP_ATTEMPTS)
        )
        self.events = events or Subscribers()
        self.clock, self.lease, self.poll_seconds, self.batch = clock, lease, poll_seconds, batch
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._ready: set[str] = set()
        #: Storage -> the tenant's default language (it never changes).
        self._languages: dict[str, str] = {}
        self._wake = asyncio.Event()
        #: Per storage: when the background loop looks at it next (monotonic seconds),
        #: how long it waited last, and the storages woken since.
        self._next_look: dict[str, float] = {}
        self._idle: dict[str, float] = {}
        self._woken: set[str] = set()
        #: Per storage: the earliest time a job falls due, as the last idle look saw it.
        self._next_due: dict[str, dt.datetime | None] = {}

    def wake(self, storage: str | None = None) -> None:
        """Look for due jobs now (a transaction of this process enqueued one)."""
        if storage is not None:
            self._woken.add(storage)
        self._wake.set()

    async def storages(self) -> list[str]:
        """The storages of the active tenants."""
        async with self.db.system() as conn:
            found: sa.ScalarResult[str] = await conn.scalars(
                sa.select(tenants.c.storage)
                .where(tenants.c.status == "active")
                .order_by(tenants.c.storage)
            )
            return list(found)

    async def run_once(self, *, now: dt.datetime | None = None) -> int:
        """Run every job due at `now` (default: the clock) in every tenant; how many ran."""
        done = 0
        for storage in await self.storages():
            done += await self.drain(storage, now=now)
        return done

    async def drain(
        self, storage: str, *, now: dt.datetime | None = None, rounds: int = 1000
    ) -> int:
        """Run the jobs due at `now` in one tenant, and those they cause, until none is
        due (at most `rounds` claims); how many ran."""
        done = 0
        for _ in range(rounds):
            claimed = await self._claim(storage, now or self.clock())
            if not claimed:
                break
            for job in claimed:
                await self.run_job(storage, job, now or self.clock())
                done += 1
        return done

    async def _round(self) -> int:
        """One pass of the background loop: the tenants it is time to look at."""
        done = 0
        for storage in await self.storages():
            if storage not in self._woken and time.monotonic() < self._next_look.get(storage, 0):
                continue
            self._woken.discard(storage)
            ran = await self.drain(storage)
            done += ran
            if ran:
                self._idle[storage] = self.poll_seconds
                self._next_look[storage] = 0.0
                continue
            # Idle: look again less and less often, but when its next job falls due.
            idle = min(2 * self._idle.get(storage, self.poll_seconds / 2), IDLE_LOOK_SECONDS)
            self._idle[storage] = max(idle, self.poll_seconds)
            due = self._next_due.get(storage)
            wait = self._idle[storage]
            if due is not None:
                wait = min(wait, max(0.0, (due - self.clock()).total_seconds()))
            self._next_look[storage] = time.monotonic() + wait
        return done

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Poll the tenants until `stop` is set; sleep while nothing is due."""
        while not stop.is_set():
            try:
                ran = await self._round()
            except Exception:  # a tenant's storage went away, the database restarted...
                _log.exception("the job worker's round failed; trying again")
                ran = 0
            if ran:
                continue
            self._wake.clear()
            waits = (asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait()))
            await asyncio.wait(waits, timeout=self.poll_seconds, return_when="FIRST_COMPLETED")
            for waiting in waits:
                waiting.cancel()

    async def _claim(self, storage: str, now: dt.datetime) -> list[Job]:
        if storage not in self._ready:
            async with self.db.tenant(storage) as conn:
                await create_tenant_tables(conn)
                await arm_backup(conn, self.backups, now)
            async with self.db.system() as conn:
                language = await conn.scalar(
                    sa.select(tenants.c.default_language).where(tenants.c.storage == storage)
                )
            self._languages[storage] = language or "en"
            self._ready.add(storage)
        # A read first: an idle queue costs no write transaction (SQLite's one writer).
        async with self.db.tenant(storage, writes=False) as conn:
            row = (await conn.execute(_NEXT)).one()
        times = [t for t in (row.run_at, row.locked_until) if t is not None]
        self._next_due[storage] = min(times) if times else None
        if not times or min(times) > now:
            return []
        async with self.db.tenant(storage) as conn:
            return await claim(
                conn,
                self.name,
                now,
                limit=self.batch,
                lease=self.lease,
                skip_locked=not self.db.is_sqlite,
            )

    async def run_job(self, storage: str, job: Job, now: dt.datetime) -> str:
        """Run one claimed job and record how it ended: done, pending again, or dead."""
        started = time.perf_counter()
        context = _Context(self, storage, job, now)
        kind = self.registry.kinds.get(job.kind)
        try:
            if kind is None:
                raise PermanentFailure(f"no handler for jobs of kind {job.kind!r}")
            result = await kind.handler(job, context)
            if not context.finished:
                async with self.db.tenant(storage) as conn:
                    await finish(conn, job, self.name, _after(now, started), now, result)
            return "done"
        except LeaseLost:
            _log.warning("job %s was taken over by another worker", job.id)
            return "lost"
        except Exception as error:
            permanent = isinstance(error, PermanentFailure)
            retry_in = None
            if not permanent and kind is not None and job.attempts < job.max_attempts:
                retry_in = kind.backoff(job.attempts)
            message = str(error) if permanent else _describe(error)
            async with self.db.tenant(storage) as conn:
                return await fail(
                    conn, job, self.name, _after(now, started), now, message, retry_in=retry_in
                )


#: When the earliest job of a tenant falls due: pending ones at their time, running ones
#: when their lease runs out (both found through the (status, run_at) index and a scan of
#: the few running ones).
_NEXT = sa.select(
    sa.select(sa.func.min(jobs.c.run_at))
    .where(jobs.c.status == "pending")
    .scalar_subquery()
    .label("run_at"),
    sa.select(sa.func.min(jobs.c.locked_until))
    .where(jobs.c.status == "running")
    .scalar_subquery()
    .label("locked_until"),
)


def _after(now: dt.datetime, started: float) -> dt.datetime:
    """`now` moved on by the time spent since `started` (durations under a test clock)."""
    return now + dt.timedelta(seconds=time.perf_counter() - started)


def _describe(error: BaseException) -> str:
    """An error as the run history shows it: its type, message and where it came from."""
    lines = traceback.format_exception(error)
    return "".join(lines[-6:])


class _Context:
    """What a handler gets besides its job (`metacrm.runtime.jobs.JobContext`)."""

    def __init__(self, worker: Worker, storage: str, job: Job, now: dt.datetime) -> None:
        self.worker, self.storage, self.job, self.now = worker, storage, job, now
        self.outbound = worker.outbound
        self.language = worker._languages.get(storage, "en")
        self.result: dict[str, Any] | None = None
        self.finished = False

    @asynccontextmanager
    async def transaction(
        self, *, finish: bool = True
    ) -> AsyncIterator[tuple[AsyncConnection, CompiledTenant]]:
        worker = self.worker
        started = time.perf_counter()
        async with worker.db.tenant(self.storage) as conn, collecting(conn) as outbox:
            ct = await worker.cache.compiled(conn, self.storage, await current_version(conn))
            yield conn, ct
            if finish:
                await _finish(conn, self, started)
        if finish:
            self.finished = True
        await worker.events.publish(outbox.events)


async def _finish(conn: AsyncConnection, context: _Context, started: float) -> None:
    worker = context.worker
    await finish(
        conn,
        context.job,
        worker.name,
        _after(context.now, started),
        context.now,
        context.result,
    )
