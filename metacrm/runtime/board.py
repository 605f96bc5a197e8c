"""Kanban boards: the picklist a board groups by, and each column's count and total."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError, NotFound, QueryInvalid
from metacrm.formula.types import FIELD_KINDS, NUMERIC
from metacrm.metadata.model import FieldDef
from metacrm.metadata.process import StageRule
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.listing import ListQuery, list_conditions
from metacrm.runtime.permissions import readable, require_object, user_binding


def board_fields(ct: CompiledTenant, actor: Actor, co: CompiledObject) -> list[str]:
    """The picklist fields of `co` the actor may read: what a board can group by."""
    return [n for n in readable(ct, actor, co) if co.fields[n].type == "picklist"]


def stage_rule(co: CompiledObject, field: str) -> StageRule | None:
    """The stage rule that governs `field`, if one does."""
    return next((r for r in co.stage_rules if r.field == field), None)


def choose_field(
    ct: CompiledTenant,
    actor: Actor,
    co: CompiledObject,
    requested: str | None,
    *,
    view_field: str | None = None,
) -> str:
    """The field a board groups by: the one asked for, else the field of the object's stage
    rule, else the list view's `view_field`, else the first picklist. A field the actor may
    not read is refused exactly as an unknown one."""
    require_object(ct.model, actor, co.name, "read")
    fields = board_fields(ct, actor, co)
    if requested is None:
        preferred = [r.field for r in co.stage_rules] + [view_field or ""] + fields
        chosen = next((n for n in preferred if n in fields), None)
        if chosen is None:
            raise NotFound(f"{co.name} has no picklist field to make a board of")
        return chosen
    if requested in fields:
        return requested
    shown = requested[:64]
    if requested in readable(ct, actor, co):
        message = f"{shown!r} is not a picklist field; a board groups by a picklist"
        raise QueryInvalid(message, [FieldError("field", "wrong-type", message)])
    message = f"{co.name} has no field {shown!r}"
    raise QueryInvalid(message, [FieldError("field", "unknown-field", message)])


def _quantum(co: CompiledObject, amount: str | None) -> Decimal:
    """The step of an amount's total: its field's scale (cents when it has none)."""
    scale = getattr(co.fields.get(amount or ""), "scale", None)
    return Decimal(1).scaleb(-(2 if scale is None else scale))


def _numeric(field: FieldDef) -> bool:
    kind = getattr(field, "returns", None) if field.type == "formula" else field.type
    return FIELD_KINDS.get(str(kind)) in NUMERIC


def amount_field(ct: CompiledTenant, actor: Actor, co: CompiledObject, field: str) -> str | None:
    """The field a board's columns total: the stage rule's `amount_field`, else a currency
    field named `amount`; none when the actor may not read it."""
    rule = stage_rule(co, field)
    rules = [rule] if rule is not None else list(co.stage_rules)
    candidates = [r.amount_field for r in rules if r.amount_field]
    amount = co.fields.get("amount")
    if amount is not None and amount.type == "currency":
        candidates.append("amount")
    shown = set(readable(ct, actor, co))
    return next((n for n in candidates if n in shown and _numeric(co.fields[n])), None)


async def lane_totals(
    conn: AsyncConnection,
    ct: CompiledTenant,
    actor: Actor,
    co: CompiledObject,
    field: str,
    amount: str | None,
) -> dict[Any, tuple[int, Decimal | None]]:
    """Value -> (count, total of `amount`) over the live records the actor may read: one
    grouped query, record access applied as record lists apply it."""
    # Exactly the records the object's list shows the actor, on all its pages.
    conditions = list_conditions(ct, co, ListQuery(), actor=actor)
    group = co.sql(field)
    columns: list[sa.ColumnElement[Any]] = [group.label("value"), sa.func.count().label("n")]
    if amount is not None:
        columns.append(sa.func.sum(co.sql(amount)).label("total"))
    statement = sa.select(*columns).select_from(co.table).where(*conditions).group_by(group)
    rows = await conn.execute(statement, user_binding(actor))
    quantum = _quantum(co, amount)
    totals: dict[Any, tuple[int, Decimal | None]] = {}
    for row in rows:
        total = None
        if amount is not None:
            total = Decimal(str(row.total or 0)).quantize(quantum)
        totals[row.value] = (int(row.n), total)
    return totals


async def board(
    conn: AsyncConnection, ct: CompiledTenant, actor: Actor, co: CompiledObject, field: str
) -> dict[str, Any]:
    """The columns of a board by `field` (a readable picklist): one per active value, in
    value order, each with its count and amount; records in no column are counted apart."""
    amount = amount_field(ct, actor, co, field)
    totals = await lane_totals(conn, ct, actor, co, field, amount)
    zero = Decimal(0).quantize(_quantum(co, amount)) if amount else None
    lanes = []
    for choice in getattr(co.fields[field], "values", ()):
        if not choice.active:
            continue
        count, total = totals.pop(choice.value, (0, zero))
        lanes.append(
            {
                "value": choice.value,
                "count": count,
                "amount": None if total is None else str(total),
            }
        )
    return {
        "object": co.name,
        "field": field,
        "amount_field": amount,
        "stage_rule": (rule.api_name if (rule := stage_rule(co, field)) else None),
        "lanes": lanes,
        # Records with no value, or a value no longer active: on no column.
        "elsewhere": sum(count for count, _ in totals.values()),
    }
