"""Workspace pages vs the JSON API calls returning the same data, at 100,000 opportunities.

A real `metacrm serve` process per database (SQLite, then PostgreSQL when a URL is set), one
tenant with crm-core installed (no seed), 1,000 accounts with 2 contacts and 1 case each and
100,000 opportunities spread over them: the first 5,000 through the batch API (1,000 records a
request, the write path), the rest copied from those in SQL with new ids, names, numbers,
accounts, stages, amounts and dates (the write path takes many minutes for 100,000 on a busy
2-core machine, and is not what this bench measures). A client signs in
through `/app/login` (the page's session cookie) and gets a bearer token (the API's); both
are the tenant's administrator. Then, one request at a time over loopback with httpx, the page
and the API calls for the same data alternate (who goes first alternates too):

- list: `GET /app/o/opportunity` vs `GET /api/v1/data/opportunity?limit=50&count=true&...`
  with the first list view's columns (plus `account.name`), filter and sort, and its totals
  row (`GET /api/v1/analytics/totals/opportunity?fields=amount&where=...`);
- record: `GET /app/o/account/{id}` (a customer 360) vs everything it draws, asked of the API
  in a row: the record, its layout's three related lists (contacts, opportunities, cases),
  a list of every other object pointing at it (10 rows each), the per-stage summary of its
  open records, the timeline across them, and the actions the caller may take;
- kanban: `GET /app/o/opportunity/kanban` vs the board's figures
  (`/api/v1/analytics/board/opportunity`: count and amount per column) and the first 20 cards
  of each value of the view's kanban field, newest first, in a row;
- import mapping and dry run: `GET /app/imports/{id}` of an uploaded 1,000-row accounts CSV
  (its mapping step: columns, first values, fields, problems) and of one dry-run (its counts
  and first 50 rows) vs `GET /api/v1/imports/{id}` (and `.../rows?run=dry&limit=50`).

The API sets are what the pages ask the runtime services for (read from metadata: the list
view, the layouts), so the ratio is the cost of drawing HTML and of the session.
Figures: median and p95 of the wall time of one page request and of one set of API requests;
the ratio page/API of the medians. A page that does not exist yet (404) is reported as
"page missing", any other failure as "page error". No assertion on any time.

    python bench/bench_web.py                       # SQLite, plus PostgreSQL when a URL is set
    python bench/bench_web.py --backend sqlite --rows 20000 --repeats 20   # a quick look
    python bench/bench_web.py --json out.json       # machine-readable (run_all.py uses it)
    python bench/bench_web.py --markdown            # print the RESULTS.md section

PostgreSQL: METACRM_BENCH_POSTGRES_URL, else METACRM_TEST_POSTGRES_URL. The bench's tenant
(a schema in that database) is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run_all import script_section, write_section  # noqa: E402  (needs ROOT on the path)

HEADING = "## Web pages (issue 12)"
PLATFORM_TOKEN = "bench-platform-token"
SECRET = "bench-web-signing-key-" + "k" * 32
PASSWORD = "bench password 12345"
BATCH = 1000
STAGES = ("qualify", "propose", "negotiate", "won", "lost")
INDUSTRIES = ("technology", "manufacturing", "finance", "retail", "healthcare")
RELATED_ROWS = 10
KANBAN_CARDS = 20
TARGETS = ("list", "record", "kanban", "import-mapping", "import-dry-run")
#: Rows of the CSV file the import pages show (its mapping step, then its dry run).
IMPORT_ROWS = 1000
#: What a page should cost: its median under this, and at most this times its API set.
TARGET_MS = 50
TARGET_RATIO = 1.5


def pg_url() -> str | None:
    return os.environ.get("METACRM_BENCH_POSTGRES_URL") or os.environ.get(
        "METACRM_TEST_POSTGRES_URL"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(backend: str, data_dir: Path) -> Iterator[str]:
    """A `metacrm serve` process (one worker) on a loopback port; its base URL."""
    port = _free_port()
    env = dict(os.environ) | {
        "METACRM_DATA_DIR": str(data_dir),
        "METACRM_PLATFORM_ADMIN_TOKEN": PLATFORM_TOKEN,
        "METACRM_SECRET_KEY": SECRET,
        "METACRM_BATCH_MAX": str(BATCH),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("METACRM_DATABASE_URL", None)
    if backend == "postgresql":
        env["METACRM_DATABASE_URL"] = pg_url() or ""
    process = subprocess.Popen(
        [sys.executable, "-m", "metacrm.platform.cli", "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                stderr = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"server exited: {stderr[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(url)
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


def _ok(response: httpx.Response, *expected: int) -> Any:
    if response.status_code not in (expected or (200,)):
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text[:500]}")
    return response.json() if "json" in response.headers.get("content-type", "") else None


class Tenant:
    """The bench's tenant: its name, the administrator's API client and web client."""

    def __init__(self, url: str, data_dir: Path) -> None:
        self.url, self.data_dir = url, data_dir
        self.name = f"benchweb{uuid.uuid4().hex[:8]}"
        self.admin = f"admin@{self.name}.test"
        self.api = httpx.Client(base_url=url, timeout=600)
        self.web = httpx.Client(base_url=url, timeout=600)
        self.account_ids: list[str] = []
        #: An import at its mapping step, and one whose dry run is done.
        self.import_ids: dict[str, str] = {}

    def create(self) -> None:
        _ok(
            self.api.post(
                "/api/v1/platform/tenants",
                headers={"Authorization": f"Bearer {PLATFORM_TOKEN}"},
                json={"name": self.name, "admin_email": self.admin, "admin_password": PASSWORD},
            ),
            201,
        )
        token = _ok(
            self.api.post(
                "/api/v1/auth/token",
                data={"tenant": self.name, "username": self.admin, "password": PASSWORD},
            )
        )["access_token"]
        self.api.headers["Authorization"] = f"Bearer {token}"
        _ok(
            self.api.post(
                "/api/v1/packs/install",
                params={"example": "crm-core", "confirm": "true", "seed": "false"},
            )
        )

    def batch(self, object_name: str, records: list[dict[str, Any]]) -> list[str]:
        """Create `records` through the batch API, 1,000 a request; their ids in order."""
        started = time.perf_counter()
        ids: list[str] = []
        for start in range(0, len(records), BATCH):
            body = {"records": records[start : start + BATCH]}
            results = _ok(self.api.post(f"/api/v1/data/{object_name}/batch", json=body))
            ids += [result["id"] for result in results["results"]]
        spent = time.perf_counter() - started
        print(f"  {len(ids):,} {object_name} in {spent:.1f} s", flush=True)
        return ids

    def load(self, rows: int, accounts: int, api_rows: int) -> float:
        """Accounts, their contacts and cases, and `rows` opportunities; seconds taken."""
        started = time.perf_counter()
        rnd = random.Random(12)
        self.account_ids = self.batch(
            "account",
            [
                {"name": f"Account {i:05d}", "industry": INDUSTRIES[i % len(INDUSTRIES)]}
                for i in range(accounts)
            ],
        )
        self.batch(
            "contact",
            [
                {
                    "first_name": f"Person{i}",
                    "last_name": f"Contact {i:05d}",
                    "account": self.account_ids[i % accounts],
                    "email": f"person{i}@example.com",
                }
                for i in range(accounts * 2)
            ],
        )
        self.batch(
            "service_case",
            [
                {
                    "subject": f"Case {i:05d}",
                    "account": self.account_ids[i],
                    "status": "new",
                    "priority": "normal",
                }
                for i in range(accounts)
            ],
        )
        start = dt.date(2026, 1, 1)
        through_api = min(rows, api_rows)
        opportunities = [
            {
                "name": f"Opportunity {i:06d}",
                "account": self.account_ids[i % accounts],
                "amount": f"{rnd.randrange(1_000, 5_000_000) / 100:.2f}",
                "close_date": (start + dt.timedelta(days=rnd.randrange(730))).isoformat(),
            }
            for i in range(through_api)
        ]
        ids = self.batch("opportunity", opportunities)
        # Every record starts in the first stage (a stage rule); spread them over the stages
        # in the database, as a pipeline is after months of use.
        by_stage: dict[str, list[str]] = {stage: [] for stage in STAGES[1:]}
        for record_id in ids:
            stage = STAGES[rnd.randrange(len(STAGES))]
            if stage in by_stage:
                by_stage[stage].append(record_id)
        storage = f"tenant_{self.name}"
        asyncio.run(spread_stages(self.data_dir, storage, by_stage))
        if rows > through_api:
            t0 = time.perf_counter()
            asyncio.run(
                clone_opportunities(
                    self.data_dir, storage, rows - through_api, through_api, self.account_ids
                )
            )
            spent = time.perf_counter() - t0
            print(f"  {rows - through_api:,} opportunity copied in SQL in {spent:.1f} s")
        took = time.perf_counter() - started
        # The copies read back through the API like the originals, every one of them.
        listed = _ok(self.api.get("/api/v1/data/opportunity", params={"limit": 1, "count": "true"}))
        if listed["total"] != rows:
            raise RuntimeError(f"{listed['total']} opportunities listed, {rows} loaded")
        _ok(self.api.get(f"/api/v1/data/opportunity/{listed['records'][0]['id']}"))
        return took

    def prepare_imports(self) -> None:
        """Two uploads of an IMPORT_ROWS-row accounts CSV: one left at its mapping step,
        the other dry-run (by the server's worker) until it is checked."""
        lines = ["Account Name,Billing City,Phone"] + [
            f"Import bench {i:05d} Co.,City {i % 50},+86 10 {i:08d}" for i in range(IMPORT_ROWS)
        ]
        content = ("\n".join(lines) + "\n").encode()
        for step in ("mapping", "dry-run"):
            upload = self.api.post(
                "/api/v1/imports",
                data={"object": "account"},
                files={"file": ("accounts.csv", content, "text/csv")},
            )
            self.import_ids[step] = _ok(upload, 201)["id"]
        checked = self.import_ids["dry-run"]
        _ok(self.api.post(f"/api/v1/imports/{checked}/dry-run"), 202)
        deadline = time.monotonic() + 300
        while _ok(self.api.get(f"/api/v1/imports/{checked}"))["status"] != "checked":
            if time.monotonic() > deadline:
                raise RuntimeError("the import's dry run did not end in 5 minutes")
            time.sleep(0.5)

    def sign_in(self) -> None:
        """The web client signs in through the login form, as a browser does."""
        self.web.get("/app/login")
        response = self.web.post(
            "/app/login",
            data={
                "tenant": self.name,
                "username": self.admin,
                "password": PASSWORD,
                "csrf_token": self.web.cookies.get("metacrm_login_csrf", ""),
            },
        )
        if response.status_code != 303:
            raise RuntimeError(f"sign-in failed: {response.status_code} {response.text[:300]}")

    def close(self) -> None:
        self.api.close()
        self.web.close()


# ------------------------------------------------------------------ what each page shows


def _label_paths(api: httpx.Client, object_name: str, columns: list[str]) -> list[str]:
    """`lookup.name` paths for the lookup columns, as the pages ask for them."""
    fields = _ok(api.get(f"/api/v1/metadata/objects/{object_name}"))["fields"]
    by_name = {f["api_name"]: f for f in fields}
    paths = []
    for column in columns:
        field = by_name.get(column, {})
        if field.get("type") in ("lookup", "master_detail"):
            target = _ok(api.get(f"/api/v1/metadata/objects/{field['target']}"))
            name = next(
                (
                    f["api_name"]
                    for f in target["fields"]
                    if f["api_name"] in ("name", "full_name", "number", "subject")
                ),
                None,
            )
            if name:
                paths.append(f"{column}.{name}")
    return paths


def _views(api: httpx.Client) -> list[dict[str, Any]]:
    found = _ok(api.get("/api/v1/metadata/list-views", params={"object": "opportunity"}))
    return list(next(iter(found.values())))


def api_calls(tenant: Tenant) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """The API requests (path, params) returning what each page shows."""
    api = tenant.api
    view = _views(api)[0]
    columns = list(view["columns"])
    fields = ",".join([*columns, *_label_paths(api, "opportunity", columns)])
    list_params: dict[str, Any] = {"limit": 50, "count": "true", "fields": fields}
    if view.get("filter"):
        list_params["where"] = view["filter"]
    if view.get("sort"):
        list_params["order_by"] = view["sort"]
    # The list's totals row: the sum of its number and currency columns over every match.
    meta = _ok(api.get("/api/v1/metadata/objects/opportunity"))["fields"]
    kinds = {f["api_name"]: f.get("returns") or f["type"] for f in meta}
    summed = [c for c in columns if kinds.get(c) in ("number", "currency")]
    listing: list[tuple[str, dict[str, Any]]] = [("/api/v1/data/opportunity", list_params)]
    if summed:
        totals = {"fields": ",".join(summed)} | (
            {"where": view["filter"]} if view.get("filter") else {}
        )
        listing.append(("/api/v1/analytics/totals/opportunity", totals))
    account = tenant.account_ids[len(tenant.account_ids) // 2]
    found = _ok(api.get("/api/v1/metadata/layouts", params={"object": "account"}))
    layout = next(iter(found.values()))[0]
    # Everything the account page (a customer 360) draws, asked of the API: the record, its
    # layout's related lists, a list of every other object pointing at it, the per-stage
    # summary of its open records, the timeline across them, and what the caller may do.
    record = [(f"/api/v1/data/account/{account}", {})]
    listed = set()
    for related in layout["related_lists"]:
        cols = list(related["columns"])
        listed.add((related["object"], related["field"]))
        record.append(
            (
                f"/api/v1/data/{related['object']}",
                {
                    "where": f"{related['field']} == '{account}'",
                    "fields": ",".join([*cols, *_label_paths(api, related["object"], cols)]),
                    "limit": RELATED_ROWS,
                },
            )
        )
    for obj in _ok(api.get("/api/v1/metadata/objects"))["objects"]:
        described = _ok(api.get(f"/api/v1/metadata/objects/{obj['api_name']}"))
        for field in described["fields"]:
            link = (obj["api_name"], field["api_name"])
            if field.get("target") == "account" and link not in listed:
                listed.add(link)
                record.append(
                    (
                        f"/api/v1/data/{obj['api_name']}",
                        {"where": f"{field['api_name']} == '{account}'", "limit": RELATED_ROWS},
                    )
                )
    record += [
        (f"/api/v1/data/account/{account}/related-summary", {}),
        (f"/api/v1/data/account/{account}/timeline", {"children": "true", "limit": 50}),
        (f"/api/v1/data/account/{account}/actions", {}),
    ]
    # The board's figures (count and amount of every column, one grouped query), then the
    # first cards of each column: the compact layout's fields, newest first.
    kanban_field = view.get("kanban_field") or "stage"
    found = _ok(api.get("/api/v1/metadata/layouts", params={"object": "opportunity"}))
    compact = [n for n in next(iter(found.values()))[0]["compact"] if n != kanban_field]
    card_fields = ",".join(["id", "version", kanban_field, *compact])
    kanban: list[tuple[str, dict[str, Any]]] = [
        ("/api/v1/analytics/board/opportunity", {"field": kanban_field})
    ]
    for value in STAGES:
        kanban.append(
            (
                "/api/v1/data/opportunity",
                {
                    "where": f"{kanban_field} == '{value}'",
                    "order_by": "-id",
                    "limit": KANBAN_CARDS,
                    "fields": card_fields,
                },
            )
        )
    mapping, checked = tenant.import_ids["mapping"], tenant.import_ids["dry-run"]
    return {
        "list": listing,
        "record": record,
        "kanban": kanban,
        # The import pages: the import (settings, mapping problems), and its report's rows.
        "import-mapping": [(f"/api/v1/imports/{mapping}", {})],
        "import-dry-run": [
            (f"/api/v1/imports/{checked}", {}),
            (f"/api/v1/imports/{checked}/rows", {"run": "dry", "limit": 50}),
        ],
    }


def page_paths(tenant: Tenant) -> dict[str, str]:
    account = tenant.account_ids[len(tenant.account_ids) // 2]
    return {
        "list": "/app/o/opportunity",
        "record": f"/app/o/account/{account}",
        "kanban": "/app/o/opportunity/kanban",
        "import-mapping": f"/app/imports/{tenant.import_ids['mapping']}",
        "import-dry-run": f"/app/imports/{tenant.import_ids['dry-run']}",
    }


# ------------------------------------------------------------------ timing


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def page_once(client: httpx.Client, path: str) -> float:
    """Seconds one page request takes."""
    t0 = time.perf_counter()
    response = client.get(path)
    spent = time.perf_counter() - t0
    if response.status_code != 200:
        raise RuntimeError(f"{path}: {response.status_code}")
    return spent


def api_once(client: httpx.Client, calls: list[tuple[str, dict[str, Any]]]) -> float:
    """Seconds the API requests returning a page's data take, one after the other."""
    t0 = time.perf_counter()
    for api_path, params in calls:
        response = client.get(api_path, params=params)
        if response.status_code != 200:
            raise RuntimeError(f"{api_path}: {response.status_code} {response.text[:300]}")
    return time.perf_counter() - t0


def measure(tenant: Tenant, repeats: int, warmup: int) -> dict[str, dict[str, Any]]:
    """Page vs API set for each target, interleaved, one request at a time."""
    calls = api_calls(tenant)
    pages = page_paths(tenant)
    out: dict[str, dict[str, Any]] = {}
    for target in TARGETS:
        path = pages[target]
        probe = tenant.web.get(path)
        entry: dict[str, Any] = {"page": path, "api": [p for p, _ in calls[target]]}
        entry["api_params"] = [q for _, q in calls[target]]
        for api_path, params in calls[target]:
            _ok(tenant.api.get(api_path, params=params))
        if probe.status_code == 404:
            entry["missing"] = "page missing (404)"
        elif probe.status_code != 200 or "text/html" not in probe.headers.get("content-type", ""):
            entry["missing"] = f"page error ({probe.status_code})"
        page_times: list[float] = []
        api_times: list[float] = []

        runners: list[tuple[list[float], Callable[[], float]]] = [
            (api_times, partial(api_once, tenant.api, calls[target]))
        ]
        if "missing" not in entry:
            runners.insert(0, (page_times, partial(page_once, tenant.web, path)))
            entry["page_bytes"] = len(probe.content)
        for _ in range(warmup):
            for _times, run in runners:
                run()
        for i in range(repeats):
            for times, run in runners if i % 2 == 0 else runners[::-1]:
                times.append(run())
        entry["api_median_ms"] = statistics.median(api_times) * 1000
        entry["api_p95_ms"] = _p95(api_times) * 1000
        if page_times:
            entry["page_median_ms"] = statistics.median(page_times) * 1000
            entry["page_p95_ms"] = _p95(page_times) * 1000
            entry["ratio"] = entry["page_median_ms"] / entry["api_median_ms"]
        out[target] = entry
        shown = (
            f"page {entry['page_median_ms']:.1f} ms (p95 {entry['page_p95_ms']:.1f})"
            if page_times
            else entry["missing"]
        )
        print(
            f"  {target}: {shown}; API {entry['api_median_ms']:.1f} ms "
            f"(p95 {entry['api_p95_ms']:.1f}, {len(calls[target])} requests)"
            + (f"; ratio {entry['ratio']:.2f}x" if page_times else ""),
            flush=True,
        )
    return out


def _database(data_dir: Path) -> Any:
    from metacrm.platform.db import Database

    return Database(database_url=pg_url() if data_dir.name == "pg" else None, data_dir=data_dir)


async def spread_stages(data_dir: Path, storage: str, by_stage: dict[str, list[str]]) -> None:
    """Set the stage of the records named (and a loss reason on lost ones), in SQL."""
    import sqlalchemy as sa

    db = _database(data_dir)
    table = sa.Table(
        "opportunity",
        sa.MetaData(),
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("stage", sa.String()),
        sa.Column("loss_reason", sa.String()),
    )
    try:
        async with db.tenant(storage) as conn:
            for stage, ids in by_stage.items():
                values = {"stage": stage} | ({"loss_reason": "price"} if stage == "lost" else {})
                for start in range(0, len(ids), BATCH):
                    chunk = [uuid.UUID(i) for i in ids[start : start + BATCH]]
                    await conn.execute(table.update().where(table.c.id.in_(chunk)).values(values))
        if not db.is_sqlite:
            async with db.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql(f'ANALYZE "{storage}".opportunity')
    finally:
        await db.engine.dispose()
        for engine in db._tenant_engines.values():
            await engine.dispose()


async def clone_opportunities(
    data_dir: Path, storage: str, count: int, offset: int, account_ids: list[str]
) -> None:
    """`count` more opportunities copied in SQL from those the batch API wrote: every column
    as theirs, with a new id, number and name, and their own account, stage, amount and date
    (the write path is not what this bench measures, and it takes minutes for 100,000)."""
    import sqlalchemy as sa

    db = _database(data_dir)
    schema = None if db.is_sqlite else storage
    rnd = random.Random(34)
    start = dt.date(2026, 1, 1)
    try:
        async with db.tenant_engine(storage).begin() as conn:
            table = await conn.run_sync(
                lambda sync: sa.Table(
                    "opportunity", sa.MetaData(), autoload_with=sync, schema=schema
                )
            )
            rows = [dict(r) for r in (await conn.execute(sa.select(table).limit(500))).mappings()]
            accounts = {
                str(r["account"]).replace("-", ""): r["account"] for r in rows if r["account"]
            }
            sample = next(iter(accounts.values()))

            def same_form(value: str) -> Any:
                # An id as the column holds it (SQLite: text, with or without dashes).
                if isinstance(sample, str):
                    return value if "-" in sample else uuid.UUID(value).hex
                return uuid.UUID(value)

            def new_id() -> Any:
                return same_form(str(uuid.uuid4()))

            batch = []
            for i in range(count):
                row = dict(rows[i % len(rows)])
                n = offset + i
                stage = STAGES[rnd.randrange(len(STAGES))]
                amount = rnd.randrange(1_000, 5_000_000) / 100
                row |= {
                    "id": new_id(),
                    "name": f"Opportunity {n:06d}",
                    "account": same_form(account_ids[n % len(account_ids)]),
                    "stage": stage,
                    "loss_reason": "price" if stage == "lost" else None,
                    "amount": amount if db.is_sqlite else Decimal(f"{amount:.2f}"),
                    "close_date": start + dt.timedelta(days=rnd.randrange(730)),
                }
                if "number" in row:
                    row["number"] = f"BENCH-{n:06d}"
                batch.append(row)
                if len(batch) == 5_000:
                    await conn.execute(table.insert(), batch)
                    batch = []
            if batch:
                await conn.execute(table.insert(), batch)
        if not db.is_sqlite:
            async with db.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql(f'ANALYZE "{storage}".opportunity')
    finally:
        await db.engine.dispose()
        for engine in db._tenant_engines.values():
            await engine.dispose()


async def _drop(storage: str) -> None:
    from metacrm.platform import system_tables
    from metacrm.platform.db import Database

    db = Database(database_url=pg_url(), data_dir=Path(tempfile.gettempdir()))
    try:
        await db.drop_tenant_storage(storage)
        async with db.system() as conn:
            tenants = system_tables.tenants
            await conn.execute(tenants.delete().where(tenants.c.name == storage[len("tenant_") :]))
    finally:
        await db.engine.dispose()


def run_backend(
    backend: str, rows: int, accounts: int, repeats: int, warmup: int, api_rows: int
) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": backend, "rows": rows, "accounts": accounts}
    out["repeats"] = repeats
    with tempfile.TemporaryDirectory(prefix="metacrm-bench-web-") as tmp:
        data_dir = Path(tmp) / ("pg" if backend == "postgresql" else "data")
        with server(backend, data_dir) as url:
            tenant = Tenant(url, data_dir)
            try:
                tenant.create()
                print(f"{backend}: loading {rows:,} opportunities...", flush=True)
                out["load_seconds"] = tenant.load(rows, accounts, api_rows)
                out["api_rows"] = min(rows, api_rows)
                print(f"  loaded in {out['load_seconds']:.0f} s", flush=True)
                tenant.prepare_imports()
                tenant.sign_in()
                version = _ok(tenant.api.get("/healthz"))
                out["server"] = version
                out["targets"] = measure(tenant, repeats, warmup)
            finally:
                tenant.close()
                if backend == "postgresql":
                    asyncio.run(_drop(f"tenant_{tenant.name}"))
    return out


# ------------------------------------------------------------------ output


NAMES = {
    "list": "list of 50 (`/app/o/opportunity`)",
    "record": "account record page: customer 360 (`/app/o/account/{id}`)",
    "kanban": "opportunity kanban (`/app/o/opportunity/kanban`)",
    "import-mapping": f"import mapping step, {IMPORT_ROWS:,}-row CSV (`/app/imports/{{id}}`)",
    "import-dry-run": "import dry-run report, first 50 rows (`/app/imports/{id}`)",
}


def _verdict(entry: dict[str, Any]) -> str:
    """Whether a page meets the target: median under 50 ms, at most 1.5x its API set."""
    fast = entry["page_median_ms"] < TARGET_MS
    close = entry["ratio"] <= TARGET_RATIO
    if fast and close:
        return "yes"
    missed = ([] if fast else [f">= {TARGET_MS} ms"]) + ([] if close else [f"> {TARGET_RATIO}x"])
    return "no (" + ", ".join(missed) + ")"


def table(result: dict[str, Any]) -> str:
    lines = [
        "| page | page median ms | page p95 ms | API median ms | API p95 ms | API requests "
        "| page / API | target met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for target in TARGETS:
        e = result["targets"][target]
        n = len(e["api"])
        if "missing" in e:
            lines.append(
                f"| {NAMES[target]} | {e['missing']} | | {e['api_median_ms']:.1f} "
                f"| {e['api_p95_ms']:.1f} | {n} | | |"
            )
            continue
        lines.append(
            f"| {NAMES[target]} | {e['page_median_ms']:.1f} | {e['page_p95_ms']:.1f} "
            f"| {e['api_median_ms']:.1f} | {e['api_p95_ms']:.1f} | {n} | {e['ratio']:.2f}x "
            f"| {_verdict(e)} |"
        )
    return "\n".join(lines)


def section(results: dict[str, Any], command: str) -> str:
    """The "Web pages (issue 12)" section of RESULTS.md, with its heading."""
    return HEADING + "\n\n" + body(results, command)


def body(results: dict[str, Any], command: str) -> str:
    """The figures of a run, as markdown: command, machine, date, a table per database."""
    intro = (
        "`bench/bench_web.py`: a real `metacrm serve` (one worker) per database, timed from an "
        "httpx client over loopback, one request at a time, page and API interleaved. The API "
        "side is the set of JSON requests returning the same data as the page, sent one after "
        "the other, as the page asks the services for them: list: the first list view's 50 "
        "rows with `count=true` and its totals row (`/api/v1/analytics/totals`); record: the "
        "record, its layout's 3 related lists and a list of every other object pointing at it, "
        f"{RELATED_ROWS} rows each, its per-stage summary, its timeline with its children and "
        "its allowed actions (everything the customer 360 draws); kanban: the board's figures "
        "(`/api/v1/analytics/board`, count "
        f"and amount per column) and {KANBAN_CARDS} cards per stage value (5 in crm-core); "
        f"import pages ({IMPORT_ROWS:,}-row accounts CSV): the import (`/api/v1/imports/{{id}}`"
        ", with its mapping's problems), and for the dry run also its first 50 rows. "
        "Both as the tenant's administrator. Target: page median under 50 ms and at most "
        "1.5x the API."
    )
    return script_section(results, command, intro, _backend_lines)


def _backend_lines(result: dict[str, Any]) -> list[str]:
    return [
        f"{result['rows']:,} opportunities over {result['accounts']:,} accounts (2 contacts "
        f"and 1 case each); {result['api_rows']:,} opportunities written through the batch "
        f"API, the rest copied in SQL ({result['load_seconds']:.0f} s in all); "
        f"{result['repeats']} timed repeats per side after warm-up.",
        "",
        table(result),
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "all"], default="all")
    parser.add_argument("--rows", type=int, default=100_000, help="opportunities to load")
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument(
        "--api-rows",
        type=int,
        default=5_000,
        help="opportunities written through the batch API; the rest are copied in SQL",
    )
    parser.add_argument("--repeats", type=int, default=60, help="timed requests per side")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", action="store_true", help="print the RESULTS.md section")
    parser.add_argument(
        "--write",
        action="store_true",
        help="put the section into bench/RESULTS.md (replacing "
        "an earlier one of this script; other sections are left as they are)",
    )
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "all" else [args.backend]
    results: dict[str, Any] = {}
    for backend in backends:
        if backend == "postgresql" and not pg_url():
            results[backend] = {
                "skipped": "set METACRM_BENCH_POSTGRES_URL or METACRM_TEST_POSTGRES_URL"
            }
            print(f"{backend}: skipped ({results[backend]['skipped']})")
            continue
        results[backend] = run_backend(
            backend, args.rows, args.accounts, args.repeats, args.warmup, args.api_rows
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    shown_args = [a for a in sys.argv[1:] if a != str(args.json)]
    shown_args = [a for a in shown_args if a != "--json"]
    command = "nice python bench/bench_web.py " + " ".join(shown_args)
    if pg_url() and "postgresql" in backends:
        command = "METACRM_BENCH_POSTGRES_URL=postgresql://…/<database> " + command
    if args.markdown or args.write:
        print("\n" + section(results, command.strip()))
    if args.write:
        write_section(HEADING, section(results, command.strip()))


if __name__ == "__main__":
    main()
