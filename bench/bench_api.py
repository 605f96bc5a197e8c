"""Generated record endpoints vs a hand-written FastAPI + SQLAlchemy Core app doing the same work.

Both applications run in this process, on one event loop, driven one request at a time by
``httpx.AsyncClient`` over ``httpx.ASGITransport`` (no sockets: the figures are the cost of the
application, not of a network stack). Both read and write the very same table: the one metacrm
created for the ``deal`` object (the hand-written app declares an identical ``sa.Table`` by hand).

Per operation and per app, each round sends ``--requests`` requests; a round yields the median
wall time of one request and the CPU time (``time.process_time``, all threads of this process,
so SQLite's work is included and PostgreSQL's server work is not) per 1,000 requests. The
figures reported are the medians over ``--rounds`` rounds; the apps alternate who goes first.

    python bench/bench_api.py                   # SQLite, plus PostgreSQL when a URL is set
    python bench/bench_api.py --json out.json   # machine-readable results (run_all.py uses it)
    python bench/bench_api.py --profile cprofile --backend sqlite   # where metacrm spends time

PostgreSQL: METACRM_BENCH_POSTGRES_URL, else METACRM_TEST_POSTGRES_URL (e.g.
postgresql://postgres@127.0.0.1:5432/bench_dev). The bench makes its own tenant (a schema) and
drops it at the end. No assertion is made on any timing: these are measurements only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import jwt
import sqlalchemy as sa
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.types import TypeDecorator
from starlette.responses import JSONResponse

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from metacrm.platform.app import create_app  # noqa: E402
from metacrm.platform.db import postgres_async_url  # noqa: E402
from metacrm.platform.settings import Settings  # noqa: E402

PLATFORM_TOKEN = "bench-platform-token"
SECRET = "bench-signing-key-" + "k" * 32
PASSWORD = "bench password 12345"
WHERE = "amount > 500 and stage == 'won'"
OPS = ("create", "get", "list", "patch")

DEAL = {
    "api_name": "deal",
    "label": "Deal",
    "fields": [
        {"api_name": "name", "type": "text", "required": True, "max_length": 120},
        {"api_name": "amount", "type": "currency", "precision": 18, "scale": 2},
        {
            "api_name": "stage",
            "type": "picklist",
            "values": [{"value": "new"}, {"value": "won"}, {"value": "lost"}],
            "default": "new",
        },
        {"api_name": "close_date", "type": "date"},
    ],
}


def pg_url() -> str | None:
    return os.environ.get("METACRM_BENCH_POSTGRES_URL") or os.environ.get(
        "METACRM_TEST_POSTGRES_URL"
    )


# =============================================================== the hand-written baseline


def uuid7() -> uuid.UUID:
    """Time-ordered UUID, like metacrm's, so both apps append to the primary-key index."""
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return uuid.UUID(int=value)


