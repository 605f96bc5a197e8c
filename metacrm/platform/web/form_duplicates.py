"""The record form's "possible duplicates" panel: the readable records a draft duplicates.

Drawn when a save is refused by a duplicate rule (a `warn` rule's refusal offers "Save
anyway", a `block` rule's does not) and, before saving, as a hint once the user leaves a
field a rule compares. The records come from `find_duplicates`, as for the
`/api/v1/duplicates/{object}/check` API; only those the user may read are named.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError, MetacrmError, RecordInvalid
from metacrm.metadata.duplicates import DuplicateRule
from metacrm.metadata.model import label_text
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.data.duplicates import active_rules, readable_matches

#: The field error codes of duplicate rules' refusals (a `block` rule's, a `warn` rule's).
BLOCKED, WARNED = "duplicate", "duplicate-warning"


@dataclass(frozen=True)
class DuplicateRow:
    """One matching record as the panel lists it."""

    id: str
    name: str
    #: The rule's message (or its label) in the user's language.
    message: str
    #: The similarity in percent.
    score: int


@dataclass(frozen=True)
class DuplicatePanel:
    """What the panel shows: the readable matches, whether others exist, and the save's fate."""

    rows: list[DuplicateRow]
    #: Some matching records are not readable by the user (they are not named).
    unseen: bool
    #: A save was refused (False: a hint before saving).
    refused: bool
    #: A `block` rule refused it: saving anyway is not offered.
    blocked: bool


def split_refusals(error: MetacrmError) -> tuple[list[FieldError], MetacrmError | None]:
    """A refusal's duplicate-rule errors, and the error without them (None when nothing
    else was wrong)."""
    found = [e for e in error.errors if e.code in (BLOCKED, WARNED)]
    if not found:
        return [], error
    rest = [e for e in error.errors if e.code not in (BLOCKED, WARNED)]
    return found, RecordInvalid(error.detail, rest) if rest else None


def watched_fields(ct: CompiledTenant, co: CompiledObject) -> set[str]:
    """The fields the object's active duplicate rules compare."""
    return {c.field for rule in active_rules(ct, co.name) for c in rule.criteria}


def _refusing(
    ct: CompiledTenant, co: CompiledObject, refusals: Sequence[FieldError]
) -> list[DuplicateRule]:
    """The rules behind the refusals: a refusal names its rule's first field and action."""
    named = {(e.field, e.code) for e in refusals}
    return [
        rule
        for rule in active_rules(ct, co.name)
        if (rule.criteria[0].field, BLOCKED if rule.action == "block" else WARNED) in named
    ]


async def duplicate_panel(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    actor: Actor,
    values: Mapping[str, Any],
    *,
    record_id: uuid.UUID | None,
    refusals: Sequence[FieldError] = (),
) -> DuplicatePanel | None:
    """The panel for a draft's `values` (the record being edited, `record_id`, aside):
    after a refusal, the records the refusing rules match; before saving, those any
    active rule matches. None when there is nothing to show."""
    rules = _refusing(ct, co, refusals) if refusals else list(active_rules(ct, co.name))
    matches, unseen = await readable_matches(
        conn, ct, co, actor, values, exclude_id=record_id, rules=rules
    )
    if not matches and not unseen and not refusals:
        return None
    by_name = {rule.api_name: rule for rule in rules}
    language = actor.language
    rows: list[DuplicateRow] = []
    listed: set[uuid.UUID] = set()
    for match in matches:  # best first: a record matching several rules is listed once
        if match.record_id in listed:
            continue
        listed.add(match.record_id)
        rule = by_name[match.rule]
        rows.append(
            DuplicateRow(
                id=str(match.record_id),
                name=match.name or str(match.record_id)[:8],
                message=label_text(rule.message or rule.label, language, fallback=rule.api_name),
                score=round(match.score * 100),
            )
        )
    blocked = any(e.code == BLOCKED for e in refusals)
    unseen = unseen or (bool(refusals) and not matches)
    if not rows and not unseen:
        return None
    return DuplicatePanel(rows, unseen, refused=bool(refusals), blocked=blocked)
