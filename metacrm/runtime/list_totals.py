"""Column totals of a record list: sums of its number and currency fields, on all pages."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError, QueryInvalid
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.listing import ListQuery, list_conditions, summable
from metacrm.runtime.permissions import readable, user_binding
from metacrm.runtime.serialize import json_value

MAX_TOTALS = 20


async def totals(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    query: ListQuery,
    fields: list[str],
    *,
    actor: Actor,
) -> dict[str, Any]:
    """The sum of each of `fields` over every record of the list `query` the actor may
    see, in one query; a field that is not readable or not summable is refused."""
    conditions = list_conditions(ct, co, query, actor=actor)  # first: 403 without access
    visible = set(readable(ct, actor, co))
    problems = [
        FieldError("fields", "unknown-field", f"{co.name} has no field {name[:64]!r} to add up")
        for name in fields
        if name not in visible or not summable(co, name)
    ]
    if len(fields) > MAX_TOTALS:
        problems.append(FieldError("fields", "too-many", f"add up at most {MAX_TOTALS} fields"))
    if problems:
        raise QueryInvalid("the totals cannot be computed", problems)
    if not fields:
        return {}
    statement = (
        sa.select(*[sa.func.sum(co.sql(name)).label(name) for name in fields])
        .select_from(co.table)
        .where(*conditions)
    )
    row = (await conn.execute(statement, user_binding(actor))).mappings().one()
    return {name: json_value(row[name]) for name in fields}
