"""Assignment metadata: queues of users, and ordered rules that give records an owner."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from metacrm.metadata.base import ApiName, Expression, Label, Strict

UserRef = Annotated[str, StringConstraints(min_length=1, max_length=320)]


class AssignTarget(Strict):
    """Whom a record goes to: a user, a queue's or a role's members (round-robin, or the
    one with the fewest open records), or the user held in a field of the record."""

    kind: Literal["user", "queue", "role", "field"]
    user: UserRef | None = None
    queue: ApiName | None = None
    role: ApiName | None = None
    field: ApiName | None = None
    method: Literal["round_robin", "load_balanced"] = "round_robin"
    #: Load balancing: which of a member's records count as open (default: every live one).
    open_condition: Expression | None = None

    @model_validator(mode="after")
    def _needs(self) -> AssignTarget:
        needed = {"user": "user", "queue": "queue", "role": "role", "field": "field"}
        if getattr(self, needed[self.kind]) is None:
            raise ValueError(f"an assignment to a {self.kind} needs {needed[self.kind]!r}")
        return self


class Queue(Strict):
    """A named group of users (ids or e-mails, in turn order) that records go to."""

    api_name: ApiName
    label: Label | None = None
    members: Annotated[list[UserRef], Field(min_length=1, max_length=1000)]


class AssignmentEntry(Strict):
    """One entry of a rule: the first entry whose condition holds assigns the record."""

    condition: Expression | None = None
    assign_to: AssignTarget


class AssignmentRule(Strict):
    """Ordered entries that give new records of `object` an owner: on create (when the
    write names none) and on demand. One rule per object may be active."""

    api_name: ApiName
    object: ApiName
    label: Label | None = None
    active: bool = True
    entries: Annotated[list[AssignmentEntry], Field(min_length=1, max_length=100)]
