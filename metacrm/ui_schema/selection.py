"""Which layout and list view a user gets: the analyst's, or a generated default.

Every object has a generated layout and list view (api_name `default`) until an
analyst saves one of their own for it. A layout applies to the roles it names (all
roles when it names none) and, with `when`, only to records whose picklist holds one
of its values; the most specific match wins: role and condition, then condition,
then role, then a layout for everyone, then the generated default.
"""

from __future__ import annotations

from typing import Any

from metacrm.errors import NotFound, PermissionDenied
from metacrm.metadata.layouts import FieldPlacement, Layout, ListView, RelatedList, Section
from metacrm.metadata.model import MetadataModel, ObjectDef

DEFAULT = "default"
#: Field types a generated list view leaves out of its columns.
_WIDE = ("long_text", "json", "multi_picklist")
_MAX_DEFAULT_COLUMNS = 6


def default_layout(obj: ObjectDef, model: MetadataModel) -> Layout:
    """One section with every field, a related list per child, the name as compact header."""
    related = []
    for child in model.objects:
        for link in child.fields:
            if link.type in ("lookup", "master_detail") and link.target == obj.api_name:
                related.append(
                    RelatedList(
                        object=child.api_name,
                        field=link.api_name,
                        label=child.plural_label or child.label,
                        columns=_summary_columns(child, skip=link.api_name)[:4],
                    )
                )
    return Layout(
        api_name=DEFAULT,
        object=obj.api_name,
        label=obj.label,
        sections=[
            Section(
                title={"en": "Details", "zh-CN": "详细信息"},
                fields=[FieldPlacement(field=f.api_name) for f in obj.fields],
            )
        ],
        related_lists=related,
        compact=_summary_columns(obj)[:3],
    )


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
        columns=_summary_columns(obj)[:_MAX_DEFAULT_COLUMNS],
        sort="-created_at",
        kanban_field=stage,
    )


def _summary_columns(obj: ObjectDef, *, skip: str | None = None) -> list[str]:
    name = obj.record_name_field
    first = [name] if name else []
    return first + [
        f.api_name for f in obj.fields if f.api_name not in (name, skip) and f.type not in _WIDE
    ]


def layouts_of(model: MetadataModel, obj: ObjectDef) -> list[Layout]:
    """The analyst's layouts of `obj`, or the generated default when there are none."""
    own = [layout for layout in model.layouts if layout.object == obj.api_name]
    return own or [default_layout(obj, model)]


def list_views_of(model: MetadataModel, obj: ObjectDef) -> list[ListView]:
    own = [view for view in model.list_views if view.object == obj.api_name]
    return own or [default_list_view(obj, model)]


def _assigned(roles: list[str], actor: Any) -> bool:
    return not roles or getattr(actor, "role", None) in roles


def _matches(layout: Layout, record: dict[str, Any] | None) -> bool:
    if layout.when is None:
        return True
    value = (record or {}).get(layout.when.field)
    return value is not None and str(value) in layout.when.values


def select_layout(
    model: MetadataModel,
    obj: ObjectDef,
    actor: Any,
    *,
    name: str | None = None,
    record: dict[str, Any] | None = None,
) -> Layout:
    """The layout `actor` sees for `record` (or the one named, if assigned to them)."""
    candidates = layouts_of(model, obj)
    if name is not None:
        layout = next((c for c in candidates if c.api_name == name), None)
        if layout is None:
            if name == DEFAULT:
                return default_layout(obj, model)
            raise NotFound(f"{obj.api_name} has no layout named {name[:64]!r}")
        if not (getattr(actor, "is_admin", False) or _assigned(layout.roles, actor)):
            raise PermissionDenied(f"the layout {name!r} is not assigned to your role")
        return layout
    role = getattr(actor, "role", None)

    def rank(layout: Layout) -> int:
        by_role = role is not None and role in layout.roles
        by_record = layout.when is not None
        return (0 if by_record else 2) + (0 if by_role else 1)

    eligible = [c for c in candidates if _assigned(c.roles, actor) and _matches(c, record)]
    if not eligible:
        return default_layout(obj, model)
    return min(eligible, key=rank)


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
