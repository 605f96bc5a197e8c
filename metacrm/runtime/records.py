"""Reading records: new ids, SELECTs of an object's fields, one record under the caller's access."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError, NotFound, PermissionDenied, RecordInvalid
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import SHOWN_SYSTEM_FIELDS, CompiledObject, CompiledTenant
from metacrm.runtime.permissions import Action, readable, record_filter, user_binding
from metacrm.runtime.serialize import row_to_record
from metacrm.runtime.tenant_tables import approvals, users

#: Labels of the extra columns `editable` reads with the record.
_EDITABLE = "__editable"
_PENDING = "__pending_approval"


def new_id() -> uuid.UUID:
    """A time-ordered UUID (version 7), so new rows append to the primary-key index."""
    return uuid.uuid7() if hasattr(uuid, "uuid7") else _uuid7()


def _uuid7() -> uuid.UUID:
    millis = time.time_ns() // 1_000_000
    value = (millis & ((1 << 48) - 1)) << 80
    value |= int.from_bytes(os.urandom(10), "big") & ((1 << 80) - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return uuid.UUID(int=value)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def record_select(co: CompiledObject, names: list[str] | None = None) -> sa.Select[Any]:
    """SELECT of the named fields (default: every field and the shown system fields)."""
    names = names if names is not None else [*SHOWN_SYSTEM_FIELDS, *co.fields]
    return sa.select(*[co.sql(n).label(n) for n in names]).select_from(co.table)


def record_query(
    co: CompiledObject,
    record_id: uuid.UUID,
    *,
    deleted: bool = False,
    access: sa.ColumnElement[bool] | None = None,
) -> sa.Select[Any]:
    """SELECT of one record's values, live (or in the recycle bin), within `access`."""
    names = [*SHOWN_SYSTEM_FIELDS, *co.fields] + (["deleted_at"] if deleted else [])
    t = co.table
    query = record_select(co, names).where(
        t.c.id == record_id, t.c.deleted_at.is_not(None) if deleted else t.c.deleted_at.is_(None)
    )
    return query if access is None else query.where(access)


async def fetch(
    conn: AsyncConnection,
    co: CompiledObject,
    record_id: uuid.UUID,
    *,
    deleted: bool = False,
    access: sa.ColumnElement[bool] | None = None,
) -> dict[str, Any]:
    """A record's raw values (not yet JSON-ready); NotFound when absent or not visible."""
    query = record_query(co, record_id, deleted=deleted, access=access)
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"no {co.name} record has id {record_id}")
    return dict(row)


class Editable(NamedTuple):
    """A record its reader may change, and whether a pending approval run holds it."""

    record: dict[str, Any]
    pending_approval: bool


async def editable(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    actor: Actor,
    *,
    system: bool = False,
    deleted: bool = False,
) -> Editable:
    """The record, locked, if the actor may change it: NotFound when they cannot see it,
    PermissionDenied when they may only read it (`system`: any record). One query reads
    the values, the actor's edit access and whether an approval is pending."""
    read = edit = None
    denied: PermissionDenied | None = None
    if not system:
        read = record_filter(ct, actor, co, "read")
        try:
            edit = record_filter(ct, actor, co, "edit")
        except PermissionDenied as error:  # no edit permission on the object at all
            denied, edit = error, sa.false()
    t, a = co.table, approvals
    pending = sa.exists().where(
        a.c.object == co.name, a.c.record_id == t.c.id, a.c.status == "pending"
    )
    columns: list[Any] = [pending.label(_PENDING)]
    if edit is not None:
        columns.append(sa.case((edit, 1), else_=0).label(_EDITABLE))
    query = record_query(co, record_id, deleted=deleted, access=read).add_columns(*columns)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=t)
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"no {co.name} record has id {record_id}")
    if denied is not None:
        raise denied
    record = dict(row)
    pending_approval = bool(record.pop(_PENDING))
    if edit is not None and not record.pop(_EDITABLE):
        raise PermissionDenied(f"you may read this {co.name} record but not change it")
    return Editable(record, pending_approval)


async def get(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    actor: Actor,
) -> dict[str, Any]:
    """A record as the actor may see it: 404 when not visible, hidden fields left out."""
    record = await fetch(conn, co, record_id, access=record_filter(ct, actor, co, "read"))
    return shown(ct, co, record, actor)


async def reaches(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    actor: Actor,
    action: Action,
) -> bool:
    """Whether the actor's `action` access (read, edit) reaches the record; False without
    the object permission."""
    try:
        access = record_filter(ct, actor, co, action)
    except PermissionDenied:
        return False
    t = co.table
    query = sa.select(t.c.id).where(t.c.id == record_id)
    if access is not None:
        query = query.where(access)
    return (await conn.execute(query, user_binding(actor))).first() is not None


def shown(
    ct: CompiledTenant, co: CompiledObject, record: dict[str, Any], actor: Actor
) -> dict[str, Any]:
    """A record's values as JSON, without the fields the actor may not see."""
    names = {*SHOWN_SYSTEM_FIELDS, "deleted_at", *readable(ct, actor, co)}
    return row_to_record({k: v for k, v in record.items() if k in names})


async def active_user(conn: AsyncConnection, value: Any, field: str) -> uuid.UUID:
    """The id of an active user of the tenant named by `value`, or RecordInvalid."""
    try:
        user_id = uuid.UUID(str(value))
    except ValueError:
        user_id = None
    found = user_id and await conn.scalar(
        sa.select(users.c.id).where(users.c.id == user_id, users.c.is_active.is_(True))
    )
    if not found or user_id is None:
        raise RecordInvalid(
            "unknown user", [FieldError(field, "unknown-user", "no active user has this id")]
        )
    return user_id
