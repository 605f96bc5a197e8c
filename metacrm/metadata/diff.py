"""diff(old, new) -> Plan: a pure comparison of two metadata models."""

from __future__ import annotations

from typing import Any

from metacrm.errors import FieldError, MetadataInvalid
from metacrm.metadata.layout_changes import layout_changes
from metacrm.metadata.model import (
    DOCUMENT_KINDS,
    NUMERIC_FIELDS,
    FieldDef,
    MetadataModel,
    ObjectDef,
    choice_values,
    link_target,
)
from metacrm.metadata.plan import (
    AddField,
    AlterField,
    CreateObject,
    DropField,
    DropObject,
    Op,
    Plan,
    PutDocument,
    RemoveDocument,
    UpdateObject,
)

_VARCHAR = ("text", "email", "phone", "url", "picklist")
_NUMERIC = ("number", "currency", "percent")


def diff(old: MetadataModel, new: MetadataModel) -> Plan:
    """The plan that turns `old` into `new`: creations, then changes, then drops."""
    creates: list[Op] = []
    changes: list[Op] = []
    drops: list[Op] = []
    old_objects = {o.api_name: o for o in old.objects}
    new_names = {o.api_name for o in new.objects}
    problems: list[FieldError] = []
    for obj in new.objects:
        before = old_objects.get(obj.api_name)
        if before is None:
            creates.append(CreateObject(obj))
            continue
        if before == obj:
            continue
        field_changes, field_drops, field_problems = _diff_fields(before, obj)
        update = UpdateObject(before, obj)
        if update.changed():
            changes.append(update)
        changes += field_changes
        drops += field_drops
        problems += field_problems
    drops += [DropObject(o) for o in old.objects if o.api_name not in new_names]
    for kind_name, (attribute, _cls) in DOCUMENT_KINDS.items():
        changes += _diff_documents(kind_name, old.documents(attribute), new.documents(attribute))
    changes += layout_changes(old, new)  # layouts and list views losing fields
    if problems:
        raise MetadataInvalid("the change cannot be planned", problems)
    return Plan(tuple(creates + changes + drops))


def _diff_documents(kind_name: str, old: list[Any], new: list[Any]) -> list[Op]:
    before = {d.api_name: d for d in old}
    after = {d.api_name for d in new}
    ops: list[Op] = [
        PutDocument(kind_name, before.get(d.api_name), d)
        for d in new
        if before.get(d.api_name) != d
    ]
    return ops + [RemoveDocument(kind_name, d) for d in old if d.api_name not in after]


def _diff_fields(old: ObjectDef, new: ObjectDef) -> tuple[list[Op], list[Op], list[FieldError]]:
    changes: list[Op] = []
    problems: list[FieldError] = []
    old_fields = {f.api_name: f for f in old.fields}
    new_names = {f.api_name for f in new.fields}
    for field in new.fields:
        before = old_fields.get(field.api_name)
        if before is None:
            changes.append(AddField(new.api_name, field))
        elif before != field:
            problem = _type_change_problem(before, field)
            if problem:
                path = f"objects/{new.api_name}/fields/{field.api_name}/type"
                problems.append(FieldError(path, "type-change", problem))
            else:
                changes.append(
                    AlterField(new.api_name, before, field, _narrowing(new.api_name, before, field))
                )
    drops: list[Op] = [
        DropField(new.api_name, f) for f in old.fields if f.api_name not in new_names
    ]
    return changes, drops, problems


def _type_change_problem(old: FieldDef, new: FieldDef) -> str | None:
    """Why `old` cannot become `new` in place, or None when it can."""
    if old.type == new.type:
        if old.type in ("lookup", "master_detail") and link_target(old) != link_target(new):
            return "the target of a lookup cannot change; add a new field instead"
        return None
    families = ((*_VARCHAR, "long_text"), _NUMERIC)
    if any(old.type in family and new.type in family for family in families):
        return None
    links = {old.type, new.type} == {"lookup", "master_detail"}
    if links and link_target(old) == link_target(new):
        return None
    return (
        f"a {old.type} field cannot become a {new.type} field in place; "
        "add a new field, copy the data, then drop the old one"
    )


def _narrowing(obj: str, old: FieldDef, new: FieldDef) -> tuple[str, ...]:
    """What existing data the change could lose or invalidate."""
    name = f"{obj}.{new.api_name}"
    risks: list[str] = []
    old_len = getattr(old, "max_length", None)
    new_len = getattr(new, "max_length", None)
    if old.type == "long_text" and new.type != "long_text":
        risks.append(f"{name} becomes a short text: longer values no longer fit")
    elif old_len and new_len and new_len < old_len:
        risks.append(f"{name} shrinks from {old_len} to {new_len} characters")
    if isinstance(old, NUMERIC_FIELDS) and isinstance(new, NUMERIC_FIELDS):
        if new.scale < old.scale:
            risks.append(f"{name} loses decimals ({old.scale} -> {new.scale})")
        if new.precision - new.scale < old.precision - old.scale:
            risks.append(f"{name} holds fewer integer digits")
    if old.type != new.type and new.type in ("picklist", "email", "phone", "url"):
        risks.append(f"existing {name} values may not be valid {new.type} values")
    if old.type in ("picklist", "multi_picklist") and old.type == new.type:
        removed = [v for v in choice_values(old) if v not in set(choice_values(new))]
        if removed:
            risks.append(f"removes values {removed} of {name}; records holding them are cleared")
    return tuple(risks)
