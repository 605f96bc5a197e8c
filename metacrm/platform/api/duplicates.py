"""Duplicate endpoints: scan an object for duplicate groups, list the groups, check values.

- `POST /api/v1/duplicates/{object}/scan` (202 `{"job_id"}`) enqueues the
  "duplicates.scan" job: it rebuilds the object's match keys and replaces its groups.
  Scanning reads every record regardless of access, so it needs the platform permission
  `manage_metadata` (administrators hold it), like the rules themselves.
- `GET /api/v1/duplicates/{object}/groups?limit=&after=` lists the last scan's groups
  (`{"groups": [{"id", "rule", "members": [{"id", "name", "score"}]}], "next": ...}`),
  oldest first; page on with `after` = the last group's id. It needs read on the object,
  and shows only members the caller may read: a group with fewer than two of them is
  left out, so no record the caller cannot read is revealed, not even by a count.
- `GET /api/v1/duplicates/{object}/pairs?limit=&after=` lists the duplicates saved on
  purpose (report rules, warnings saved anyway), newest first, both records readable:
  `{"pairs": [{"id", "rule", "score", "created_at", "record": {"id", "name"},
  "other": {"id", "name"}}], "next": ...}`; page on with `after` = the last pair's id.
- `POST /api/v1/duplicates/{object}/check` `{"values": {...}, "record_id"?}` answers
  the records the values would duplicate (the record being edited, `record_id`, aside) (`{"matches": [{"id", "name", "rule", "score", "action"}]}`),
  the records the caller may read only: a form's "possible duplicates" hint.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from starlette.responses import JSONResponse

from metacrm.errors import FieldError, PermissionDenied, RecordInvalid
from metacrm.platform.api.common import path_id
from metacrm.platform.body import read_object
from metacrm.platform.state import IdentityDep, StateDep, object_or_404
from metacrm.runtime.data.duplicates import (
    SCAN_JOB,
    duplicate_groups,
    duplicate_members,
    duplicate_pairs,
    readable_matches,
    readable_names,
)
from metacrm.runtime.jobs import enqueue
from metacrm.runtime.permissions import has_platform_permission, record_filter

router = APIRouter(prefix="/duplicates", tags=["duplicates"])


@router.post("/{object_name}/scan", status_code=202)
async def start_scan(object_name: str, state: StateDep, identity: IdentityDep) -> JSONResponse:
    """Enqueue a scan of the object's records under its active duplicate rules."""
    async with state.tenant(identity) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        if not has_platform_permission(ct.model, actor, "manage_metadata"):
            raise PermissionDenied("scanning for duplicates needs manage_metadata")
        job_id = await enqueue(
            conn, SCAN_JOB, {"object": co.name}, key=f"{SCAN_JOB}:{co.name}", object=co.name
        )
    return JSONResponse({"job_id": str(job_id)}, status_code=202)


