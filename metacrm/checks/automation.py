"""The automation pass: every automation rule names things that exist and type-checks.

The rule's object, the fields of its trigger, the stage of a stage_entered trigger, the
date field of a time trigger, the cron expression and time zone of a schedule, the
condition (a filter for time and schedule rules, a validation-style condition with
ISNEW, ISCHANGED and PRIORVALUE otherwise), and each
action's fields, expressions, target object and link, template, roles, queue, stage
and approval flow.
"""

from __future__ import annotations

import zoneinfo

from croniter import croniter

from metacrm import formula
from metacrm.checks.context import Context
from metacrm.checks.expressions import _value_problem as value_problem
from metacrm.errors import FieldError, FormulaError
from metacrm.formula.types import FIELD_KINDS
from metacrm.metadata.assignment import AssignTarget
from metacrm.metadata.automation import Action, AutomationRule
from metacrm.metadata.messages import Recipient
from metacrm.metadata.model import ObjectDef
from metacrm.metadata.names import SYSTEM_FIELDS

#: System fields a trigger may watch or a time may be measured from.
_WATCHABLE_SYSTEM = frozenset({"owner_id"})
_TIME_SYSTEM = frozenset({"created_at", "updated_at"})
#: Actions that change the record itself: nothing to change once it is deleted.
_WRITING = frozenset({"update", "assign", "stage", "submit"})


def run(ctx: Context) -> None:
    for rule in ctx.model.automation_rules:
        base = f"automation_rules/{rule.api_name}"
        obj = ctx.need_object(f"{base}/object", rule.object)
        if obj is None:
            continue
        _trigger(ctx, base, rule, obj)
        if rule.condition:
            # Schedules select records in SQL, and a timer's condition is checked again
            # when due, with no save to compare with: neither may use ISCHANGED & co.
            timed = rule.trigger.on in ("schedule", "time")
            context = "filter" if timed else "validation"
            _expression(ctx, f"{base}/condition", rule.condition, obj, context)
        for i, action in enumerate(rule.actions):
            _action(ctx, f"{base}/actions/{i}", rule, obj, action)


def _trigger(ctx: Context, base: str, rule: AutomationRule, obj: ObjectDef) -> None:
    trigger, path = rule.trigger, f"{base}/trigger"
    for i, name in enumerate(trigger.fields):
        if name not in _WATCHABLE_SYSTEM:
            ctx.need_field(f"{path}/fields/{i}", obj, name)
    if trigger.stage is not None:
        _stage(ctx, f"{path}/stage", obj, trigger.stage)
    if trigger.date_field is not None and trigger.date_field not in _TIME_SYSTEM:
        ctx.need_field(f"{path}/date_field", obj, trigger.date_field, "date", "datetime")
    if trigger.cron is not None and not _cron_ok(trigger.cron):
        ctx.error(
            f"{path}/cron",
            "invalid-cron",
            f"{trigger.cron!r} is not a five-field cron expression (minute hour day month weekday)",
        )
    if trigger.timezone is not None and not _zone_ok(trigger.timezone):
        ctx.error(
            f"{path}/timezone",
            "unknown-timezone",
            f"{trigger.timezone!r} is not an IANA time zone (like 'Europe/Paris')",
        )


def _cron_ok(cron: str) -> bool:
    return len(cron.split()) == 5 and croniter.is_valid(cron)


