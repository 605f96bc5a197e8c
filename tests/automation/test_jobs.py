"""The job queue on both databases: the outbox, retries, dead letters, leases and claims."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa

from metacrm.platform.db import Database
from metacrm.platform.worker import Worker
from metacrm.runtime import jobs
from metacrm.runtime.jobs import Job, JobContext, JobKind, PermanentFailure, Registry
from metacrm.runtime.records import utcnow
from metacrm.runtime.tenant_tables import comments
from tests.conftest import TenantClient

T0 = dt.datetime(2030, 1, 1, 9, 0, tzinfo=dt.UTC)


def _worker(app: Any, registry: Registry, name: str = "w1") -> Worker:
    state = app.state.metacrm
    return Worker(
        state.db,
        state.cache,
        state.settings.outbound(),
        registry=registry,
        lease=dt.timedelta(minutes=1),
        name=name,
    )


def _about(moment: dt.datetime, expected: dt.datetime) -> bool:
    return expected <= moment < expected + dt.timedelta(seconds=2)


async def _rows(app: Any, storage: str) -> list[dict[str, Any]]:
    async with app.state.metacrm.db.tenant(storage, writes=False) as conn:
        found = await conn.execute(sa.select(jobs.jobs).order_by(jobs.jobs.c.created_at))
        return [dict(r) for r in found.mappings()]


async def test_a_rolled_back_transaction_leaves_no_job(app: Any, tenant: TenantClient) -> None:
    storage = Database.storage_name(tenant.tenant)
    db = app.state.metacrm.db
    with pytest.raises(RuntimeError):
        async with db.tenant(storage) as conn:
            await jobs.enqueue(conn, "test.note", {"n": 1})
            raise RuntimeError("the save failed")
    async with db.tenant(storage) as conn:
        await jobs.enqueue(conn, "test.note", {"n": 2})
    assert [r["payload"] for r in await _rows(app, storage)] == [{"n": 2}]


async def test_failures_back_off_then_die_and_a_retry_revives(
    app: Any, tenant: TenantClient
) -> None:
    storage = Database.storage_name(tenant.tenant)
    calls: list[int] = []

    async def flaky(job: Job, ctx: JobContext) -> dict[str, Any]:
        calls.append(job.attempts)
        if len(calls) < 3:
            raise ConnectionError("the target is down")
        return {"calls": len(calls)}

    async def hopeless(job: Job, ctx: JobContext) -> None:
        raise PermanentFailure("the record is gone")

    registry = Registry()
    registry.add("test.flaky", JobKind(flaky, max_attempts=5))
    registry.add("test.hopeless", JobKind(hopeless))
    registry.add("test.once", JobKind(flaky, max_attempts=1))
    worker = _worker(app, registry)
    async with app.state.metacrm.db.tenant(storage) as conn:
        flaky_id = await jobs.enqueue(conn, "test.flaky", {}, run_at=T0)
        hopeless_id = await jobs.enqueue(conn, "test.hopeless", {}, run_at=T0)
    assert await worker.drain(storage, now=T0 - dt.timedelta(seconds=1)) == 0
    assert await worker.drain(storage, now=T0) == 2
    rows = {r["id"]: r for r in await _rows(app, storage)}
    assert rows[hopeless_id]["status"] == "dead"
    assert rows[hopeless_id]["last_error"] == "the record is gone"
    flaky_row = rows[flaky_id]
    assert flaky_row["status"] == "pending" and "the target is down" in flaky_row["last_error"]
    # Retried the backoff after the try ended (the test clock moves with the try's length).
    assert _about(flaky_row["run_at"], T0 + jobs.default_backoff(1))
    # Not due again until its backoff has passed; then once more, then it succeeds.
    assert await worker.drain(storage, now=T0 + dt.timedelta(seconds=5)) == 0
    assert await worker.drain(storage, now=flaky_row["run_at"]) == 1
    second = {r["id"]: r for r in await _rows(app, storage)}[flaky_id]
    assert _about(second["run_at"], flaky_row["run_at"] + jobs.default_backoff(2))
    assert await worker.drain(storage, now=second["run_at"]) == 1
    done = {r["id"]: r for r in await _rows(app, storage)}[flaky_id]
    assert done["status"] == "done" and done["result"] == {"calls": 3}
    assert done["attempts"] == 3 and calls == [1, 2, 3]
    # A dead job comes back through the API with fresh tries.
    response = await tenant.post(f"/api/v1/automation/jobs/{hopeless_id}/retry")
    assert response.status_code == 200, response.text
    dead = (await tenant.get("/api/v1/automation/jobs", params={"status": "dead"})).json()
    assert dead["jobs"] == []
    assert (await tenant.post(f"/api/v1/automation/jobs/{flaky_id}/retry")).status_code == 404


async def test_a_job_whose_worker_died_is_taken_over_and_runs_once(
    app: Any, tenant: TenantClient
) -> None:
    """Worker 1 claims a job and dies (its lease runs out); worker 2 takes it over and
    commits; worker 1's late transaction finds the job gone and rolls back its change."""
    storage = Database.storage_name(tenant.tenant)
    db = app.state.metacrm.db
    release = asyncio.Event()

    async def add_comment(job: Job, ctx: JobContext) -> None:
        async with ctx.transaction() as (conn, _ct):
            await conn.execute(
                comments.insert().values(
                    id=jobs.new_id(),
                    object="x",
                    record_id=job.id,
                    user_id=job.id,
                    body=f"by {job.payload['who']}",
                    at=utcnow(),
                )
            )
            if job.attempts == 1:
                await release.wait()  # worker 1 hangs here until worker 2 is done

    registry = Registry()
    registry.add("test.comment", JobKind(add_comment))
    first, second = _worker(app, registry, "w1"), _worker(app, registry, "w2")
    async with db.tenant(storage) as conn:
        await jobs.enqueue(conn, "test.comment", {"who": "anyone"}, run_at=T0)
    [claimed] = await first._claim(storage, T0)
    if db.is_sqlite:
        # SQLite has one writer: worker 1's open transaction would block worker 2, so
        # worker 1 stops before it; its lease runs out all the same.
        release.set()
        assert await second.drain(storage, now=T0 + dt.timedelta(minutes=2)) == 1
        outcome = await first.run_job(storage, claimed, T0)
    else:
        hanging = asyncio.create_task(first.run_job(storage, claimed, T0))
        await asyncio.sleep(0.2)
        assert await second.drain(storage, now=T0 + dt.timedelta(minutes=2)) == 1
        release.set()
        outcome = await hanging
    assert outcome == "lost"
    [row] = await _rows(app, storage)
    assert row["status"] == "done" and row["locked_by"] == "w2" and row["attempts"] == 2
    async with db.tenant(storage, writes=False) as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(comments)) == 1


