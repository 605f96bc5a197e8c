"""Cross-checks of a whole metadata model: what pydantic cannot see field by field."""

from __future__ import annotations

from collections import Counter

from metacrm.errors import FieldError
from metacrm.metadata.model import MetadataModel, ObjectDef

TEXTUAL_NAME_TYPES = ("text", "auto_number", "email", "phone", "formula")


def check_references(model: MetadataModel) -> list[FieldError]:
    """Every problem with names and references in `model`, each with its path."""
    problems: list[FieldError] = []
    for name, count in Counter(o.api_name for o in model.objects).items():
        if count > 1:
            problems.append(
                FieldError(
                    f"objects/{name}", "duplicate", f"object {name!r} is defined {count} times"
                )
            )
    for obj in model.objects:
        problems += _check_object(obj, model)
    return problems


def _check_object(obj: ObjectDef, model: MetadataModel) -> list[FieldError]:
    base = f"objects/{obj.api_name}"
    problems: list[FieldError] = []
    for name, count in Counter(f.api_name for f in obj.fields).items():
        if count > 1:
            problems.append(
                FieldError(
                    f"{base}/fields/{name}", "duplicate", f"field {name!r} is defined {count} times"
                )
            )
    for name, count in Counter(r.api_name for r in obj.validation_rules).items():
        if count > 1:
            problems.append(
                FieldError(
                    f"{base}/validation_rules/{name}",
                    "duplicate",
                    f"validation rule {name!r} is defined {count} times",
                )
            )
    if obj.name_field is not None:
        if not obj.has_field(obj.name_field):
            problems.append(
                FieldError(
                    f"{base}/name_field",
                    "unknown-field",
                    f"name_field {obj.name_field!r} is not a field of {obj.api_name!r}",
                )
            )
        elif obj.field(obj.name_field).type not in TEXTUAL_NAME_TYPES:
            problems.append(
                FieldError(
                    f"{base}/name_field",
                    "wrong-type",
                    f"name_field {obj.name_field!r} must be a text or auto-number field",
                )
            )
    masters = 0
    for field in obj.fields:
        path = f"{base}/fields/{field.api_name}"
        if field.type in ("lookup", "master_detail"):
            if not model.has_object(field.target):
                problems.append(
                    FieldError(
                        f"{path}/target",
                        "unknown-object",
                        f"target object {field.target!r} does not exist",
                    )
                )
            masters += field.type == "master_detail"
            if field.type == "master_detail" and field.target == obj.api_name:
                problems.append(
                    FieldError(
                        f"{path}/target", "self-master", "an object cannot be its own master"
                    )
                )
        if field.type == "rollup":
            problems += _check_rollup(obj, field, path, model)
    if masters > 2:
        problems.append(
            FieldError(
                f"{base}/fields",
                "too-many-masters",
                "an object can have at most two master-detail fields",
            )
        )
    for rule in obj.validation_rules:
        if rule.field is not None and not obj.has_field(rule.field):
            problems.append(
                FieldError(
                    f"{base}/validation_rules/{rule.api_name}/field",
                    "unknown-field",
                    f"{rule.field!r} is not a field of {obj.api_name!r}",
                )
            )
    return problems


def _check_rollup(obj: ObjectDef, field, path: str, model: MetadataModel) -> list[FieldError]:
    if not model.has_object(field.child_object):
        return [
            FieldError(
                f"{path}/child_object",
                "unknown-object",
                f"child object {field.child_object!r} does not exist",
            )
        ]
    child = model.object(field.child_object)
    if not child.has_field(field.child_field):
        return [
            FieldError(
                f"{path}/child_field",
                "unknown-field",
                f"{field.child_field!r} is not a field of {child.api_name!r}",
            )
        ]
    link = child.field(field.child_field)
    if link.type not in ("lookup", "master_detail") or link.target != obj.api_name:
        return [
            FieldError(
                f"{path}/child_field",
                "not-a-link",
                f"{child.api_name}.{field.child_field} does not link to {obj.api_name!r}",
            )
        ]
    if field.field is not None:
        if not child.has_field(field.field):
            return [
                FieldError(
                    f"{path}/field",
                    "unknown-field",
                    f"{field.field!r} is not a field of {child.api_name!r}",
                )
            ]
        aggregated = child.field(field.field)
        numeric = ("number", "currency", "percent")
        allowed = numeric if field.aggregate == "sum" else (*numeric, "date", "datetime")
        if aggregated.type not in allowed and not (
            aggregated.type == "formula" and aggregated.returns in allowed
        ):
            return [
                FieldError(
                    f"{path}/field",
                    "wrong-type",
                    f"cannot {field.aggregate} a {aggregated.type} field",
                )
            ]
    return []
