"""Save-time checks of stage rules and approval flows: references, types and expressions.

Conditions (stage entry, flow entry, step condition) are type-checked with the other
conditions in `runtime/changes.py`; this module checks the value expressions (field
updates, formula approvers) and every name the documents use.
"""

from __future__ import annotations

from collections import Counter

from metacrm import formula
from metacrm.errors import FieldError, FormulaError
from metacrm.formula.types import FIELD_KINDS, NUMERIC
from metacrm.metadata.model import MetadataModel, ObjectDef
from metacrm.metadata.process import Approver, ProcessAction, StageRule

USER_FIELDS = ("owner_id", "created_by", "updated_by")
_TEXTUAL = ("text", "picklist", "long_text", "email", "phone", "url")


def check_process(model: MetadataModel) -> list[FieldError]:
    """Every problem of the model's stage rules and approval flows, each with its path."""
    checker = _Checker(model)
    for rule in model.stage_rules:
        checker.stage_rule(rule)
    for flow in model.approval_flows:
        checker.flow(flow)
    return checker.problems


class _Checker:
    def __init__(self, model: MetadataModel) -> None:
        self.model = model
        self.objects = {o.api_name: o for o in model.objects}
        self.roles = {r.api_name for r in model.roles}
        self.flows = {f.api_name: f for f in model.approval_flows}
        self.problems: list[FieldError] = []

    def add(self, path: str, code: str, message: str) -> None:
        self.problems.append(FieldError(path, code, message))

    def need_object(self, path: str, name: str) -> ObjectDef | None:
        if name not in self.objects:
            self.add(path, "unknown-object", f"object {name!r} does not exist")
            return None
        return self.objects[name]

    def need_field(self, path: str, obj: ObjectDef | None, name: str, *types: str) -> bool:
        if obj is None:
            return False
        if not obj.has_field(name):
            self.add(path, "unknown-field", f"{name!r} is not a field of {obj.api_name!r}")
            return False
        if types and obj.field(name).type not in types:
            self.add(path, "wrong-type", f"{obj.api_name}.{name} must be a {' or '.join(types)}")
            return False
        return True

    def need_role(self, path: str, name: str | None) -> None:
        if name is not None and name not in self.roles:
            self.add(path, "unknown-role", f"role {name!r} does not exist")

    # -------------------------------------------------------------- stage rules

    def stage_rule(self, rule: StageRule) -> None:
        base = f"stage_rules/{rule.api_name}"
        obj = self.need_object(f"{base}/object", rule.object)
        picklist = self.need_field(f"{base}/field", obj, rule.field, "picklist")
        values = set(obj.field(rule.field).value_names()) if picklist and obj else set()
        stages = {s.value for s in rule.stages}
        for stage in rule.stages:
            path = f"{base}/stages/{stage.value}"
            if picklist and stage.value not in values:
                self.add(
                    path,
                    "unknown-value",
                    f"{stage.value!r} is not a value of {rule.object}.{rule.field}",
                )
            for name in stage.required_fields:
                self.need_field(f"{path}/required_fields/{name}", obj, name)
            for value in stage.next or []:
                if value not in stages:
                    self.add(f"{path}/next/{value}", "unknown-stage", f"{value!r} is no stage")
            if stage.requires_approval is not None:
                flow = self.flows.get(stage.requires_approval)
                if flow is None or flow.object != rule.object:
                    self.add(
                        f"{path}/requires_approval",
                        "unknown-flow",
                        f"no approval flow {stage.requires_approval!r} on {rule.object!r}",
                    )
            for i, action in enumerate(stage.on_entry):
                self.action(f"{path}/on_entry/{i}", obj, action)
            for task in stage.tasks:
                if task.assignee.kind == "role":
                    self.need_role(
                        f"{path}/tasks/{task.api_name}/assignee/role", task.assignee.role
                    )
            for name, count in Counter(t.api_name for t in stage.tasks).items():
                if count > 1:
                    self.add(f"{path}/tasks/{name}", "duplicate", f"task {name!r} appears twice")
        for value in rule.initial or []:
            if value not in stages:
                self.add(f"{base}/initial/{value}", "unknown-stage", f"{value!r} is no stage")
        numbers = ("number", "percent", "currency")
        if rule.probability_field is not None:
            self.need_field(f"{base}/probability_field", obj, rule.probability_field, *numbers)
        if rule.amount_field is not None:
            self.need_field(f"{base}/amount_field", obj, rule.amount_field, *numbers)
        for old, new in rule.stage_mapping.items():
            if old in stages:
                self.add(
                    f"{base}/stage_mapping/{old}",
                    "kept-stage",
                    f"{old!r} is still a stage; only removed stages are mapped",
                )
            if new not in stages:
                self.add(f"{base}/stage_mapping/{old}", "unknown-stage", f"{new!r} is no stage")
        earlier = self.model.stage_rules[: self.model.stage_rules.index(rule)]
        for other in earlier:
            if (
                other.api_name != rule.api_name
                and other.object == rule.object
                and other.field == rule.field
            ):
                self.add(
                    f"{base}/field",
                    "duplicate-field",
                    f"{rule.object}.{rule.field} already has the stage rule {other.api_name!r}",
                )

    # -------------------------------------------------------------- approval flows

    def flow(self, flow) -> None:
        base = f"approval_flows/{flow.api_name}"
        obj = self.need_object(f"{base}/object", flow.object)
        for step in flow.steps:
            path = f"{base}/steps/{step.api_name}"
            for i, approver in enumerate(step.approvers):
                self.approver(f"{path}/approvers/{i}", obj, approver)
            if step.escalate_to is not None:
                self.approver(f"{path}/escalate_to", obj, step.escalate_to)
            for name in step.editable_fields:
                self.need_field(f"{path}/editable_fields/{name}", obj, name)
            single = all(a.kind in ("user", "manager", "field") for a in step.approvers)
            if step.required_count and single and step.required_count > len(step.approvers):
                self.add(
                    f"{path}/required_count",
                    "too-many",
                    f"the step names at most {len(step.approvers)} approvers",
                )
        for kind in ("on_submit", "on_approve", "on_reject", "on_recall"):
            for i, action in enumerate(getattr(flow, kind)):
                self.action(f"{base}/{kind}/{i}", obj, action)

    def approver(self, path: str, obj: ObjectDef | None, approver: Approver) -> None:
        if approver.kind == "role":
            self.need_role(f"{path}/role", approver.role)
        elif approver.kind == "field" and obj is not None and approver.field not in USER_FIELDS:
            self.need_field(f"{path}/field", obj, approver.field or "", "text", "email")
        elif approver.kind == "formula" and obj is not None:
            self.expression(f"{path}/expression", obj, approver.expression or "", "text")

    # -------------------------------------------------------------- actions

    def action(self, path: str, obj: ObjectDef | None, action: ProcessAction) -> None:
        if obj is None:
            return
        if action.stage is not None:
            rules = [r for r in self.model.stage_rules if r.object == obj.api_name]
            if len(rules) != 1 or rules[0].stage(action.stage) is None:
                self.add(
                    f"{path}/stage",
                    "unknown-stage",
                    f"{action.stage!r} is not a stage of the one stage rule of {obj.api_name!r}",
                )
            return
        for name, expression in (action.set or {}).items():
            if not self.need_field(f"{path}/set/{name}", obj, name):
                continue
            field = obj.field(name)
            if field.computed:
                self.add(f"{path}/set/{name}", "read-only", f"{name!r} is computed")
                continue
            self.expression(f"{path}/set/{name}", obj, expression, FIELD_KINDS.get(field.type))

    def expression(self, path: str, obj: ObjectDef, expression: str, kind: str | None) -> None:
        try:
            checked = formula.check(expression, obj, self.model, context="default", field=path)
        except FormulaError as error:
            self.problems += error.errors
            return
        got = checked.node.type.kind
        if kind is None or got == "null" or got == kind:
            return
        if got in NUMERIC and kind in NUMERIC:
            return
        if got in _TEXTUAL and kind in _TEXTUAL:
            return
        self.add(path, "wrong-type", f"the expression gives a {got}, the field holds a {kind}")
