"""Write hook: field rules and layout-level required and read-only fields, enforced by the API.

A field rule (`ObjectDef.field_rules`) applies while its `when` holds for the record as
it will be after the write, evaluated by the formula engine (lookup paths loaded):

- `required`: the field must hold a value;
- `read_only`: the write may not change the field (on create: may not set it to
  anything but its default);
- `hidden`: the write may not set the field to a value, and nothing requires one (a
  field the user cannot see cannot be demanded of them);
- `allowed_values`: the field's value must be one of `values` (or empty).

The layout the writer sees for the record (`runtime.layouts.select_layout`) adds its
`required` placements, and its `read_only` ones for writers without system rights. The form documents carry the same rules, so a form and the
API accept and refuse the same records.
"""

from __future__ import annotations

from typing import Any

from metacrm import formula
from metacrm.errors import FieldError
from metacrm.formula import CheckedExpr
from metacrm.metadata.model import FieldRule, label_text
from metacrm.metadata.values import ValueProblem, coerce
from metacrm.runtime.hooks import Write
from metacrm.runtime.layouts import select_layout
from metacrm.runtime.permissions import field_access
from metacrm.runtime.validation import load_paths

_BLANK: tuple[Any, ...] = (None, "", [])


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str | list) and not value)


async def _applies(write: Write, checked: CheckedExpr) -> bool:
    values = await load_paths(write.conn, write.ct, write.co, write.after, checked.paths)
    prior = None
    if write.before is not None:
        prior = await load_paths(write.conn, write.ct, write.co, write.before, checked.paths)
    return formula.evaluate(checked, values, prior=prior, is_new=write.kind == "create") is True


def _default(field: Any) -> Any:
    default = getattr(field, "default", None)
    if default is None:
        return None
    try:
        return coerce(field, default)
    except ValueProblem:
        return None


def _rule_error(write: Write, rule: FieldRule, name: str) -> FieldError | None:
    field = write.co.fields.get(name)
    if field is None or field.computed:
        return None
    label = label_text(field.label, fallback=name)
    value = write.after.get(name)
    changed = write.changed(name)
    path = write.prefix + name
    match rule.effect:
        case "required" if _blank(value):
            return FieldError(path, "required", f"{label} is required ({rule.api_name})")
        case "hidden" if changed and not _blank(write.changes[name]):
            return FieldError(
                path, "hidden", f"{label} cannot be set while {rule.when} ({rule.api_name})"
            )
        case "read_only" if changed:
            if write.before is None and (_blank(value) or value == _default(field)):
                return None
            return FieldError(
                path, "read-only", f"{label} cannot change while {rule.when} ({rule.api_name})"
            )
        case "allowed_values" if not _blank(value):
            allowed = set(rule.values or [])
            items = value if isinstance(value, list) else [value]
            outside = [v for v in items if str(v) not in allowed]
            if outside:
                return FieldError(
                    path,
                    "not-allowed",
                    f"{outside[0]!r} is not allowed for {label} while {rule.when}; "
                    f"use one of {sorted(allowed)} ({rule.api_name})",
                )
    return None


class FieldRules:
    """The write hook: field rules, then the writer's layout."""

    blocking = False

    async def check(self, write: Write) -> list[FieldError]:
        if write.kind not in ("create", "update"):
            return []
        errors: list[FieldError] = []
        applying = [
            rule for rule, checked in write.co.field_rules if await _applies(write, checked)
        ]
        # A hidden field answers to its hidden rule alone: nothing may require it.
        hidden = {name for rule in applying if rule.effect == "hidden" for name in rule.fields}
        reported: set[str] = set()
        for rule in applying:
            for name in rule.fields:
                if name in reported or (name in hidden and rule.effect != "hidden"):
                    continue
                error = _rule_error(write, rule, name)
                if error is not None:
                    errors.append(error)
                    reported.add(name)
        errors += _layout_errors(write, reported | hidden)
        return errors

    async def after(self, write: Write) -> None:
        return None


FIELD_RULES = FieldRules()


def _layout_errors(write: Write, reported: set[str]) -> list[FieldError]:
    """Fields the writer's layout marks required, when they are empty, and fields it
    marks read-only, when a non-administrator changes them."""
    model, obj = write.ct.model, write.co.obj
    if not any(layout.object == obj.api_name for layout in model.layouts):
        return []  # generated layouts add no requirement
    layout = select_layout(model, obj, write.actor, record=write.after)
    errors = []
    for section in layout.sections:
        for placement in section.fields:
            name = placement.field
            if placement.read_only and name not in reported and _changed_by_user(write, name):
                reported.add(name)
                message = f"{name} is read-only (layout {layout.api_name})"
                errors.append(FieldError(write.prefix + name, "read-only", message))
                continue
            if not placement.required or placement.hidden or name in reported:
                continue
            field = write.co.writable.get(name)
            if field is None or not _blank(write.after.get(name)):
                continue
            if field_access(model, write.actor, obj.api_name, name) == "hidden":
                continue
            reported.add(name)
            errors.append(
                FieldError(
                    write.prefix + name,
                    "required",
                    f"{label_text(field.label, fallback=name)} is required "
                    f"(layout {layout.api_name})",
                )
            )
    return errors


def _changed_by_user(write: Write, name: str) -> bool:
    if write.intent.privileged or name not in write.changes:
        return False
    if write.kind == "update":
        return write.changed(name)
    field = write.co.fields.get(name)
    default = getattr(field, "default", None)
    return write.changes[name] is not None and write.changes[name] != default  # defaults are fine
