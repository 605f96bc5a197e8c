"""The references pass: every object, field, role, flow, stage and value a model names exists."""

from __future__ import annotations

from metacrm.checks.context import Context
from metacrm.metadata.model import (
    FieldDef,
    FormulaField,
    ObjectDef,
    RollupField,
    choice_values,
    link_target,
)
from metacrm.metadata.process import ApprovalFlow, Approver, ProcessAction, StageRule
from metacrm.metadata.values import ValueProblem, coerce

TEXTUAL_NAME_TYPES = ("text", "auto_number", "email", "phone", "formula")
USER_FIELDS = ("owner_id", "created_by", "updated_by")
_NUMBERS = ("number", "percent", "currency")


def run(ctx: Context) -> None:
    for obj in ctx.model.objects:
        _object(ctx, obj)
    _roles(ctx)
    for sharing in ctx.model.sharing_rules:
        base = f"sharing_rules/{sharing.api_name}"
        shared = ctx.need_object(f"{base}/object", sharing.object)
        ctx.need_role(f"{base}/share_with/role", sharing.share_with.role)
        if shared is not None and any(f.type == "master_detail" for f in shared.fields):
            ctx.error(
                f"{base}/object",
                "detail-object",
                f"{sharing.object} records take their access from their master record; "
                "share the master object instead",
            )
    # The fields layouts and list views place are checked by the layouts pass.
    for layout in ctx.model.layouts:
        base = f"layouts/{layout.api_name}"
        ctx.need_object(f"{base}/object", layout.object)
        for role in layout.roles:
            ctx.need_role(f"{base}/roles/{role}", role)
        for i, related in enumerate(layout.related_lists):
            ctx.need_object(f"{base}/related_lists/{i}/object", related.object)
    for view in ctx.model.list_views:
        base = f"list_views/{view.api_name}"
        ctx.need_object(f"{base}/object", view.object)
        for role in view.visibility.roles:
            ctx.need_role(f"{base}/visibility/roles/{role}", role)
    for rule in ctx.model.stage_rules:
        _stage_rule(ctx, rule)
    for flow in ctx.model.approval_flows:
        _flow(ctx, flow)


# ---------------------------------------------------------------- objects


def _object(ctx: Context, obj: ObjectDef) -> None:
    base = f"objects/{obj.api_name}"
    if obj.name_field is not None:
        if not obj.has_field(obj.name_field):
            ctx.error(
                f"{base}/name_field",
                "unknown-field",
                f"name_field {obj.name_field!r} is not a field of {obj.api_name!r}",
            )
        elif obj.field(obj.name_field).type not in TEXTUAL_NAME_TYPES:
            ctx.error(
                f"{base}/name_field",
                "wrong-type",
                f"name_field {obj.name_field!r} must be a text or auto-number field",
            )
    masters = 0
    for field in obj.fields:
        path = f"{base}/fields/{field.api_name}"
        target = link_target(field)
        if target is not None:
            if target not in ctx.objects and target not in ctx.unreadable:
                ctx.error(
                    f"{path}/target",
                    "unknown-object",
                    f"target object {target!r} does not exist",
                )
            masters += field.type == "master_detail"
            if field.type == "master_detail" and target == obj.api_name:
                ctx.error(f"{path}/target", "self-master", "an object cannot be its own master")
        if isinstance(field, RollupField):
            _rollup(ctx, obj, field, path)
        _default(ctx, field, path)
    if masters > 2:
        ctx.error(
            f"{base}/fields",
            "too-many-masters",
            "an object can have at most two master-detail fields",
        )
    for rule in obj.validation_rules:
        if rule.field is not None and not obj.has_field(rule.field):
            ctx.error(
                f"{base}/validation_rules/{rule.api_name}/field",
                "unknown-field",
                f"{rule.field!r} is not a field of {obj.api_name!r}",
            )
    _field_rules(ctx, obj)


