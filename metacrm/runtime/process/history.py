"""Stage history: each move of a record (from, to, who, why) and the time spent in stages."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.metadata.process import StageRule
from metacrm.runtime.compiler import CompiledObject
from metacrm.runtime.process.rows import iso
from metacrm.runtime.records import fetch, new_id, utcnow
from metacrm.runtime.tenant_tables import stage_history, stage_tasks


async def record_move(
    conn: AsyncConnection,
    object_name: str,
    record_id: uuid.UUID,
    rule: StageRule,
    old: Any,
    new: Any,
    *,
    actor_id: uuid.UUID,
    reason: str | None,
    now: dt.datetime,
    entered_at: dt.datetime | None,
) -> None:
    """Append the move to the history; optional tasks left open in `old` are skipped."""
    h = stage_history
    last = await conn.scalar(
        sa.select(h.c.moved_at)
        .where(h.c.object == object_name, h.c.record_id == record_id, h.c.rule == rule.api_name)
        .order_by(h.c.moved_at.desc(), h.c.id.desc())
        .limit(1)
    )
    since = last or entered_at
    seconds = int((now - since).total_seconds()) if since is not None and old is not None else None
    await conn.execute(
        h.insert().values(
            id=new_id(),
            object=object_name,
            record_id=record_id,
            rule=rule.api_name,
            from_stage=old,
            to_stage=new,
            moved_at=now,
            moved_by=actor_id,
            reason=reason,
            seconds_in_from=seconds,
        )
    )
    if old is not None:  # optional tasks left undone are closed with the stage
        t = stage_tasks
        await conn.execute(
            t.update()
            .where(
                t.c.object == object_name,
                t.c.record_id == record_id,
                t.c.rule == rule.api_name,
                t.c.stage == old,
                t.c.status == "open",
            )
            .values(status="skipped", done_at=now)
        )


async def history(
    conn: AsyncConnection, co: CompiledObject, record_id: uuid.UUID
) -> dict[str, Any]:
    """Every stage move of a record per rule, and the time it spent in each stage."""
    record = await fetch(conn, co, record_id)
    now = utcnow()
    out = []
    h = stage_history
    for rule in co.stage_rules:
        rows = (
            await conn.execute(
                sa.select(h)
                .where(h.c.object == co.name, h.c.record_id == record_id, h.c.rule == rule.api_name)
                .order_by(h.c.moved_at, h.c.id)
            )
        ).mappings()
        transitions: list[dict[str, Any]] = []
        spent: dict[str, int] = {}
        entered = record["created_at"]
        for row in rows:
            entered = row["moved_at"]
            transitions.append(
                {
                    "from": row["from_stage"],
                    "to": row["to_stage"],
                    "by": str(row["moved_by"]),
                    "at": iso(row["moved_at"]),
                    "reason": row["reason"],
                    "seconds_in_from": row["seconds_in_from"],
                }
            )
            if row["from_stage"] is not None and row["seconds_in_from"] is not None:
                spent[row["from_stage"]] = spent.get(row["from_stage"], 0) + row["seconds_in_from"]
        current = record.get(rule.field)
        if current is not None:
            spent[current] = spent.get(current, 0) + int((now - entered).total_seconds())
        out.append(
            {
                "rule": rule.api_name,
                "field": rule.field,
                "current": current,
                "entered_at": iso(entered),
                "transitions": transitions,
                "time_in_stage": {
                    s: {"seconds": v, "days": round(v / 86400, 4)} for s, v in spent.items()
                },
            }
        )
    return {"record_id": str(record_id), "rules": out}