class Money(TypeDecorator[Decimal]):
    """NUMERIC(18,2) on PostgreSQL; REAL on SQLite (how metacrm stores currency there)."""

    impl = sa.Numeric(18, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Float())
        return dialect.type_descriptor(sa.Numeric(18, 2))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return float(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return Decimal(repr(value)).quantize(Decimal("0.01")) if isinstance(value, float) else value


def deal_table(schema: str | None, sqlite: bool) -> sa.Table:
    """The same columns metacrm made for `deal` (system columns, then one per field)."""
    stamp = sa.DateTime() if sqlite else sa.DateTime(timezone=True)  # naive UTC on SQLite
    return sa.Table(
        "deal",
        sa.MetaData(),
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", stamp, nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("updated_at", stamp, nullable=False),
        sa.Column("updated_by", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("deleted_at", stamp, nullable=True),
        sa.Column("name", sa.String(120)),
        sa.Column("amount", Money()),
        sa.Column("stage", sa.String(100)),
        sa.Column("close_date", sa.Date()),
        schema=schema,
    )


def sqlite_engine(path: Path) -> AsyncEngine:
    """aiosqlite with the pragmas metacrm uses (WAL, synchronous=NORMAL, foreign keys)."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    return engine


def pg_engine(url: str) -> AsyncEngine:
    # The same pool options as metacrm's Database, so pooling is not what differs.
    return create_async_engine(
        postgres_async_url(url), pool_size=10, max_overflow=20, pool_pre_ping=True
    )


Stage = Literal["new", "won", "lost"]


class DealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=120)
    amount: Decimal | None = Field(None, max_digits=18, decimal_places=2)
    stage: Stage = "new"
    close_date: dt.date | None = None


class DealPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=120)
    amount: Decimal | None = Field(None, max_digits=18, decimal_places=2)
    stage: Stage | None = None
    close_date: dt.date | None = None


def _json(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def bearer_user(request: Request) -> uuid.UUID:
    """The hand-written app's auth: a bearer JWT (HS256, exp and sub required), decoded by pyjwt."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        raise HTTPException(401, "bearer token required")
    try:
        claims = jwt.decode(
            token.strip(),
            request.app.state.jwt_key,
            algorithms=["HS256"],
            options={"require": ["exp", "sub"]},
        )
        return uuid.UUID(claims["sub"])
    except (jwt.InvalidTokenError, ValueError):
        raise HTTPException(401, "invalid token") from None


User = Annotated[uuid.UUID, Depends(bearer_user)]


def handwritten_app(engine: AsyncEngine, table: sa.Table, key: str) -> FastAPI:
    """Create, get, filtered list and patch of deals; bearer JWT; pydantic input; JSON out."""
    sqlite = engine.dialect.name == "sqlite"
    shown = [c for c in table.c if c.name != "deleted_at"]
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    app.state.jwt_key = key

    def now() -> dt.datetime:
        stamp = dt.datetime.now(dt.UTC)
        return stamp.replace(tzinfo=None) if sqlite else stamp

    def record(row: Any) -> dict[str, Any]:
        return {k: _json(v) for k, v in row._mapping.items()}

    def one(row: Any, status: int = 200, **headers: str) -> JSONResponse:
        if row is None:
            raise HTTPException(404, "no such deal")
        body = record(row)
        return JSONResponse(
            body, status_code=status, headers={"ETag": f'"{body["version"]}"', **headers}
        )

    @app.post("/deals", status_code=201)
    async def create(deal: DealIn, who: User) -> JSONResponse:
        stamp = now()
        values = deal.model_dump() | {
            "id": uuid7(),
            "owner_id": who,
            "created_at": stamp,
            "created_by": who,
            "updated_at": stamp,
            "updated_by": who,
            "version": 1,
        }
        async with engine.begin() as conn:
            row = (await conn.execute(table.insert().values(values).returning(*shown))).first()
        return one(row, 201, Location=f"/deals/{row.id}")

    @app.get("/deals/{deal_id}")
    async def get(deal_id: uuid.UUID, who: User) -> JSONResponse:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(*shown).where(table.c.id == deal_id, table.c.deleted_at.is_(None))
                )
            ).first()
        return one(row)

    @app.get("/deals")
    async def list_(
        who: User,
        amount_gt: Decimal | None = None,
        stage: Stage | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        after: uuid.UUID | None = None,
    ) -> JSONResponse:
        query = sa.select(*shown).where(table.c.deleted_at.is_(None))
        if amount_gt is not None:
            query = query.where(table.c.amount > amount_gt)
        if stage is not None:
            query = query.where(table.c.stage == stage)
        if after is not None:
            query = query.where(table.c.id > after)
        query = query.order_by(table.c.id).limit(limit + 1)
        async with engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        records = [record(r) for r in rows[:limit]]
        cursor = records[-1]["id"] if len(rows) > limit else None
        return JSONResponse({"records": records, "next_cursor": cursor})

    @app.patch("/deals/{deal_id}")
    async def patch(deal_id: uuid.UUID, change: DealPatch, who: User) -> JSONResponse:
        values = change.model_dump(exclude_unset=True)
        if "name" in values and values["name"] is None:
            raise HTTPException(422, "name is required")
        values |= {"updated_at": now(), "updated_by": who, "version": table.c.version + 1}
        async with engine.begin() as conn:
            row = (
                await conn.execute(
                    table.update()
                    .where(table.c.id == deal_id, table.c.deleted_at.is_(None))
                    .values(values)
                    .returning(*shown)
                )
            ).first()
        return one(row)

    return app


