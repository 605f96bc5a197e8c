"""The audit log and field history: written in the transaction of the change they record."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError
from metacrm.runtime.actor import Actor
from metacrm.runtime.hooks import Origin, Write
from metacrm.runtime.records import new_id, utcnow
from metacrm.runtime.serialize import json_value
from metacrm.runtime.tenant_tables import audit_log, field_history

_INSERT = audit_log.insert()
#: The audit action of each kind of record write.
ACTIONS = {
    "create": "record.create",
    "update": "record.update",
    "delete": "record.delete",
    "restore": "record.restore",
    "transfer": "owner.transfer",
}


async def record(
    conn: AsyncConnection,
    action: str,
    *,
    actor: Actor | None = None,
    user_id: uuid.UUID | None = None,
    ip: str | None = None,
    object_name: str | None = None,
    record_id: uuid.UUID | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one entry: who (the actor, or `user_id` from `ip` before anyone is logged
    in), what, on which record, from where."""
    # One statement object with the values as parameters: compiled and keyed once.
    await conn.execute(
        _INSERT,
        {
            "id": new_id(),
            "at": utcnow(),
            "user_id": actor.user_id if actor is not None else user_id,
            "api_key_id": actor.api_key_id if actor is not None else None,
            "ip": actor.ip if actor is not None else ip,
            "action": action,
            "object": object_name,
            "record_id": record_id,
            "detail": detail,
        },
    )


def write_entry(write: Write) -> dict[str, Any]:
    """The audit entry of a record write: its kind, the fields it gave, and how it came
    (a process, a cascade, a pack) when not through the API."""
    detail: dict[str, Any] = {"fields": sorted(write.changes)} if write.changes else {}
    if write.intent.origin is not Origin.API:
        detail["origin"] = str(write.intent.origin)
        if write.intent.reason:
            detail["reason"] = write.intent.reason
    actor = write.actor
    return {
        "id": new_id(),
        "at": utcnow(),
        "user_id": actor.user_id,
        "api_key_id": actor.api_key_id,
        "ip": actor.ip,
        "action": ACTIONS[write.kind],
        "object": write.co.name,
        "record_id": write.record_id,
        "detail": detail or None,
    }


async def record_writes(conn: AsyncConnection, writes: list[Write]) -> None:
    """The audit entries of many record writes, in one executemany."""
    if writes:
        await conn.execute(_INSERT, [write_entry(write) for write in writes])


class Audit:
    """The write hook: audit every record write; keep the history of tracked fields."""

    blocking = False

    async def check(self, write: Write) -> list[FieldError]:
        return []

    async def after(self, write: Write) -> None:
        await write.conn.execute(_INSERT, write_entry(write))
        if write.kind != "update" or write.before is None or not write.co.tracked:
            return
        now = utcnow()
        rows = [
            {
                "id": new_id(),
                "object": write.co.name,
                "record_id": write.record_id,
                "field": name,
                "old_value": json_value(write.before.get(name)),
                "new_value": json_value(value),
                "user_id": write.actor.user_id,
                "at": now,
            }
            for name, value in write.changes.items()
            if name in write.co.tracked and write.before.get(name) != value
        ]
        if rows:
            await write.conn.execute(field_history.insert(), rows)


AUDIT = Audit()
