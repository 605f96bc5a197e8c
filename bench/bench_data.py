"""Data in (issue 15): file import rows per second against the batch endpoint and raw inserts,
the import's peak memory at two sizes, and a duplicate scan of many accounts.

Per database (SQLite, then PostgreSQL when a URL is set), each in a fresh tenant of an app in
this process (no HTTP sockets: ASGI), an object `company` with a validation rule
(`revenue < 0` is refused) and one duplicate rule (`name` by the `company` method, a fuzzy
match of normalised company names, action `report`: every write is looked up):

- **import**: a `--rows`-row UTF-8 CSV uploaded to `POST /api/v1/imports` (the mapping
  proposed from the header), `POST /api/v1/imports/{id}/run`, then the worker drains the
  tenant's jobs, as a server's worker does: the pipeline in resumable slices, chunks of
  `CHUNK_ROWS` rows through the write path. Timed from the run's start to its last slice.
  Run in a child process each, so that the memory figures are the import's own: the
  process's resident set when the run starts, the growth of its high-water mark
  (`ru_maxrss`) over the run, and, with `--tracemalloc`, the Python heap's peak
  (tracemalloc slows Python down: its runs are not the ones timed for rows per second).
  Memory is measured at each of `--memory-rows` sizes: constant memory means the peak does
  not grow with the row count.
- **batch**: the same rows to `POST /api/v1/data/company/batch` in batches of its cap
  (`batch_max`, 200), one request after the other (`--batch-rows` of them).
- **raw**: the same rows (converted values) inserted into the same table with SQLAlchemy
  Core, `executemany` of `CHUNK_ROWS` rows per transaction: no validation, no rule, no
  match keys, no audit; on PostgreSQL also `COPY` (asyncpg `copy_records_to_table`).
- **scan**: `--scan-rows` companies (a few percent planted duplicates written two or three
  ways) inserted raw, then the "duplicates.scan" job (`POST /api/v1/duplicates/company/scan`):
  it builds every record's match keys and groups the duplicates.

No figure is asserted anywhere.

    python bench/bench_data.py                                  # both databases, 100,000 rows
    python bench/bench_data.py --backend sqlite --rows 2000 --memory-rows 1000,2000 \\
        --batch-rows 1000 --scan-rows 2000                      # a quick look
    python bench/bench_data.py --write                          # into bench/RESULTS.md
    python bench/bench_data.py --json out.json                  # run_all.py uses it

PostgreSQL: METACRM_BENCH_POSTGRES_URL, else METACRM_TEST_POSTGRES_URL. The bench's tenants
(schemas in that database) are dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_web import _drop, _ok  # noqa: E402  (needs ROOT on the path)
from bench.run_all import pg_url, script_env, script_section, write_section  # noqa: E402
from metacrm.platform.app import create_app  # noqa: E402
from metacrm.platform.db import Database  # noqa: E402
from metacrm.platform.settings import Settings  # noqa: E402
from metacrm.runtime.data.import_pipeline import CHUNK_ROWS  # noqa: E402
from metacrm.runtime.records import new_id  # noqa: E402

HEADING = "## Data import, batch and raw inserts, duplicate scan (issue 15)"
PLATFORM_TOKEN = "bench-platform-token"
SECRET = "bench-data-signing-key-" + "d" * 32
PASSWORD = "bench password 12345"
SEED = 15

COMPANY = {
    "api_name": "company",
    "label": {"en": "Company", "zh-CN": "公司"},
    "fields": [
        {"api_name": "name", "type": "text", "label": "Name", "required": True, "max_length": 200},
        {"api_name": "code", "type": "text", "label": "Code", "external_id": True},
        {"api_name": "revenue", "type": "currency", "label": "Revenue"},
        {"api_name": "founded", "type": "date", "label": "Founded"},
        {"api_name": "phone", "type": "phone", "label": "Phone"},
        {"api_name": "city", "type": "text", "label": "City"},
    ],
    "validation_rules": [
        {
            "api_name": "revenue_not_negative",
            "condition": "revenue < 0",
            "message": "Revenue cannot be negative",
            "field": "revenue",
        }
    ],
}
RULE = {
    "api_name": "same_company",
    "object": "company",
    "action": "report",
    "criteria": [{"field": "name", "method": "company"}],
}
HEADER = ["name", "code", "revenue", "founded", "phone", "city"]
LETTERS = "abcdefghijklmnopqrstuvwxyz"
HAN = "华信通达中国天海龙丰凯元盛金明瑞东方宏远博安恒泰嘉美"
CITIES = ["北京", "上海", "深圳", "杭州", "成都", "武汉", "Suzhou", "Xiamen"]


# ------------------------------------------------------------------ data


def company_names(count: int, seed: int = SEED) -> Iterator[str]:
    """Company names, distinct but for about 3% that repeat an earlier one written another
    way (brackets, case, a legal suffix, spaces)."""
    rng = random.Random(seed)
    recent: list[str] = []
    for _ in range(count):
        if recent and rng.random() < 0.03:
            base = rng.choice(recent)
            yield rng.choice([f"（{base}）", base.upper(), f"{base} 有限公司", f" {base}  "])
            continue
        if rng.random() < 0.5:
            base = "".join(rng.choice(LETTERS) for _ in range(10)).title()
            name = f"{base} {rng.choice(['Tech', 'Trading', 'Industrial'])} Co., Ltd."
        else:
            base = rng.choice(CITIES) + "".join(rng.choice(HAN) for _ in range(6))
            name = f"{base}科技有限公司"
        recent = [*recent[-49:], base]
        yield name


def rows(count: int, seed: int = SEED) -> Iterator[dict[str, Any]]:
    """The records of the bench, as the API takes them (text values)."""
    rng = random.Random(seed + 1)
    for i, name in enumerate(company_names(count, seed)):
        yield {
            "name": name,
            "code": f"C{i:07}",
            # One row in 200 breaks the validation rule (refused in every path but raw).
            "revenue": f"{rng.randint(-1000, -1)}.50" if i % 200 == 199 else f"{rng.randint(0, 10**7)}.00",
            "founded": f"{rng.randint(1990, 2024)}-{rng.randint(1, 12):02}-{rng.randint(1, 28):02}",
            "phone": f"+86 {rng.randint(10, 99)} {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
            "city": rng.choice(CITIES),
        }  # fmt: skip


def write_csv(path: Path, count: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, HEADER)
        writer.writeheader()
        writer.writerows(rows(count))


def typed(row: dict[str, Any]) -> dict[str, Any]:
    """A row's values as the table's columns take them (what the write path would store)."""
    return row | {
        "revenue": Decimal(row["revenue"]),
        "founded": dt.date.fromisoformat(row["founded"]),
    }


# ------------------------------------------------------------------ tenant


@asynccontextmanager
async def app_tenant(backend: str) -> AsyncIterator[tuple[Any, str, httpx.AsyncClient]]:
    """The app in this process (no background worker), a fresh tenant with the bench's
    object and duplicate rule, and an API client of its administrator (ASGI, no sockets)."""
    with tempfile.TemporaryDirectory(prefix="metacrm-bench-data-") as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data",
            database_url=pg_url() if backend == "postgresql" else None,
            platform_admin_token=PLATFORM_TOKEN,
            secret_key=SECRET,
            jobs_in_process=False,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            name = f"benchdata{uuid.uuid4().hex[:8]}"
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench", timeout=None
            ) as http:
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
                    _ok(
                        await http.post(
                            "/api/v1/metadata/apply",
                            json={"objects": [COMPANY], "duplicate_rules": [RULE]},
                        )
                    )
                    await drain(app, storage)
                    yield app, storage, http
                finally:
                    if backend == "postgresql":
                        await _drop(storage)


async def drain(app: Any, storage: str) -> int:
    return int(await app.state.metacrm.worker.drain(storage))


async def table(app: Any, storage: str) -> sa.Table:
    state = app.state.metacrm
    from metacrm.metadata.store import current_version

    async with state.db.tenant(storage, writes=False) as conn:
        ct = await state.cache.compiled(conn, storage, await current_version(conn))
    return ct.object("company").table


async def count(app: Any, storage: str) -> int:
    t = await table(app, storage)
    async with app.state.metacrm.db.tenant(storage, writes=False) as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(t)) or 0)


def rss_mb() -> float:
    """The process's resident set now, in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ measurements


