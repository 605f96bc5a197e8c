"""Layouts and list views that lose fields in a change: plan steps, not errors.

A layout or list view left as it was is never refused because its object changed:
removing a field it uses becomes a plan step (`~ layout x: no longer shows
opportunity.amount`). The renderer skips the stale reference, so the layout keeps
working and shows the field again if it comes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from metacrm.metadata.layouts import Layout
from metacrm.metadata.model import MetadataModel
from metacrm.metadata.plan import Op


@dataclass(frozen=True)
class LayoutLosesFields(Op):
    """A layout or list view that names fields the change removes: no DDL."""

    kind_name: str
    api_name: str
    object: str
    fields: tuple[str, ...]
    kind: ClassVar[str] = "layout_loses_fields"

    def describe(self) -> str:
        names = ", ".join(self.fields)
        return f"~ {self.kind_name} {self.api_name}: no longer shows {names} (removed)"

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {
            "kind": self.kind_name,
            "api_name": self.api_name,
            "object": self.object,
            "fields": list(self.fields),
        }


def layout_changes(old: MetadataModel, new: MetadataModel) -> list[Op]:
    """A step for each unchanged layout or list view whose fields the change removes.

    (New and changed ones are checked against their object by `metacrm.checks`.)
    """
    ops: list[Op] = []
    old_layouts = {d.api_name: d for d in old.layouts}
    old_views = {d.api_name: d for d in old.list_views}
    for layout in new.layouts:
        if new.has_object(layout.object) and old_layouts.get(layout.api_name) == layout:
            refs = layout_references(layout)
            ops += _losses("layouts", layout.api_name, layout.object, refs, old, new)
    for view in new.list_views:
        if new.has_object(view.object) and old_views.get(view.api_name) == view:
            refs = {(view.object, c) for c in view.columns}
            if view.kanban_field:
                refs.add((view.object, view.kanban_field))
            ops += _losses("list-views", view.api_name, view.object, refs, old, new)
    return ops


def layout_references(layout: Layout) -> set[tuple[str, str]]:
    """(object, field) of every field a layout places, conditions on or lists."""
    refs = {(layout.object, p.field) for s in layout.sections for p in s.fields}
    refs |= {(layout.object, name) for name in layout.compact}
    if layout.when is not None:
        refs.add((layout.object, layout.when.field))
    for related in layout.related_lists:
        refs.add((related.object, related.field))
        refs |= {(related.object, c) for c in related.columns}
    return refs


def _losses(
    kind_name: str,
    api_name: str,
    object_name: str,
    refs: set[tuple[str, str]],
    old: MetadataModel,
    new: MetadataModel,
) -> list[Op]:
    gone = sorted(
        f"{obj}.{field}"
        for obj, field in refs
        if _had(old, obj, field) and not _had(new, obj, field)
    )
    return [LayoutLosesFields(kind_name, api_name, object_name, tuple(gone))] if gone else []


def _had(model: MetadataModel, obj: str, field: str) -> bool:
    return model.has_object(obj) and model.object(obj).has_field(field)
