"""Kanban columns: does a column of 100,000 cards open as fast as a column of ten?

A real `metacrm serve` process per database (SQLite, then PostgreSQL when a URL is set), one
tenant with crm-core (no seed), ten opportunities moved on to `propose` (stage API, gates
met), then `--rows` in the stage `qualify` (batch API): the small column's cards are the
oldest, the last a newest-first walk of the table reaches. The administrator signs in through
`/app/login`; then, one request at a time over loopback, each target is timed `--repeats`
times, in turns:

- board: `GET /app/o/opportunity/kanban` (figures of every column: one grouped query; the
  first 20 cards of every column);
- big column / small column: `GET /app/o/opportunity/kanban/column?field=stage&value=...`,
  the first 20 cards of `qualify` (all the rows) and of `propose` (ten), each in the order
  the board reads it (`-id`: a walk of the primary key that stops after 21 matches, for a
  column longer than a page; `-created_at`: one pass over the table, for a short one), and
  the short column walking the primary key too (what the short order saves);
- big column, page 2: the same with the cursor its "Load more" button carries (keyset);
- figures API: `GET /api/v1/analytics/board/opportunity` (the grouped count and amount).

Figures: median and p95 wall time. No assertion on any time.

    python bench/bench_kanban_column.py                        # SQLite, + PostgreSQL if set
    python bench/bench_kanban_column.py --backend sqlite --rows 20000 --repeats 20
    python bench/bench_kanban_column.py --json out.json

PostgreSQL: METACRM_BENCH_POSTGRES_URL, else METACRM_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from bench_web import _ok, pg_url, server

ROOT = Path(__file__).resolve().parent.parent
PLATFORM_TOKEN = "bench-platform-token"
PASSWORD = "bench password 12345"
BATCH = 1000
SMALL = 10
MORE = re.compile(r'hx-get="([^"]*kanban/column[^"]*value=qualify[^"]*)"')


def setup(url: str, rows: int) -> tuple[httpx.Client, httpx.Client, str]:
    """The tenant with its opportunities: (API client, signed-in web client, tenant name)."""
    name = f"benchkb{uuid.uuid4().hex[:8]}"
    admin = f"admin@{name}.test"
    api = httpx.Client(base_url=url, timeout=600)
    _ok(
        api.post(
            "/api/v1/platform/tenants",
            headers={"Authorization": f"Bearer {PLATFORM_TOKEN}"},
            json={"name": name, "admin_email": admin, "admin_password": PASSWORD},
        ),
        201,
    )
    form = {"tenant": name, "username": admin, "password": PASSWORD}
    token = _ok(api.post("/api/v1/auth/token", data=form))["access_token"]
    api.headers["Authorization"] = f"Bearer {token}"
    params = {"example": "crm-core", "confirm": "true", "seed": "false"}
    _ok(api.post("/api/v1/packs/install", params=params))
    for i in range(SMALL):
        made = _ok(
            api.post(
                "/api/v1/data/opportunity",
                json={"name": f"Small {i}", "amount": "50", "close_date": "2027-06-30"},
            ),
            201,
        )
        _ok(api.post(f"/api/v1/data/opportunity/{made['id']}/stage", json={"to": "propose"}))
    started = time.perf_counter()
    for start in range(0, rows, BATCH):
        batch = [
            {"name": f"Deal {i:06d}", "amount": str(100 + i % 900)}
            for i in range(start, min(rows, start + BATCH))
        ]
        _ok(api.post("/api/v1/data/opportunity/batch", json={"records": batch}))
    print(f"  {rows:,} opportunities in {time.perf_counter() - started:.1f} s", flush=True)
    web = httpx.Client(base_url=url, timeout=600)
    web.get("/app/login")
    form["csrf_token"] = web.cookies["metacrm_login_csrf"]
    _ok(web.post("/app/login", data=form), 303)
    return api, web, name


def measure(api: httpx.Client, web: httpx.Client, repeats: int) -> dict[str, dict[str, float]]:
    """Median and p95 (ms) of each target, timed in turns."""
    column = "/app/o/opportunity/kanban/column"
    board = web.get("/app/o/opportunity/kanban")
    found = MORE.search(board.text)
    if found is None:
        raise RuntimeError(f"no Load more in qualify: {board.status_code} {board.text[-1500:]}")
    page_two = html.unescape(found.group(1))
    targets = {
        "board": lambda: web.get("/app/o/opportunity/kanban"),
        "big column": lambda: web.get(column, params={"field": "stage", "value": "qualify"}),
        "small column": lambda: web.get(
            column, params={"field": "stage", "value": "propose", "order": "-created_at"}
        ),
        "small column, walking the id index": lambda: web.get(
            column, params={"field": "stage", "value": "propose", "order": "-id"}
        ),
        "big column, page 2": lambda: web.get(page_two),
        "figures API": lambda: api.get("/api/v1/analytics/board/opportunity"),
    }
    times: dict[str, list[float]] = {name: [] for name in targets}
    for target in targets.values():  # warm up
        target()
    for _ in range(repeats):
        for name, target in targets.items():
            started = time.perf_counter()
            response = target()
            times[name].append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"{name}: {response.status_code} {response.text[:300]}")
    return {
        name: {
            "median_ms": round(statistics.median(values), 1),
            "p95_ms": round(sorted(values)[max(0, int(len(values) * 0.95) - 1)], 1),
        }
        for name, values in times.items()
    }


async def _postgres(storage: str, *, drop: bool) -> None:
    """ANALYZE the loaded table (as autovacuum soon would), or drop the bench's tenant."""
    sys.path.insert(0, str(ROOT))
    from metacrm.platform import system_tables
    from metacrm.platform.db import Database

    db = Database(database_url=pg_url(), data_dir=Path(tempfile.gettempdir()))
    try:
        if drop:
            await db.drop_tenant_storage(storage)
            async with db.system() as conn:
                tenants = system_tables.tenants
                name = storage[len("tenant_") :]
                await conn.execute(tenants.delete().where(tenants.c.name == name))
        else:
            async with db.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql(f'ANALYZE "{storage}".opportunity')
    finally:
        await db.engine.dispose()
        for engine in db._tenant_engines.values():
            await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"))
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    backends = [args.backend] if args.backend else ["sqlite", *(["postgresql"] if pg_url() else [])]
    results: dict[str, Any] = {"rows": args.rows, "small": SMALL, "backends": {}}
    for backend in backends:
        print(f"{backend}: {args.rows:,} cards in qualify, {SMALL} in propose", flush=True)
        with tempfile.TemporaryDirectory() as data_dir, server(backend, Path(data_dir)) as url:
            api, web, tenant = setup(url, args.rows)
            if backend == "postgresql":
                asyncio.run(_postgres(f"tenant_{tenant}", drop=False))
            figures = measure(api, web, args.repeats)
            if backend == "postgresql":
                asyncio.run(_postgres(f"tenant_{tenant}", drop=True))
            api.close()
            web.close()
        results["backends"][backend] = figures
        for name, figure in figures.items():
            print(f"  {name}: {figure['median_ms']} ms (p95 {figure['p95_ms']})", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