async def test_concurrent_workers_claim_each_job_once(app: Any, tenant: TenantClient) -> None:
    storage = Database.storage_name(tenant.tenant)
    ran: list[str] = []

    async def note(job: Job, ctx: JobContext) -> None:
        ran.append(job.payload["n"])
        await asyncio.sleep(0)

    registry = Registry()
    registry.add("test.note", JobKind(note))
    async with app.state.metacrm.db.tenant(storage) as conn:
        for n in range(60):
            await jobs.enqueue(conn, "test.note", {"n": n}, run_at=T0)
    workers = [_worker(app, registry, f"w{i}") for i in range(4)]
    counts = await asyncio.gather(*(w.drain(storage, now=T0) for w in workers))
    assert sum(counts) == 60
    assert sorted(ran) == list(range(60))
    assert {r["status"] for r in await _rows(app, storage)} == {"done"}


async def test_a_keyed_job_is_moved_not_duplicated(app: Any, tenant: TenantClient) -> None:
    storage = Database.storage_name(tenant.tenant)
    async with app.state.metacrm.db.tenant(storage) as conn:
        first = await jobs.enqueue(conn, "test.timer", {"v": 1}, run_at=T0, key="timer:1")
        again = await jobs.enqueue(
            conn, "test.timer", {"v": 2}, run_at=T0 + dt.timedelta(hours=1), key="timer:1"
        )
        assert first == again
        assert await jobs.cancel(conn, "timer:1") == 1
        assert await jobs.cancel(conn, "timer:1") == 0
    [row] = await _rows(app, storage)
    assert row["status"] == "cancelled" and row["payload"] == {"v": 2}


async def test_nul_bytes_in_query_parameters_are_refused_before_sql(tenant: TenantClient) -> None:
    """Every /api/v1 route refuses text PostgreSQL cannot store (it answered 500 before)."""
    for url, name in (
        ("/api/v1/automation/runs?rule=%00", "rule"),
        ("/api/v1/automation/jobs?kind=a%00b", "kind"),
        ("/api/v1/notifications?before=%00", "before"),
    ):
        response = await tenant.get(url)
        assert response.status_code == 400, (url, response.text)
        assert response.json()["errors"][0]["field"] == name
        assert response.json()["errors"][0]["code"] == "nul-byte"


async def test_the_background_loop_finds_woken_and_timed_jobs(
    app: Any, tenant: TenantClient
) -> None:
    """An idle tenant is looked at less often, but a wake for it, or the due time of a job
    it already holds, brings the loop back to it (bounded waits, no timing assertion)."""
    storage = Database.storage_name(tenant.tenant)
    ran: list[str] = []

    async def note(job: Job, ctx: JobContext) -> None:
        ran.append(job.payload["n"])

    registry = Registry()
    registry.add("test.loop", JobKind(note))
    worker = _worker(app, registry)
    worker.poll_seconds = 0.05

    async def this_tenant_only() -> list[str]:
        # The session's app holds every other test's tenants: the loop looks at this one.
        return [storage]

    worker.storages = this_tenant_only  # type: ignore[method-assign]
    db = app.state.metacrm.db
    async with db.tenant(storage) as conn:
        await jobs.enqueue(
            conn, "test.loop", {"n": "timed"}, run_at=utcnow() + dt.timedelta(seconds=1)
        )
    stop = asyncio.Event()
    loop = asyncio.create_task(worker.run_forever(stop))
    try:
        await _until(lambda: ran == ["timed"])
        await asyncio.sleep(0.5)  # idle rounds: the tenant is looked at less and less
        async with db.tenant(storage) as conn:
            await jobs.enqueue(conn, "test.loop", {"n": "woken"})
        worker.wake(storage)
        await _until(lambda: ran == ["timed", "woken"])
    finally:
        stop.set()
        await loop


async def _until(condition: Any, seconds: float = 30.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.02)
