"""The job queue and automation: jobs per second, what a rule adds to a save, timer delay.

Three measurements per database (SQLite, then PostgreSQL when a URL is set):

- **queue**: `--jobs` jobs enqueued in one transaction, then run by one `Worker` with 1 and
  with 4 loops (`Worker.drain` side by side, as `metacrm worker --concurrency 4` runs
  them) until none is due; two handlers: a no-op, and one that inserts a row in
  `ctx.transaction()` (the row and the job's `done` mark in one transaction, as every
  data-changing handler does). The baseline is what a job costs at the least without the
  queue, in the same process and tenant: a loop of one transaction per job that `UPDATE`s
  the job row to done (no-op) or also `INSERT`s the row (write); 4 loops split the rows.
  Figures: jobs per second, median of `--rounds` rounds, and the queue's time over the
  baseline's. Both run in this process (no HTTP).
- **save**: a real `metacrm serve` (no in-process worker: jobs stay pending, so only the
  save is timed), two objects of one shape; `ticket` has an automation rule "on saved ->
  create a follow-up record linked to it", `plain` has none. `POST /api/v1/data/<object>`
  one request at a time over loopback, the two objects alternating; median and p95 latency.
  The rule's jobs are counted afterwards: each ticket must have one.
- **timers**: a time rule ("when `due_at` comes, update the record") and `--timers`
  records due over the next day (each a pending `automation.timer` job, set through the
  batch API), then `--probes` records due a second or two ahead, one at a time, while a
  worker with the default settings (`job_poll_seconds` 1 s) runs the real handlers; the
  delay from a probe's due time to its timer job being claimed, and to the rule's
  actions being committed (the job's `started_at` and `finished_at`).

No figure is asserted anywhere.

    python bench/bench_jobs.py                        # SQLite, plus PostgreSQL when a URL is set
    python bench/bench_jobs.py --backend sqlite --jobs 500 --rounds 1   # a quick look
    python bench/bench_jobs.py --write                # put the section into bench/RESULTS.md
    python bench/bench_jobs.py --json out.json        # machine-readable (run_all.py uses it)

PostgreSQL: METACRM_BENCH_POSTGRES_URL, else METACRM_TEST_POSTGRES_URL. The bench's tenants
(schemas in that database) are dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_web import _drop, _ok, pg_url, server  # noqa: E402  (needs ROOT on the path)
from bench.run_all import script_section, write_section  # noqa: E402
from bench.ticket_model import FOLLOW_UP, PLAIN, RULE, TICKET  # noqa: E402
from metacrm.platform.app import create_app  # noqa: E402
from metacrm.platform.db import Database  # noqa: E402
from metacrm.platform.settings import Settings  # noqa: E402
from metacrm.platform.worker import Worker  # noqa: E402
from metacrm.runtime import jobs as queue  # noqa: E402
from metacrm.runtime.jobs import Job, JobContext, JobKind, Registry  # noqa: E402
from metacrm.runtime.records import new_id, utcnow  # noqa: E402
from metacrm.runtime.tenant_tables import comments  # noqa: E402

HEADING = "## Job queue and automation (issue 14)"
PLATFORM_TOKEN = "bench-platform-token"
SECRET = "bench-jobs-signing-key-" + "j" * 32
PASSWORD = "bench password 12345"
LOOPS = (1, 4)


# ------------------------------------------------------------------ in-process tenant


class OneTenantWorker(Worker):
    """A worker that polls only the bench's tenant (a shared PostgreSQL database may hold
    other tenants, whose jobs are not the bench's to run)."""

    def __init__(self, storage: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.only = storage

    async def storages(self) -> list[str]:
        return [self.only]


@asynccontextmanager
async def app_tenant(backend: str) -> AsyncIterator[tuple[Any, str, httpx.AsyncClient]]:
    """The app in this process (no background worker), a fresh tenant's storage and an
    API client of its administrator (over ASGI, no sockets)."""
    with tempfile.TemporaryDirectory(prefix="metacrm-bench-jobs-") as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data",
            database_url=pg_url() if backend == "postgresql" else None,
            platform_admin_token=PLATFORM_TOKEN,
            secret_key=SECRET,
            jobs_in_process=False,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            name = f"benchjobs{uuid.uuid4().hex[:8]}"
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                created = await http.post(
                    "/api/v1/platform/tenants",
                    headers={"Authorization": f"Bearer {PLATFORM_TOKEN}"},
                    json={
                        "name": name,
                        "admin_email": f"a@{name}.test",
                        "admin_password": PASSWORD,
                    },
                )
                _ok(created, 201)
                token = await http.post(
                    "/api/v1/auth/token",
                    data={"tenant": name, "username": f"a@{name}.test", "password": PASSWORD},
                )
                http.headers["Authorization"] = f"Bearer {_ok(token)['access_token']}"
                storage = Database.storage_name(name)
                try:
                    yield app, storage, http
                finally:
                    if backend == "postgresql":
                        await _drop(storage)


# ------------------------------------------------------------------ queue throughput


async def _noop(job: Job, ctx: JobContext) -> None:
    return None


async def _write(job: Job, ctx: JobContext) -> None:
    async with ctx.transaction() as (conn, _ct):
        await conn.execute(comments.insert().values(_comment(job.id)))


def _comment(about: uuid.UUID) -> dict[str, Any]:
    return {
        "id": new_id(),
        "object": "bench",
        "record_id": about,
        "user_id": about,
        "body": "a row written by a job",
        "at": utcnow(),
    }


BENCH_KINDS = Registry()
BENCH_KINDS.add("bench.noop", JobKind(_noop))
BENCH_KINDS.add("bench.write", JobKind(_write))


async def _enqueue(db: Database, storage: str, kind: str, count: int) -> list[uuid.UUID]:
    async with db.tenant(storage) as conn:
        return [await queue.enqueue(conn, kind, {"n": n}) for n in range(count)]


async def _clear(db: Database, storage: str) -> None:
    async with db.tenant(storage) as conn:
        await conn.execute(queue.jobs.delete())
        await conn.execute(comments.delete().where(comments.c.object == "bench"))


async def _queue_round(app: Any, storage: str, kind: str, loops: int, count: int) -> float:
    """Seconds for `loops` loops of one worker to run `count` due jobs of `kind`."""
    state = app.state.metacrm
    await _enqueue(state.db, storage, kind, count)
    worker = OneTenantWorker(
        storage, state.db, state.cache, state.settings.outbound(), registry=BENCH_KINDS
    )
    started = time.perf_counter()
    await asyncio.gather(*(worker.drain(storage) for _ in range(loops)))
    spent = time.perf_counter() - started
    async with state.db.tenant(storage, writes=False) as conn:
        done = await conn.scalar(sa.select(sa.func.count()).where(queue.jobs.c.status == "done"))
    if done != count:
        raise RuntimeError(f"{done} of {count} {kind} jobs done")
    await _clear(state.db, storage)
    return spent


async def _baseline_round(app: Any, storage: str, kind: str, loops: int, count: int) -> float:
    """Seconds for the least a job costs without the queue: one transaction per job that
    marks its row done (and, for `bench.write`, inserts the handler's row)."""
    db = app.state.metacrm.db
    ids = await _enqueue(db, storage, kind, count)

    async def loop(mine: list[uuid.UUID]) -> None:
        for job_id in mine:
            async with db.tenant(storage) as conn:
                if kind == "bench.write":
                    await conn.execute(comments.insert().values(_comment(job_id)))
                await conn.execute(
                    queue.jobs.update().where(queue.jobs.c.id == job_id).values(status="done")
                )

    started = time.perf_counter()
    await asyncio.gather(*(loop(ids[n::loops]) for n in range(loops)))
    spent = time.perf_counter() - started
    await _clear(db, storage)
    return spent


async def measure_queue(backend: str, count: int, rounds: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with app_tenant(backend) as (app, storage, _http):
        # A warm-up round: engines, the compiled tenant, first statements.
        await _queue_round(app, storage, "bench.write", 1, min(count, 100))
        for kind in ("bench.noop", "bench.write"):
            for loops in LOOPS:
                queued, raw = [], []
                for n in range(rounds):
                    pair = (_queue_round, _baseline_round)
                    for run in pair if n % 2 == 0 else pair[::-1]:
                        seconds = await run(app, storage, kind, loops, count)
                        (queued if run is _queue_round else raw).append(seconds)
                row = {
                    "handler": kind.split(".")[1],
                    "loops": loops,
                    "jobs": count,
                    "queue_per_second": count / statistics.median(queued),
                    "baseline_per_second": count / statistics.median(raw),
                    "ratio": statistics.median(queued) / statistics.median(raw),
                }
                print(
                    f"  {row['handler']}, {loops} loop(s): {row['queue_per_second']:.0f} jobs/s "
                    f"(baseline {row['baseline_per_second']:.0f}/s, {row['ratio']:.2f}x)",
                    flush=True,
                )
                rows.append(row)
    return rows


# ------------------------------------------------------------------ timers


REMINDER = {
    "api_name": "reminder",
    "fields": [
        {"api_name": "name", "type": "text"},
        {"api_name": "due_at", "type": "datetime"},
    ],
}
TIME_RULE = {
    "api_name": "remind_when_due",
    "object": "reminder",
    "trigger": {"on": "time", "date_field": "due_at"},
    "actions": [{"kind": "update", "set": {"name": "'fired: ' + name"}}],
}


def _at(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def measure_timers(backend: str, timers: int, probes: int) -> dict[str, Any]:
    """The delay from a time rule's due time to its job starting and to its actions being
    committed, with `timers` other timers of the rule pending for later."""
    async with app_tenant(backend) as (app, storage, http):
        state = app.state.metacrm
        document = {"objects": [REMINDER], "automation_rules": [TIME_RULE]}
        _ok(await http.post("/api/v1/metadata/apply", json=document))
        now, size = utcnow(), state.settings.batch_max
        started = time.perf_counter()
        for first in range(0, timers, size):
            records = [
                {
                    "name": f"later {n}",
                    "due_at": _at(now + dt.timedelta(hours=1, seconds=n * 82800 / timers)),
                }
                for n in range(first, min(first + size, timers))
            ]
            _ok(await http.post("/api/v1/data/reminder/batch", json={"records": records}))
        print(f"  {timers:,} timers set in {time.perf_counter() - started:.0f} s", flush=True)
        worker = OneTenantWorker(
            storage,
            state.db,
            state.cache,
            state.settings.outbound(),
            lease=dt.timedelta(seconds=state.settings.job_lease_seconds),
            poll_seconds=state.settings.job_poll_seconds,
        )
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run_forever(stop))
        fired: list[float] = []
        acted: list[float] = []
        try:
            for n in range(probes):
                due = utcnow() + dt.timedelta(seconds=1 + (n % 5) * 0.25)
                body = {"name": f"probe {n}", "due_at": _at(due)}
                record = _ok(await http.post("/api/v1/data/reminder", json=body), 201)
                job = await _finished(state.db, storage, uuid.UUID(record["id"]))
                fired.append((job["started_at"] - job["run_at"]).total_seconds())
                acted.append((job["finished_at"] - job["run_at"]).total_seconds())
        finally:
            stop.set()
            await running
        async with state.db.tenant(storage, writes=False) as conn:
            pending = await conn.scalar(
                sa.select(sa.func.count()).where(queue.jobs.c.status == "pending")
            )
    result = {
        "timers": timers,
        "pending_after": pending,
        "probes": probes,
        "poll_seconds": state.settings.job_poll_seconds,
        "fired": _spread(fired),
        "acted": _spread(acted),
    }
    print(
        f"  {pending:,} timers pending; due -> fired median {result['fired']['median']:.2f} s, "
        f"max {result['fired']['max']:.2f} s; due -> actions committed median "
        f"{result['acted']['median']:.2f} s, max {result['acted']['max']:.2f} s",
        flush=True,
    )
    return result


async def _finished(db: Database, storage: str, record_id: uuid.UUID) -> dict[str, Any]:
    """The probe record's timer job once it is done (the worker runs in this loop)."""
    while True:
        async with db.tenant(storage, writes=False) as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(queue.jobs).where(queue.jobs.c.record_id == record_id)
                    )
                )
                .mappings()
                .first()
            )
        if row is not None and row["status"] not in ("pending", "running"):
            if row["status"] != "done":
                raise RuntimeError(f"the probe's timer ended {row['status']}: {row['last_error']}")
            return dict(row)
        await asyncio.sleep(0.05)