@router.get("/{object_name}/groups")
async def list_groups(
    object_name: str,
    state: StateDep,
    identity: IdentityDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: Annotated[str | None, Query(max_length=36)] = None,
) -> dict[str, Any]:
    """The last scan's duplicate groups, with the members the caller may read."""
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        access = record_filter(ct, actor, co, "read")
        g, m, t = duplicate_groups, duplicate_members, co.table
        visible = (
            sa.select(m.c.group_id, m.c.record_id, m.c.score)
            .join(t, sa.and_(t.c.id == m.c.record_id, t.c.deleted_at.is_(None)))
            .join(g, g.c.id == m.c.group_id)
            .where(g.c.object == co.name)
        )
        if access is not None:
            visible = visible.where(access)
        shown = visible.subquery()
        page = (
            sa.select(shown.c.group_id)
            .group_by(shown.c.group_id)
            .having(sa.func.count() >= 2)
            .order_by(shown.c.group_id)
            .limit(limit + 1)
        )
        if after is not None:
            page = page.where(shown.c.group_id > path_id(after, "group"))
        ids: list[uuid.UUID] = list((await conn.scalars(page)).all())
        more = len(ids) > limit
        ids = ids[:limit]
        rows = (
            await conn.execute(
                sa.select(shown.c.group_id, shown.c.record_id, shown.c.score, g.c.rule)
                .join(g, g.c.id == shown.c.group_id)
                .where(shown.c.group_id.in_(ids))
                .order_by(shown.c.group_id, shown.c.score.desc(), shown.c.record_id)
            )
        ).all()
        names = await readable_names(conn, ct, co, actor, (r.record_id for r in rows))
    groups: dict[uuid.UUID, dict[str, Any]] = {}
    for row in rows:
        group = groups.setdefault(
            row.group_id, {"id": str(row.group_id), "rule": row.rule, "members": []}
        )
        group["members"].append(
            {"id": str(row.record_id), "name": names.get(row.record_id), "score": row.score}
        )
    return {
        "groups": [groups[i] for i in ids],
        "next": str(ids[-1]) if more and ids else None,
    }


@router.get("/{object_name}/pairs")
async def list_pairs(
    object_name: str,
    state: StateDep,
    identity: IdentityDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    after: Annotated[str | None, Query(max_length=36)] = None,
) -> dict[str, Any]:
    """Duplicates saved on purpose, newest first, where the caller may read both records."""
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        access = record_filter(ct, actor, co, "read")
        p, t = duplicate_pairs, co.table
        mine, other = t.alias("mine"), t.alias("other")
        query = (
            sa.select(p)
            .join(mine, sa.and_(mine.c.id == p.c.record_id, mine.c.deleted_at.is_(None)))
            .join(other, sa.and_(other.c.id == p.c.other_id, other.c.deleted_at.is_(None)))
            .where(p.c.object == co.name)
            .order_by(p.c.id.desc())
            .limit(limit + 1)
        )
        if access is not None:
            readable = sa.select(t.c.id).where(access)
            query = query.where(p.c.record_id.in_(readable), p.c.other_id.in_(readable))
        if after is not None:
            query = query.where(p.c.id < path_id(after, "pair"))
        rows = (await conn.execute(query)).all()
        more, rows = len(rows) > limit, rows[:limit]
        ids = [r.record_id for r in rows] + [r.other_id for r in rows]
        names = await readable_names(conn, ct, co, actor, ids)
    return {
        "pairs": [
            {
                "id": str(r.id),
                "rule": r.rule,
                "score": r.score,
                "created_at": r.created_at.isoformat(),
                "record": {"id": str(r.record_id), "name": names.get(r.record_id)},
                "other": {"id": str(r.other_id), "name": names.get(r.other_id)},
            }
            for r in rows
        ],
        "next": str(rows[-1].id) if more and rows else None,
    }


@router.post("/{object_name}/check")
async def check_values(
    object_name: str, request: Request, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    """The readable records that `values` would duplicate under the object's rules."""
    body = await read_object(request, state.settings.max_body_bytes)
    values, record_id = body.get("values"), body.get("record_id")
    errors = [
        FieldError(k[:64], "unknown-field", "not a parameter")
        for k in sorted(body.keys() - {"values", "record_id"})
    ]
    if not isinstance(values, dict):
        errors.append(FieldError("values", "type", "values must be an object of field values"))
    exclude: uuid.UUID | None = None
    if record_id is not None:
        try:
            exclude = uuid.UUID(str(record_id))
        except ValueError:
            errors.append(FieldError("record_id", "type", "record_id must be a record's id"))
    if errors or not isinstance(values, dict):
        raise RecordInvalid("the check is invalid", errors)
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        record_filter(ct, actor, co, "read")  # 403 without read on the object
        matches, _ = await readable_matches(conn, ct, co, actor, values, exclude_id=exclude)
    return {"matches": [m.as_json() for m in matches]}
