"""Global search: a text fragment in the name and searchable fields of every readable object."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.metadata.model import FormulaField
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.listing import ListQuery, list_records
from metacrm.runtime.permissions import object_readable, readable

#: The longest fragment searched for (longer input is cut).
MAX_QUERY = 100
#: Results per object, at most.
PER_OBJECT_MAX = 50
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_TEXT_TYPES = ("text", "email", "phone", "auto_number", "url")


@dataclass(frozen=True)
class ObjectHits:
    """The records of one object that match, and the filter that finds all of them."""

    object: str
    name_field: str | None
    fields: list[str]
    records: list[dict[str, Any]]
    more: bool
    where: str


def clean(q: str) -> str:
    """The fragment as searched: printable characters, trimmed, at most MAX_QUERY long."""
    kept = "".join(c for c in q if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF)
    return kept.strip()[:MAX_QUERY]


def searched_fields(ct: CompiledTenant, actor: Actor, co: CompiledObject) -> list[str]:
    """The fields of `co` a search looks in for `actor`: the record name field and the
    fields marked searchable, among those the actor may read."""
    visible = set(readable(ct, actor, co))
    name = co.obj.record_name_field
    names = [name] if name else []
    names += [
        f.api_name for f in co.obj.fields if getattr(f, "searchable", False) and f.api_name != name
    ]
    out = []
    for n in names:
        if n not in visible or not co.obj.has_field(n):
            continue
        field = co.obj.field(n)
        kind = field.returns if isinstance(field, FormulaField) else field.type
        if kind in _TEXT_TYPES:
            out.append(n)
    return out


def search_filter(fields: list[str], q: str) -> str:
    """A `where` expression: `q` occurs in any of `fields`, ignoring ASCII case. The
    fragment is written as a quoted literal (JSON escaping is valid expression syntax),
    so no input reaches the expression as code."""
    literal = json.dumps(q.translate(_ASCII_LOWER), ensure_ascii=False)
    return " or ".join(f"CONTAINS(LOWER({name}), {literal})" for name in fields)


async def search(
    conn: AsyncConnection,
    ct: CompiledTenant,
    actor: Actor,
    q: str,
    *,
    cursor_key: bytes,
    per_object: int = 5,
    objects: list[str] | None = None,
) -> list[ObjectHits]:
    """Records matching `q` in each object the actor may read (or in `objects`), a few per
    object, through the same list query, record access and field access as any list."""
    fragment = clean(q)
    if not fragment:
        return []
    limit = max(1, min(per_object, PER_OBJECT_MAX))
    out = []
    for co in ct.objects.values():
        if objects is not None and co.name not in objects:
            continue
        if not object_readable(ct, actor, co):
            continue
        fields = searched_fields(ct, actor, co)
        if not fields:
            continue
        where = search_filter(fields, fragment)
        query = ListQuery(where=where, fields=",".join(fields), limit=limit, order_by=fields[0])
        page = await list_records(conn, ct, co, query, actor=actor, cursor_key=cursor_key)
        if page["records"]:
            out.append(
                ObjectHits(
                    co.name,
                    co.obj.record_name_field if co.obj.record_name_field in fields else None,
                    fields,
                    page["records"],
                    page["next_cursor"] is not None,
                    where,
                )
            )
    return out
