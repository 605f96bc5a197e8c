"""A list view, seen by one user, as a list document: columns, filter, sort, kanban."""

from __future__ import annotations

from typing import Any

from metacrm import formula
from metacrm.errors import PermissionDenied
from metacrm.metadata.layouts import ListView
from metacrm.metadata.model import CHOICE_FIELDS, MetadataModel, ObjectDef
from metacrm.metadata.names import SYSTEM_FIELDS
from metacrm.runtime.permissions import field_access
from metacrm.ui_schema.forms import SCHEMA_DIALECT, _columns
from metacrm.ui_schema.json_schema import field_schema
from metacrm.ui_schema.labels import text


def list_document(
    model: MetadataModel,
    obj: ObjectDef,
    view: ListView,
    actor: Any,
    languages: list[str],
) -> dict[str, Any]:
    """The list view for `actor`: readable columns only, and the query that fills it."""

    def readable(name: str) -> bool:
        if name in SYSTEM_FIELDS:
            return True
        return obj.has_field(name) and field_access(model, actor, obj.api_name, name) != "hidden"

    if view.filter:
        checked = formula.check(view.filter, obj, model, context="filter")
        hidden = sorted(p.split(".")[0] for p in checked.paths if not readable(p.split(".")[0]))
        if hidden:
            raise PermissionDenied(
                f"the list view {view.api_name!r} filters on fields hidden from your role"
            )
    columns = _columns(model, actor, obj, view.columns, languages)
    sort = [
        key
        for key in (view.sort or "").split(",")
        if key.strip() and readable(key.strip().lstrip("+-"))
    ]
    kanban = None
    name = view.kanban_field or ""
    field = obj.field(name) if obj.has_field(name) else None
    if readable(name) and isinstance(field, CHOICE_FIELDS):
        kanban = {
            "field": field.api_name,
            "label": text(field.label, languages, field.api_name),
            "lanes": [
                {
                    "value": v.value,
                    "label": text(v.label, languages, v.value),
                    **({"color": v.color} if v.color else {}),
                }
                for v in field.values
                if v.active
            ],
        }
    names = [c["field"] for c in columns]
    if kanban and kanban["field"] not in names:
        names.append(kanban["field"])
    row_properties = {
        "id": {"type": "string", "format": "uuid"},
        **{
            n: {
                "title": text(obj.field(n).label, languages, n),
                **_without_title(field_schema(obj.field(n), mode="read", language=languages[0])),
            }
            for n in names
        },
    }
    query: dict[str, Any] = {"fields": ",".join(names), "limit": view.limit}
    if view.filter:
        query["where"] = view.filter
    if sort:
        query["order_by"] = ",".join(s.strip() for s in sort)
    return {
        "object": obj.api_name,
        "label": text(obj.plural_label or obj.label, languages, obj.api_name),
        "view": {
            "api_name": view.api_name,
            "label": text(view.label, languages, view.api_name),
            "generated": view not in model.list_views,
        },
        "language": languages[0],
        "columns": columns,
        "filter": view.filter,
        "sort": [
            {"field": s.strip().lstrip("+-"), "descending": s.strip().startswith("-")} for s in sort
        ],
        "limit": view.limit,
        "kanban": kanban,
        "query": query,
        "row_schema": {
            "$schema": SCHEMA_DIALECT,
            "type": "object",
            "properties": row_properties,
        },
    }


def _without_title(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "title"}
