"""The field rules' state of a draft record: which fields are hidden, required, read-only,
and which picklist values it may take (field rules and stage rules' moves)."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm import formula
from metacrm.errors import RecordInvalid
from metacrm.metadata.process import StageRule
from metacrm.metadata.values import ValueProblem, coerce
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.permissions import field_access, record_filter, require_object
from metacrm.runtime.records import fetch
from metacrm.runtime.validation import apply_defaults, load_paths


@dataclass
class FormState:
    """What the field rules make of a draft, for the fields its writer may see."""

    hidden: list[str] = field(default_factory=list)
    required: list[str] = field(default_factory=list)
    read_only: list[str] = field(default_factory=list)
    #: Picklist fields restricted to some of their values: field -> the values allowed.
    allowed: dict[str, list[str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "hidden": self.hidden,
            "required": self.required,
            "read_only": self.read_only,
            "allowed_values": self.allowed,
        }


def draft_values(
    ct: CompiledTenant, co: CompiledObject, draft: dict[str, Any], actor: Actor
) -> dict[str, Any]:
    """The stored values of the draft's fields the actor may edit; values that do not
    convert (a half-typed number) are left out, as if not given yet."""
    values: dict[str, Any] = {}
    for name, raw in draft.items():
        definition = co.writable.get(name)
        if definition is None or field_access(ct.model, actor, co.name, name) != "edit":
            continue
        try:
            values[name] = coerce(definition, raw)
        except ValueProblem:
            continue
    return values


async def draft_state(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    draft: dict[str, Any],
    actor: Actor,
    *,
    record_id: uuid.UUID | None = None,
) -> FormState:
    """The field rules applying to `draft` (a new record, or a change of `record_id`),
    evaluated as the write path evaluates them (the same formulas, lookup paths loaded)."""
    values = draft_values(ct, co, draft, actor)
    before: dict[str, Any] | None = None
    if record_id is None:
        require_object(ct.model, actor, co.name, "create")
        after = dict(values)
        with contextlib.suppress(RecordInvalid):  # a bad default is reported on save
            apply_defaults(co, after, skip=set(draft))
    else:
        access = record_filter(ct, actor, co, "read")
        before = await fetch(conn, co, record_id, access=access)
        after = before | values
    applying = []
    for rule, checked in co.field_rules:
        known = await load_paths(conn, ct, co, after, checked.paths)
        prior = None
        if before is not None:
            prior = await load_paths(conn, ct, co, before, checked.paths)
        if formula.evaluate(checked, known, prior=prior, is_new=before is None) is True:
            applying.append(rule)
    visible = {
        name for name in co.fields if field_access(ct.model, actor, co.name, name) != "hidden"
    }
    state = FormState()
    hidden = {n for rule in applying if rule.effect == "hidden" for n in rule.fields}
    for rule in applying:
        for name in rule.fields:
            if name not in visible or (name in hidden and rule.effect != "hidden"):
                continue
            if rule.effect == "hidden" and name not in state.hidden:
                state.hidden.append(name)
            elif rule.effect == "required" and name not in state.required:
                state.required.append(name)
            elif rule.effect == "read_only" and name not in state.read_only:
                state.read_only.append(name)
            elif rule.effect == "allowed_values":
                allowed = [str(v) for v in rule.values or []]
                previous = state.allowed.get(name)
                state.allowed[name] = (
                    allowed if previous is None else [v for v in previous if v in allowed]
                )
    for stage_rule in co.stage_rules:
        if stage_rule.field not in visible:
            continue
        moves = stage_moves(stage_rule, None if before is None else before.get(stage_rule.field))
        if moves is not None:
            previous = state.allowed.get(stage_rule.field)
            state.allowed[stage_rule.field] = (
                moves if previous is None else [v for v in previous if v in moves]
            )
    return state


def stage_moves(rule: StageRule, current: Any) -> list[str] | None:
    """The stages a record in `current` (None: a new or unstaged record) may be given, as
    the stage gates allow them: staying, moving on, and back where the stage allows it;
    None when `current` is not a stage of the rule (any stage may follow)."""
    if current is None:
        return rule.initial_stages()
    index = rule.index(str(current))
    if index < 0:
        return None
    moves = [str(current), *rule.allowed_next(str(current))]
    if rule.stages[index].allow_back:
        moves += [s.value for s in rule.stages[:index]]
    return list(dict.fromkeys(moves))
