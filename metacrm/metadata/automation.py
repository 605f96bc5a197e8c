"""Automation rule metadata: a trigger, a condition and ordered actions.

A rule (`/api/v1/metadata/automation-rules`, carried in packs) watches one object:

- record triggers: `created`, `updated` (an owner transfer too), `saved` (either),
  `deleted`, `restored` (from the recycle bin), `transferred` (a new owner),
  `field_changed` (any of `fields`), `stage_entered` (the stage rule's field reaching
  `stage`);
- `time`: `offset_minutes` before (negative) or after the date or datetime `date_field`,
  or after the save itself when no field is named; set when a record is saved with the
  condition true, moved when the field changes, cancelled when the condition stops
  holding, and checked again when it falls due;
- `schedule`: a cron expression in a time zone; the actions run on every record whose
  condition holds at that time (at most `limit`).

The condition is an expression (context "validation": `ISNEW()`, `ISCHANGED(field)`,
`PRIORVALUE(field)` are there for record triggers; time and schedule conditions are
filters, checked again when due or run in the database, so they have none of them). Actions run in order, in one
transaction, through the write path as the rule's `run_as` user.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from metacrm.metadata.assignment import AssignTarget
from metacrm.metadata.base import ApiName, Expression, Label, Strict
from metacrm.metadata.messages import Recipient
from metacrm.metadata.process import StageValue

TriggerKind = Literal[
    "created",
    "updated",
    "saved",
    "deleted",
    "restored",
    "transferred",
    "field_changed",
    "stage_entered",
    "time",
    "schedule",
]
#: Ten years either side, in minutes.
_OFFSET_LIMIT = 10 * 366 * 24 * 60


class Trigger(Strict):
    """When a rule is considered."""

    on: TriggerKind
    #: field_changed: the fields whose change triggers the rule.
    fields: list[ApiName] = []
    #: stage_entered: the stage (of the object's stage rule) entered.
    stage: StageValue | None = None
    #: time: the date or datetime field the time is measured from (none: the save).
    date_field: ApiName | None = None
    #: time: minutes after (positive) or before (negative) that moment.
    offset_minutes: Annotated[int, Field(ge=-_OFFSET_LIMIT, le=_OFFSET_LIMIT)] = 0
    #: schedule: a five-field cron expression ("0 9 * * 1-5": weekdays at nine).
    cron: Annotated[str, StringConstraints(min_length=9, max_length=100)] | None = None
    #: schedule: the time zone the cron expression is read in (default: UTC).
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    #: schedule: the most records one run acts on.
    limit: Annotated[int, Field(ge=1, le=10_000)] = 1000

    @model_validator(mode="after")
    def _needs(self) -> Trigger:
        if self.on == "field_changed" and not self.fields:
            raise ValueError("a field_changed trigger needs 'fields'")
        if self.on == "stage_entered" and self.stage is None:
            raise ValueError("a stage_entered trigger needs 'stage'")
        if self.on == "schedule" and self.cron is None:
            raise ValueError("a schedule trigger needs 'cron'")
        if self.on != "schedule" and (self.cron is not None or self.timezone is not None):
            raise ValueError("'cron' and 'timezone' belong to schedule triggers")
        if self.on != "time" and (self.date_field is not None or self.offset_minutes):
            raise ValueError("'date_field' and 'offset_minutes' belong to time triggers")
        return self


ActionKind = Literal["update", "create", "assign", "notify", "email", "webhook", "stage", "submit"]


class Action(Strict):
    """One step of a rule.

    - `update`: `set` fields of the record (field -> expression on the record);
    - `create`: a record of `object` with `set` (expressions on the triggering record),
      and `link`: the new record's lookup field that points back at the record;
    - `assign`: give the record the owner `assign_to` chooses;
    - `notify`: an in-app notification `title` (and `message`) to `to`;
    - `email`: the e-mail `template` to `to`;
    - `webhook`: a signed POST of the record to the webhook endpoint named `endpoint`;
    - `stage`: move the record to `stage` (gates apply);
    - `submit`: submit the record to the approval flow `flow`.

    Texts (`title`, `message`) may hold `{{ field }}` placeholders, filled from the record.
    """

    kind: ActionKind
    set: dict[ApiName, Expression] = {}
    object: ApiName | None = None
    link: ApiName | None = None
    assign_to: AssignTarget | None = None
    to: list[Recipient] = []
    title: Label | None = None
    message: Label | None = None
    template: ApiName | None = None
    endpoint: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    stage: StageValue | None = None
    flow: ApiName | None = None

    @model_validator(mode="after")
    def _needs(self) -> Action:
        needed: dict[str, tuple[str, ...]] = {
            "update": ("set",),
            "create": ("object",),
            "assign": ("assign_to",),
            "notify": ("to", "title"),
            "email": ("to", "template"),
            "webhook": ("endpoint",),
            "stage": ("stage",),
            "submit": ("flow",),
        }
        missing = [name for name in needed[self.kind] if not getattr(self, name)]
        if missing:
            raise ValueError(f"a {self.kind} action needs {', '.join(map(repr, missing))}")
        return self


class AutomationRule(Strict):
    """A trigger, a condition and the actions taken when both hold."""

    api_name: ApiName
    object: ApiName
    label: Label | None = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    active: bool = True
    trigger: Trigger
    #: An expression (context "validation"); none: always.
    condition: Expression | None = None
    actions: Annotated[list[Action], Field(min_length=1, max_length=20)]
    #: Whose name the actions' writes carry: a user's id or e-mail; none: the user whose
    #: write triggered the rule (for time and schedule triggers: the record's owner).
    #: Actions run with system rights (like stage and approval actions): validation,
    #: gates and audit apply, record and field permissions do not.
    run_as: Annotated[str, StringConstraints(min_length=1, max_length=320)] | None = None
    #: Lower runs first when several rules fire on one write.
    order: Annotated[int, Field(ge=0, le=10_000)] = 100
