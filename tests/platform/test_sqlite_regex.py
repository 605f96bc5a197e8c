"""SQLite connections run REGEXP on RE2 (linear time); REGEX list filters answer on long texts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from metacrm.platform.db import Database
from tests.conftest import TenantClient

LONGEST = 1_000_000  # the longest text a long_text field allows
MEMO = {
    "api_name": "memo",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "notes", "type": "long_text", "max_length": LONGEST},
    ],
}
HANG_GUARD = 20.0  # seconds; a guard against a hang, not a performance threshold


def where(pattern: str) -> str:
    """A list filter `REGEX(notes, pattern)`, the pattern written as a formula text literal."""
    return 'REGEX(notes, "' + pattern.replace("\\", "\\\\") + '")'


async def test_every_sqlite_connection_uses_the_re2_regexp(tmp_path: Path) -> None:
    db = Database(database_url=None, data_dir=tmp_path)
    try:
        async with db.system() as system, db.tenant("tenant_regex", writes=False) as tenant:
            for conn in (system, tenant):

                async def scalar(sql: str, conn: sa.ext.asyncio.AsyncConnection = conn) -> object:
                    return await conn.scalar(sa.text(sql))

                assert await scalar("SELECT 'abc' REGEXP 'b'") == 1
                assert await scalar("SELECT 'abc' REGEXP 'x'") == 0
                assert await scalar("SELECT NULL REGEXP 'a'") is None
                assert await scalar("SELECT 'a' REGEXP NULL") is None
                # Python's `re` (SQLAlchemy's function) finds "a$\n" in "a\n"; RE2 reads `$`
                # as the end of the text (as PostgreSQL does) and cannot run backreferences.
                assert await scalar("SELECT 'a' || char(10) REGEXP ('a$' || char(10))") == 0
                with pytest.raises(OperationalError, match="user-defined function"):
                    await scalar(r"SELECT 'aa' REGEXP '(a)\1'")
                found = await conn.scalar(
                    sa.text("SELECT :text REGEXP :pattern"),
                    {"text": "a" * LONGEST, "pattern": r"(?s)\A(?:[a-z]*[a-z]*[a-z]*x)\Z"},
                )
                assert found == 0
    finally:
        await db.dispose()


async def test_regex_filters_answer_on_the_longest_texts(tenant: TenantClient) -> None:
    await tenant.define(MEMO)
    for name, notes in [("short", "a" * 4096), ("longest", "a" * LONGEST), ("hit", "abc1x!")]:
        await tenant.create("memo", {"name": name, "notes": notes})
    # The first four are accepted shapes that took Python's backtracking `re` (SQLAlchemy's
    # SQLite REGEXP) tens of seconds per row on 4,096 characters.
    expected = {
        "[a-z]*[a-z]*[a-z]*x": [],
        ".*.*.*[0-9]": [],
        r"\w*\s*\w*!": ["hit"],
        "(ab)*a*c": [],
        "[a-z]*[0-9][a-z]*!": ["hit"],
        "a*": ["longest", "short"],
    }
    for pattern, names in expected.items():
        async with asyncio.timeout(HANG_GUARD):
            answer = await tenant.get(
                "/api/v1/data/memo",
                params={"where": where(pattern), "fields": "name", "limit": 10},
            )
        assert answer.status_code == 200, answer.text
        assert sorted(row["name"] for row in answer.json()["records"]) == names, pattern


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        (r"(a)\1", "backreferences"),
        ("(?=a)a", "lookaround"),
        ("(?<!a)b", "lookaround"),
        ("a*+", "possessive repetition"),
    ],
)
async def test_refused_patterns_are_problems_naming_regex(
    tenant: TenantClient, pattern: str, construct: str
) -> None:
    await tenant.define(MEMO)
    answer = await tenant.get("/api/v1/data/memo", params={"where": where(pattern)})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "REGEX" in answer.text and construct in answer.text, answer.text
