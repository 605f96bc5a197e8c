"""Record services: create, read, update, delete, restore and batch upsert of one object."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import (
    Conflict,
    FieldError,
    NotFound,
    PermissionDenied,
    RecordInvalid,
    StaleVersion,
)
from metacrm.metadata.values import ValueProblem, coerce
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import SHOWN_SYSTEM_FIELDS, CompiledObject, CompiledTenant
from metacrm.runtime.hooks import WriteContext, run_after, run_checks
from metacrm.runtime.permissions import (
    field_access,
    object_permission,
    readable,
    record_filter,
    require_object,
)
from metacrm.runtime.serialize import row_to_record
from metacrm.runtime.tenant_tables import sequences, users
from metacrm.runtime.validation import (
    apply_defaults,
    coerce_input,
    reference_errors,
    required_errors,
    rule_errors,
)


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


async def fetch(
    conn: AsyncConnection,
    co: CompiledObject,
    record_id: uuid.UUID,
    *,
    deleted: bool = False,
    lock: bool = False,
    access: sa.ColumnElement[bool] | None = None,
) -> dict[str, Any]:
    """A record's raw values (not yet JSON-ready); NotFound when absent or not visible."""
    names = [*SHOWN_SYSTEM_FIELDS, *co.fields] + (["deleted_at"] if deleted else [])
    query = record_select(co, names).where(co.table.c.id == record_id)
    query = query.where(
        co.table.c.deleted_at.is_not(None) if deleted else co.table.c.deleted_at.is_(None)
    )
    if access is not None:
        query = query.where(access)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update(of=co.table)
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise NotFound(f"no {co.name} record has id {record_id}")
    return dict(row)


async def get(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    actor: Actor,
) -> dict[str, Any]:
    """A record as the actor may see it: 404 when not visible, hidden fields left out."""
    record = await fetch(conn, co, record_id, access=record_filter(ct, actor, co, "read"))
    return _shown(ct, co, record, actor)


def _shown(
    ct: CompiledTenant, co: CompiledObject, record: dict[str, Any], actor: Actor
) -> dict[str, Any]:
    names = {*SHOWN_SYSTEM_FIELDS, "deleted_at", *readable(ct, actor, co)}
    return row_to_record({k: v for k, v in record.items() if k in names})


async def _editable(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    actor: Actor,
    *,
    deleted: bool = False,
) -> dict[str, Any]:
    """The record, locked, if the actor may change it: 404 when not visible, 403 when read-only."""
    current = await fetch(
        conn, co, record_id, deleted=deleted, lock=True, access=record_filter(ct, actor, co, "read")
    )
    access = record_filter(ct, actor, co, "edit")
    if access is not None:
        t = co.table
        if await conn.scalar(sa.select(t.c.id).where(t.c.id == record_id, access)) is None:
            raise PermissionDenied(f"you may read this {co.name} record but not change it")
    return current


def _field_errors(
    ct: CompiledTenant, co: CompiledObject, data: dict[str, Any], actor: Actor, prefix: str
) -> list[FieldError]:
    """Refuse writing fields the actor may not edit (hidden ones look unknown)."""
    if actor.is_admin:
        return []
    errors = []
    for name in data:
        if name not in co.writable:
            continue
        access = field_access(ct.model, actor, co.name, name)
        if access == "hidden":
            errors.append(
                FieldError(prefix + name, "unknown-field", f"{co.name} has no field {name}")
            )
        elif access == "read":
            errors.append(FieldError(prefix + name, "read-only", f"you may not change {name}"))
    return errors


async def _owner_from(
    conn: AsyncConnection, value: Any, actor: Actor, permission: Any, prefix: str
) -> uuid.UUID:
    """The owner a create names: only administrators and modify-all holders may name one."""
    if not (actor.is_admin or permission.modify_all):
        raise RecordInvalid(
            "owner_id", [FieldError(prefix + "owner_id", "read-only", "owner_id cannot be written")]
        )
    return await active_user(conn, value, prefix + "owner_id")


async def active_user(conn: AsyncConnection, value: Any, field: str) -> uuid.UUID:
    """The id of an active user of the tenant named by `value`, or RecordInvalid."""
    try:
        user_id = uuid.UUID(str(value))
    except ValueError:
        user_id = None
    found = user_id and await conn.scalar(
        sa.select(users.c.id).where(users.c.id == user_id, users.c.is_active.is_(True))
    )
    if not found:
        raise RecordInvalid(
            "unknown user", [FieldError(field, "unknown-user", "no active user has this id")]
        )
    return user_id


