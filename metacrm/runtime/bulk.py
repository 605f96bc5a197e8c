"""Batch writes: every record checked like a single write, the new ones inserted together.

A batch runs the write path of `writes` on each record: conversion under field
permissions, defaults and every hook's `check` (field checks, field rules, validation
rules, stage gates, approval locks), collecting the problems of every record under
`records/{i}/`. Records that update an existing one (`upsert_on`) go through
`writes.update` one by one. The new ones are then written together: one sequence update
per auto-number field, one executemany INSERT in a savepoint, the audit entries in one
executemany, and one after-commit event per record. When the INSERT breaks a unique
index the savepoint is rolled back and the records are inserted one by one, each in its
own savepoint, so that the answer names exactly the records that clash.

Because new records are written after every record was checked, a check that reads
other records (a validation rule looking at its siblings) does not see the records
created earlier in the same batch, and an upsert's update runs before the batch's
creates.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError, NotFound, PermissionDenied, RecordInvalid
from metacrm.metadata.values import ValueProblem, coerce
from metacrm.runtime.audit import AUDIT, record_writes
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.hooks import Intent, Write
from metacrm.runtime.writes import (
    HOOKS,
    announce,
    checked_create,
    insert,
    number_formats,
    update,
)


async def batch(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    records: list[Any],
    intent: Intent,
    *,
    upsert_on: str | None = None,
) -> list[dict[str, Any]]:
    """Create, or upsert by an external-id field, many records; all or none."""
    existing = await _existing(conn, co, records, upsert_on)
    results: list[dict[str, Any]] = []
    # Each record's problems, so that they are reported in record order.
    errors: dict[int, list[FieldError]] = defaultdict(list)
    creates: list[tuple[int, Write]] = []
    for index, data in enumerate(records):
        prefix = f"records/{index}/"
        if not isinstance(data, dict):
            errors[index].append(
                FieldError(f"records/{index}", "type", "each record must be a JSON object")
            )
            continue
        try:
            key = data.get(upsert_on) if upsert_on else None
            target = existing.get(str(key)) if key is not None else None
            if target is not None:
                record = await update(conn, ct, co, target, data, intent, prefix=prefix)
                results.append({"index": index, "id": record["id"], "created": False})
            else:
                creates.append(
                    (index, await checked_create(conn, ct, co, data, intent, prefix=prefix))
                )
        except RecordInvalid as invalid:
            errors[index] += invalid.errors
        except NotFound:
            # A record the caller cannot see holds the key: say no more than a unique clash.
            message = f"another {co.name} record has this {upsert_on}"
            errors[index].append(FieldError(prefix + str(upsert_on), "unique", message))
        except PermissionDenied as denied:
            errors[index].append(
                FieldError(prefix + str(upsert_on), "permission-denied", denied.detail)
            )
    if creates:
        # Also when other records were refused: a clash is reported with their problems.
        for index, problems in (await _insert_all(conn, co, creates)).items():
            errors[index] += problems
    if any(errors.values()):
        raise RecordInvalid(
            "the batch was refused; nothing was written",
            [error for index in sorted(errors) for error in errors[index]],
        )
    writes = [write for _, write in creates]
    await _after_all(conn, writes)
    results += [{"index": i, "id": w.record_id, "created": True} for i, w in creates]
    return sorted(results, key=lambda result: int(result["index"]))


async def _existing(
    conn: AsyncConnection, co: CompiledObject, records: list[Any], upsert_on: str | None
) -> dict[str, uuid.UUID]:
    """The live records an upsert batch names by their external id (key as text -> id)."""
    if upsert_on is None:
        return {}
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
    if not coerced:
        return {}
    t = co.table
    rows = await conn.execute(
        sa.select(t.c[upsert_on], t.c.id).where(
            t.c[upsert_on].in_(coerced), t.c.deleted_at.is_(None)
        )
    )
    return {str(row[upsert_on]): row["id"] for row in rows.mappings()}


async def _insert_all(
    conn: AsyncConnection, co: CompiledObject, creates: list[tuple[int, Write]]
) -> dict[int, list[FieldError]]:
    """Give the checked creates their auto-numbers and insert them; the unique clashes
    of each record that has one (nothing is inserted then)."""
    formats = await number_formats(conn, co, len(creates))
    for offset, (_, write) in enumerate(creates):
        write.after |= {name: fmt(offset) for name, fmt in formats.items()}
    # Rows giving the same columns share one statement: a column a row leaves out keeps
    # its database default rather than taking NULL.
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for _, write in creates:
        groups[tuple(sorted(write.after))].append(write.after)
    try:
        async with conn.begin_nested():
            for rows in groups.values():
                await conn.execute(co.table.insert(), rows)
        return {}
    except IntegrityError:
        pass
    # Some record clashes: insert them one by one (a savepoint each) to name which.
    clashes: dict[int, list[FieldError]] = {}
    for index, write in creates:
        try:
            await insert(write)
        except RecordInvalid as invalid:
            clashes[index] = invalid.errors
    return clashes


async def _after_all(conn: AsyncConnection, writes: list[Write]) -> None:
    """The hooks' `after` steps of the inserted creates, then their after-commit events.

    The audit hook's work is one entry per record and nothing else for a create (field
    history is kept for updates only), so its entries are written in one executemany.
    Every other hook keeps its own `after`, run for each record: stage gates record the
    move into the first stage and open its tasks (per-record reads and inserts); field
    checks, field rules, validation rules and approval locks do nothing after a write
    today, and a hook that starts to will still be run.
    """
    for write in writes:
        for hook in HOOKS:
            if hook is not AUDIT:
                await hook.after(write)
    if writes:
        await record_writes(conn, writes)
    for write in writes:
        announce(write)
