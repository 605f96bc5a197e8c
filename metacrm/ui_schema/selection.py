"""Which list view a user gets (the analyst's, or a generated default); layouts come
from `metacrm.runtime.layouts`, which the write path also enforces."""

from __future__ import annotations

from typing import Any

from metacrm.errors import NotFound
from metacrm.metadata.layouts import ListView
from metacrm.metadata.model import MetadataModel, ObjectDef
from metacrm.runtime.layouts import (
    DEFAULT,
    summary_columns,
)

_MAX_DEFAULT_COLUMNS = 6


def default_list_view(obj: ObjectDef, model: MetadataModel) -> ListView:
    """The name and the next few narrow fields, newest first; kanban by the stage field."""
    stage = next(
        (r.field for r in model.stage_rules if r.object == obj.api_name and obj.has_field(r.field)),
        None,
    )
    if stage is None and obj.has_field("stage") and obj.field("stage").type == "picklist":
        stage = "stage"
    return ListView(
        api_name=DEFAULT,
        object=obj.api_name,
        label=obj.plural_label or obj.label,
        columns=summary_columns(obj)[:_MAX_DEFAULT_COLUMNS],
        sort="-created_at",
        kanban_field=stage,
    )


def list_views_of(model: MetadataModel, obj: ObjectDef) -> list[ListView]:
    own = [view for view in model.list_views if view.object == obj.api_name]
    return own or [default_list_view(obj, model)]


def select_list_view(
    model: MetadataModel, obj: ObjectDef, actor: Any, *, name: str | None = None
) -> ListView:
    """The named list view (if `actor` may see it), else the first one they may see."""
    visible = [v for v in list_views_of(model, obj) if view_visible(v, actor)]
    if name is None:
        return visible[0] if visible else default_list_view(obj, model)
    view = next((v for v in visible if v.api_name == name), None)
    if view is None:
        if name == DEFAULT:
            return default_list_view(obj, model)
        raise NotFound(f"{obj.api_name} has no list view named {name[:64]!r} that you may see")
    return view


def view_visible(view: ListView, actor: Any) -> bool:
    if getattr(actor, "is_admin", False):
        return True
    visibility = view.visibility
    if visibility.kind == "everyone":
        return True
    if visibility.kind == "roles":
        return getattr(actor, "role", None) in visibility.roles
    return visibility.owner is not None and str(getattr(actor, "user_id", "")) == visibility.owner
