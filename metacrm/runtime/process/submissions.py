"""Approvals as the workspace lists them: a user's own runs, waiting counts, comments, names."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.runtime.process.rows import row_json
from metacrm.runtime.process.work import OPEN
from metacrm.runtime.records import utcnow
from metacrm.runtime.tenant_tables import approval_tasks, approvals, delegations, users


def _uuids(values: Iterable[Any]) -> list[uuid.UUID]:
    out = []
    for value in values:
        try:
            out.append(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
        except ValueError:
            continue
    return sorted(set(out))


async def submissions(
    conn: AsyncConnection, user_id: uuid.UUID, *, status: str = OPEN
) -> list[dict[str, Any]]:
    """The runs the user submitted (pending by default), newest first, each with `waiting_on`:
    the open tasks of its current phase (step and assignee). Two queries, whatever the count."""
    a, t = approvals, approval_tasks
    rows = await conn.execute(
        sa.select(
            a.c.id,
            a.c.object,
            a.c.record_id,
            a.c.flow,
            a.c.status,
            a.c.phase,
            a.c.submitted_by,
            a.c.submitted_at,
            a.c.decided_at,
            a.c.comment,
        )
        .where(a.c.submitted_by == user_id, a.c.status == status)
        .order_by(a.c.submitted_at.desc(), a.c.id)
    )
    out = [row_json(r) for r in rows.mappings()]
    if not out:
        return out
    waiting: dict[str, list[dict[str, Any]]] = {item["id"]: [] for item in out}
    tasks = await conn.execute(
        sa.select(t.c.approval_id, t.c.step, t.c.assignee_id, t.c.due_at)
        .where(t.c.approval_id.in_(_uuids(waiting)), t.c.status == OPEN)
        .order_by(t.c.created_at, t.c.id)
    )
    for task in tasks.mappings():
        item = row_json(task)
        waiting[item.pop("approval_id")].append(item)
    for run in out:
        run["waiting_on"] = waiting[run["id"]]
    return out


async def comments(conn: AsyncConnection, approval_ids: Iterable[Any]) -> dict[str, str | None]:
    """The submitter's comment of each run named, by run id (one query)."""
    ids = _uuids(approval_ids)
    if not ids:
        return {}
    rows = await conn.execute(
        sa.select(approvals.c.id, approvals.c.comment).where(approvals.c.id.in_(ids))
    )
    return {str(r.id): r.comment for r in rows}


async def user_names(conn: AsyncConnection, user_ids: Iterable[Any]) -> dict[str, str]:
    """The full name of each user named, by user id (one query; unknown ids left out)."""
    ids = _uuids(user_ids)
    if not ids:
        return {}
    rows = await conn.execute(sa.select(users.c.id, users.c.full_name).where(users.c.id.in_(ids)))
    return {str(r.id): r.full_name for r in rows}


async def waiting_count(conn: AsyncConnection, user_id: uuid.UUID) -> int:
    """How many runs wait for the user, or for those who delegate to them now (one query;
    what `inbox` lists, counted by run)."""
    now = utcnow()
    d, t = delegations, approval_tasks
    delegators = sa.select(d.c.user_id).where(
        d.c.delegate_id == user_id, d.c.starts_at <= now, d.c.ends_at > now
    )
    found = await conn.scalar(
        sa.select(sa.func.count(sa.distinct(t.c.approval_id))).where(
            t.c.status == OPEN,
            sa.or_(t.c.assignee_id == user_id, t.c.assignee_id.in_(delegators)),
        )
    )
    return int(found or 0)