async def transfer_owner(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    new_owner: Any,
    actor: Actor,
) -> dict[str, Any]:
    """Give a record to another user: its owner, an administrator or a modify-all holder may."""
    current = await _editable(conn, ct, co, record_id, actor)
    permission = object_permission(ct.model, actor, co.name)
    if not (actor.is_admin or permission.modify_all or current["owner_id"] == actor.user_id):
        raise PermissionDenied(
            "only the owner, a modify-all holder or an administrator may transfer it"
        )
    owner = await active_user(conn, new_owner, "owner_id")
    t = co.table
    await conn.execute(
        t.update()
        .where(t.c.id == record_id)
        .values(
            owner_id=owner, updated_at=utcnow(), updated_by=actor.user_id, version=t.c.version + 1
        )
    )
    after = current | {"owner_id": owner}
    ctx = WriteContext(conn, ct, co, actor, "update", current, after, {"owner_id": owner})
    ctx.notes["audit_action"] = "owner.transfer"
    await run_after(ctx)
    return _shown(ct, co, await fetch(conn, co, record_id), actor)


async def _next_numbers(conn: AsyncConnection, co: CompiledObject) -> dict[str, str]:
    numbers = {}
    for field in co.auto_numbers:
        seq = sequences
        value = await conn.scalar(
            seq.update()
            .where(seq.c.object == co.name, seq.c.field == field.api_name)
            .values(next_value=seq.c.next_value + 1)
            .returning(seq.c.next_value - 1)
        )
        prefix, rest = field.format.split("{", 1)
        zeros, suffix = rest.split("}", 1)
        numbers[field.api_name] = f"{prefix}{value:0{len(zeros)}d}{suffix}"
    return numbers


async def _validate_new(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    data: dict[str, Any],
    prefix: str,
    actor: Actor,
    errors: list[FieldError],
) -> dict[str, Any]:
    """Coerced values with defaults, after every check; `errors` are problems found before."""
    values, problems = coerce_input(co, data, prefix=prefix)
    errors = [*errors, *problems]
    # Fields whose value was refused are not also reported as missing.
    apply_defaults(ct, co, values, skip=set(data))
    errors += required_errors(
        co, values | {n: True for n in data if n not in values}, prefix=prefix
    )
    if errors:
        raise RecordInvalid(f"the {co.name} record is invalid", errors)
    errors = await reference_errors(conn, ct, co, values, actor, prefix=prefix)
    if not errors and co.obj.validation_rules:
        errors += await rule_errors(conn, ct, co, values, prior=None, prefix=prefix)
    if errors:
        raise RecordInvalid(f"the {co.name} record is invalid", errors)
    return values


async def create(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    data: dict[str, Any],
    actor: Actor,
    *,
    prefix: str = "",
) -> dict[str, Any]:
    """Validate and insert one record; returns it as read back."""
    permission = require_object(ct.model, actor, co.name, "create")
    data, errors, owner = dict(data), [], actor.user_id
    if "owner_id" in data:
        try:
            owner = await _owner_from(conn, data.pop("owner_id"), actor, permission, prefix)
        except RecordInvalid as invalid:
            errors += invalid.errors
    errors += _field_errors(ct, co, data, actor, prefix)
    refused = {e.field.removeprefix(prefix) for e in errors}
    data = {k: v for k, v in data.items() if k not in refused}
    values = await _validate_new(conn, ct, co, data, prefix, actor, errors)
    now, record_id = utcnow(), new_id()
    changes = dict(values)
    values |= {
        "id": record_id,
        "owner_id": owner,
        "created_at": now,
        "created_by": actor.user_id,
        "updated_at": now,
        "updated_by": actor.user_id,
        "version": 1,
    }
    ctx = WriteContext(conn, ct, co, actor, "create", None, values, changes, prefix)
    errors = await run_checks(ctx)
    if errors:
        raise RecordInvalid(f"the {co.name} record is invalid", errors)
    values |= await _next_numbers(conn, co)
    await _write(conn, co, co.table.insert().values(values), prefix)
    await run_after(ctx)
    return await _written(conn, ct, co, record_id, values, actor)


