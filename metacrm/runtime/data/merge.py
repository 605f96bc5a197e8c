"""Merging duplicate records into one survivor, with a dry run and an undo.

`merge` keeps one record (the survivor) and moves the others (at most `MAX_MERGED`,
so three records at once, as Salesforce allows) to the recycle bin. Field by field,
`choices` names the record whose value survives; a field not named keeps the
survivor's value, or takes the first non-blank value of the merged records when the
survivor's is blank (only where the merging user may edit the field).

Everything goes through the write path (`writes`), in one transaction:

1. every live record pointing at a merged record (each lookup and master-detail field
   of every object whose target is this object) is re-pointed at the survivor, with
   system rights: the merging user may not see every child, yet leaving a child
   behind would hide it in the recycle bin with its parent. Records already in the
   recycle bin keep pointing at the merged record, which joins them there (restoring
   one needs the merged record restored first, as after any delete). The survivor and
   the merged records themselves are not re-pointed (a self-lookup between them stays);
2. rows of system tables that hang on a merged record by (object, record_id) move to
   the survivor when they make its story: field history, stage history, comments,
   finished approval runs (their events follow through the run's id), stage tasks
   no longer open, and notifications' links. They stay where they are when they
   belong to the merged record itself: the audit log (append-only: it says what
   happened to that id), open stage tasks (work of the merged record's own stage;
   moved, a required one could block the survivor's stage), manual shares (moving
   them would widen access to the survivor, which is its owner's decision),
   automation runs, jobs and webhook deliveries (logs; a pending timer finds its
   record deleted and skips);
3. the merged records go to the recycle bin (`writes.delete`, the user's rights: the
   delete permission and record access apply), their own lookups unchanged;
4. the survivor takes the chosen values (`writes.update`, the user's rights: edit
   access and field permissions apply). It comes last, so a unique value taken from
   a merged record is free by then.

An approval in progress on any of the records blocks the merge (409 listing it). One
`mc_merge` row keeps the before-images, the moved references and rows, who and when;
the audit log gets a "merge" entry. A dry run does the same in a savepoint that is
rolled back (so it finds what the real run would refuse) and returns what would
happen; with a blocker it only reads.

`undo_merge` restores the survivor's before-image of the fields the merge changed,
brings the merged records back from the recycle bin, moves every moved reference and
row back, and marks the merge undone. It refuses (409, every problem listed) when
anything the merge did has changed since: a moved child deleted or re-pointed, a
merged record no longer in the recycle bin, a changed survivor field changed again.
Versions and update stamps move forward: an undo is a new write, not a time machine.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import Conflict, FieldError, NotFound, RecordInvalid
from metacrm.metadata.store import tenant_metadata
from metacrm.runtime import audit, writes
from metacrm.runtime.actor import Actor
from metacrm.runtime.automation.notify import notifications
from metacrm.runtime.compiler import CompiledObject, CompiledTenant, Link
from metacrm.runtime.hooks import Intent, Origin
from metacrm.runtime.permissions import field_access, readable, record_filter, require_object
from metacrm.runtime.records import fetch, new_id, reaches, shown, utcnow
from metacrm.runtime.serialize import json_value, row_to_record
from metacrm.runtime.tenant_tables import (
    approvals,
    comments,
    field_history,
    stage_history,
    stage_tasks,
)
from metacrm.types import JsonValue, UTCDateTime

#: How many records may be merged into one survivor at once (three records in all).
MAX_MERGED = 2

merges = sa.Table(
    "mc_merge",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("survivor_id", sa.Uuid(), nullable=False, index=True),
    #: [id, ...] of the records merged into the survivor.
    sa.Column("merged_ids", JsonValue(), nullable=False),
    #: field -> id of the record whose value survived (the defaults included).
    sa.Column("choices", JsonValue(), nullable=False),
    #: field -> the survivor's value after the merge, for the fields it changed.
    sa.Column("changed", JsonValue(), nullable=False),
    #: The survivor's stored values before the merge (JSON-ready).
    sa.Column("survivor_before", JsonValue(), nullable=False),
    #: id -> the stored values of each merged record before the merge.
    sa.Column("merged_before", JsonValue(), nullable=False),
    #: [{object, field, record_id, from}]: references re-pointed at the survivor.
    sa.Column("moved", JsonValue(), nullable=False),
    #: [{table, id, from}]: system rows moved to the survivor.
    sa.Column("moved_rows", JsonValue(), nullable=False),
    sa.Column("user_id", sa.Uuid(), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("undone_at", UTCDateTime(), nullable=True),
    sa.Column("undone_by", sa.Uuid(), nullable=True),
    sa.Index("ix_mc_merge_object_at", "object", "at"),
)

#: System tables whose rows about a merged record move to the survivor, each with the
#: condition a row must meet to move (see the module docstring for those that stay).
_MOVED_TABLES: tuple[tuple[sa.Table, sa.ColumnElement[bool] | None], ...] = (
    (field_history, None),
    (stage_history, None),
    (comments, None),
    (approvals, approvals.c.status != "pending"),
    (stage_tasks, stage_tasks.c.status != "open"),
    (notifications, None),
)
_TABLES = {table.name: table for table, _ in _MOVED_TABLES}


@dataclass(frozen=True)
class MovedReference:
    """One record re-pointed at the survivor: `object.field` of `record_id` held `from_id`."""

    object: str
    field: str
    record_id: uuid.UUID
    from_id: uuid.UUID

    def as_dict(self) -> dict[str, str]:
        return {
            "object": self.object,
            "field": self.field,
            "record_id": str(self.record_id),
            "from": str(self.from_id),
        }


@dataclass
class MergeResult:
    """What a merge did (or, for a dry run, would do)."""

    object: str
    survivor: dict[str, Any]
    merged: list[uuid.UUID]
    #: field -> id of the record whose value survives.
    choices: dict[str, uuid.UUID]
    #: field -> the survivor's new value, for the fields that change.
    changed: dict[str, Any]
    moved: list[MovedReference] = field(default_factory=list)
    #: system table -> how many of its rows move.
    moved_rows: dict[str, int] = field(default_factory=dict)
    #: Approvals in progress that block the merge: {object, record_id, approval_id, flow}.
    blockers: list[dict[str, str]] = field(default_factory=list)
    dry_run: bool = False
    id: uuid.UUID | None = None

    def moved_counts(self) -> dict[str, int]:
        """object -> how many of its records are re-pointed at the survivor."""
        counts: dict[str, int] = {}
        for ref in self.moved:
            counts[ref.object] = counts.get(ref.object, 0) + 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        children: dict[str, dict[str, list[str]]] = {}
        for ref in self.moved:
            children.setdefault(ref.object, {}).setdefault(ref.field, []).append(str(ref.record_id))
        return {
            "id": None if self.id is None else str(self.id),
            "object": self.object,
            "dry_run": self.dry_run,
            "survivor": self.survivor,
            "merged": [str(i) for i in self.merged],
            "values": {k: str(v) for k, v in self.choices.items()},
            "changed": self.changed,
            "children": children,
            "moved_counts": self.moved_counts(),
            "moved_rows": self.moved_rows,
            "blockers": self.blockers,
        }


def _invalid(field_name: str, code: str, message: str) -> RecordInvalid:
    return RecordInvalid("the merge is invalid", [FieldError(field_name, code, message)])


def check_ids(survivor_id: uuid.UUID, merged_ids: list[uuid.UUID]) -> None:
    """Refuse (422) an empty, too long or repeating list, or one holding the survivor."""
    if not merged_ids:
        raise _invalid("merged", "required", "name 1 or 2 records to merge into the survivor")
    if len(merged_ids) > MAX_MERGED:
        raise _invalid(
            "merged", "max-items", f"at most {MAX_MERGED} records merge into one survivor"
        )
    if len(set(merged_ids)) != len(merged_ids):
        raise _invalid("merged", "duplicate", "a record is named twice")
    if survivor_id in merged_ids:
        raise _invalid("merged", "survivor", "the survivor cannot also be merged")


def _blank(value: Any) -> bool:
    return value is None or value == "" or value == []


def choosable(co: CompiledObject) -> list[str]:
    """Fields whose surviving value a merge chooses (stored, not auto-numbered)."""
    numbered = {f.api_name for f in co.auto_numbers}
    return [name for name in co.writable if name not in numbered]


def choices_for(
    ct: CompiledTenant,
    co: CompiledObject,
    records: dict[uuid.UUID, dict[str, Any]],
    survivor_id: uuid.UUID,
    merged_ids: list[uuid.UUID],
    given: dict[str, uuid.UUID],
    intent: Intent,
) -> dict[str, uuid.UUID]:
    """field -> record whose value survives: the `given` choices (422 naming a field that
    cannot be chosen or a record not merged), else the defaults."""
    fields = choosable(co)
    errors = []
    for name, record_id in given.items():
        if name not in fields or (
            not intent.privileged
            and field_access(ct.model, intent.actor, co.name, name) == "hidden"
        ):
            errors.append(
                FieldError(f"values.{name}", "unknown-field", f"{co.name} has no field {name}")
            )
        elif record_id not in records:
            errors.append(
                FieldError(
                    f"values.{name}", "not-merged", "name the survivor or one of the merged records"
                )
            )
    if errors:
        raise RecordInvalid("the merge is invalid", errors)
    chosen: dict[str, uuid.UUID] = {}
    for name in fields:
        if name in given:
            chosen[name] = given[name]
            continue
        chosen[name] = survivor_id
        may_edit = intent.privileged or (
            field_access(ct.model, intent.actor, co.name, name) == "edit"
        )
        if may_edit and _blank(records[survivor_id].get(name)):
            filled = next((i for i in merged_ids if not _blank(records[i].get(name))), None)
            chosen[name] = filled or survivor_id
    return chosen


async def _blockers(
    conn: AsyncConnection, co: CompiledObject, ids: list[uuid.UUID]
) -> list[dict[str, str]]:
    """Approval runs in progress on any of the records."""
    a = approvals
    rows = await conn.execute(
        sa.select(a.c.id, a.c.record_id, a.c.flow)
        .where(a.c.object == co.name, a.c.record_id.in_(ids), a.c.status == "pending")
        .order_by(a.c.submitted_at)
    )
    return [
        {
            "object": co.name,
            "record_id": str(r.record_id),
            "approval_id": str(r.id),
            "flow": r.flow,
        }
        for r in rows
    ]


def _blocked(blockers: list[dict[str, str]]) -> Conflict:
    return Conflict(
        "an approval in progress blocks the merge: recall or finish it first",
        [
            FieldError(
                "merged",
                "approval-pending",
                f"the {b['flow']} approval {b['approval_id']} is in progress on "
                f"{b['object']} {b['record_id']}",
            )
            for b in blockers
        ],
    )


async def _children(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    survivor_id: uuid.UUID,
    merged_ids: list[uuid.UUID],
) -> list[tuple[CompiledObject, Link, uuid.UUID, uuid.UUID]]:
    """(object, link field, record id, merged id it points at) of every live record to
    re-point at the survivor."""
    found: list[tuple[CompiledObject, Link, uuid.UUID, uuid.UUID]] = []
    for child_name, link in co.children:
        child = ct.object(child_name)
        t = child.table
        column = t.c[link.api_name]
        query = sa.select(t.c.id, column).where(column.in_(merged_ids), t.c.deleted_at.is_(None))
        if child_name == co.name:
            query = query.where(t.c.id.not_in([survivor_id, *merged_ids]))
        for row in await conn.execute(query.order_by(t.c.id)):
            found.append((child, link, uuid.UUID(str(row[0])), uuid.UUID(str(row[1]))))
    return found


async def _system_rows(
    conn: AsyncConnection, co: CompiledObject, merged_ids: list[uuid.UUID]
) -> list[tuple[sa.Table, uuid.UUID, uuid.UUID]]:
    """(table, row id, merged id) of the system rows that move to the survivor."""
    found: list[tuple[sa.Table, uuid.UUID, uuid.UUID]] = []
    for table, condition in _MOVED_TABLES:
        query = sa.select(table.c.id, table.c.record_id).where(
            table.c.object == co.name, table.c.record_id.in_(merged_ids)
        )
        if condition is not None:
            query = query.where(condition)
        for row in await conn.execute(query.order_by(table.c.id)):
            found.append((table, uuid.UUID(str(row[0])), uuid.UUID(str(row[1]))))
    return found


async def merge(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    survivor_id: uuid.UUID,
    merged_ids: list[uuid.UUID],
    choices: dict[str, uuid.UUID],
    intent: Intent,
    *,
    dry_run: bool = False,
) -> MergeResult:
    """Merge `merged_ids` into `survivor_id` (see the module docstring); with `dry_run`,
    what would happen, nothing changed."""
    check_ids(survivor_id, merged_ids)
    actor = intent.actor
    if not intent.system:
        require_object(ct.model, actor, co.name, "edit")
        require_object(ct.model, actor, co.name, "delete")
    access = None if intent.system else record_filter(ct, actor, co, "read")
    records = {i: await fetch(conn, co, i, access=access) for i in [survivor_id, *merged_ids]}
    chosen = choices_for(ct, co, records, survivor_id, merged_ids, choices, intent)
    changes = {
        name: json_value(records[source].get(name))
        for name, source in chosen.items()
        if records[source].get(name) != records[survivor_id].get(name)
    }
    blockers = await _blockers(conn, co, [survivor_id, *merged_ids])
    if blockers and not dry_run:
        raise _blocked(blockers)
    if blockers:  # only read: the writes would be refused
        children = await _children(conn, ct, co, survivor_id, merged_ids)
        rows = await _system_rows(conn, co, merged_ids)
        return MergeResult(
            object=co.name,
            survivor=shown(ct, co, records[survivor_id], actor) | changes,
            merged=merged_ids,
            choices=chosen,
            changed=changes,
            moved=[MovedReference(c.name, link.api_name, i, f) for c, link, i, f in children],
            moved_rows=_counts(rows),
            blockers=blockers,
            dry_run=True,
        )
    if not dry_run:
        return await _apply(conn, ct, co, records, survivor_id, merged_ids, chosen, changes, intent)
    savepoint = await conn.begin_nested()
    try:
        result = await _apply(
            conn, ct, co, records, survivor_id, merged_ids, chosen, changes, intent
        )
    finally:
        await savepoint.rollback()
    return dataclasses.replace(result, dry_run=True, id=None)


def _counts(rows: list[tuple[sa.Table, uuid.UUID, uuid.UUID]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table, _row, _from in rows:
        counts[table.name] = counts.get(table.name, 0) + 1
    return counts


async def _apply(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    records: dict[uuid.UUID, dict[str, Any]],
    survivor_id: uuid.UUID,
    merged_ids: list[uuid.UUID],
    chosen: dict[str, uuid.UUID],
    changes: dict[str, Any],
    intent: Intent,
) -> MergeResult:
    merge_id = new_id()
    acting = dataclasses.replace(intent, origin=Origin.MERGE, reason=f"merge {merge_id}")
    # System rights for the children: the merging user may not see (or may not edit)
    # every record that points at a merged one, and none may be left behind.
    moving = dataclasses.replace(acting, system=True)
    moved = []
    for child, link, row_id, from_id in await _children(conn, ct, co, survivor_id, merged_ids):
        await writes.update(
            conn,
            ct,
            child,
            row_id,
            {link.api_name: str(survivor_id)},
            moving,
            prefix=f"{child.name}.{row_id}.",
        )
        moved.append(MovedReference(child.name, link.api_name, row_id, from_id))
    rows = await _system_rows(conn, co, merged_ids)
    for table, row_id, _from in rows:
        await conn.execute(table.update().where(table.c.id == row_id).values(record_id=survivor_id))
    for merged_id in merged_ids:
        await writes.delete(conn, ct, co, merged_id, acting)
    survivor = await writes.update(conn, ct, co, survivor_id, changes, acting)
    after = await fetch(conn, co, survivor_id)
    changed = {name: json_value(after.get(name)) for name in changes}
    await conn.execute(
        merges.insert().values(
            id=merge_id,
            object=co.name,
            survivor_id=survivor_id,
            merged_ids=[str(i) for i in merged_ids],
            choices={k: str(v) for k, v in chosen.items()},
            changed=changed,
            survivor_before=row_to_record(records[survivor_id]),
            merged_before={str(i): row_to_record(records[i]) for i in merged_ids},
            moved=[ref.as_dict() for ref in moved],
            moved_rows=[
                {"table": table.name, "id": str(row_id), "from": str(from_id)}
                for table, row_id, from_id in rows
            ],
            user_id=intent.actor.user_id,
            at=utcnow(),
        )
    )
    result = MergeResult(
        object=co.name,
        survivor=survivor,
        merged=merged_ids,
        choices=chosen,
        changed=changed,
        moved=moved,
        moved_rows=_counts(rows),
        id=merge_id,
    )
    await audit.record(
        conn,
        "merge",
        actor=intent.actor,
        object_name=co.name,
        record_id=survivor_id,
        detail={
            "merge_id": str(merge_id),
            "merged": [str(i) for i in merged_ids],
            "fields": sorted(changed),
            "moved": result.moved_counts(),
            "moved_rows": result.moved_rows,
        },
    )
    return result


async def _merge_row(
    conn: AsyncConnection, ct: CompiledTenant, merge_id: uuid.UUID, actor: Actor
) -> tuple[dict[str, Any], CompiledObject]:
    """A merge the actor may see (its object readable, its survivor within their read
    access), with its object; NotFound otherwise."""
    row = (await conn.execute(sa.select(merges).where(merges.c.id == merge_id))).mappings().first()
    co = ct.objects.get(row["object"]) if row is not None else None
    if (
        row is None
        or co is None
        or not await reaches(conn, ct, co, row["survivor_id"], actor, "read")
    ):
        raise NotFound("no merge has this id")
    return dict(row), co


def _described(
    ct: CompiledTenant, co: CompiledObject, row: dict[str, Any], actor: Actor
) -> dict[str, Any]:
    """A merge row as JSON, its before-images without the fields the actor may not see."""
    seen = set(readable(ct, actor, co))
    return {
        "id": str(row["id"]),
        "object": row["object"],
        "survivor": str(row["survivor_id"]),
        "merged": row["merged_ids"],
        "values": row["choices"],
        "changed": {k: v for k, v in row["changed"].items() if k in seen},
        "survivor_before": shown(ct, co, row["survivor_before"], actor),
        "merged_before": {k: shown(ct, co, v, actor) for k, v in row["merged_before"].items()},
        "moved": row["moved"],
        "moved_rows": row["moved_rows"],
        "user_id": str(row["user_id"]),
        "at": json_value(row["at"]),
        "undone_at": json_value(row["undone_at"]),
        "undone_by": json_value(row["undone_by"]),
    }


async def get_merge(
    conn: AsyncConnection, ct: CompiledTenant, merge_id: uuid.UUID, actor: Actor
) -> dict[str, Any]:
    """One merge as the actor may see it (404 when they may not read its survivor)."""
    row, co = await _merge_row(conn, ct, merge_id, actor)
    return _described(ct, co, row, actor)


async def list_merges(
    conn: AsyncConnection,
    ct: CompiledTenant,
    actor: Actor,
    *,
    object_name: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Merges newest first (of one object), those whose survivor the actor may read."""
    query = sa.select(merges).order_by(merges.c.at.desc(), merges.c.id.desc())
    if object_name is not None:
        query = query.where(merges.c.object == object_name)
    found = []
    # Newest first, skipping what the actor may not see: a bounded scan of recent merges.
    for row in (await conn.execute(query.limit(limit * 10))).mappings():
        co = ct.objects.get(row["object"])
        if co is not None and await reaches(conn, ct, co, row["survivor_id"], actor, "read"):
            found.append(_described(ct, co, dict(row), actor))
            if len(found) == limit:
                break
    return found


