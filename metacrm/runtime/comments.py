"""Comments on records: notes people leave on a record they may read, listed newest first."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError, RecordInvalid
from metacrm.metadata.values import ValueProblem, check_text
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.permissions import record_filter
from metacrm.runtime.process.rows import row_json
from metacrm.runtime.records import fetch, new_id, utcnow
from metacrm.runtime.tenant_tables import comments, users

#: The longest comment kept, in characters.
MAX_BODY = 4000


def _invalid(message: str, code: str = "type") -> RecordInvalid:
    return RecordInvalid("the comment is invalid", [FieldError("body", code, message)])


def comment_text(body: Any) -> str:
    """The text of a comment as given: 1 to MAX_BODY characters once trimmed."""
    if not isinstance(body, str) or not body.strip():
        raise _invalid("write a comment of 1 to 4000 characters", "required")
    text = body.strip()
    if len(text) > MAX_BODY:
        raise _invalid(f"a comment has at most {MAX_BODY} characters", "max-length")
    try:
        return check_text(text)
    except ValueProblem as problem:
        raise _invalid(problem.message, problem.code) from None


async def add_comment(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    body: Any,
    actor: Actor,
) -> dict[str, Any]:
    """Leave a comment on a record the actor may read (404 when they may not)."""
    await fetch(conn, co, record_id, access=record_filter(ct, actor, co, "read"))
    row = {
        "id": new_id(),
        "object": co.name,
        "record_id": record_id,
        "body": comment_text(body),
        "user_id": actor.user_id,
        "at": utcnow(),
    }
    await conn.execute(comments.insert().values(**row))
    return row_json(row)


async def list_comments(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    actor: Actor,
    *,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The record's comments, newest first, with their authors' names."""
    await fetch(conn, co, record_id, access=record_filter(ct, actor, co, "read"))
    c = comments
    rows = await conn.execute(
        sa.select(c, users.c.full_name.label("user_name"))
        .select_from(c.outerjoin(users, users.c.id == c.c.user_id))
        .where(c.c.object == co.name, c.c.record_id == record_id)
        .order_by(c.c.at.desc(), c.c.id.desc())
        .limit(limit)
    )
    return [row_json(r) for r in rows.mappings()]