async def import_once(backend: str, count_rows: int, trace: bool) -> dict[str, Any]:
    """One import of `count_rows` rows through the job path; its time and memory."""
    async with app_tenant(backend) as (app, storage, http):
        with tempfile.TemporaryDirectory(prefix="metacrm-bench-csv-") as tmp:
            path = Path(tmp) / "companies.csv"
            write_csv(path, count_rows)
            with path.open("rb") as content:
                uploaded = await http.post(
                    "/api/v1/imports",
                    files={"file": ("companies.csv", content, "text/csv")},
                    data={"object": "company"},
                )
        import_id = _ok(uploaded, 201)["id"]
        _ok(await http.post(f"/api/v1/imports/{import_id}/run"), 202)
        rss_start, high_start = rss_mb(), maxrss_mb()
        if trace:
            tracemalloc.start()
        statements = 0

        def counted(*_: Any) -> None:
            nonlocal statements
            statements += 1

        sa.event.listen(sa.engine.Engine, "before_cursor_execute", counted)
        started = time.perf_counter()
        await drain(app, storage)
        seconds = time.perf_counter() - started
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", counted)
        peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
        tracemalloc.stop()
        done = _ok(await http.get(f"/api/v1/imports/{import_id}"))
        if done["status"] != "done" or done["done"] != count_rows:
            raise RuntimeError(f"import ended {done['status']} at {done['done']}: {done}")
        return {
            "rows": count_rows,
            "seconds": seconds,
            "rows_per_second": count_rows / seconds,
            "counts": done["counts"],
            "statements_per_row": statements / count_rows,
            "rss_start_mb": rss_start,
            "maxrss_growth_mb": max(0.0, maxrss_mb() - high_start),
            "maxrss_mb": maxrss_mb(),
            "tracemalloc_peak_mb": peak,
        }