async def undo_merge(
    conn: AsyncConnection, ct: CompiledTenant, merge_id: uuid.UUID, intent: Intent
) -> dict[str, Any]:
    """Undo a merge (see the module docstring); returns the merge as now recorded."""
    row, co = await _merge_row(conn, ct, merge_id, intent.actor)
    if row["undone_at"] is not None:
        raise Conflict("this merge was undone already")
    survivor_id = row["survivor_id"]
    merged_ids = [uuid.UUID(i) for i in row["merged_ids"]]
    moved = [
        MovedReference(m["object"], m["field"], uuid.UUID(m["record_id"]), uuid.UUID(m["from"]))
        for m in row["moved"]
    ]
    problems = await _undo_problems(conn, ct, co, row, merged_ids, moved)
    if problems:
        raise Conflict("the merge cannot be undone: what it did has changed since", problems)
    acting = dataclasses.replace(intent, origin=Origin.MERGE, reason=f"undo merge {merge_id}")
    moving = dataclasses.replace(acting, system=True)
    before = row["survivor_before"]
    await writes.update(
        conn, ct, co, survivor_id, {name: before.get(name) for name in row["changed"]}, acting
    )
    for merged_id in merged_ids:
        await writes.restore(conn, ct, co, merged_id, acting)
    for ref in moved:
        await writes.update(
            conn,
            ct,
            ct.object(ref.object),
            ref.record_id,
            {ref.field: str(ref.from_id)},
            moving,
            prefix=f"{ref.object}.{ref.record_id}.",
        )
    for moved_row in row["moved_rows"]:
        table = _TABLES[moved_row["table"]]
        await conn.execute(
            table.update()
            .where(table.c.id == uuid.UUID(moved_row["id"]), table.c.record_id == survivor_id)
            .values(record_id=uuid.UUID(moved_row["from"]))
        )
    now = utcnow()
    await conn.execute(
        merges.update()
        .where(merges.c.id == merge_id)
        .values(undone_at=now, undone_by=intent.actor.user_id)
    )
    await audit.record(
        conn,
        "merge.undo",
        actor=intent.actor,
        object_name=co.name,
        record_id=survivor_id,
        detail={"merge_id": str(merge_id), "merged": row["merged_ids"]},
    )
    return _described(
        ct, co, row | {"undone_at": now, "undone_by": intent.actor.user_id}, intent.actor
    )


