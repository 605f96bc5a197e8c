"""The one walk over every expression a metadata model holds, with its object, path and use."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from metacrm.metadata.model import MetadataModel
from metacrm.metadata.process import Approver, ProcessAction


@dataclass(frozen=True)
class Site:
    """One expression of a model.

    `object` is the object the expression is evaluated on, `path` its place in the model,
    `context` the expression language's context (formula, default, validation, filter,
    rollup_filter), `kind` what uses it (for people), and `field`, for expressions that
    compute a value, the field of `object` that receives it.
    """

    object: str
    path: str
    text: str
    context: str
    kind: str
    field: str | None = None

    @property
    def owner(self) -> str:
        """The first segment pair of the path: `objects/x`, `stage_rules/y`, ..."""
        return "/".join(self.path.split("/")[:2])


def walk(model: MetadataModel) -> Iterator[Site]:
    """Every expression of `model`, in document order."""
    for obj in model.objects:
        base = f"objects/{obj.api_name}"
        for f in obj.fields:
            here = f"{base}/fields/{f.api_name}"
            if f.type == "formula":
                path = f"{here}/expression"
                yield Site(obj.api_name, path, f.expression, "formula", "formula", f.api_name)
            if f.type == "rollup" and f.filter:
                yield Site(
                    f.child_object, f"{here}/filter", f.filter, "rollup_filter", "roll-up filter"
                )
            default = getattr(f, "default_expression", None)
            if default:
                path = f"{here}/default_expression"
                yield Site(obj.api_name, path, default, "default", "default", f.api_name)
        for rule in obj.validation_rules:
            path = f"{base}/validation_rules/{rule.api_name}/condition"
            yield Site(obj.api_name, path, rule.condition, "validation", "validation rule")
        for field_rule in obj.field_rules:
            path = f"{base}/field_rules/{field_rule.api_name}/when"
            yield Site(obj.api_name, path, field_rule.when, "filter", "field rule")
    for sharing in model.sharing_rules:
        path = f"sharing_rules/{sharing.api_name}/criteria"
        yield Site(sharing.object, path, sharing.criteria, "filter", "sharing rule")
    for view in model.list_views:
        if view.filter:
            path = f"list_views/{view.api_name}/filter"
            yield Site(view.object, path, view.filter, "filter", "list view")
    for stage_rule in model.stage_rules:
        for stage in stage_rule.stages:
            base = f"stage_rules/{stage_rule.api_name}/stages/{stage.value}"
            if stage.entry_condition:
                path = f"{base}/entry_condition"
                yield Site(stage_rule.object, path, stage.entry_condition, "filter", "stage rule")
            for i, action in enumerate(stage.on_entry):
                yield from _actions(stage_rule.object, f"{base}/on_entry/{i}", action, "stage rule")
    for flow in model.approval_flows:
        base = f"approval_flows/{flow.api_name}"
        if flow.entry_condition:
            path = f"{base}/entry_condition"
            yield Site(flow.object, path, flow.entry_condition, "filter", "approval flow")
        for step in flow.steps:
            here = f"{base}/steps/{step.api_name}"
            if step.condition:
                yield Site(
                    flow.object, f"{here}/condition", step.condition, "filter", "approval flow"
                )
            for i, approver in enumerate(step.approvers):
                yield from _approver(flow.object, f"{here}/approvers/{i}", approver)
            if step.escalate_to is not None:
                yield from _approver(flow.object, f"{here}/escalate_to", step.escalate_to)
        for event in ("on_submit", "on_approve", "on_reject", "on_recall"):
            for i, action in enumerate(getattr(flow, event)):
                yield from _actions(flow.object, f"{base}/{event}/{i}", action, "approval flow")


def _approver(object_name: str, path: str, approver: Approver) -> Iterator[Site]:
    if approver.kind == "formula" and approver.expression:
        yield Site(object_name, f"{path}/expression", approver.expression, "default", "approver")


def _actions(object_name: str, path: str, action: ProcessAction, kind: str) -> Iterator[Site]:
    for name, text in (action.set or {}).items():
        yield Site(object_name, f"{path}/set/{name}", text, "default", kind, name)