def _spread(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "median": statistics.median(ordered),
        "p95": ordered[max(0, round(0.95 * len(ordered)) - 1)],
        "max": ordered[-1],
    }


# ------------------------------------------------------------------ save overhead


def measure_saves(backend: str, requests: int, warmup: int) -> dict[str, Any]:
    """POST create latency of an object with a rule and of one without, same server."""
    previous = os.environ.get("METACRM_JOBS_IN_PROCESS")
    os.environ["METACRM_JOBS_IN_PROCESS"] = "false"  # the server's env: jobs stay pending
    try:
        with (
            tempfile.TemporaryDirectory(prefix="metacrm-bench-jobs-") as tmp,
            server(backend, Path(tmp) / "data") as url,
        ):
            return _saves(backend, url, requests, warmup)
    finally:
        if previous is None:
            os.environ.pop("METACRM_JOBS_IN_PROCESS", None)
        else:
            os.environ["METACRM_JOBS_IN_PROCESS"] = previous


def _saves(backend: str, url: str, requests: int, warmup: int) -> dict[str, Any]:
    name = f"benchsave{uuid.uuid4().hex[:8]}"
    admin = f"admin@{name}.test"
    with httpx.Client(base_url=url, timeout=120) as http:
        _ok(
            http.post(
                "/api/v1/platform/tenants",
                headers={"Authorization": f"Bearer {PLATFORM_TOKEN}"},
                json={"name": name, "admin_email": admin, "admin_password": PASSWORD},
            ),
            201,
        )
        token = _ok(
            http.post(
                "/api/v1/auth/token",
                data={"tenant": name, "username": admin, "password": PASSWORD},
            )
        )["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        try:
            document = {"objects": [TICKET, PLAIN, FOLLOW_UP], "automation_rules": [RULE]}
            _ok(http.post("/api/v1/metadata/apply", json=document))
            times: dict[str, list[float]] = {"ticket": [], "plain": []}
            for n in range(warmup + requests):
                order = ("ticket", "plain") if n % 2 == 0 else ("plain", "ticket")
                for object_name in order:
                    started = time.perf_counter()
                    _ok(http.post(f"/api/v1/data/{object_name}", json={"name": f"r{n}"}), 201)
                    if n >= warmup:
                        times[object_name].append(time.perf_counter() - started)
            queued = _ok(
                http.get("/api/v1/automation/jobs", params={"status": "pending", "limit": 200})
            )["jobs"]
        finally:
            if backend == "postgresql":
                asyncio.run(_drop(Database.storage_name(name)))
    result: dict[str, Any] = {"requests": requests, "jobs_seen": len(queued)}
    for object_name, spent in times.items():
        spent.sort()
        result[object_name] = {
            "median_ms": statistics.median(spent) * 1000,
            "p95_ms": spent[max(0, round(0.95 * len(spent)) - 1)] * 1000,
        }
    result["overhead_ms"] = result["ticket"]["median_ms"] - result["plain"]["median_ms"]
    result["ratio"] = result["ticket"]["median_ms"] / result["plain"]["median_ms"]
    # The rule must have enqueued a job per ticket (up to the page read back).
    result["rule_ran"] = len(queued) >= min(requests + warmup, 200)
    print(
        f"  save: with rule {result['ticket']['median_ms']:.1f} ms, without "
        f"{result['plain']['median_ms']:.1f} ms ({result['ratio']:.2f}x); "
        f"{len(queued)} pending jobs seen",
        flush=True,
    )
    return result


# ------------------------------------------------------------------ output


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    print(f"{backend}:", flush=True)
    return {
        "queue": asyncio.run(measure_queue(backend, args.jobs, args.rounds)),
        "saves": measure_saves(backend, args.requests, args.warmup),
        "timers": asyncio.run(measure_timers(backend, args.timers, args.probes)),
    }


def body(results: dict[str, Any], command: str) -> str:
    """The figures of a run as markdown: command, machine, date, tables per database."""
    intro = (
        "`bench/bench_jobs.py` (see its docstring for what each figure is). Queue: jobs "
        "enqueued in one transaction, then run by one worker's loops until none is due; the "
        "baseline is one transaction per job doing only the job's own statements (mark done; "
        "insert the row); the last column is the queue's time per job over the baseline's (a "
        "cost ratio: lower is better). Save: `POST` create latency on a real server, an object "
        "with a saved rule vs one without, alternating. Time rule: delay from a record's due "
        "time to its timer job being claimed and to the rule's actions being committed, a "
        "worker running with the default poll interval."
    )
    return script_section(results, command, intro, _backend_lines)


def _backend_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        "| handler | worker loops | jobs | queue jobs/s | baseline jobs/s "
        "| cost ratio (queue time / baseline time) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["queue"]:
        lines.append(
            f"| {row['handler']} | {row['loops']} | {row['jobs']:,} "
            f"| {row['queue_per_second']:.0f} | {row['baseline_per_second']:.0f} "
            f"| {row['ratio']:.2f}x |"
        )
    saves, timers = result["saves"], result["timers"]
    rule = (
        "the rule enqueued its jobs"
        if saves["rule_ran"]
        else f"**the rule enqueued only {saves['jobs_seen']} jobs: rules not active in this build**"
    )
    lines += [
        "",
        "| save (`POST` create) | median ms | p95 ms |",
        "| --- | ---: | ---: |",
        f"| `plain`, no rule | {saves['plain']['median_ms']:.1f} | {saves['plain']['p95_ms']:.1f} |",
        f"| `ticket`, a saved rule | {saves['ticket']['median_ms']:.1f} "
        f"| {saves['ticket']['p95_ms']:.1f} |",
        "",
        f"{saves['requests']} requests each; the rule adds {saves['overhead_ms']:.1f} ms to "
        f"the median save ({saves['ratio']:.2f}x); {rule}.",
        "",
        f"Time rule: {timers['pending_after']:,} timers pending for later, "
        f"{timers['probes']} probes one after the other, poll interval "
        f"{timers['poll_seconds']:g} s.",
        "",
        "| from due time to | median s | p95 s | max s |",
        "| --- | ---: | ---: | ---: |",
        *[
            f"| {label} | {timers[key]['median']:.2f} | {timers[key]['p95']:.2f} "
            f"| {timers[key]['max']:.2f} |"
            for key, label in (
                ("fired", "the timer job claimed (the rule fires)"),
                ("acted", "its actions committed"),
            )
        ],
        "",
        "Aim: under 5 s.",
        "",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "all"], default="all")
    parser.add_argument("--jobs", type=int, default=500, help="jobs per queue round")
    parser.add_argument("--rounds", type=int, default=3, help="queue rounds (median)")
    parser.add_argument("--requests", type=int, default=200, help="timed saves per object")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--timers", type=int, default=10_000, help="pending timers")
    parser.add_argument("--probes", type=int, default=20, help="timed due jobs")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", action="store_true", help="print the RESULTS.md section")
    parser.add_argument("--write", action="store_true", help="put the section into RESULTS.md")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "all" else [args.backend]
    results: dict[str, Any] = {}
    for backend in backends:
        if backend == "postgresql" and not pg_url():
            results[backend] = {
                "skipped": "set METACRM_BENCH_POSTGRES_URL or METACRM_TEST_POSTGRES_URL"
            }
            continue
        results[backend] = run_backend(backend, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    shown = [a for a in sys.argv[1:] if a not in (str(args.json), "--json")]
    command = " ".join(["python bench/bench_jobs.py", *shown])
    if pg_url() and "postgresql" in backends:
        command = "METACRM_BENCH_POSTGRES_URL=postgresql://…/<database> " + command
    text = HEADING + "\n\n" + body(results, command)
    if args.markdown or args.write:
        print("\n" + text)
    if args.write:
        write_section(HEADING, text)


if __name__ == "__main__":
    main()
