"""Stage moves: a record sent to a stage of one of its rules, through the one write path."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError, NotFound, RecordInvalid
from metacrm.metadata.process import StageRule
from metacrm.runtime import writes
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.hooks import Intent


def rule_for(co: CompiledObject, name: str | None) -> StageRule:
    """The object's stage rule named `name`, or its only one."""
    rules = list(co.stage_rules)
    if name is not None:
        rules = [r for r in rules if r.api_name == name]
    if not rules:
        raise NotFound(f"{co.name} has no stage rule" + (f" named {name!r}" if name else ""))
    if len(rules) > 1:
        raise RecordInvalid(
            f"{co.name} has several stage rules; name one",
            [FieldError("rule", "required", "name the stage rule")],
        )
    return rules[0]


async def move(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    intent: Intent,
    *,
    to: str,
    fields: dict[str, Any] | None = None,
    rule: str | None = None,
    if_match: int | None = None,
) -> dict[str, Any]:
    """Move a record to stage `to` (with other field values; the reason travels in the
    intent), gates applied. Moving it to the stage it is in changes nothing."""
    stage_rule = rule_for(co, rule)
    data = dict(fields or {}) | {stage_rule.field: to}
    return await writes.update(conn, ct, co, record_id, data, intent, if_match=if_match)