def _zone_ok(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _stage(ctx: Context, path: str, obj: ObjectDef, stage: str) -> None:
    rules = [r for r in ctx.model.stage_rules if r.object == obj.api_name]
    if not rules:
        ctx.error(path, "no-stage-rule", f"{obj.api_name} has no stage rule")
    elif not any(s.value == stage for r in rules for s in r.stages):
        ctx.error(path, "unknown-stage", f"{stage!r} is not a stage of {obj.api_name}")


def _expression(ctx: Context, path: str, text: str, obj: ObjectDef, context: str) -> None:
    try:
        formula.check(text, obj, ctx.model, context=context, field=path)
    except FormulaError as error:
        ctx.errors += [FieldError(e.field, "formula", e.message) for e in error.errors]


def _sets(
    ctx: Context, path: str, source: ObjectDef, target: ObjectDef, values: dict[str, str]
) -> None:
    """Each `set` names a writable field of `target`; its expression, evaluated on the
    triggering record (`source`), gives a value that field can hold."""
    for name, text in values.items():
        here = f"{path}/set/{name}"
        if not ctx.need_field(here, target, name):
            continue
        field = target.field(name)
        if field.computed:
            ctx.error(here, "computed-field", f"{target.api_name}.{name} is computed")
            continue
        try:
            checked = formula.check(text, source, ctx.model, context="default", field=here)
        except FormulaError as error:
            ctx.errors += [FieldError(e.field, "formula", e.message) for e in error.errors]
            continue
        problem = value_problem(checked.node.type, FIELD_KINDS.get(field.type, ""))
        if problem:
            ctx.error(here, "wrong-type", problem)


def _action(ctx: Context, path: str, rule: AutomationRule, obj: ObjectDef, action: Action) -> None:
    if rule.trigger.on == "deleted" and action.kind in _WRITING:
        ctx.error(
            f"{path}/kind",
            "deleted-record",
            f"a {action.kind} action cannot act on a deleted record",
        )
    if action.kind == "update":
        _sets(ctx, path, obj, obj, action.set)
    elif action.kind == "create" and action.object is not None:
        target = ctx.need_object(f"{path}/object", action.object)
        if target is not None:
            _sets(ctx, path, obj, target, action.set)
        if target is not None and action.link is not None:
            here = f"{path}/link"
            if ctx.need_field(here, target, action.link, "lookup", "master_detail"):
                link = target.field(action.link)
                if getattr(link, "target", None) != obj.api_name:
                    ctx.error(
                        here,
                        "wrong-target",
                        f"{target.api_name}.{action.link} does not point at {obj.api_name}",
                    )
    elif action.kind == "assign" and action.assign_to is not None:
        _assign_target(ctx, f"{path}/assign_to", obj, action.assign_to)
    elif action.kind in ("notify", "email"):
        for i, recipient in enumerate(action.to):
            _recipient(ctx, f"{path}/to/{i}", obj, recipient)
        templates = {t.api_name: t for t in ctx.model.email_templates}
        template = templates.get(action.template or "")
        if action.template is not None and template is None:
            ctx.error(
                f"{path}/template",
                "unknown-template",
                f"e-mail template {action.template!r} does not exist",
            )
        elif template is not None and template.object not in (None, obj.api_name):
            ctx.error(
                f"{path}/template",
                "wrong-object",
                f"e-mail template {action.template!r} is for {template.object} records",
            )
    elif action.kind == "stage" and action.stage is not None:
        _stage(ctx, f"{path}/stage", obj, action.stage)
    elif action.kind == "submit" and action.flow is not None:
        flow = next((f for f in ctx.model.approval_flows if f.api_name == action.flow), None)
        if flow is None or flow.object != obj.api_name:
            ctx.error(
                f"{path}/flow",
                "unknown-flow",
                f"{obj.api_name} has no approval flow {action.flow!r}",
            )


def _assign_target(ctx: Context, path: str, obj: ObjectDef, target: AssignTarget) -> None:
    if target.kind == "role":
        ctx.need_role(f"{path}/role", target.role)
    elif target.kind == "queue" and target.queue not in {q.api_name for q in ctx.model.queues}:
        ctx.error(f"{path}/queue", "unknown-queue", f"queue {target.queue!r} does not exist")
    elif target.kind == "field" and target.field is not None and target.field not in SYSTEM_FIELDS:
        ctx.need_field(f"{path}/field", obj, target.field)


def _recipient(ctx: Context, path: str, obj: ObjectDef, recipient: Recipient) -> None:
    if recipient.kind == "role":
        ctx.need_role(f"{path}/role", recipient.role)
    elif (
        recipient.kind == "field"
        and recipient.field is not None
        and recipient.field not in SYSTEM_FIELDS
    ):
        ctx.need_field(f"{path}/field", obj, recipient.field)