def _default(ctx: Context, field: FieldDef, path: str) -> None:
    default = getattr(field, "default", None)
    if default is None or field.computed:
        return
    try:
        coerce(field, default)
    except ValueProblem as problem:
        ctx.error(f"{path}/default", "bad-default", f"the default: {problem.message}")


def _rollup(ctx: Context, obj: ObjectDef, field: RollupField, path: str) -> None:
    if field.child_object not in ctx.objects:
        if field.child_object not in ctx.unreadable:
            ctx.error(
                f"{path}/child_object",
                "unknown-object",
                f"child object {field.child_object!r} does not exist",
            )
        return
    child = ctx.objects[field.child_object]
    if not ctx.need_field(f"{path}/child_field", child, field.child_field):
        return
    link = child.field(field.child_field)
    if link_target(link) != obj.api_name:
        ctx.error(
            f"{path}/child_field",
            "not-a-link",
            f"{child.api_name}.{field.child_field} does not link to {obj.api_name!r}",
        )
        return
    if field.field is None or not ctx.need_field(f"{path}/field", child, field.field):
        return
    aggregated = child.field(field.field)
    allowed = _NUMBERS if field.aggregate == "sum" else (*_NUMBERS, "date", "datetime")
    returns = getattr(aggregated, "returns", None)
    if aggregated.type not in allowed and not (aggregated.type == "formula" and returns in allowed):
        ctx.error(
            f"{path}/field", "wrong-type", f"cannot {field.aggregate} a {aggregated.type} field"
        )


def _field_rules(ctx: Context, obj: ObjectDef) -> None:
    """Field rules name writable fields; allowed values are values of their picklist."""
    for rule in obj.field_rules:
        base = f"objects/{obj.api_name}/field_rules/{rule.api_name}"
        for k, name in enumerate(rule.fields):
            path = f"{base}/fields/{k}"
            if not ctx.need_field(path, obj, name):
                continue
            field = obj.field(name)
            if field.computed:
                ctx.error(path, "computed", f"{name!r} is computed; a rule cannot govern it")
            elif rule.effect == "allowed_values":
                if field.type not in ("picklist", "multi_picklist"):
                    ctx.error(path, "wrong-type", f"{name!r} must be a picklist field")
                    continue
                known = set(choice_values(field))
                for j, value in enumerate(rule.values or []):
                    if value not in known:
                        ctx.error(
                            f"{base}/values/{j}",
                            "unknown-value",
                            f"{value!r} is not a value of {obj.api_name}.{name}",
                        )


# ---------------------------------------------------------------- roles


def _roles(ctx: Context) -> None:
    parents = {r.api_name: r.reports_to for r in ctx.model.roles}
    for role in ctx.model.roles:
        base = f"roles/{role.api_name}"
        if role.reports_to is not None:
            ctx.need_role(f"{base}/reports_to", role.reports_to)
        seen, current = {role.api_name}, role.reports_to
        while current is not None and current in parents:
            if current in seen:
                ctx.error(f"{base}/reports_to", "cycle", "the role hierarchy has a cycle")
                break
            seen.add(current)
            current = parents[current]
        for name in role.objects:
            ctx.need_object(f"{base}/objects/{name}", name)
        for name, fields in role.fields.items():
            obj = ctx.need_object(f"{base}/fields/{name}", name)
            for field in fields:
                ctx.need_field(f"{base}/fields/{name}/{field}", obj, field)


# ---------------------------------------------------------------- processes