def noop_app() -> FastAPI:
    """The floor: httpx + ASGI + FastAPI routing and a JSON response, no auth, no database."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/noop")
    async def noop() -> JSONResponse:
        return JSONResponse({"ok": True})

    return app


# =============================================================== setup and seeding


async def forget_tenant(conn: Any, name: str) -> None:
    """Remove a bench tenant's system rows (its storage is dropped separately)."""
    from metacrm.platform import system_tables

    tenants = system_tables.tenants
    users = getattr(system_tables, "users", None)  # users moved into tenant storage later
    if users is not None:
        tenant_id = sa.select(tenants.c.id).where(tenants.c.name == name)
        await conn.execute(users.delete().where(users.c.tenant_id.in_(tenant_id)))
    await conn.execute(tenants.delete().where(tenants.c.name == name))


class Bench:
    """Both apps on one backend, the tenant, the seeded ids and the HTTP clients."""

    def __init__(self, backend: str, rows: int) -> None:
        self.backend, self.rows = backend, rows

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Bench]:
        tmp = tempfile.TemporaryDirectory(prefix="metacrm-bench-")
        url = pg_url() if self.backend == "postgresql" else None
        settings = Settings(
            data_dir=Path(tmp.name) / "data",
            database_url=url,
            platform_admin_token=PLATFORM_TOKEN,
            secret_key=SECRET,
        )
        self.app = create_app(settings)
        async with self.app.router.lifespan_context(self.app):
            self.state = self.app.state.metacrm
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=True)
            self.gen = httpx.AsyncClient(transport=transport, base_url="http://gen")
            self.tenant = f"bench{uuid.uuid4().hex[:10]}"
            self.storage = f"tenant_{self.tenant}"
            try:
                await self._tenant()
                sqlite = url is None
                if sqlite:
                    engine = sqlite_engine(settings.data_dir / "tenants" / f"{self.storage}.db")
                else:
                    engine = pg_engine(url or "")
                self.engine = engine
                self.table = deal_table(None if sqlite else self.storage, sqlite)
                await self._seed()
                hand = handwritten_app(engine, self.table, SECRET)
                self.hand = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=hand), base_url="http://hand"
                )
                self.floor = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=noop_app()), base_url="http://floor"
                )
                self.headers = {"Authorization": f"Bearer {self.token}"}
                await self._check_same_answers()
                yield self
            finally:
                for client in ("gen", "hand", "floor"):
                    if hasattr(self, client):
                        await getattr(self, client).aclose()
                if hasattr(self, "engine"):
                    await self.engine.dispose()
                if not self.state.db.is_sqlite:
                    await self._drop_tenant()
        tmp.cleanup()

    async def _tenant(self) -> None:
        admin = f"admin@{self.tenant}.test"
        r = await self.gen.post(
            "/api/v1/platform/tenants",
            headers={"Authorization": f"Bearer {PLATFORM_TOKEN}"},
            json={"name": self.tenant, "admin_email": admin, "admin_password": PASSWORD},
        )
        r.raise_for_status()
        r = await self.gen.post(
            "/api/v1/auth/token",
            data={"tenant": self.tenant, "username": admin, "password": PASSWORD},
        )
        r.raise_for_status()
        self.token = r.json()["access_token"]
        self.user_id = uuid.UUID(jwt.decode(self.token, SECRET, algorithms=["HS256"])["sub"])
        r = await self.gen.post(
            "/api/v1/metadata/apply",
            headers={"Authorization": f"Bearer {self.token}"},
            json={"objects": [DEAL]},
        )
        r.raise_for_status()

    async def _seed(self) -> None:
        """`rows` deals: amount uniform in [0, 1000), stage new/won/lost; one executemany."""
        rnd = random.Random(42)
        sqlite = self.engine.dialect.name == "sqlite"
        stamp = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        stamp = stamp.replace(tzinfo=None) if sqlite else stamp
        rows = []
        for i in range(self.rows):
            rows.append(
                {
                    "id": uuid7(),
                    "owner_id": self.user_id,
                    "created_at": stamp,
                    "created_by": self.user_id,
                    "updated_at": stamp,
                    "updated_by": self.user_id,
                    "version": 1,
                    "deleted_at": None,
                    "name": f"Deal {i}",
                    "amount": Decimal(rnd.randrange(0, 100_000)) / 100,
                    "stage": rnd.choice(("new", "won", "lost")),
                    "close_date": dt.date(2026, 1, 1) + dt.timedelta(days=rnd.randrange(365)),
                }
            )
        async with self.engine.begin() as conn:
            await conn.execute(self.table.insert(), rows)
            if not sqlite:
                await conn.exec_driver_sql(f'ANALYZE "{self.storage}".deal')
        self.ids = [str(r["id"]) for r in rows]

    async def _check_same_answers(self) -> None:
        """Both apps must see the same rows: same record by id, same first page of the list."""
        some = self.ids[len(self.ids) // 2]
        a = (await self.gen.get(f"/api/v1/data/deal/{some}", headers=self.headers)).json()
        b = (await self.hand.get(f"/deals/{some}", headers=self.headers)).json()
        assert {k: a.get(k) for k in b} == b, (a, b)
        a = await self.gen.get(
            "/api/v1/data/deal", params={"where": WHERE, "limit": 50}, headers=self.headers
        )
        b = await self.hand.get(
            "/deals", params={"amount_gt": 500, "stage": "won", "limit": 50}, headers=self.headers
        )
        ids_a = [r["id"] for r in a.json()["records"]]
        ids_b = [r["id"] for r in b.json()["records"]]
        assert ids_a == ids_b and len(ids_a) == 50, (a.text[:300], b.text[:300])

    async def _drop_tenant(self) -> None:
        db = self.state.db
        await db.drop_tenant_storage(self.storage)
        async with db.system() as conn:
            await forget_tenant(conn, self.tenant)

    # ------------------------------------------------------------ one request of each kind

    def request(self, app: str, op: str) -> Callable[[int], Awaitable[httpx.Response]]:
        """A function sending request number i of `op` to `app` ('generated' or 'handwritten')."""
        gen = app == "generated"
        client = self.gen if gen else self.hand
        base = "/api/v1/data/deal" if gen else "/deals"
        h = self.headers
        ids = self.ids
        if op == "create":

            def call(i: int) -> Awaitable[httpx.Response]:
                body = {
                    "name": f"New deal {i}",
                    "amount": f"{(i * 37) % 1000}.50",
                    "stage": ("new", "won", "lost")[i % 3],
                    "close_date": "2026-06-30",
                }
                return client.post(base, json=body, headers=h)

        elif op == "get":

            def call(i: int) -> Awaitable[httpx.Response]:
                return client.get(f"{base}/{ids[(i * 7919) % len(ids)]}", headers=h)

        elif op == "list":
            params: dict[str, Any] = (
                {"where": WHERE, "limit": 50}
                if gen
                else {"amount_gt": 500, "stage": "won", "limit": 50}
            )

            def call(i: int) -> Awaitable[httpx.Response]:
                return client.get(base, params=params, headers=h)

        elif op == "patch":

            def call(i: int) -> Awaitable[httpx.Response]:
                body = {"amount": f"{(i * 53) % 1000}.25"}
                return client.patch(f"{base}/{ids[(i * 104729) % len(ids)]}", json=body, headers=h)

        else:
            raise ValueError(op)
        return call


EXPECTED = {"create": 201, "get": 200, "list": 200, "patch": 200}


async def timed(call: Callable[[int], Awaitable[httpx.Response]], n: int, expect: int, start: int):
    """(median seconds per request, CPU seconds per 1,000 requests) over n requests."""
    latencies = []
    cpu0 = time.process_time()
    for i in range(start, start + n):
        t0 = time.perf_counter()
        response = await call(i)
        latencies.append(time.perf_counter() - t0)
        if response.status_code != expect:
            raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
    cpu = time.process_time() - cpu0
    return statistics.median(latencies), cpu / n * 1000


async def run_backend(backend: str, rows: int, rounds: int, n: int, warmup: int) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": backend, "rows": rows, "rounds": rounds, "requests": n}
    async with Bench(backend, rows).running() as b:
        async with b.engine.connect() as conn:
            if backend == "postgresql":
                out["server_version"] = await conn.scalar(sa.text("SHOW server_version"))
            else:
                out["server_version"] = await conn.scalar(sa.text("select sqlite_version()"))
        counter = 0
        # Warm-up: compiled-statement caches, the tenant cache, pools, pydantic validators.
        for op in OPS:
            for app in ("generated", "handwritten"):
                await timed(b.request(app, op), warmup, EXPECTED[op], counter)
                counter += warmup
        samples: dict[str, dict[str, list[tuple[float, float]]]] = {
            op: {"generated": [], "handwritten": []} for op in OPS
        }
        floor: list[tuple[float, float]] = []

        def floor_call(i: int) -> Awaitable[httpx.Response]:
            return b.floor.get("/noop")

        await timed(floor_call, warmup, 200, 0)
        for r in range(rounds):
            floor.append(await timed(floor_call, n, 200, 0))
            for op in OPS:
                order = ("generated", "handwritten") if r % 2 == 0 else ("handwritten", "generated")
                for app in order:
                    samples[op][app].append(
                        await timed(b.request(app, op), n, EXPECTED[op], counter)
                    )
                    counter += n
        ops: dict[str, Any] = {}
        for op in OPS:
            entry: dict[str, Any] = {}
            for app in ("generated", "handwritten"):
                entry[app] = {
                    "median_ms": statistics.median(s[0] for s in samples[op][app]) * 1000,
                    "cpu_ms_per_1000": statistics.median(s[1] for s in samples[op][app]) * 1000,
                    "rounds_median_ms": [round(s[0] * 1000, 3) for s in samples[op][app]],
                }
            entry["ratio_wall"] = (
                entry["generated"]["median_ms"] / entry["handwritten"]["median_ms"]
            )
            entry["ratio_cpu"] = (
                entry["generated"]["cpu_ms_per_1000"] / entry["handwritten"]["cpu_ms_per_1000"]
            )
            ops[op] = entry
        out["ops"] = ops
        out["floor"] = {
            "median_ms": statistics.median(s[0] for s in floor) * 1000,
            "cpu_ms_per_1000": statistics.median(s[1] for s in floor) * 1000,
        }
        out["breakdown"] = await breakdown(b, max(350, n))
        out["statements"] = await statements(b)
    return out


# =============================================================== where the extra time goes


async def breakdown(b: Bench, n: int) -> dict[str, float]:
    """Per-call cost (µs) of pieces of metacrm's request path, in-process, no HTTP.

    The pieces are interleaved in 7 rounds of n // 7 calls each, and the figure is the median
    over rounds; the version check's cost is the median of the per-round paired difference.
    """
    from metacrm import formula
    from metacrm.platform.auth import read_token
    from metacrm.runtime.listing import ListQuery, _filter, list_records
    from metacrm.runtime.serialize import row_to_record

    state, db = b.state, b.state.db
    identity = read_token(b.token, state.signing_key)
    async with state.tenant(identity, writes=False) as session:
        conn, ct, actor = session.conn, session.ct, session.actor
        co = ct.object("deal")
        rows = (
            (
                await conn.execute(
                    sa.select(*[co.sql(c).label(c) for c in ("id", *co.fields)])
                    .select_from(co.table)
                    .limit(50)
                )
            )
            .mappings()
            .all()
        )

    async def jwt_decode() -> None:
        read_token(b.token, state.signing_key)

    async def tx_plain() -> None:
        async with db.tenant(identity.storage, writes=False):
            pass

    async def tx_with_version() -> None:
        async with state.tenant(identity, writes=False):
            pass

    async def compile_filter() -> None:
        formula.compile_filter(WHERE, co.obj, ct.model, ct.table_for)

    async def cached_filter() -> None:
        _filter(ct, co, WHERE, actor)

    async def serialize_50() -> None:
        [row_to_record(r) for r in rows]

    async def list_no_http() -> None:
        async with state.tenant(identity, writes=False) as session2:
            await list_records(
                session2.conn,
                session2.ct,
                session2.ct.object("deal"),
                ListQuery(where=WHERE, limit=50),
                actor=session2.actor,
                cursor_key=b"k",
            )

    pieces = {
        "jwt_decode_us": jwt_decode,
        "tenant_tx_without_version_check_us": tx_plain,
        "tenant_tx_with_version_check_us": tx_with_version,
        "compile_where_filter_us": compile_filter,
        "where_filter_cached_us": cached_filter,
        "serialize_50_rows_us": serialize_50,
        "list_records_service_no_http_us": list_no_http,
    }
    for fn in pieces.values():
        for _ in range(10):
            await fn()
    per_round: dict[str, list[float]] = {k: [] for k in pieces}
    calls = max(10, n // 7)
    for _ in range(7):
        for key, fn in pieces.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                await fn()
            per_round[key].append((time.perf_counter() - t0) / calls * 1e6)
    out = {k: statistics.median(v) for k, v in per_round.items()}
    out["version_check_us"] = statistics.median(
        w - wo
        for w, wo in zip(
            per_round["tenant_tx_with_version_check_us"],
            per_round["tenant_tx_without_version_check_us"],
            strict=True,
        )
    )
    return out


async def statements(b: Bench, n: int = 10) -> dict[str, dict[str, str]]:
    """The SQL statements one request of each kind sends, per app (as SQLAlchemy sees them).

    Driver-level BEGIN/COMMIT of the hand-written app (pysqlite's implicit BEGIN, asyncpg's
    transaction()) do not pass through SQLAlchemy and are not listed; metacrm's explicit
    `BEGIN [IMMEDIATE]` on SQLite is.
    """
    db = b.state.db
    engines = {
        "generated": db.tenant_engine(b.storage) if db.is_sqlite else db.engine,
        "handwritten": b.engine,
    }
    out: dict[str, dict[str, str]] = {op: {} for op in OPS}
    for app, engine in engines.items():
        log: list[str] = []

        def listener(conn: Any, cursor: Any, statement: str, *_: Any, _log: list = log) -> None:
            _log.append(" ".join(statement.split()[:1]).upper())

        event.listen(engine.sync_engine, "before_cursor_execute", listener)
        try:
            for op in OPS:
                log.clear()
                await timed(b.request(app, op), n, EXPECTED[op], 50_000)
                counts: dict[str, int] = {}
                for verb in log:
                    counts[verb] = counts.get(verb, 0) + 1
                out[op][app] = f"{len(log) / n:g}: " + ", ".join(
                    f"{verb} x{c / n:g}" for verb, c in counts.items()
                )
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", listener)
    return out


# =============================================================== profiling and output


async def profile(backend: str, rows: int, n: int, tool: str) -> None:
    """Profile n generated requests of each operation; print the top of the profile."""
    async with Bench(backend, rows).running() as b:
        for op in OPS:
            await timed(b.request("generated", op), 50, EXPECTED[op], 0)
        for op in OPS:
            call = b.request("generated", op)
            print(f"\n===================== {op} ({backend}, {n} requests)")
            if tool == "pyinstrument":
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.0002, async_mode="enabled")
                profiler.start()
                await timed(call, n, EXPECTED[op], 10_000)
                profiler.stop()
                print(profiler.output_text(unicode=False, color=False, show_all=False))
            else:
                import cProfile
                import pstats

                prof = cProfile.Profile()
                prof.enable()
                await timed(call, n, EXPECTED[op], 10_000)
                prof.disable()
                pstats.Stats(prof).sort_stats("cumulative").print_stats(45)


def table(result: dict[str, Any]) -> str:
    lines = [
        "| operation | generated median ms | hand-written median ms | wall ratio "
        "| generated CPU ms / 1,000 req | hand-written CPU ms / 1,000 req | CPU ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for op, e in result["ops"].items():
        g, h = e["generated"], e["handwritten"]
        lines.append(
            f"| {op} | {g['median_ms']:.2f} | {h['median_ms']:.2f} | {e['ratio_wall']:.2f}x "
            f"| {g['cpu_ms_per_1000']:.0f} | {h['cpu_ms_per_1000']:.0f} | {e['ratio_cpu']:.2f}x |"
        )
    f = result["floor"]
    lines.append(
        f"| no-op floor (httpx + ASGI + FastAPI) | {f['median_ms']:.2f} | | "
        f"| {f['cpu_ms_per_1000']:.0f} | | |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "all"], default="all")
    parser.add_argument("--rows", type=int, default=10_000, help="seeded deals")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=200, help="requests per op per round")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--profile", choices=["cprofile", "pyinstrument"])
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "all" else [args.backend]
    if args.profile:
        for backend in backends:
            if backend == "postgresql" and not pg_url():
                continue
            asyncio.run(profile(backend, args.rows, args.requests, args.profile))
        return
    results: dict[str, Any] = {}
    for backend in backends:
        if backend == "postgresql" and not pg_url():
            results[backend] = {
                "skipped": "set METACRM_BENCH_POSTGRES_URL or METACRM_TEST_POSTGRES_URL"
            }
            print(f"\n## {backend}: skipped ({results[backend]['skipped']})")
            continue
        result = asyncio.run(
            run_backend(backend, args.rows, args.rounds, args.requests, args.warmup)
        )
        results[backend] = result
        print(f"\n## {backend} {result['server_version']}, {args.rows} rows\n")
        print(table(result))
        print("\nbreakdown (µs per call):", json.dumps(result["breakdown"], indent=1))
        print("statements per request:", json.dumps(result["statements"], indent=1))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
