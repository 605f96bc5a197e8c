"""Assignment: who a record goes to (a user, a queue or role in turn or by load, a field),
on create through the write path's automation check, and on demand.

Round-robin is fair under concurrency because every pick advances one cursor row per
queue or role with a single `UPDATE ... SET position = position + 1 ... RETURNING`:
PostgreSQL's row lock makes concurrent creates take consecutive positions (the second
waits for the first to commit), and SQLite has one writer. A rolled-back create rolls
its step back with it, so no position is lost.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm import formula
from metacrm.errors import FieldError
from metacrm.metadata.assignment import AssignmentRule, AssignTarget
from metacrm.metadata.store import tenant_metadata
from metacrm.runtime.automation.history import record_run
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.hooks import Write
from metacrm.runtime.process.approvers import find_user
from metacrm.runtime.process.expressions import condition_holds
from metacrm.runtime.tenant_tables import users

#: One row per queue or role assigned in turn: how many picks it has made.
assignment_cursors = sa.Table(
    "mc_assignment_cursor",
    tenant_metadata,
    #: "queue:<api_name>" or "role:<api_name>": every rule using a group shares its turn.
    sa.Column("key", sa.String(80), primary_key=True),
    sa.Column("position", sa.BigInteger(), nullable=False),
)


def active_rule(ct: CompiledTenant, object_name: str) -> AssignmentRule | None:
    """The object's active assignment rule (the checks allow one per object)."""
    return next(
        (r for r in ct.model.assignment_rules if r.active and r.object == object_name), None
    )


async def choose_owner(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record: dict[str, Any],
    target: AssignTarget,
) -> uuid.UUID | None:
    """The active user `target` gives `record` to; None when it names nobody active."""
    if target.kind == "user":
        return await find_user(conn, target.user or "")
    if target.kind == "field":
        value = record.get(target.field or "")
        return await find_user(conn, str(value)) if value not in (None, "") else None
    members = await _members(conn, ct, target)
    if not members:
        return None
    position = await _advance(conn, f"{target.kind}:{target.queue or target.role}")
    if target.method == "load_balanced":
        counts = await _open_counts(conn, ct, co, members, target, record.get("id"))
        fewest = min(counts.get(m, 0) for m in members)
        members = [m for m in members if counts.get(m, 0) == fewest]
    return members[(position - 1) % len(members)]


async def _members(
    conn: AsyncConnection, ct: CompiledTenant, target: AssignTarget
) -> list[uuid.UUID]:
    """The active users of a queue (in the queue's order) or a role (by e-mail)."""
    u = users
    if target.kind == "role":
        found = await conn.execute(
            sa.select(u.c.id)
            .where(u.c.role == target.role, u.c.is_active.is_(True))
            .order_by(u.c.email)
        )
        return list(found.scalars())
    queue = next((q for q in ct.model.queues if q.api_name == target.queue), None)
    if queue is None:
        return []
    refs = [_ref(member) for member in queue.members]
    ids = [r for r in refs if isinstance(r, uuid.UUID)]
    emails = [r for r in refs if isinstance(r, str)]
    rows = (
        await conn.execute(
            sa.select(u.c.id, u.c.email).where(
                sa.or_(u.c.id.in_(ids), u.c.email.in_(emails)), u.c.is_active.is_(True)
            )
        )
    ).all()
    by_ref: dict[uuid.UUID | str, uuid.UUID] = {r.id: r.id for r in rows}
    by_ref |= {r.email: r.id for r in rows}
    picked = (by_ref.get(ref) for ref in refs)
    return list(dict.fromkeys(user_id for user_id in picked if user_id is not None))


def _ref(member: str) -> uuid.UUID | str:
    """A queue member as a user id, or else as a (lower-case) e-mail."""
    try:
        return uuid.UUID(member.strip())
    except ValueError:
        return member.strip().lower()


async def _advance(conn: AsyncConnection, key: str) -> int:
    """Take the next position of a cursor (1 for its first pick), holding its row lock."""
    t = assignment_cursors
    step = t.update().where(t.c.key == key).values(position=t.c.position + 1)
    position = await conn.scalar(step.returning(t.c.position))
    if position is None:
        # First pick of this group: concurrent first picks all insert; one row wins.
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        await conn.execute(dialect.insert(t).values(key=key, position=0).on_conflict_do_nothing())
        position = await conn.scalar(step.returning(t.c.position))
    return int(position)


async def _open_counts(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    members: list[uuid.UUID],
    target: AssignTarget,
    record_id: Any,
) -> dict[uuid.UUID, int]:
    """How many live records of the object each member owns (matching `open_condition`),
    not counting the record being assigned."""
    t = co.table
    query = (
        sa.select(t.c.owner_id, sa.func.count())
        .where(t.c.owner_id.in_(members), t.c.deleted_at.is_(None))
        .group_by(t.c.owner_id)
    )
    if record_id is not None:
        query = query.where(t.c.id != record_id)
    if target.open_condition:
        text = target.open_condition
        query = query.where(
            ct.views.get_or_build(
                ("assignment-open", co.name, text),
                lambda: formula.compile_filter(text, co.obj, ct.model, ct.table_for),
            )
        )
    return {row[0]: row[1] for row in await conn.execute(query)}


async def run_rule(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    rule: AssignmentRule,
    record: dict[str, Any],
) -> tuple[uuid.UUID | None, int | None]:
    """(owner, entry index) of the first entry whose condition holds and whose target
    names an active user; (None, None) when none does."""
    for index, entry in enumerate(rule.entries):
        if entry.condition and not await condition_holds(conn, ct, co, entry.condition, record):
            continue
        owner = await choose_owner(conn, ct, co, record, entry.assign_to)
        if owner is not None:
            return owner, index
    return None, None


async def assign_on_create(write: Write) -> list[FieldError]:
    """The automation check: a new record that names no owner gets one from the object's
    active assignment rule (as a derived value, so it reaches the insert and the audit)."""
    if write.kind != "create" or "owner_id" in write.changes:
        return []
    rule = active_rule(write.ct, write.co.name)
    if rule is None:
        return []
    started = time.perf_counter()
    owner, entry = await run_rule(write.conn, write.ct, write.co, rule, write.after)
    if owner is not None:
        write.derived["owner_id"] = owner
    await record_assignment(
        write.conn,
        rule,
        "create",
        write.co.name,
        write.record_id,
        owner,
        entry,
        write.intent.depth,
        started,
    )
    return []


async def record_assignment(
    conn: AsyncConnection,
    rule: AssignmentRule,
    trigger: str,
    object_name: str,
    record_id: Any,
    owner: uuid.UUID | None,
    entry: int | None,
    depth: int,
    started: float,
) -> None:
    """Keep one assignment in the run history: done with its owner, or skipped."""
    detail: dict[str, Any] = (
        {"owner_id": str(owner), "entry": entry}
        if owner is not None
        else {"reason": "no entry holds with an active user"}
    )
    await record_run(
        conn,
        source="assignment",
        name=rule.api_name,
        trigger=trigger,
        outcome="done" if owner is not None else "skipped",
        object=object_name,
        record_id=record_id,
        detail=detail,
        depth=depth,
        duration_ms=int((time.perf_counter() - started) * 1000),
    )