def _stage_rule(ctx: Context, rule: StageRule) -> None:
    base = f"stage_rules/{rule.api_name}"
    obj = ctx.need_object(f"{base}/object", rule.object)
    picklist = ctx.need_field(f"{base}/field", obj, rule.field, "picklist")
    values = set(choice_values(obj.field(rule.field))) if picklist and obj else set()
    stages = {s.value for s in rule.stages}
    for stage in rule.stages:
        path = f"{base}/stages/{stage.value}"
        if picklist and stage.value not in values:
            ctx.error(
                path,
                "unknown-value",
                f"{stage.value!r} is not a value of {rule.object}.{rule.field}",
            )
        for name in stage.required_fields:
            ctx.need_field(f"{path}/required_fields/{name}", obj, name)
        for value in stage.next or []:
            if value not in stages:
                ctx.error(f"{path}/next/{value}", "unknown-stage", f"{value!r} is no stage")
        if stage.requires_approval is not None:
            flow = next(
                (f for f in ctx.model.approval_flows if f.api_name == stage.requires_approval),
                None,
            )
            if flow is None or flow.object != rule.object:
                ctx.error(
                    f"{path}/requires_approval",
                    "unknown-flow",
                    f"no approval flow {stage.requires_approval!r} on {rule.object!r}",
                )
        for i, action in enumerate(stage.on_entry):
            _action(ctx, f"{path}/on_entry/{i}", obj, action)
        for task in stage.tasks:
            if task.assignee.kind == "role":
                ctx.need_role(f"{path}/tasks/{task.api_name}/assignee/role", task.assignee.role)
    for value in rule.initial or []:
        if value not in stages:
            ctx.error(f"{base}/initial/{value}", "unknown-stage", f"{value!r} is no stage")
    if rule.probability_field is not None:
        ctx.need_field(f"{base}/probability_field", obj, rule.probability_field, *_NUMBERS)
    if rule.amount_field is not None and ctx.need_field(
        f"{base}/amount_field", obj, rule.amount_field
    ):
        assert obj is not None  # need_field found the field on it
        amount = obj.field(rule.amount_field)
        kind = amount.returns if isinstance(amount, FormulaField) else amount.type
        if kind not in _NUMBERS:
            ctx.error(
                f"{base}/amount_field",
                "wrong-type",
                f"{rule.object}.{rule.amount_field} must be a number, percent or currency "
                "field, or a formula returning one",
            )
    for old, new in rule.stage_mapping.items():
        if new not in stages:
            ctx.error(f"{base}/stage_mapping/{old}", "unknown-stage", f"{new!r} is no stage")


def _flow(ctx: Context, flow: ApprovalFlow) -> None:
    base = f"approval_flows/{flow.api_name}"
    obj = ctx.need_object(f"{base}/object", flow.object)
    for step in flow.steps:
        path = f"{base}/steps/{step.api_name}"
        for i, approver in enumerate(step.approvers):
            _approver(ctx, f"{path}/approvers/{i}", obj, approver)
        if step.escalate_to is not None:
            _approver(ctx, f"{path}/escalate_to", obj, step.escalate_to)
        for name in step.editable_fields:
            ctx.need_field(f"{path}/editable_fields/{name}", obj, name)
    for event in ("on_submit", "on_approve", "on_reject", "on_recall"):
        for i, action in enumerate(getattr(flow, event)):
            _action(ctx, f"{base}/{event}/{i}", obj, action)


def _approver(ctx: Context, path: str, obj: ObjectDef | None, approver: Approver) -> None:
    if approver.kind == "role":
        ctx.need_role(f"{path}/role", approver.role)
    elif approver.kind == "field" and approver.field not in USER_FIELDS:
        ctx.need_field(f"{path}/field", obj, approver.field or "", "text", "email")


def _action(ctx: Context, path: str, obj: ObjectDef | None, action: ProcessAction) -> None:
    """A stage move names a stage of the object's one stage rule; a field update, a
    writable field (its expression is checked by the expressions pass)."""
    if obj is None:
        return
    if action.stage is not None:
        rules = [r for r in ctx.model.stage_rules if r.object == obj.api_name]
        if len(rules) != 1 or rules[0].stage(action.stage) is None:
            ctx.error(
                f"{path}/stage",
                "unknown-stage",
                f"{action.stage!r} is not a stage of the one stage rule of {obj.api_name!r}",
            )
        return
    for name in action.set or {}:
        if ctx.need_field(f"{path}/set/{name}", obj, name) and obj.field(name).computed:
            ctx.error(f"{path}/set/{name}", "read-only", f"{name!r} is computed")
