"""The one write path: every change to a record runs the same hooks, in the same order.

Create, update, delete, restore and owner transfer live here (`bulk` checks each
record of a batch here, then writes the new ones together); stage moves, approval
actions, pack seeds (and later automation, imports, merges, erasure) call them with an
`Intent` saying what the write is for. Each write:

1. loads the record under the writer's record access (404 when they cannot see it,
   403 when they may only read it) and converts the input under their field
   permissions (a hidden field looks unknown, a read-only one is refused);
2. runs `HOOKS` in order: field checks, field rules, validation rules, stage gates,
   approval locks; every problem is reported at once (a blocking hook stops the
   list when it finds one);
3. writes the row, then runs the hooks' `after` steps in the same transaction
   (stage history and tasks, the audit log and field history, and the jobs automation
   schedules: a rolled-back write schedules nothing);
4. records a `RecordEvent`, handed to subscribers once the transaction commits.

A write with system rights (`Intent.system`: actions an administrator defined in
metadata) skips record and field permissions, layouts and locks, never the rest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import uuid
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import (
    Conflict,
    FieldError,
    PermissionDenied,
    RecordInvalid,
    StaleVersion,
)
from metacrm.metadata.security import ObjectPermission
from metacrm.runtime.audit import AUDIT
from metacrm.runtime.automation.hook import AUTOMATION
from metacrm.runtime.compiler import SHOWN_SYSTEM_FIELDS, CompiledObject, CompiledTenant
from metacrm.runtime.data.duplicates import DUPLICATES
from metacrm.runtime.events import RecordEvent, outbox_of
from metacrm.runtime.field_rules import FIELD_RULES
from metacrm.runtime.hooks import Intent, Origin, Write, WriteHook
from metacrm.runtime.permissions import field_access, object_permission, require_object
from metacrm.runtime.process.gates import STAGE_GATES
from metacrm.runtime.process.locks import APPROVAL_LOCKS
from metacrm.runtime.records import (
    active_user,
    editable,
    fetch,
    new_id,
    record_select,
    shown,
    utcnow,
)
from metacrm.runtime.tenant_tables import sequences
from metacrm.runtime.validation import (
    FIELD_CHECKS,
    VALIDATION_RULES,
    apply_defaults,
    coerce_input,
)

#: The hooks every record write runs, in this order, whatever path it comes by.
HOOKS: tuple[WriteHook, ...] = (
    FIELD_CHECKS,
    FIELD_RULES,
    VALIDATION_RULES,
    DUPLICATES,
    STAGE_GATES,
    APPROVAL_LOCKS,
    AUDIT,
    AUTOMATION,
)


async def _check(write: Write, errors: list[FieldError]) -> None:
    """Run every hook's check after the conversion `errors`; refuse the write on any
    problem, else take in what the hooks add to it (a stage's field updates)."""
    for hook in HOOKS:
        errors += await hook.check(write)
        if errors and hook.blocking:
            break
    if errors:
        name = write.co.name
        if write.kind == "delete":
            raise Conflict(f"the {name} record cannot be deleted", errors)
        if write.kind == "restore":
            raise Conflict(f"the {name} record cannot be restored", errors)
        raise RecordInvalid(f"the {name} record is invalid", errors)
    if write.derived:
        write.changes |= write.derived
        write.after |= write.derived


async def _finish(write: Write) -> None:
    """After the row is written: the hooks' `after` steps, then the after-commit event."""
    for hook in HOOKS:
        await hook.after(write)
    announce(write)


def announce(write: Write) -> None:
    """Put the write's after-commit `RecordEvent` in its transaction's outbox."""
    outbox = outbox_of(write.conn)
    if outbox is None:
        return
    if write.kind == "create":
        changed = frozenset(write.changes)
    else:
        changed = frozenset(n for n in write.changes if write.changed(n))
    outbox.add(
        RecordEvent(
            object=write.co.name,
            record_id=write.record_id,
            kind=write.kind,
            before=MappingProxyType(dict(write.before)) if write.before is not None else None,
            after=None if write.kind == "delete" else MappingProxyType(dict(write.after)),
            changed=changed,
            intent=write.intent,
        )
    )


def _field_errors(
    ct: CompiledTenant, co: CompiledObject, data: dict[str, Any], intent: Intent, prefix: str
) -> list[FieldError]:
    """Refuse writing fields the actor may not edit (hidden ones look unknown)."""
    if intent.privileged:
        return []
    errors = []
    for name in data:
        if name not in co.writable:
            continue
        access = field_access(ct.model, intent.actor, co.name, name)
        if access == "hidden":
            errors.append(
                FieldError(prefix + name, "unknown-field", f"{co.name} has no field {name}")
            )
        elif access == "read":
            errors.append(FieldError(prefix + name, "read-only", f"you may not change {name}"))
    return errors


def _convert(
    ct: CompiledTenant, co: CompiledObject, data: dict[str, Any], intent: Intent, prefix: str
) -> tuple[dict[str, Any], list[FieldError], frozenset[str]]:
    """Stored values of the input the writer may give, every problem, and the input
    fields whose value was refused."""
    errors = _field_errors(ct, co, data, intent, prefix)
    refused = {e.field.removeprefix(prefix) for e in errors}
    values, problems = coerce_input(
        co, {k: v for k, v in data.items() if k not in refused}, prefix=prefix
    )
    return values, errors + problems, frozenset(data.keys() - values.keys())


async def _owner_from(
    conn: AsyncConnection,
    value: Any,
    intent: Intent,
    permission: ObjectPermission | None,
    prefix: str,
) -> uuid.UUID:
    """The owner a create names: only administrators and modify-all holders may name one."""
    if not (intent.privileged or (permission is not None and permission.modify_all)):
        raise RecordInvalid(
            "owner_id", [FieldError(prefix + "owner_id", "read-only", "owner_id cannot be written")]
        )
    return await active_user(conn, value, prefix + "owner_id")


async def create(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    data: dict[str, Any],
    intent: Intent,
    *,
    prefix: str = "",
) -> dict[str, Any]:
    """Validate and insert one record; returns it as the writer may see it."""
    write = await checked_create(conn, ct, co, data, intent, prefix=prefix)
    write.after |= await next_numbers(conn, co)
    await insert(write)
    await _finish(write)
    return await _written(conn, ct, co, write.record_id, write.after, intent)


async def checked_create(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    data: dict[str, Any],
    intent: Intent,
    *,
    prefix: str = "",
) -> Write:
    """A create that passed every hook's check, not yet written (auto-numbers are
    given when it is); RecordInvalid with every problem otherwise."""
    actor = intent.actor
    permission = None if intent.system else require_object(ct.model, actor, co.name, "create")
    data, errors, owner = dict(data), [], actor.user_id
    named = "owner_id" in data
    if named:
        try:
            owner = await _owner_from(conn, data.pop("owner_id"), intent, permission, prefix)
        except RecordInvalid as invalid:
            errors += invalid.errors
    values, problems, refused = _convert(ct, co, data, intent, prefix)
    errors += problems
    apply_defaults(co, values, skip=set(data))
    now, record_id = utcnow(), new_id()
    changes = dict(values)
    if named:  # an owner the create names: assignment rules leave it alone
        changes["owner_id"] = owner
    values |= {
        "id": record_id,
        "owner_id": owner,
        "created_at": now,
        "created_by": actor.user_id,
        "updated_at": now,
        "updated_by": actor.user_id,
        "version": 1,
    }
    write = Write(conn, ct, co, intent, "create", None, values, changes, prefix, refused=refused)
    await _check(write, errors)
    return write


async def insert(write: Write) -> None:
    """Insert a checked create's row (in a savepoint inside a batch); a unique clash
    becomes the field error `prefix + field`."""
    await _execute(write.conn, write.co, write.co.table.insert(), write.prefix, write.after)


async def update(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    data: dict[str, Any],
    intent: Intent,
    *,
    if_match: int | None = None,
    prefix: str = "",
) -> dict[str, Any]:
    """Validate and apply a partial change; StaleVersion when `if_match` is not current.
    A change that gives every field the value it holds writes nothing."""
    current, pending = await editable(conn, ct, co, record_id, intent.actor, system=intent.system)
    if if_match is not None and current["version"] != if_match:
        raise StaleVersion(f"the record is at version {current['version']}, not {if_match}")
    changes, errors, refused = _convert(ct, co, data, intent, prefix)
    if not errors and all(current.get(k) == v for k, v in changes.items()):
        return shown(ct, co, current, intent.actor)
    write = Write(
        conn,
        ct,
        co,
        intent,
        "update",
        current,
        current | changes,
        changes,
        prefix,
        refused=refused,
        pending_approval=pending,
    )
    await _check(write, errors)
    stamps = {
        "updated_at": utcnow(),
        "updated_by": intent.actor.user_id,
        "version": current["version"] + 1,
    }
    parameters = write.changes | stamps | {_ID: record_id, _VERSION: current["version"]}
    result = await _execute(conn, co, _update_statement(ct, co), prefix, parameters)
    if result.rowcount != 1:  # a concurrent writer won (SQLite has no row lock)
        raise StaleVersion("the record changed while it was being updated")
    write.after |= stamps
    await _finish(write)
    return await _written(conn, ct, co, record_id, write.after, intent)


#: Parameter names of the record an UPDATE changes, and of the version it must be at.
_ID, _VERSION = "mc_where_id", "mc_where_version"


def _update_statement(ct: CompiledTenant, co: CompiledObject) -> Any:
    """UPDATE of one record at one version; its SET columns are the parameters given.
    One statement object per object and version, so SQLAlchemy keys and compiles it once."""
    t = co.table
    return ct.views.get_or_build(
        ("update", co.name),
        lambda: t.update().where(
            t.c.id == sa.bindparam(_ID), t.c.version == sa.bindparam(_VERSION)
        ),
    )


async def transfer_owner(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    new_owner: Any,
    intent: Intent,
) -> dict[str, Any]:
    """Give a record to another user: its owner, an administrator or a modify-all holder
    may, unless a pending approval locks it."""
    actor = intent.actor
    current, pending = await editable(conn, ct, co, record_id, actor, system=intent.system)
    permission = object_permission(ct.model, actor, co.name)
    if not (intent.privileged or permission.modify_all or current["owner_id"] == actor.user_id):
        raise PermissionDenied(
            "only the owner, a modify-all holder or an administrator may transfer it"
        )
    owner = await active_user(conn, new_owner, "owner_id")
    changes: dict[str, Any] = {"owner_id": owner}
    write = Write(
        conn,
        ct,
        co,
        intent,
        "transfer",
        current,
        current | changes,
        changes,
        pending_approval=pending,
    )
    await _check(write, [])
    stamps = {
        "updated_at": utcnow(),
        "updated_by": actor.user_id,
        "version": current["version"] + 1,
    }
    t = co.table
    result = await conn.execute(
        t.update()
        .where(t.c.id == record_id, t.c.version == current["version"])
        .values(changes | stamps)
    )
    if result.rowcount != 1:
        raise StaleVersion("the record changed while it was being transferred")
    write.after |= stamps
    await _finish(write)
    return await _written(conn, ct, co, record_id, write.after, intent)


async def _written(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    values: dict[str, Any],
    intent: Intent,
) -> dict[str, Any]:
    """The record as written: from the values themselves when the database computes
    none of its fields (one query fewer per write), else read back."""
    if co.computed:
        return shown(ct, co, await fetch(conn, co, record_id), intent.actor)
    return shown(
        ct, co, {n: values.get(n) for n in (*SHOWN_SYSTEM_FIELDS, *co.fields)}, intent.actor
    )


async def delete(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    intent: Intent,
    *,
    if_match: int | None = None,
) -> None:
    """Move a record and its detail records to the recycle bin, minding lookups to it."""
    if not intent.system:
        require_object(ct.model, intent.actor, co.name, "delete")
    current, pending = await editable(conn, ct, co, record_id, intent.actor, system=intent.system)
    if if_match is not None and current["version"] != if_match:
        raise StaleVersion(f"the record is at version {current['version']}, not {if_match}")
    write = Write(conn, ct, co, intent, "delete", current, current, {}, pending_approval=pending)
    await _check(write, [])
    await _soft_delete(conn, ct, co, [record_id], intent, utcnow())
    await _finish(write)


async def restore(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    intent: Intent,
) -> dict[str, Any]:
    """Bring a record, and the details deleted with it, back from the recycle bin."""
    if not intent.system:
        require_object(ct.model, intent.actor, co.name, "delete")
    current, _pending = await editable(
        conn, ct, co, record_id, intent.actor, system=intent.system, deleted=True
    )
    for name, link in co.references.items():
        if link.type == "master_detail" and current.get(name) is not None:
            master = ct.table_for(link.target)
            alive = await conn.scalar(
                sa.select(master.c.id).where(
                    master.c.id == current[name], master.c.deleted_at.is_(None)
                )
            )
            if alive is None:
                raise Conflict(f"restore the {link.target} record {current[name]} first")
    write = Write(conn, ct, co, intent, "restore", current, current, {})
    await _check(write, [])
    try:
        async with conn.begin_nested():
            await _restore(conn, ct, co, [record_id], current["deleted_at"], intent)
    except IntegrityError as error:
        field = _violated_field(co, error)
        raise Conflict(
            "a live record now holds the same unique value" + (f" in {field}" if field else "")
        ) from None
    record = await fetch(conn, co, record_id)
    write.after = record
    await _finish(write)
    return shown(ct, co, record, intent.actor)


async def next_numbers(conn: AsyncConnection, co: CompiledObject) -> dict[str, str]:
    """The auto-number values of one new record."""
    return {name: fmt(0) for name, fmt in (await number_formats(conn, co, 1)).items()}


async def number_formats(
    conn: AsyncConnection, co: CompiledObject, count: int
) -> dict[str, Callable[[int], str]]:
    """Reserve `count` consecutive numbers of each auto-number field; per field, the
    formatted value of the i-th of them."""
    formats: dict[str, Callable[[int], str]] = {}
    for field in co.auto_numbers:
        seq = sequences
        first = await conn.scalar(
            seq.update()
            .where(seq.c.object == co.name, seq.c.field == field.api_name)
            .values(next_value=seq.c.next_value + count)
            .returning(seq.c.next_value - count)
        )
        prefix, rest = field.format.split("{", 1)
        zeros, suffix = rest.split("}", 1)
        formats[field.api_name] = functools.partial(_number, prefix, len(zeros), suffix, first)
    return formats


def _number(prefix: str, width: int, suffix: str, first: int, offset: int) -> str:
    return f"{prefix}{first + offset:0{width}d}{suffix}"


async def _execute(
    conn: AsyncConnection,
    co: CompiledObject,
    statement: Any,
    prefix: str,
    parameters: dict[str, Any] | None = None,
) -> Any:
    """Execute an insert or update; a unique-index violation becomes a field error.

    Inside a batch (a `prefix` names the record) a savepoint keeps the transaction usable
    so that later records are still checked; alone, the whole request fails anyway.
    """
    try:
        if prefix:
            async with conn.begin_nested():
                return await conn.execute(statement, parameters)
        return await conn.execute(statement, parameters)
    except IntegrityError as error:
        field = _violated_field(co, error)
        if field is None:
            raise Conflict("the change conflicts with existing data") from None
        raise RecordInvalid(
            f"the {co.name} record is invalid",
            [FieldError(prefix + field, "unique", f"another {co.name} record has this {field}")],
        ) from None


def _violated_field(co: CompiledObject, error: IntegrityError) -> str | None:
    """Which field's unique index a database error names (both dialects)."""
    constraint = getattr(getattr(error.orig, "__cause__", None), "constraint_name", None)
    if constraint in co.index_fields:
        return co.index_fields[constraint]
    message = str(error.orig)
    for name in co.index_fields.values():
        if f"{co.name}.{name}" in message or f"({name})" in message:
            return name
    return None


async def _soft_delete(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    ids: list[uuid.UUID],
    intent: Intent,
    stamp: dt.datetime,
    depth: int = 0,
) -> None:
    """Delete `ids` with their details; lookups to them are cleared or refuse the delete.

    What the delete does to other records is not checked again (deleting the master
    allows it) but is recorded like any write: audit, history and after-commit events.
    """
    if depth > 20:
        raise Conflict("master-detail chain too deep to delete")
    cascade = _cascading(intent, f"{co.name} deleted")
    for child_name, link in co.children:
        child = ct.object(child_name)
        t = child.table
        live = sa.and_(t.c[link.api_name].in_(ids), t.c.deleted_at.is_(None))
        if link.type == "master_detail":
            rows = await _rows(conn, child, live)
            if rows:
                await _soft_delete(
                    conn, ct, child, [r["id"] for r in rows], cascade, stamp, depth + 1
                )
                for row in rows:
                    await _finish(Write(conn, ct, child, cascade, "delete", row, row, {}))
        elif link.on_delete == "restrict":
            blocking = await conn.scalar(sa.select(sa.func.count()).select_from(t).where(live))
            if blocking:
                raise Conflict(
                    f"{blocking} {child_name} records refer to this record through "
                    f"{link.api_name}; reassign or delete them first",
                    [
                        FieldError(
                            f"{child_name}.{link.api_name}", "restrict", "records refer to it"
                        )
                    ],
                )
        else:
            rows = await _rows(conn, child, live)
            cleared = {link.api_name: None, "updated_at": stamp, "updated_by": intent.actor.user_id}
            await conn.execute(
                t.update().where(live).values(cleared | {"version": t.c.version + 1})
            )
            for row in rows:
                after = row | cleared | {"version": row["version"] + 1}
                changes = {link.api_name: None}
                await _finish(Write(conn, ct, child, cascade, "update", row, after, changes))
    t = co.table
    await conn.execute(
        t.update()
        .where(t.c.id.in_(ids), t.c.deleted_at.is_(None))
        .values(deleted_at=stamp, updated_by=intent.actor.user_id, version=t.c.version + 1)
    )


def _cascading(intent: Intent, reason: str) -> Intent:
    """The intent of what a write does to other records: the same actor, with system
    rights (the write they follow from was allowed)."""
    return dataclasses.replace(intent, origin=Origin.CASCADE, reason=reason, system=True)


async def _rows(
    conn: AsyncConnection, co: CompiledObject, where: sa.ColumnElement[bool]
) -> list[dict[str, Any]]:
    """The stored values of the records matching `where` (for their audit and events)."""
    result = await conn.execute(record_select(co).where(where))
    return [dict(row) for row in result.mappings()]


async def _restore(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    ids: list[uuid.UUID],
    stamp: dt.datetime,
    intent: Intent,
) -> None:
    """Bring `ids` back, and the details deleted with them (recorded like any write)."""
    t = co.table
    await conn.execute(
        t.update()
        .where(t.c.id.in_(ids))
        .values(
            deleted_at=None,
            updated_at=utcnow(),
            updated_by=intent.actor.user_id,
            version=t.c.version + 1,
        )
    )
    cascade = _cascading(intent, f"{co.name} restored")
    for child_name, link in co.children:
        if link.type != "master_detail":
            continue
        child = ct.object(child_name)
        c = child.table
        rows = await _rows(
            conn, child, sa.and_(c.c[link.api_name].in_(ids), c.c.deleted_at == stamp)
        )
        if rows:
            await _restore(conn, ct, child, [r["id"] for r in rows], stamp, cascade)
            for row in rows:
                await _finish(Write(conn, ct, child, cascade, "restore", row, row, {}))
