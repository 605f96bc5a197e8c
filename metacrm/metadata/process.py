"""Process metadata: stage rules on a picklist, and approval flows."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from metacrm.metadata.base import ApiName, Expression, Label, Strict


class StageTask(Strict):
    """A work item created when a record enters a stage."""

    api_name: ApiName
    subject: Label
    assignee: dict[str, Any]
    due_in_days: Annotated[int, Field(ge=0, le=3650)] | None = None
    optional: bool = False


class Stage(Strict):
    value: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    probability: Annotated[int, Field(ge=0, le=100)] | None = None
    required_fields: list[ApiName] = []
    entry_condition: Expression | None = None
    entry_message: Label | None = None
    next: list[str] | None = None
    allow_back: bool = False
    closed: bool = False
    reason_required: bool = False
    guidance: Label | None = None
    on_entry: list[dict[str, Any]] = []
    tasks: list[StageTask] = []
    requires_approval: ApiName | None = None


class StageRule(Strict):
    """Binds a picklist `field` of `object` to ordered stages with gates."""

    api_name: ApiName
    object: ApiName
    field: ApiName
    label: Label | None = None
    stages: Annotated[list[Stage], Field(min_length=1)]


class Approver(Strict):
    kind: Literal["user", "role", "manager", "field", "formula"]
    user: str | None = None
    role: ApiName | None = None
    of: Literal["owner", "submitter"] | None = None
    levels: Annotated[int, Field(ge=1, le=10)] = 1
    field: ApiName | None = None
    expression: Expression | None = None


class ApprovalStep(Strict):
    api_name: ApiName
    label: Label | None = None
    approvers: Annotated[list[Approver], Field(min_length=1)]
    rule: Literal["any", "all", "n_of_m"] = "any"
    required_count: Annotated[int, Field(ge=1)] | None = None
    condition: Expression | None = None
    parallel_group: ApiName | None = None
    due_in_hours: Annotated[int, Field(ge=1)] | None = None
    escalate_to: Approver | None = None
    editable_fields: list[ApiName] = []


class ApprovalFlow(Strict):
    """An approval process on `object`: entry condition, ordered steps and actions."""

    api_name: ApiName
    object: ApiName
    label: Label | None = None
    entry_condition: Expression | None = None
    lock_record: bool = True
    allow_self_approval: bool = False
    recall_by: Literal["submitter", "submitter_or_admin", "admin"] = "submitter_or_admin"
    steps: Annotated[list[ApprovalStep], Field(min_length=1)]
    on_submit: list[dict[str, Any]] = []
    on_approve: list[dict[str, Any]] = []
    on_reject: list[dict[str, Any]] = []
    on_recall: list[dict[str, Any]] = []
