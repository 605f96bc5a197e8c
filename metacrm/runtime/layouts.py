"""Which layout a user gets for a record: the analyst's, or a generated default.

Every object has a generated layout (api_name `default`) until an analyst saves one of
their own for it. A layout applies to the roles it names (all roles when it names none)
and, with `when`, only to records whose picklist holds one of its values; the most
specific match wins: role and condition, then condition, then role, then a layout for
everyone, then the generated default. The write path enforces the layout's required
and read-only placements; `ui_schema` draws it.
"""

from __future__ import annotations

from typing import Any

from metacrm.errors import NotFound, PermissionDenied
from metacrm.metadata.layouts import FieldPlacement, Layout, RelatedList, Section
from metacrm.metadata.model import MetadataModel, ObjectDef
from metacrm.runtime.actor import Actor

DEFAULT = "default"
#: Field types a generated list of columns leaves out.
_WIDE = ("long_text", "json", "multi_picklist")


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
                        columns=summary_columns(child, skip=link.api_name)[:4],
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
        compact=summary_columns(obj)[:3],
    )


def summary_columns(obj: ObjectDef, *, skip: str | None = None) -> list[str]:
    """The record name, then every narrow field, in definition order."""
    name = obj.record_name_field
    first = [name] if name else []
    return first + [
        f.api_name for f in obj.fields if f.api_name not in (name, skip) and f.type not in _WIDE
    ]


def layouts_of(model: MetadataModel, obj: ObjectDef) -> list[Layout]:
    """The analyst's layouts of `obj`, or the generated default when there are none."""
    own = [layout for layout in model.layouts if layout.object == obj.api_name]
    return own or [default_layout(obj, model)]


def assigned(roles: list[str], actor: Actor) -> bool:
    """Whether a layout or view for `roles` (none: everyone) applies to the actor."""
    return not roles or actor.role in roles


def _matches(layout: Layout, record: dict[str, Any] | None) -> bool:
    if layout.when is None:
        return True
    value = (record or {}).get(layout.when.field)
    return value is not None and str(value) in layout.when.values


def select_layout(
    model: MetadataModel,
    obj: ObjectDef,
    actor: Actor,
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
        if not (actor.is_admin or assigned(layout.roles, actor)):
            raise PermissionDenied(f"the layout {name!r} is not assigned to your role")
        return layout
    role = actor.role

    def rank(layout: Layout) -> int:
        by_role = role is not None and role in layout.roles
        by_record = layout.when is not None
        return (0 if by_record else 2) + (0 if by_role else 1)

    eligible = [c for c in candidates if assigned(c.roles, actor) and _matches(c, record)]
    if not eligible:
        return default_layout(obj, model)
    return min(eligible, key=rank)
