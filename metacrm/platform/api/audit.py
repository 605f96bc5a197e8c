"""The audit log for administrators, and each record's field history."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query

from metacrm.errors import FieldError, NotFound, PermissionDenied, QueryInvalid
from metacrm.platform.api.common import path_id
from metacrm.platform.state import IdentityDep, StateDep, object_or_404
from metacrm.runtime.permissions import readable, record_filter, role_of
from metacrm.runtime.records import fetch
from metacrm.runtime.serialize import row_to_record
from metacrm.runtime.tenant_tables import audit_log, field_history

router = APIRouter(tags=["audit"])


def _uuid(value: str | None, name: str) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise QueryInvalid(
            f"{name} is not an id", [FieldError(name, "type", "expected an id")]
        ) from None


@router.get("/audit")
async def audit_entries(
    state: StateDep,
    identity: IdentityDep,
    action: Annotated[str | None, Query(max_length=64)] = None,
    object: Annotated[str | None, Query(max_length=63)] = None,
    record_id: Annotated[str | None, Query(max_length=36)] = None,
    user_id: Annotated[str | None, Query(max_length=36)] = None,
    before: Annotated[dt.datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """Newest first; page with `before` = the last entry's `at`."""
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        role = role_of(ct.model, actor.role)
        if not (actor.is_admin or (role is not None and "view_audit" in role.permissions)):
            raise PermissionDenied("reading the audit log needs the view_audit permission")
        t = audit_log
        query = sa.select(t).order_by(t.c.at.desc(), t.c.id.desc()).limit(limit)
        for column, value in (
            (t.c.action, action),
            (t.c.object, object),
            (t.c.record_id, _uuid(record_id, "record_id")),
            (t.c.user_id, _uuid(user_id, "user_id")),
        ):
            if value is not None:
                query = query.where(column == value)
        if before is not None:
            query = query.where(t.c.at < before)
        rows = await conn.execute(query)
        return {"entries": [row_to_record(dict(r._mapping)) for r in rows]}


@router.get("/data/{object_name}/{record_id}/history")
async def record_history(
    object_name: str, record_id: str, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    """Changes of the record's tracked fields that the caller may read, newest first."""
    rid = path_id(record_id)
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        try:
            await fetch(conn, co, rid, access=record_filter(ct, actor, co, "read"))
        except NotFound:
            raise NotFound(f"no {object_name} record has id {record_id}") from None
        h = field_history
        rows = await conn.execute(
            sa.select(h.c.field, h.c.old_value, h.c.new_value, h.c.user_id, h.c.at)
            .where(
                h.c.object == co.name, h.c.record_id == rid, h.c.field.in_(readable(ct, actor, co))
            )
            .order_by(h.c.at.desc(), h.c.id.desc())
        )
        return {"history": [row_to_record(dict(r._mapping)) for r in rows]}
