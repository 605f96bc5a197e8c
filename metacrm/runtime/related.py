"""What points at a record: the objects that look it up, and their open records per stage."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.formula.types import FIELD_KINDS, NUMERIC
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.permissions import object_readable, readable, record_filter, user_binding
from metacrm.runtime.records import fetch


@dataclass(frozen=True)
class Referrer:
    """An object whose lookup (or master-detail) `field` can name a record of another."""

    co: CompiledObject
    field: str


def referrers(ct: CompiledTenant, co: CompiledObject, actor: Actor) -> list[Referrer]:
    """The objects whose records point at records of `co` through a link field, in metadata
    order, as far as the actor may read them and their link field (self-links left out)."""
    found = []
    for obj in ct.model.objects:
        if obj.api_name == co.name:
            continue
        child = ct.object(obj.api_name)
        if not object_readable(ct, actor, child):
            continue
        shown = readable(ct, actor, child)
        for name, link in child.references.items():
            if getattr(link, "target", None) == co.name and name in shown:
                found.append(Referrer(child, name))
    return found


def children_ids(
    ct: CompiledTenant, actor: Actor, referrer: Referrer, record_id: uuid.UUID
) -> sa.Select[Any]:
    """The ids of the live records of `referrer` pointing at the record that the actor may
    read (a subquery: never correlated to the query around it)."""
    child = referrer.co
    t = child.table
    query = (
        sa.select(t.c.id)
        .where(t.c.deleted_at.is_(None), child.sql(referrer.field) == record_id)
        .correlate(None)
    )
    access = record_filter(ct, actor, child, "read")
    return query if access is None else query.where(access)


def _amount_field(co: CompiledObject, preferred: str | None) -> str | None:
    name = preferred or ("amount" if "amount" in co.fields else None)
    field = co.fields.get(name) if name else None
    if field is None:
        return None
    kind = field.returns if field.type == "formula" else field.type
    return name if FIELD_KINDS.get(kind) in NUMERIC else None


async def stage_summary(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    actor: Actor,
) -> list[dict[str, Any]]:
    """For each object with a stage rule that points at the record: its open records (not in
    a closed stage) that the actor may read, counted and summed per stage, one grouped query
    per object. 404 when the actor may not read the record itself."""
    await fetch(conn, co, record_id, access=record_filter(ct, actor, co, "read"))
    out = []
    for referrer in referrers(ct, co, actor):
        child = referrer.co
        if len(child.stage_rules) != 1:
            continue
        rule = child.stage_rules[0]
        shown = set(readable(ct, actor, child))
        if rule.field not in shown:
            continue
        amount = _amount_field(child, rule.amount_field)
        amount = amount if amount in shown else None
        t = child.table
        stage = child.sql(rule.field)
        columns: list[Any] = [stage, sa.func.count()]
        if amount is not None:
            columns.append(sa.func.coalesce(sa.func.sum(child.sql(amount)), 0))
        closed = [s.value for s in rule.stages if s.closed]
        conditions = [t.c.deleted_at.is_(None), child.sql(referrer.field) == record_id]
        if closed:
            conditions.append(sa.or_(stage.is_(None), stage.not_in(closed)))
        access = record_filter(ct, actor, child, "read")
        if access is not None:
            conditions.append(access)
        rows = await conn.execute(
            sa.select(*columns).where(*conditions).group_by(stage), user_binding(actor)
        )
        found = {row[0]: (int(row[1]), Decimal(row[2]) if amount else None) for row in rows}
        order = [s.value for s in rule.stages if not s.closed]
        stages = [
            {"stage": value, "count": found[value][0], "amount": _number(found[value][1])}
            for value in [*order, *sorted(k for k in found if k is not None and k not in order)]
            if value in found
        ]
        out.append(
            {
                "object": child.name,
                "field": referrer.field,
                "rule": rule.api_name,
                "stage_field": rule.field,
                "amount_field": amount,
                "stages": stages,
                "count": sum(s["count"] for s in stages),
                "amount": _number(sum((v[1] or Decimal(0) for v in found.values()), Decimal(0)))
                if amount
                else None,
            }
        )
    return out


def _number(value: Decimal | None) -> str | None:
    """A sum as exact decimal text (JSON numbers would round it)."""
    return None if value is None else format(value, "f")