async def update(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    data: dict[str, Any],
    actor: Actor,
    *,
    if_match: int | None = None,
    prefix: str = "",
) -> dict[str, Any]:
    """Validate and apply a partial change; StaleVersion when `if_match` is not current."""
    current = await _editable(conn, ct, co, record_id, actor)
    if if_match is not None and current["version"] != if_match:
        raise StaleVersion(f"the record is at version {current['version']}, not {if_match}")
    errors = _field_errors(ct, co, data, actor, prefix)
    if errors:
        raise RecordInvalid(f"the {co.name} record is invalid", errors)
    changes, errors = coerce_input(co, data, prefix=prefix)
    if errors:
        raise RecordInvalid(f"the {co.name} record is invalid", errors)
    merged = current | changes
    errors = required_errors(co, merged, only=set(changes), prefix=prefix)
    errors += await reference_errors(
        conn,
        ct,
        co,
        {k: v for k, v in changes.items() if v != current.get(k)},
        actor,
        prefix=prefix,
    )
    if not errors and co.obj.validation_rules:
        errors += await rule_errors(conn, ct, co, merged, prior=current, prefix=prefix)
    ctx = WriteContext(conn, ct, co, actor, "update", current, merged, dict(changes), prefix)
    if not errors:
        errors += await run_checks(ctx)
    if errors:
        raise RecordInvalid(f"the {co.name} record is invalid", errors)
    changes |= {
        "updated_at": utcnow(),
        "updated_by": actor.user_id,
        "version": current["version"] + 1,
    }
    table = co.table
    statement = (
        table.update()
        .where(table.c.id == record_id, table.c.version == current["version"])
        .values(changes)
    )
    result = await _write(conn, co, statement, prefix)
    if result.rowcount != 1:  # a concurrent writer won (SQLite has no row lock)
        raise StaleVersion("the record changed while it was being updated")
    await run_after(ctx)
    return await _written(conn, ct, co, record_id, current | changes, actor)


def _computed_anywhere(ct: CompiledTenant, co: CompiledObject) -> bool:
    """Whether the database or a hook may change a written record's values: computed
    fields, or stage and approval rules whose actions update the record."""
    model = ct.model
    return ct.views.get_or_build(
        ("read_back", co.name),
        lambda: (
            any(f.type in ("formula", "rollup") for f in co.obj.fields)
            or any(r.object == co.name for r in model.stage_rules)
            or any(f.object == co.name for f in model.approval_flows)
        ),
    )


async def _written(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    values: dict[str, Any],
    actor: Actor,
) -> dict[str, Any]:
    """The record as written: from the values themselves when nothing else can change
    them (one query fewer per write), else read back."""
    if _computed_anywhere(ct, co):
        return _shown(ct, co, await fetch(conn, co, record_id), actor)
    return _shown(ct, co, {n: values.get(n) for n in (*SHOWN_SYSTEM_FIELDS, *co.fields)}, actor)


async def _write(conn: AsyncConnection, co: CompiledObject, statement: Any, prefix: str) -> Any:
    """Execute an insert or update; a unique-index violation becomes a field error.

    Inside a batch (a `prefix` names the record) a savepoint keeps the transaction usable
    so that later records are still checked; alone, the whole request fails anyway.
    """
    try:
        if prefix:
            async with conn.begin_nested():
                return await conn.execute(statement)
        return await conn.execute(statement)
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


async def delete(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    actor: Actor,
    *,
    if_match: int | None = None,
) -> None:
    """Move a record and its detail records to the recycle bin, minding lookups to it."""
    require_object(ct.model, actor, co.name, "delete")
    current = await _editable(conn, ct, co, record_id, actor)
    if if_match is not None and current["version"] != if_match:
        raise StaleVersion(f"the record is at version {current['version']}, not {if_match}")
    ctx = WriteContext(conn, ct, co, actor, "delete", current, current, {})
    errors = await run_checks(ctx)
    if errors:
        raise Conflict(f"the {co.name} record cannot be deleted", errors)
    await _soft_delete(conn, ct, co, [record_id], actor, utcnow())
    await run_after(ctx)


async def _soft_delete(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    ids: list[uuid.UUID],
    actor: Actor,
    stamp: dt.datetime,
    depth: int = 0,
) -> None:
    if depth > 20:
        raise Conflict("master-detail chain too deep to delete")
    for child_name, link in co.children:
        child = ct.object(child_name)
        t = child.table
        live = sa.and_(t.c[link.api_name].in_(ids), t.c.deleted_at.is_(None))
        if link.type == "master_detail":
            child_ids = list((await conn.execute(sa.select(t.c.id).where(live))).scalars())
            if child_ids:
                await _soft_delete(conn, ct, child, child_ids, actor, stamp, depth + 1)
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
            await conn.execute(
                t.update()
                .where(live)
                .values(
                    {
                        link.api_name: None,
                        "version": t.c.version + 1,
                        "updated_at": stamp,
                        "updated_by": actor.user_id,
                    }
                )
            )
    t = co.table
    await conn.execute(
        t.update()
        .where(t.c.id.in_(ids), t.c.deleted_at.is_(None))
        .values(deleted_at=stamp, updated_by=actor.user_id, version=t.c.version + 1)
    )


