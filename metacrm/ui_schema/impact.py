"""What a metadata change does to layouts and list views: save-time checks and plan steps.

Called by `metadata.diff`, which knows the old and the new model:

- a layout or list view that is new or changed is checked against its object (unknown
  fields placed, required fields left out, related lists without a lookup here, a
  condition on something that is not a picklist value), each problem with its path;
- a layout or list view left as it was is never refused because its object changed:
  adding a field does not touch it, and removing a field it uses becomes a plan step
  (`~ layout x: no longer shows opportunity.amount`). The renderer skips the stale
  reference, so the layout keeps working and shows the field again if it comes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from metacrm.errors import FieldError
from metacrm.metadata.layouts import Layout, ListView
from metacrm.metadata.model import MetadataModel, ObjectDef
from metacrm.metadata.plan import Op
from metacrm.ui_schema.forms import needs_value


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


def layout_changes(old: MetadataModel, new: MetadataModel) -> tuple[list[Op], list[FieldError]]:
    """Plan steps for layouts and list views losing fields, and problems of changed ones."""
    ops: list[Op] = []
    problems: list[FieldError] = []
    old_layouts = {d.api_name: d for d in old.layouts}
    old_views = {d.api_name: d for d in old.list_views}
    for layout in new.layouts:
        if not new.has_object(layout.object):
            continue  # reported by metadata.checks
        if old_layouts.get(layout.api_name) != layout:
            problems += layout_problems(layout, new)
        else:
            ops += _losses(
                "layouts", layout.api_name, layout.object, _layout_refs(layout, new), old, new
            )
    for view in new.list_views:
        if not new.has_object(view.object):
            continue
        if old_views.get(view.api_name) != view:
            problems += list_view_problems(view, new)
        else:
            refs = {(view.object, c) for c in view.columns}
            if view.kanban_field:
                refs.add((view.object, view.kanban_field))
            ops += _losses("list-views", view.api_name, view.object, refs, old, new)
    return ops, problems


def _layout_refs(layout: Layout, model: MetadataModel) -> set[tuple[str, str]]:
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


def layout_problems(layout: Layout, model: MetadataModel) -> list[FieldError]:
    """Every problem of a layout against its object, each with its path."""
    obj = model.object(layout.object)
    base = f"layouts/{layout.api_name}"
    problems: list[FieldError] = []
    placed: dict[str, str] = {}
    for i, section in enumerate(layout.sections):
        for j, placement in enumerate(section.fields):
            path = f"{base}/sections/{i}/fields/{j}/field"
            if not obj.has_field(placement.field):
                problems.append(_unknown(path, obj, placement.field))
            elif placement.field in placed:
                problems.append(
                    FieldError(
                        path,
                        "duplicate",
                        f"{placement.field!r} is placed already at {placed[placement.field]}",
                    )
                )
            else:
                placed[placement.field] = path
                if placement.hidden and needs_value(obj.field(placement.field)):
                    problems.append(
                        FieldError(
                            f"{base}/sections/{i}/fields/{j}/hidden",
                            "hides-required",
                            f"{placement.field!r} is required by {obj.api_name} and cannot be hidden",
                        )
                    )
    for field in obj.fields:
        if needs_value(field) and field.api_name not in placed:
            problems.append(
                FieldError(
                    f"{base}/sections",
                    "missing-required",
                    f"{field.api_name!r} is required by {obj.api_name} (and has no default): "
                    "place it on the layout",
                )
            )
    for name in layout.compact:
        if not obj.has_field(name):
            problems.append(_unknown(f"{base}/compact/{name}", obj, name))
    if layout.when is not None:
        path = f"{base}/when/field"
        if not obj.has_field(layout.when.field):
            problems.append(_unknown(path, obj, layout.when.field))
        elif obj.field(layout.when.field).type != "picklist":
            problems.append(
                FieldError(path, "wrong-type", f"{layout.when.field!r} must be a picklist field")
            )
        else:
            known = set(obj.field(layout.when.field).value_names())
            for k, value in enumerate(layout.when.values):
                if value not in known:
                    problems.append(
                        FieldError(
                            f"{base}/when/values/{k}",
                            "unknown-value",
                            f"{value!r} is not a value of {obj.api_name}.{layout.when.field}",
                        )
                    )
    for i, related in enumerate(layout.related_lists):
        problems += _related_problems(f"{base}/related_lists/{i}", layout, related, model)
    return problems


def _related_problems(
    path: str, layout: Layout, related: Any, model: MetadataModel
) -> list[FieldError]:
    if not model.has_object(related.object):
        return []  # reported by metadata.checks
    child = model.object(related.object)
    if not child.has_field(related.field):
        return [_unknown(f"{path}/field", child, related.field)]
    link = child.field(related.field)
    if link.type not in ("lookup", "master_detail") or link.target != layout.object:
        return [
            FieldError(
                f"{path}/field",
                "not-a-link",
                f"{related.object}.{related.field} is not a lookup to {layout.object!r}",
            )
        ]
    problems = [
        _unknown(f"{path}/columns/{name}", child, name)
        for name in related.columns
        if not child.has_field(name)
    ]
    problems += _sort_problems(f"{path}/sort", child, related.sort)
    return problems


def _sort_problems(path: str, obj: ObjectDef, sort: str | None) -> list[FieldError]:
    from metacrm.metadata.names import SYSTEM_FIELDS

    problems = []
    for key in (sort or "").split(","):
        name = key.strip().lstrip("+-")
        if name and name not in SYSTEM_FIELDS and not obj.has_field(name):
            problems.append(_unknown(path, obj, name))
    return problems


def list_view_problems(view: ListView, model: MetadataModel) -> list[FieldError]:
    obj = model.object(view.object)
    base = f"list_views/{view.api_name}"
    problems = [
        _unknown(f"{base}/columns/{name}", obj, name)
        for name in view.columns
        if not obj.has_field(name)
    ]
    if view.kanban_field is not None:
        path = f"{base}/kanban_field"
        if not obj.has_field(view.kanban_field):
            problems.append(_unknown(path, obj, view.kanban_field))
        elif obj.field(view.kanban_field).type != "picklist":
            problems.append(
                FieldError(path, "wrong-type", f"{view.kanban_field!r} must be a picklist field")
            )
    problems += _sort_problems(f"{base}/sort", obj, view.sort)
    if view.visibility.kind == "owner" and view.visibility.owner is None:
        problems.append(
            FieldError(f"{base}/visibility/owner", "required", "an owner-only view names its owner")
        )
    return problems


def _unknown(path: str, obj: ObjectDef, name: str) -> FieldError:
    return FieldError(path, "unknown-field", f"{name!r} is not a field of {obj.api_name!r}")
