"""Process metadata: stage rules on a picklist, and approval flows.

Both are documents of their own (`/api/v1/metadata/stage-rules`, `.../approval-flows`);
the runtime enforces them in the `metacrm/runtime/process/` package.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from metacrm.metadata.base import ApiName, Expression, Label, Strict

StageValue = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class Assignee(Strict):
    """Who gets a stage task: a named user, every user of a role, the owner or their manager."""

    kind: Literal["user", "role", "owner", "manager"]
    #: A user's id or e-mail (kind "user").
    user: Annotated[str, StringConstraints(min_length=1, max_length=320)] | None = None
    role: ApiName | None = None

    @model_validator(mode="after")
    def _needs(self) -> Assignee:
        if self.kind == "user" and not self.user:
            raise ValueError("an assignee of kind 'user' needs 'user'")
        if self.kind == "role" and not self.role:
            raise ValueError("an assignee of kind 'role' needs 'role'")
        return self


class ProcessAction(Strict):
    """A field update (`set`: field -> expression) or a stage move (`stage`)."""

    set: dict[ApiName, Expression] | None = None
    #: Move the record to this stage of the object's stage rule (gates apply).
    stage: StageValue | None = None

    @model_validator(mode="after")
    def _one(self) -> ProcessAction:
        if (self.set is None) == (self.stage is None):
            raise ValueError("an action has exactly one of 'set' or 'stage'")
        return self


class StageTask(Strict):
    """A work item created when a record enters a stage; it must be done (unless optional)
    before the record may leave that stage."""

    api_name: ApiName
    subject: Label
    assignee: Assignee = Assignee(kind="owner")
    due_in_days: Annotated[int, Field(ge=0, le=3650)] | None = None
    optional: bool = False


class Stage(Strict):
    value: StageValue
    label: Label | None = None
    probability: Annotated[int, Field(ge=0, le=100)] | None = None
    #: Fields that must hold a value to enter the stage.
    required_fields: list[ApiName] = []
    #: A condition (context "validation") that must be true to enter the stage.
    entry_condition: Expression | None = None
    entry_message: Label | None = None
    #: Stages allowed next; default: the next stage in order, and every closed stage.
    next: list[StageValue] | None = None
    #: Whether the record may move from this stage back to any earlier stage.
    allow_back: bool = False
    #: A closed stage (won, lost): the end of the path.
    closed: bool = False
    #: Entering this stage needs a reason (stored with the transition).
    reason_required: bool = False
    guidance: Label | None = None
    #: Field updates made when a record enters the stage.
    on_entry: list[ProcessAction] = []
    tasks: list[StageTask] = []
    #: An approval flow the record must have had approved (its latest run) to enter.
    requires_approval: ApiName | None = None

    @model_validator(mode="after")
    def _entry_updates_only(self) -> Stage:
        if any(action.stage is not None for action in self.on_entry):
            raise ValueError("on_entry actions are field updates ('set'), not stage moves")
        return self


class StageRule(Strict):
    """Binds a picklist `field` of `object` to ordered stages with gates."""

    api_name: ApiName
    object: ApiName
    field: ApiName
    label: Label | None = None
    stages: Annotated[list[Stage], Field(min_length=1, max_length=100)]
    #: Stages a new record may start in; default: the first stage.
    initial: list[StageValue] | None = None
    #: Every backward move needs a reason.
    reason_on_back: bool = False
    #: A numeric field that receives the stage's probability on entry.
    probability_field: ApiName | None = None
    #: The currency field a funnel sums (default: `amount` when the object has it).
    amount_field: ApiName | None = None
    #: Removed stage value -> stage to move its records to, when the rule changes while
    #: records are in a stage it no longer has. Without it, such a change is refused.
    stage_mapping: dict[StageValue, StageValue] = {}

    @model_validator(mode="after")
    def _stages_unique(self) -> StageRule:
        seen: set[str] = set()
        for stage in self.stages:
            if stage.value in seen:
                raise ValueError(f"stage {stage.value!r} appears twice")
            seen.add(stage.value)
        return self

    def stage(self, value: str | None) -> Stage | None:
        return next((s for s in self.stages if s.value == value), None)

    def index(self, value: str | None) -> int:
        """The position of a stage; -1 when the value is not a stage of the rule."""
        return next((i for i, s in enumerate(self.stages) if s.value == value), -1)

    def allowed_next(self, value: str) -> list[str]:
        """The stages a record in `value` may move to (excluding backward moves)."""
        i = self.index(value)
        stage = self.stages[i]
        if stage.next is not None:
            return list(stage.next)
        if stage.closed:
            return []
        following = [self.stages[i + 1].value] if i + 1 < len(self.stages) else []
        closed = [s.value for s in self.stages if s.closed and s.value != value]
        return list(dict.fromkeys(following + closed))

    def initial_stages(self) -> list[str]:
        return list(self.initial) if self.initial is not None else [self.stages[0].value]


class Approver(Strict):
    """Who approves a step.

    - `user`: a user's id or e-mail;
    - `role`: every active user of the role;
    - `manager`: the manager of the record's owner or of the submitter, `levels` up;
    - `field`: the user held in a field of the record (`owner_id`, `created_by`, or a
      text/e-mail field holding a user id or e-mail);
    - `formula`: an expression returning user ids or e-mails (comma separated).
    """

    kind: Literal["user", "role", "manager", "field", "formula"]
    user: Annotated[str, StringConstraints(min_length=1, max_length=320)] | None = None
    role: ApiName | None = None
    of: Literal["owner", "submitter"] = "owner"
    levels: Annotated[int, Field(ge=1, le=10)] = 1
    field: ApiName | None = None
    expression: Expression | None = None

    @model_validator(mode="after")
    def _needs(self) -> Approver:
        needed = {"user": "user", "role": "role", "field": "field", "formula": "expression"}
        name = needed.get(self.kind)
        if name is not None and getattr(self, name) is None:
            raise ValueError(f"an approver of kind {self.kind!r} needs {name!r}")
        return self


class ApprovalStep(Strict):
    api_name: ApiName
    label: Label | None = None
    approvers: Annotated[list[Approver], Field(min_length=1)]
    #: any: the first decision decides; all: everyone must approve; n_of_m: `required_count`.
    rule: Literal["any", "all", "n_of_m"] = "any"
    required_count: Annotated[int, Field(ge=1)] | None = None
    #: When false for the record at the time the step is reached, the step is skipped.
    condition: Expression | None = None
    #: Consecutive steps with the same group run at once; all must finish before the next.
    parallel_group: ApiName | None = None
    due_in_hours: Annotated[int, Field(ge=1, le=24 * 365)] | None = None
    remind_before_hours: Annotated[int, Field(ge=1, le=24 * 365)] | None = None
    escalate_to: Approver | None = None
    #: Fields this step's approvers may still edit while the record is locked.
    editable_fields: list[ApiName] = []

    @model_validator(mode="after")
    def _count(self) -> ApprovalStep:
        if (self.rule == "n_of_m") != (self.required_count is not None):
            raise ValueError("'required_count' goes with the rule 'n_of_m', and only with it")
        return self


class ApprovalFlow(Strict):
    """An approval process on `object`: entry condition, ordered steps and actions."""

    api_name: ApiName
    object: ApiName
    label: Label | None = None
    #: A condition (context "validation") the record must meet to be submitted.
    entry_condition: Expression | None = None
    lock_record: bool = True
    allow_self_approval: bool = False
    recall_by: Literal["submitter", "submitter_or_admin", "admin"] = "submitter_or_admin"
    steps: Annotated[list[ApprovalStep], Field(min_length=1, max_length=50)]
    on_submit: list[ProcessAction] = []
    on_approve: list[ProcessAction] = []
    on_reject: list[ProcessAction] = []
    on_recall: list[ProcessAction] = []

    @model_validator(mode="after")
    def _steps_unique(self) -> ApprovalFlow:
        seen: set[str] = set()
        for step in self.steps:
            if step.api_name in seen:
                raise ValueError(f"step {step.api_name!r} appears twice")
            seen.add(step.api_name)
        groups: list[str] = []
        for step in self.steps:
            group = step.parallel_group
            if group is not None and group in groups and groups[-1] != group:
                raise ValueError(f"the steps of parallel group {group!r} must be consecutive")
            if group is not None and (not groups or groups[-1] != group):
                groups.append(group)
            if group is None:
                groups.append("")
        return self

    def phases(self) -> list[list[int]]:
        """Step indexes grouped into phases: a phase is one step, or a parallel group."""
        phases: list[list[int]] = []
        for i, step in enumerate(self.steps):
            previous = self.steps[i - 1].parallel_group if i else None
            if step.parallel_group is not None and previous == step.parallel_group:
                phases[-1].append(i)
            else:
                phases.append([i])
        return phases
