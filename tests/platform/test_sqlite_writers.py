"""SQLite writers of one tenant queue in this process, one after another, in arrival order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from metacrm.errors import DatabaseBusy
from metacrm.platform.db import Database

STORAGE = "tenant_writers"


async def test_writers_take_turns_and_a_long_wait_is_refused(tmp_path: Path) -> None:
    db = Database(database_url=None, data_dir=tmp_path, busy_seconds=0.3)
    try:
        async with db.tenant(STORAGE) as conn:
            await conn.execute(sa.text("CREATE TABLE log (n INTEGER)"))
        order: list[int] = []

        async def write(n: int) -> None:
            async with db.tenant(STORAGE) as conn:
                order.append(n)
                await asyncio.sleep(0.01)  # hold the turn across an await
                await conn.execute(sa.text("INSERT INTO log VALUES (:n)"), {"n": n})

        # Each starts once the one before it is queued: arrival order is the write order.
        tasks = []
        for n in range(8):
            tasks.append(asyncio.create_task(write(n)))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        assert order == list(range(8))
        async with db.tenant(STORAGE, writes=False) as conn:
            assert (await conn.scalar(sa.text("SELECT count(*) FROM log"))) == 8

        # A writer that would wait longer than the busy time is refused with a 503 problem,
        # while readers are not held up by the writer.
        async with db.tenant(STORAGE) as conn:
            await conn.execute(sa.text("INSERT INTO log VALUES (99)"))
            async with db.tenant(STORAGE, writes=False) as reader:
                assert (await reader.scalar(sa.text("SELECT count(*) FROM log"))) == 8
            with pytest.raises(DatabaseBusy):
                async with db.tenant(STORAGE):
                    pass
    finally:
        await db.dispose()
