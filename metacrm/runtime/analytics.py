"""Analytics over records: the sales funnel of a stage rule."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError, RecordInvalid
from metacrm.formula.types import FIELD_KINDS, NUMERIC
from metacrm.metadata.process import StageRule
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.tenant_tables import stage_history


def _numeric(co: CompiledObject, name: str) -> bool:
    """Whether a field holds a number: a numeric field, or a formula returning one."""
    field = co.fields.get(name)
    if field is None:
        return False
    kind = field.returns if field.type == "formula" else field.type
    return FIELD_KINDS.get(kind) in NUMERIC


async def funnel(
    conn: AsyncConnection,
    ct: CompiledTenant,
    rule: StageRule,
    amount: str | None,
    access: sa.ColumnElement[bool] | None = None,
) -> dict[str, Any]:
    """Counts and amounts per stage, conversion between stages and average days in stage,
    over the records `access` lets the caller see (an aggregate is a read path too)."""
    co = ct.object(rule.object)
    amount = amount or rule.amount_field or ("amount" if "amount" in co.fields else None)
    if amount is not None and not _numeric(co, amount):
        raise RecordInvalid(
            "the funnel needs a numeric amount field",
            [FieldError("amount", "wrong-type", f"{amount!r} is not a numeric field")],
        )
    t = co.table
    stage_col = t.c[rule.field]
    columns = [stage_col, sa.func.count()]
    if amount is not None:
        columns.append(sa.func.coalesce(sa.func.sum(co.sql(amount)), 0))
    visible = (
        t.c.deleted_at.is_(None) if access is None else sa.and_(t.c.deleted_at.is_(None), access)
    )
    rows = await conn.execute(sa.select(*columns).where(visible).group_by(stage_col))
    current = {row[0]: (row[1], Decimal(row[2]) if amount else None) for row in rows}
    h = stage_history
    live = sa.select(t.c.id).where(visible)
    reached_rows = await conn.execute(
        sa.select(h.c.to_stage, sa.func.count(sa.distinct(h.c.record_id)))
        .where(h.c.object == rule.object, h.c.rule == rule.api_name, h.c.record_id.in_(live))
        .group_by(h.c.to_stage)
    )
    reached = {row[0]: row[1] for row in reached_rows}
    time_rows = await conn.execute(
        sa.select(h.c.from_stage, sa.func.avg(h.c.seconds_in_from), sa.func.count())
        .where(
            h.c.object == rule.object,
            h.c.rule == rule.api_name,
            h.c.seconds_in_from.is_not(None),
            h.c.record_id.in_(live),
        )
        .group_by(h.c.from_stage)
    )
    avg_seconds = {row[0]: float(row[1]) for row in time_rows}
    stages, previous_reached = [], None
    for stage in rule.stages:
        count, total = current.get(stage.value, (0, Decimal(0) if amount else None))
        reach = max(reached.get(stage.value, 0), count)
        entry: dict[str, Any] = {
            "stage": stage.value,
            "closed": stage.closed,
            "probability": stage.probability,
            "count": count,
            "reached": reach,
            "avg_days_in_stage": round(avg_seconds[stage.value] / 86400, 4)
            if stage.value in avg_seconds
            else None,
        }
        if amount is not None:
            entry["amount"] = str(total)
            if stage.probability is not None and isinstance(total, Decimal):
                entry["weighted_amount"] = str(
                    (total * stage.probability / 100).quantize(Decimal("0.01"))
                )
        if not stage.closed:
            entry["conversion_from_previous"] = (
                round(reach / previous_reached, 4) if previous_reached else None
            )
            previous_reached = reach
        stages.append(entry)
    return {
        "rule": rule.api_name,
        "object": rule.object,
        "field": rule.field,
        "amount_field": amount,
        "total": sum(current.get(s.value, (0, None))[0] for s in rule.stages),
        "stages": stages,
    }