def import_child(backend: str, count_rows: int, trace: bool) -> dict[str, Any]:
    """`import_once` in a process of its own (its memory figures are the import's)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "child.json"
        command = [sys.executable, __file__, "--child", backend, "--rows", str(count_rows)]
        command += ["--json", str(out)] + ["--tracemalloc"] * trace
        subprocess.run(command, check=True, env=script_env(), cwd=ROOT)
        result: dict[str, Any] = json.loads(out.read_text())
        return result


async def batch(backend: str, count_rows: int) -> dict[str, Any]:
    async with app_tenant(backend) as (app, storage, http):
        cap = app.state.metacrm.settings.batch_max
        pending, refused = list(rows(count_rows)), 0
        started = time.perf_counter()
        for start in range(0, count_rows, cap):
            chunk = pending[start : start + cap]
            response = await http.post("/api/v1/data/company/batch", json={"records": chunk})
            if response.status_code == 422:  # the batch is one transaction: a refused
                # row refuses it whole; send it again without the refused rows
                bad = {int(e["field"].split("/")[1]) for e in response.json()["errors"]}
                refused += len(bad)
                kept = [r for i, r in enumerate(chunk) if i not in bad]
                response = await http.post("/api/v1/data/company/batch", json={"records": kept})
            _ok(response)
        seconds = time.perf_counter() - started
        stored = await count(app, storage)
        return {
            "rows": count_rows,
            "batch": cap,
            "seconds": seconds,
            "rows_per_second": count_rows / seconds,
            "stored": stored,
            "refused": refused,
        }


async def raw(backend: str, count_rows: int) -> dict[str, Any]:
    """executemany (and COPY on PostgreSQL) of the same rows into the same table."""
    async with app_tenant(backend) as (app, storage, http):
        t = await table(app, storage)
        first = next(rows(1))
        made = _ok(await http.post("/api/v1/data/company", json=first), 201)
        db = app.state.metacrm.db
        async with db.tenant(storage) as conn:
            found = (await conn.execute(sa.select(t).where(t.c.id == uuid.UUID(made["id"])))).one()
            template = dict(found._mapping)
            await conn.execute(t.delete())
        records = [template | typed(r) | {"id": new_id()} for r in rows(count_rows)]
        result: dict[str, Any] = {"rows": count_rows}
        started = time.perf_counter()
        for start in range(0, count_rows, CHUNK_ROWS):
            async with db.tenant(storage) as conn:
                await conn.execute(t.insert(), records[start : start + CHUNK_ROWS])
        seconds = time.perf_counter() - started
        result["executemany"] = {"seconds": seconds, "rows_per_second": count_rows / seconds}
        if backend == "postgresql":
            async with db.tenant(storage) as conn:
                await conn.execute(t.delete())
            columns = list(template)
            tuples = [tuple(r[c] for c in columns) for r in records]
            started = time.perf_counter()
            async with db.tenant(storage) as conn:
                raw_conn = await conn.get_raw_connection()
                driver = raw_conn.driver_connection
                assert driver is not None
                await driver.copy_records_to_table(
                    t.name, records=tuples, columns=columns, schema_name=storage
                )
            seconds = time.perf_counter() - started
            result["copy"] = {"seconds": seconds, "rows_per_second": count_rows / seconds}
        result["stored"] = await count(app, storage)
        return result


async def scan(backend: str, count_rows: int) -> dict[str, Any]:
    """The duplicate scan job over `count_rows` companies inserted raw."""
    async with app_tenant(backend) as (app, storage, http):
        t = await table(app, storage)
        first = next(rows(1))
        made = _ok(await http.post("/api/v1/data/company", json=first), 201)
        db = app.state.metacrm.db
        async with db.tenant(storage) as conn:
            found = (await conn.execute(sa.select(t).where(t.c.id == uuid.UUID(made["id"])))).one()
            template = dict(found._mapping)
            await conn.execute(t.delete())
        records = [template | typed(r) | {"id": new_id()} for r in rows(count_rows)]
        for start in range(0, count_rows, 5000):
            async with db.tenant(storage) as conn:
                await conn.execute(t.insert(), records[start : start + 5000])
        del records
        _ok(await http.post("/api/v1/duplicates/company/scan"), 202)
        started = time.perf_counter()
        await drain(app, storage)
        seconds = time.perf_counter() - started
        groups, after = 0, None
        while True:
            params: dict[str, Any] = {"limit": 200} | ({"after": after} if after else {})
            page = _ok(await http.get("/api/v1/duplicates/company/groups", params=params))
            groups += len(page["groups"])
            if (after := page["next"]) is None:
                break
        return {"rows": count_rows, "seconds": seconds, "groups": groups}


def load() -> float:
    return os.getloadavg()[0]


def backend_run(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"imports": [], "memory": []}
    for _ in range(args.rounds):
        before = load()
        result["imports"].append(import_child(backend, args.rows, False) | {"load": before})
        print(f"{backend} import: {result['imports'][-1]}", file=sys.stderr, flush=True)
    for size in args.memory_rows:
        before = load()
        result["memory"].append(import_child(backend, size, args.tracemalloc) | {"load": before})
        print(f"{backend} memory: {result['memory'][-1]}", file=sys.stderr, flush=True)
    before = load()
    result["batch"] = asyncio.run(batch(backend, args.batch_rows)) | {"load": before}
    print(f"{backend} batch: {result['batch']}", file=sys.stderr, flush=True)
    before = load()
    result["raw"] = asyncio.run(raw(backend, args.rows)) | {"load": before}
    print(f"{backend} raw: {result['raw']}", file=sys.stderr, flush=True)
    if args.scan_rows:
        before = load()
        result["scan"] = asyncio.run(scan(backend, args.scan_rows)) | {"load": before}
        print(f"{backend} scan: {result['scan']}", file=sys.stderr, flush=True)
    return result


# ------------------------------------------------------------------ report


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _backend_lines(result: dict[str, Any]) -> list[str]:
    imports = result["imports"]
    rate = _median([i["rows_per_second"] for i in imports])
    raw_result, batch_result = result["raw"], result["batch"]
    loads = ", ".join(f"{i['load']:.1f}" for i in imports)
    lines = [
        "| path | rows | rows/s | import's time over this path's | load avg before |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| import (job path; median of {len(imports)}) | {imports[0]['rows']:,} | {rate:,.0f} "
        f"| 1.00x | {loads} |",
        f"| batch endpoint ({batch_result['batch']} per request) | {batch_result['rows']:,} "
        f"| {batch_result['rows_per_second']:,.0f} | "
        f"{batch_result['rows_per_second'] / rate:.2f}x | {batch_result['load']:.1f} |",
    ]
    for name in ("executemany", "copy"):
        if name in raw_result:
            figure = raw_result[name]["rows_per_second"]
            lines.append(
                f"| raw {name} (no rules) | {raw_result['rows']:,} | {figure:,.0f} "
                f"| {figure / rate:.1f}x | {raw_result['load']:.1f} |"
            )
    counts = imports[0]["counts"]
    per_row = imports[0].get("statements_per_row")
    lines += [
        "",
        f"Import outcome: {counts['created']:,} created, {counts['failed']:,} refused by the "
        "validation rule (one row in 200), as expected."
        + (f" SQL statements per row: {per_row:.1f}." if per_row else ""),
        f"At this rate 1,000,000 rows would take {1_000_000 / rate / 3600:.1f} h (the aim, under "
        "10 minutes, is 1,667 rows/s).",
        "",
        "| memory run: rows | seconds | RSS at start MiB | ru_maxrss growth MiB "
        "| tracemalloc peak MiB | load avg before |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in result["memory"]:
        peak = "-" if m["tracemalloc_peak_mb"] is None else f"{m['tracemalloc_peak_mb']:.1f}"
        lines.append(
            f"| {m['rows']:,} | {m['seconds']:.0f} | {m['rss_start_mb']:.0f} "
            f"| {m['maxrss_growth_mb']:.1f} | {peak} | {m['load']:.1f} |"
        )
    if "scan" in result:
        s = result["scan"]
        lines += [
            "",
            f"Duplicate scan of {s['rows']:,} companies (fuzzy company-name rule): "
            f"{s['seconds']:.1f} s, {s['groups']:,} groups (load avg before {s['load']:.1f}).",
        ]
    return [*lines, ""]


def body(results: dict[str, Any], command: str) -> str:
    intro = (
        "`bench/bench_data.py` (its docstring says what each figure is). An object with a "
        "validation rule and one fuzzy duplicate rule (company names, action report); the "
        "import runs through the job path the API uses (upload, run, the worker drains the "
        "slices); the batch endpoint and raw inserts take the same rows. The ratio column is "
        "that path's rows per second over the import's. Memory: each import in a process of "
        "its own; constant memory means the figures do not grow with the rows."
    )
    return script_section(results, command, intro, _backend_lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--memory-rows", default="10000,100000")
    parser.add_argument("--tracemalloc", action="store_true", help="memory runs under tracemalloc")
    parser.add_argument("--batch-rows", type=int, default=None, help="default: --rows")
    parser.add_argument("--scan-rows", type=int, default=100_000, help="0: no scan")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--child", choices=["sqlite", "postgresql"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = asyncio.run(import_once(args.child, args.rows, args.tracemalloc))
        args.json.write_text(json.dumps(result))
        return
    args.memory_rows = [int(n) for n in args.memory_rows.split(",") if n]
    args.batch_rows = args.batch_rows or args.rows
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results: dict[str, Any] = {}
    for backend in backends:
        if backend == "postgresql" and not pg_url():
            results[backend] = {"skipped": "no METACRM_BENCH_POSTGRES_URL"}
            continue
        results[backend] = backend_run(backend, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    text = body(results, "python " + " ".join(["bench/bench_data.py", *sys.argv[1:]]))
    print(text)
    if args.write:
        write_section(HEADING, HEADING + "\n\n" + text)


if __name__ == "__main__":
    main()
