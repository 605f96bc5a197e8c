"""The layouts pass: new and changed layouts and list views fit their object.

Unknown fields placed, required fields left out or hidden, related lists without a
lookup here, a condition on something that is not a picklist value: each problem with
its path. A layout or list view left as it was is not checked again when its object
changes (removing a field it shows is a plan step: `metacrm.metadata.layout_changes`).
"""

from __future__ import annotations

from typing import Any

from metacrm.checks.context import Context
from metacrm.errors import FieldError
from metacrm.metadata.layouts import Layout, ListView
from metacrm.metadata.model import (
    MetadataModel,
    ObjectDef,
    choice_values,
    link_target,
    needs_value,
)
from metacrm.metadata.names import SYSTEM_FIELDS


def run(ctx: Context) -> None:
    old = ctx.old
    old_layouts = {d.api_name: d for d in old.layouts} if old is not None else {}
    old_views = {d.api_name: d for d in old.list_views} if old is not None else {}
    for layout in ctx.model.layouts:
        if layout.object in ctx.objects and old_layouts.get(layout.api_name) != layout:
            ctx.errors += layout_problems(layout, ctx.model)
    for view in ctx.model.list_views:
        if view.object in ctx.objects and old_views.get(view.api_name) != view:
            ctx.errors += list_view_problems(view, ctx.model)


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
            known = set(choice_values(obj.field(layout.when.field)))
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
        return []  # reported by the references pass
    child = model.object(related.object)
    if not child.has_field(related.field):
        return [_unknown(f"{path}/field", child, related.field)]
    link = child.field(related.field)
    if link_target(link) != layout.object:
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
