"""The processes pass: stage rules and approval flows make sense as a whole.

One stage rule per picklist, stage mappings only for removed stages, step counts
within the approvers named; and a warning when a stage requires an approval whose flow
may refuse the record (an entry condition), since the requirement then applies only
to the records the flow accepts.
"""

from __future__ import annotations

from metacrm.checks.context import Context
from metacrm.metadata.process import ApprovalFlow, StageRule


def run(ctx: Context) -> None:
    seen: dict[tuple[str, str], str] = {}
    flows = {f.api_name: f for f in ctx.model.approval_flows}
    for rule in ctx.model.stage_rules:
        base = f"stage_rules/{rule.api_name}"
        other = seen.setdefault((rule.object, rule.field), rule.api_name)
        if other != rule.api_name:
            ctx.error(
                f"{base}/field",
                "duplicate-field",
                f"{rule.object}.{rule.field} already has the stage rule {other!r}",
            )
        stages = {s.value for s in rule.stages}
        for old in rule.stage_mapping:
            if old in stages:
                ctx.error(
                    f"{base}/stage_mapping/{old}",
                    "kept-stage",
                    f"{old!r} is still a stage; only removed stages are mapped",
                )
        _required_approvals(ctx, rule, flows)
    for flow in ctx.model.approval_flows:
        for step in flow.steps:
            single = all(a.kind in ("user", "manager", "field") for a in step.approvers)
            if step.required_count and single and step.required_count > len(step.approvers):
                ctx.error(
                    f"approval_flows/{flow.api_name}/steps/{step.api_name}/required_count",
                    "too-many",
                    f"the step names at most {len(step.approvers)} approvers",
                )


def _required_approvals(ctx: Context, rule: StageRule, flows: dict[str, ApprovalFlow]) -> None:
    for stage in rule.stages:
        flow = flows.get(stage.requires_approval or "")
        if flow is None or flow.object != rule.object or not flow.entry_condition:
            continue  # no flow, or one on another object: the references pass refuses it
        ctx.warn(
            f"stage_rules/{rule.api_name}/stages/{stage.value}/requires_approval",
            "approval-may-not-apply",
            f"approval flow {flow.api_name!r} accepts only records where "
            f"{flow.entry_condition}; records it does not accept enter {stage.value!r} "
            "without its approval",
        )