async def _undo_problems(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    row: dict[str, Any],
    merged_ids: list[uuid.UUID],
    moved: list[MovedReference],
) -> list[FieldError]:
    """What changed since the merge, so that undoing it would lose or break data."""
    problems = []
    survivor_id = row["survivor_id"]
    t = co.table
    survivor = (
        (await conn.execute(sa.select(t).where(t.c.id == survivor_id, t.c.deleted_at.is_(None))))
        .mappings()
        .first()
    )
    if survivor is None:
        problems.append(
            FieldError("survivor", "deleted", f"the {co.name} record {survivor_id} is deleted")
        )
    else:
        for name, value in row["changed"].items():
            if name in co.writable and json_value(survivor[name]) != value:
                problems.append(
                    FieldError(f"survivor.{name}", "changed", f"{name} changed since the merge")
                )
    in_bin: set[uuid.UUID] = set(
        await conn.scalars(
            sa.select(t.c.id).where(t.c.id.in_(merged_ids), t.c.deleted_at.is_not(None))
        )
    )
    problems += [
        FieldError("merged", "not-in-recycle-bin", f"the {co.name} record {i} is no longer deleted")
        for i in merged_ids
        if i not in in_bin
    ]
    for ref in moved:
        child = ct.objects.get(ref.object)
        where = f"{ref.object}.{ref.field}"
        if child is None or ref.field not in child.references:
            problems.append(FieldError(where, "gone", "the field no longer exists"))
            continue
        c = child.table
        current = await conn.scalar(
            sa.select(c.c[ref.field]).where(c.c.id == ref.record_id, c.c.deleted_at.is_(None))
        )
        if current != survivor_id:
            problems.append(
                FieldError(
                    where,
                    "moved-since",
                    f"the {ref.object} record {ref.record_id} was deleted or re-pointed",
                )
            )
    return problems
