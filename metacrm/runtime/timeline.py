"""A record's activity timeline: field history, stage moves, approval events, stage tasks and
comments, newest first; with `children`, those of the records that point at it as well."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.permissions import readable, record_filter, user_binding
from metacrm.runtime.process.rows import iso
from metacrm.runtime.records import fetch
from metacrm.runtime.related import children_ids, referrers
from metacrm.runtime.tenant_tables import (
    approval_events,
    approvals,
    comments,
    field_history,
    stage_history,
    stage_tasks,
    users,
)

#: The most entries a timeline holds.
MAX_ENTRIES = 200

#: (object, ids of its records: one id, or a subquery of ids) the timeline covers.
Subject = tuple[CompiledObject, uuid.UUID | sa.Select[Any]]


def _about(table: sa.Table, subjects: list[Subject]) -> sa.ColumnElement[bool]:
    """Rows of `table` (with object and record_id columns) about one of the subjects."""
    clauses = []
    for co, ids in subjects:
        match = (
            table.c.record_id == ids if isinstance(ids, uuid.UUID) else table.c.record_id.in_(ids)
        )
        clauses.append(sa.and_(table.c.object == co.name, match))
    return sa.or_(*clauses)


async def timeline(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    actor: Actor,
    *,
    children: bool = False,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The record's events, newest first, at most `limit` (404 when the actor may not read
    it). Field history of fields hidden from the actor is left out; with `children`, the
    events of the readable records that point at it come too (their object and name said)."""
    await fetch(conn, co, record_id, access=record_filter(ct, actor, co, "read"))
    limit = max(1, min(limit, MAX_ENTRIES))
    subjects: list[Subject] = [(co, record_id)]
    if children:
        subjects += [
            (r.co, children_ids(ct, actor, r, record_id)) for r in referrers(ct, co, actor)
        ]
    params = user_binding(actor)
    entries: list[dict[str, Any]] = []

    h = field_history
    tracked = [
        sa.and_(
            h.c.object == c.name,
            h.c.record_id == ids if isinstance(ids, uuid.UUID) else h.c.record_id.in_(ids),
            h.c.field.in_(shown),
        )
        for c, ids in subjects
        if (shown := readable(ct, actor, c))
    ]
    if tracked:
        rows = await conn.execute(
            sa.select(h).where(sa.or_(*tracked)).order_by(h.c.at.desc()).limit(limit), params
        )
        for r in rows.mappings():
            entries.append(
                _entry("field", r["at"], r["object"], r["record_id"], r["user_id"])
                | {"field": r["field"], "old": r["old_value"], "new": r["new_value"]}
            )

    s = stage_history
    rows = await conn.execute(
        sa.select(s).where(_about(s, subjects)).order_by(s.c.moved_at.desc()).limit(limit), params
    )
    for r in rows.mappings():
        entries.append(
            _entry("stage", r["moved_at"], r["object"], r["record_id"], r["moved_by"])
            | {
                "rule": r["rule"],
                "from": r["from_stage"],
                "to": r["to_stage"],
                "reason": r["reason"],
            }
        )

    a, e = approvals, approval_events
    rows = await conn.execute(
        sa.select(e, a.c.object, a.c.record_id, a.c.flow, a.c.status.label("run_status"))
        .select_from(e.join(a, a.c.id == e.c.approval_id))
        .where(_about(a, subjects))
        .order_by(e.c.at.desc())
        .limit(limit),
        params,
    )
    for r in rows.mappings():
        entries.append(
            _entry("approval", r["at"], r["object"], r["record_id"], r["actor_id"])
            | {
                "approval_id": str(r["approval_id"]),
                "flow": r["flow"],
                "action": r["action"],
                "step": r["step"],
                "comment": r["comment"],
                "run_status": r["run_status"],
            }
        )

    t = stage_tasks
    rows = await conn.execute(
        sa.select(t)
        .where(_about(t, subjects))
        .order_by(sa.func.coalesce(t.c.done_at, t.c.created_at).desc())
        .limit(limit),
        params,
    )
    for r in rows.mappings():
        task = {
            "task_id": str(r["id"]),
            "task": r["task"],
            "subject": r["subject"],
            "stage": r["stage"],
            "status": r["status"],
        }
        entries.append(_entry("task", r["created_at"], r["object"], r["record_id"], None) | task)
        if r["done_at"] is not None:
            entries.append(
                _entry("task_closed", r["done_at"], r["object"], r["record_id"], r["done_by"])
                | task
            )

    c = comments
    rows = await conn.execute(
        sa.select(c).where(_about(c, subjects)).order_by(c.c.at.desc()).limit(limit), params
    )
    for r in rows.mappings():
        entries.append(
            _entry("comment", r["at"], r["object"], r["record_id"], r["user_id"])
            | {"comment_id": str(r["id"]), "body": r["body"]}
        )

    entries.sort(key=lambda x: (x["_at"], x["kind"]), reverse=True)
    entries = entries[:limit]
    await _names(conn, ct, actor, entries, co, record_id)
    for entry in entries:
        entry["at"] = iso(entry.pop("_at"))
    return entries


def _entry(
    kind: str, at: Any, object_name: str, record_id: uuid.UUID, user_id: uuid.UUID | None
) -> dict[str, Any]:
    return {
        "kind": kind,
        "_at": at,
        "object": object_name,
        "record_id": str(record_id),
        "user_id": str(user_id) if user_id is not None else None,
    }


async def _names(
    conn: AsyncConnection,
    ct: CompiledTenant,
    actor: Actor,
    entries: list[dict[str, Any]],
    co: CompiledObject,
    record_id: uuid.UUID,
) -> None:
    """Fill in who acted (`user_name`) and the name of each other record (`record_name`):
    one query for the users, one per other object."""
    people = {uuid.UUID(e["user_id"]) for e in entries if e["user_id"]}
    names: dict[str, str] = {}
    if people:
        rows = await conn.execute(
            sa.select(users.c.id, users.c.full_name).where(users.c.id.in_(people))
        )
        names = {str(i): str(n) for i, n in rows}
    others: dict[str, set[uuid.UUID]] = {}
    for entry in entries:
        entry["user_name"] = names.get(entry["user_id"] or "")
        if entry["object"] != co.name or entry["record_id"] != str(record_id):
            others.setdefault(entry["object"], set()).add(uuid.UUID(entry["record_id"]))
    titles: dict[tuple[str, str], str] = {}
    for object_name, ids in others.items():
        other = ct.objects.get(object_name)
        name_field = other.obj.record_name_field if other is not None else None
        if other is None or not name_field or name_field not in readable(ct, actor, other):
            continue
        rows = await conn.execute(
            sa.select(other.table.c.id, other.sql(name_field)).where(other.table.c.id.in_(ids))
        )
        titles |= {(object_name, str(i)): str(n) for i, n in rows if n is not None}
    for entry in entries:
        entry["record_name"] = titles.get((entry["object"], entry["record_id"]))
