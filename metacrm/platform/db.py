"""Database engines: the system tables, and the storage of each tenant (schema or file)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from metacrm.errors import DatabaseBusy
from metacrm.formula.regex import sqlite_regexp

SYSTEM_SCHEMA = "metacrm"
#: How long a SQLite writer waits for the file's write lock by default (in-process queue,
#: then SQLite's own busy handler for writers of other processes).
SQLITE_BUSY_SECONDS = 30.0
TENANT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


def _sqlite_engine(path: Path, busy_seconds: float = SQLITE_BUSY_SECONDS) -> AsyncEngine:
    """A SQLite engine whose transactions include DDL, with foreign keys and WAL on."""
    engine = create_async_engine(
        f"sqlite+aiosqlite:///{path}", connect_args={"timeout": busy_seconds}
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself so DDL rolls back with the transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "foreign_keys=ON",
            "synchronous=NORMAL",
            f"busy_timeout={int(busy_seconds * 1000)}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()
        # REGEXP in linear time (RE2), replacing the backtracking `re` one that SQLAlchemy's
        # dialect registered in its on_connect, which runs before this listener.
        dbapi_connection.create_function("regexp", 2, sqlite_regexp, deterministic=True)

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        # Writers take the write lock up front: a deferred BEGIN that later writes can
        # fail with SQLITE_BUSY no matter the timeout.
        writes = conn.get_execution_options().get("writes", True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

    return engine


def postgres_async_url(url: str) -> str:
    """`url` with the asyncpg driver, whatever driver it named."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


class Database:
    """The engines of one metacrm deployment, SQLite files or one PostgreSQL database."""

    def __init__(
        self,
        *,
        database_url: str | None,
        data_dir: Path,
        busy_seconds: float = SQLITE_BUSY_SECONDS,
    ) -> None:
        self.data_dir = data_dir
        self.busy_seconds = busy_seconds
        self.is_sqlite = not database_url or database_url.startswith("sqlite")
        self._tenant_engines: dict[str, AsyncEngine] = {}
        #: One writer at a time per SQLite file, queued in order: SQLite allows one writer
        #: anyway, and its busy handler's sleeps made waiting writers' latency seconds long.
        self._writers: dict[str, asyncio.Lock] = {}
        if self.is_sqlite:
            data_dir.mkdir(parents=True, exist_ok=True)
            (data_dir / "tenants").mkdir(exist_ok=True)
            self.engine = _sqlite_engine(data_dir / "system.db", busy_seconds)
        else:
            self.engine = create_async_engine(
                postgres_async_url(database_url or ""),
                pool_size=10,
                max_overflow=20,
                pool_pre_ping=True,
            )

    @property
    def dialect(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    # ---------------------------------------------------------------- system

    @asynccontextmanager
    async def system(self) -> AsyncIterator[AsyncConnection]:
        """A transaction on the system tables."""
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(**self.system_options())
            async with conn.begin():
                yield conn

    def system_options(self) -> dict[str, Any]:
        if self.is_sqlite:
            return {}
        return {"schema_translate_map": {None: SYSTEM_SCHEMA}}

    # ---------------------------------------------------------------- tenants

    @staticmethod
    def storage_name(tenant: str) -> str:
        """The schema (PostgreSQL) or file stem (SQLite) holding a tenant's data."""
        if not TENANT_NAME.match(tenant):
            raise ValueError(f"unsafe tenant name {tenant!r}")
        return f"tenant_{tenant}"

    def tenant_engine(self, storage: str) -> AsyncEngine:
        if not self.is_sqlite:
            return self.engine
        engine = self._tenant_engines.get(storage)
        if engine is None:
            engine = _sqlite_engine(self.data_dir / "tenants" / f"{storage}.db", self.busy_seconds)
            self._tenant_engines[storage] = engine
        return engine

    def tenant_options(self, storage: str) -> dict[str, Any]:
        if self.is_sqlite:
            return {}
        return {"schema_translate_map": {None: storage}}

    @asynccontextmanager
    async def tenant(self, storage: str, *, writes: bool = True) -> AsyncIterator[AsyncConnection]:
        """A transaction in a tenant's storage; unqualified tables resolve to it.

        On SQLite a writing transaction first takes its file's place in this process's
        queue of writers, so writers go one after another in arrival order."""
        if not (self.is_sqlite and writes):
            async with self._transaction(storage, writes=writes) as conn:
                yield conn
            return
        writer = self._writers.setdefault(storage, asyncio.Lock())
        try:
            async with asyncio.timeout(self.busy_seconds):
                await writer.acquire()
        except TimeoutError:
            raise DatabaseBusy("the tenant's database stayed busy; try again") from None
        try:
            async with self._transaction(storage, writes=True) as conn:
                yield conn
        finally:
            writer.release()

    @asynccontextmanager
    async def _transaction(self, storage: str, *, writes: bool) -> AsyncIterator[AsyncConnection]:
        async with self.tenant_engine(storage).connect() as conn:
            conn = await conn.execution_options(writes=writes, **self.tenant_options(storage))
            async with conn.begin():
                yield conn

    async def create_tenant_storage(self, storage: str) -> None:
        if self.is_sqlite:
            return  # the file appears on first connect
        async with self.engine.begin() as conn:
            await conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{storage}"')

    async def drop_tenant_storage(self, storage: str) -> None:
        if self.is_sqlite:
            engine = self._tenant_engines.pop(storage, None)
            if engine is not None:
                await engine.dispose()
            for suffix in ("", "-wal", "-shm"):
                (self.data_dir / "tenants" / f"{storage}.db{suffix}").unlink(missing_ok=True)
            return
        async with self.engine.begin() as conn:
            await conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{storage}" CASCADE')

    async def dispose(self) -> None:
        for engine in self._tenant_engines.values():
            await engine.dispose()
        self._tenant_engines.clear()
        await self.engine.dispose()
