"""Stage-rule changes while records are mid-way: records in removed stages are mapped.

The mapping is an administrator's migration, applied with the metadata change in its
transaction: the records move in bulk, each move kept in the stage history with the
reason "stage rule changed", and no gate applies.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError, MetadataInvalid
from metacrm.metadata.model import MetadataModel
from metacrm.metadata.process import StageRule
from metacrm.runtime.columns import build_table
from metacrm.runtime.process.history import record_move
from metacrm.runtime.records import utcnow
from metacrm.types import NAMING_CONVENTION


async def migrate_stage_rules(
    conn: AsyncConnection, old: MetadataModel, new: MetadataModel, *, apply: bool
) -> None:
    """Records in stages a changed rule no longer has: refused unless `stage_mapping`
    maps each such stage; with `apply`, the records are moved (history kept)."""
    problems: list[FieldError] = []
    before = {r.api_name: r for r in old.stage_rules}
    now = utcnow()
    for rule in new.stage_rules:
        prior = before.get(rule.api_name)
        if prior is None or prior.object != rule.object or not new.has_object(rule.object):
            continue
        obj = new.object(rule.object)
        if not old.has_object(rule.object) or not obj.has_field(prior.field):
            continue
        kept = {s.value for s in rule.stages}
        removed = [s.value for s in prior.stages if s.value not in kept]
        if not removed:
            continue
        table = build_table(obj, sa.MetaData(naming_convention=NAMING_CONVENTION))
        column = table.c[prior.field]
        counts: dict[str, int] = dict(
            (
                await conn.execute(
                    sa.select(column, sa.func.count()).where(column.in_(removed)).group_by(column)
                )
            ).all()
        )
        for value in removed:
            count = counts.get(value, 0)
            if not count:
                continue
            target = rule.stage_mapping.get(value)
            if target is None:
                problems.append(
                    FieldError(
                        f"stage_rules/{rule.api_name}/stage_mapping/{value}",
                        "records-in-removed-stage",
                        f"{count} {rule.object} record(s) are in the removed stage {value!r}; "
                        f"map it to a kept stage in stage_mapping",
                    )
                )
            elif apply:
                await _map_records(conn, table, rule, prior.field, value, target, now)
    if problems:
        raise MetadataInvalid("records are in stages the change removes", problems)


async def _map_records(
    conn: AsyncConnection,
    table: Any,
    rule: StageRule,
    field: str,
    value: str,
    target: str,
    now: dt.datetime,
) -> None:
    column = table.c[field]
    ids: list[uuid.UUID] = list(
        (await conn.execute(sa.select(table.c.id).where(column == value))).scalars()
    )
    await conn.execute(
        table.update()
        .where(column == value)
        .values({field: target, "version": table.c.version + 1})
    )
    system = uuid.UUID(int=0)
    for record_id in ids:
        await record_move(
            conn,
            rule.object,
            record_id,
            rule,
            value,
            target,
            actor_id=system,
            reason=f"stage rule changed: {value!r} mapped to {target!r}",
            now=now,
            entered_at=None,
        )