async def restore(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    actor: Actor,
) -> dict[str, Any]:
    """Bring a record, and the details deleted with it, back from the recycle bin."""
    require_object(ct.model, actor, co.name, "delete")
    current = await _editable(conn, ct, co, record_id, actor, deleted=True)
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
    ctx = WriteContext(conn, ct, co, actor, "restore", current, current, {})
    errors = await run_checks(ctx)
    if errors:
        raise Conflict(f"the {co.name} record cannot be restored", errors)
    try:
        async with conn.begin_nested():
            await _restore(conn, ct, co, [record_id], current["deleted_at"], actor)
    except IntegrityError as error:
        field = _violated_field(co, error)
        raise Conflict(
            "a live record now holds the same unique value" + (f" in {field}" if field else "")
        ) from None
    await run_after(ctx)
    return _shown(ct, co, await fetch(conn, co, record_id), actor)


async def _restore(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    ids: list[uuid.UUID],
    stamp: dt.datetime,
    actor: Actor,
) -> None:
    t = co.table
    await conn.execute(
        t.update()
        .where(t.c.id.in_(ids))
        .values(
            deleted_at=None, updated_at=utcnow(), updated_by=actor.user_id, version=t.c.version + 1
        )
    )
    for child_name, link in co.children:
        if link.type != "master_detail":
            continue
        child = ct.object(child_name)
        c = child.table
        child_ids = list(
            (
                await conn.execute(
                    sa.select(c.c.id).where(c.c[link.api_name].in_(ids), c.c.deleted_at == stamp)
                )
            ).scalars()
        )
        if child_ids:
            await _restore(conn, ct, child, child_ids, stamp, actor)


async def batch(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    records: list[dict[str, Any]],
    actor: Actor,
    *,
    upsert_on: str | None = None,
) -> list[dict[str, Any]]:
    """Create, or upsert by an external-id field, many records; all or none."""
    existing: dict[Any, uuid.UUID] = {}
    if upsert_on is not None:
        if upsert_on not in co.external_ids:
            raise RecordInvalid(
                "upsert needs an external-id field",
                [
                    FieldError(
                        "upsert_on",
                        "not-external-id",
                        f"{upsert_on!r} is not an external-id field of {co.name}",
                    )
                ],
            )
        keys = [r.get(upsert_on) for r in records if isinstance(r, dict)]
        keys = [k for k in keys if k is not None]
        if len(set(map(str, keys))) != len(keys):
            raise RecordInvalid(
                "the batch names the same external id twice",
                [FieldError("records", "duplicate-key", f"each {upsert_on} may appear once")],
            )
        field = co.fields[upsert_on]
        coerced = []
        for key in keys:
            with contextlib.suppress(ValueProblem):
                coerced.append(coerce(field, key))
        t = co.table
        if coerced:
            rows = await conn.execute(
                sa.select(t.c[upsert_on], t.c.id).where(
                    t.c[upsert_on].in_(coerced), t.c.deleted_at.is_(None)
                )
            )
            existing = {str(k): i for k, i in rows}
    results: list[dict[str, Any]] = []
    errors: list[FieldError] = []
    for index, data in enumerate(records):
        prefix = f"records/{index}/"
        if not isinstance(data, dict):
            errors.append(
                FieldError(f"records/{index}", "type", "each record must be a JSON object")
            )
            continue
        try:
            key = data.get(upsert_on) if upsert_on else None
            target = existing.get(str(key)) if key is not None else None
            if target is not None:
                record = await update(conn, ct, co, target, data, actor, prefix=prefix)
                results.append({"index": index, "id": record["id"], "created": False})
            else:
                record = await create(conn, ct, co, data, actor, prefix=prefix)
                results.append({"index": index, "id": record["id"], "created": True})
        except RecordInvalid as invalid:
            errors += invalid.errors
        except NotFound:
            # A record the caller cannot see holds the key: say no more than a unique clash.
            message = f"another {co.name} record has this {upsert_on}"
            errors.append(FieldError(prefix + str(upsert_on), "unique", message))
        except PermissionDenied as denied:
            errors.append(FieldError(prefix + str(upsert_on), "permission-denied", denied.detail))
    if errors:
        raise RecordInvalid("the batch was refused; nothing was written", errors)
    return results
