"""Cross-checks of a whole metadata model: what pydantic cannot see field by field."""

from __future__ import annotations

from collections import Counter

from metacrm.errors import FieldError
from metacrm.metadata.model import MetadataModel, ObjectDef
from metacrm.metadata.process_checks import check_process
from metacrm.metadata.values import ValueProblem, coerce

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
        default = getattr(field, "default", None)
        if default is not None and not field.computed:
            try:
                coerce(field, default)
            except ValueProblem as problem:
                problems.append(
                    FieldError(f"{path}/default", "bad-default", f"the default: {problem.message}")
                )
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


def check_documents(model: MetadataModel) -> list[FieldError]:
    """Every dangling reference in roles, sharing rules, layouts, list views, stages, flows."""
    objects = {o.api_name: o for o in model.objects}
    roles = {r.api_name for r in model.roles}
    problems: list[FieldError] = []

    def need_object(path: str, name: str) -> ObjectDef | None:
        if name not in objects:
            problems.append(FieldError(path, "unknown-object", f"object {name!r} does not exist"))
            return None
        return objects[name]

    def need_field(path: str, obj: ObjectDef | None, name: str, *types: str) -> None:
        if obj is None:
            return
        if not obj.has_field(name):
            problems.append(
                FieldError(path, "unknown-field", f"{name!r} is not a field of {obj.api_name!r}")
            )
        elif types and obj.field(name).type not in types:
            problems.append(
                FieldError(
                    path,
                    "wrong-type",
                    f"{obj.api_name}.{name} must be a {' or '.join(types)} field",
                )
            )

    def need_role(path: str, name: str) -> None:
        if name not in roles:
            problems.append(FieldError(path, "unknown-role", f"role {name!r} does not exist"))

    for kind in (
        "roles",
        "sharing_rules",
        "layouts",
        "list_views",
        "stage_rules",
        "approval_flows",
    ):
        for name, count in Counter(d.api_name for d in model.documents(kind)).items():
            if count > 1:
                problems.append(
                    FieldError(f"{kind}/{name}", "duplicate", f"{name!r} is defined {count} times")
                )
    parents = {r.api_name: r.reports_to for r in model.roles}
    for role in model.roles:
        base = f"roles/{role.api_name}"
        if role.reports_to is not None:
            need_role(f"{base}/reports_to", role.reports_to)
        seen, current = {role.api_name}, role.reports_to
        while current is not None and current in parents:
            if current in seen:
                problems.append(
                    FieldError(f"{base}/reports_to", "cycle", "the role hierarchy has a cycle")
                )
                break
            seen.add(current)
            current = parents[current]
        for name in role.objects:
            need_object(f"{base}/objects/{name}", name)
        for name, fields in role.fields.items():
            obj = need_object(f"{base}/fields/{name}", name)
            for field in fields:
                need_field(f"{base}/fields/{name}/{field}", obj, field)
    for rule in model.sharing_rules:
        base = f"sharing_rules/{rule.api_name}"
        need_object(f"{base}/object", rule.object)
        need_role(f"{base}/share_with/role", rule.share_with.role)
    # Layouts and list views against their object's fields: checked when they are saved
    # (metacrm.ui_schema.impact, called by diff), so removing a field they use becomes a
    # plan step rather than an error.
    for layout in model.layouts:
        base = f"layouts/{layout.api_name}"
        need_object(f"{base}/object", layout.object)
        for role in layout.roles:
            need_role(f"{base}/roles/{role}", role)
        for i, related in enumerate(layout.related_lists):
            need_object(f"{base}/related_lists/{i}/object", related.object)
    for view in model.list_views:
        base = f"list_views/{view.api_name}"
        need_object(f"{base}/object", view.object)
        for role in view.visibility.roles:
            need_role(f"{base}/visibility/roles/{role}", role)
    for obj in model.objects:
        problems += _check_field_rules(obj)
    problems += check_process(model)
    return problems


def _check_field_rules(obj: ObjectDef) -> list[FieldError]:
    """Field rules name writable fields; allowed values are values of their picklist."""
    problems: list[FieldError] = []
    for name, count in Counter(r.api_name for r in obj.field_rules).items():
        if count > 1:
            problems.append(
                FieldError(
                    f"objects/{obj.api_name}/field_rules/{name}",
                    "duplicate",
                    f"field rule {name!r} is defined {count} times",
                )
            )
    for rule in obj.field_rules:
        base = f"objects/{obj.api_name}/field_rules/{rule.api_name}"
        for k, name in enumerate(rule.fields):
            path = f"{base}/fields/{k}"
            if not obj.has_field(name):
                problems.append(
                    FieldError(
                        path, "unknown-field", f"{name!r} is not a field of {obj.api_name!r}"
                    )
                )
                continue
            field = obj.field(name)
            if field.computed:
                problems.append(
                    FieldError(path, "computed", f"{name!r} is computed; a rule cannot govern it")
                )
            elif rule.effect == "allowed_values":
                if field.type not in ("picklist", "multi_picklist"):
                    problems.append(
                        FieldError(path, "wrong-type", f"{name!r} must be a picklist field")
                    )
                    continue
                known = set(field.value_names())
                problems += [
                    FieldError(
                        f"{base}/values/{j}",
                        "unknown-value",
                        f"{value!r} is not a value of {obj.api_name}.{name}",
                    )
                    for j, value in enumerate(rule.values or [])
                    if value not in known
                ]
    return problems
