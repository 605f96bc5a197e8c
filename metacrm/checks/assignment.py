"""The assignment pass: assignment rules and queues name what exists, and their conditions check.

Per rule: the object exists; at most one active rule per object; each entry's condition
type-checks on the object (context "validation"); each target names an existing queue
or role, or a field that can hold a user (a user field, or a text or e-mail field with an
id or e-mail), and its `open_condition` type-checks as a filter on the object.
Users themselves are data, not metadata: a user or queue member that does not exist, or
is inactive, is skipped when the rule runs.
"""

from __future__ import annotations

from metacrm import formula
from metacrm.checks.context import Context
from metacrm.checks.impact import references
from metacrm.checks.references import USER_FIELDS
from metacrm.errors import FieldError, FormulaError
from metacrm.metadata.assignment import AssignTarget
from metacrm.metadata.model import ObjectDef


def run(ctx: Context) -> None:
    queues = {q.api_name for q in ctx.model.queues}
    active: dict[str, str] = {}
    for rule in ctx.model.assignment_rules:
        base = f"assignment_rules/{rule.api_name}"
        obj = ctx.need_object(f"{base}/object", rule.object)
        if rule.active:
            other = active.setdefault(rule.object, rule.api_name)
            if other != rule.api_name:
                ctx.error(
                    f"{base}/active",
                    "duplicate-active",
                    f"{rule.object} already has the active assignment rule {other!r}",
                )
        for i, entry in enumerate(rule.entries):
            path = f"{base}/entries/{i}"
            if entry.condition is not None and obj is not None:
                _expression(ctx, f"{path}/condition", obj, entry.condition, "validation")
            check_target(ctx, f"{path}/assign_to", obj, entry.assign_to, queues)
    for queue in ctx.model.queues:
        seen: set[str] = set()
        for member in queue.members:
            key = member.strip().lower()
            if key in seen:
                ctx.error(
                    f"queues/{queue.api_name}/members",
                    "duplicate-member",
                    f"{member!r} is a member twice (round-robin would favour them)",
                )
            seen.add(key)


def check_target(
    ctx: Context,
    path: str,
    obj: ObjectDef | None,
    target: AssignTarget,
    queues: set[str] | None = None,
) -> None:
    """Report what an assignment target on `obj` names that does not exist (also used by
    the automation rules' assign action and SLA escalations)."""
    if queues is None:
        queues = {q.api_name for q in ctx.model.queues}
    if target.kind == "queue" and target.queue not in queues:
        ctx.error(f"{path}/queue", "unknown-queue", f"queue {target.queue!r} does not exist")
    elif target.kind == "role":
        ctx.need_role(f"{path}/role", target.role)
    elif target.kind == "field" and target.field not in USER_FIELDS:
        ctx.need_field(f"{path}/field", obj, target.field or "", "text", "email")
    if target.method == "load_balanced" and target.kind not in ("queue", "role"):
        ctx.error(
            f"{path}/method",
            "not-a-group",
            "load balancing picks among a queue's or a role's members",
        )
    if target.open_condition is not None and obj is not None:
        _expression(ctx, f"{path}/open_condition", obj, target.open_condition, "filter")


def _expression(ctx: Context, path: str, obj: ObjectDef, text: str, context: str) -> None:
    if any(o not in ctx.objects for o, _f in references(ctx.model, obj.api_name, text)):
        return  # a lookup to a missing object: the references pass reports it
    try:
        formula.check(text, obj, ctx.model, context=context, field=path)
    except FormulaError as error:
        ctx.errors += [FieldError(e.field, "formula", e.message) for e in error.errors]
