"""The actions of an automation rule, run in order through the one write path."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm import formula
from metacrm.errors import FieldError, NotFound, RecordInvalid
from metacrm.metadata.automation import Action
from metacrm.metadata.values import ValueProblem, coerce
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.hooks import Intent
from metacrm.runtime.process.expressions import checked
from metacrm.runtime.records import fetch
from metacrm.runtime.validation import load_paths


async def run_actions(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    actions: Sequence[Action],
    intent: Intent,
) -> list[dict[str, Any]]:
    """Run `actions` on the record in order, each seeing what the ones before it wrote;
    what each did, for the run history. A refused write raises (the caller's
    transaction then rolls every action back)."""
    done: list[dict[str, Any]] = []
    for index, action in enumerate(actions):
        record = await current(conn, co, record_id)
        try:
            outcome = await _run(conn, ct, co, record, action, intent)
        except RecordInvalid as invalid:
            # Name the action in the problem: the run history shows which one failed.
            raise RecordInvalid(
                f"action {index} ({action.kind}): {invalid.detail}",
                [
                    FieldError(f"actions/{index}/{e.field}", e.code, e.message)
                    for e in invalid.errors
                ],
            ) from None
        done.append({"kind": action.kind, **outcome})
    return done


async def current(
    conn: AsyncConnection, co: CompiledObject, record_id: uuid.UUID
) -> dict[str, Any]:
    """The record's stored values: live, else from the recycle bin (a deleted trigger)."""
    try:
        return await fetch(conn, co, record_id)
    except NotFound:
        return await fetch(conn, co, record_id, deleted=True)


async def _run(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record: dict[str, Any],
    action: Action,
    intent: Intent,
) -> dict[str, Any]:
    # writes -> automation.hook -> rules -> here: the write path is imported at use.
    from metacrm.runtime import writes
    from metacrm.runtime.process import runs, stages

    record_id: uuid.UUID = record["id"]
    if action.kind == "update":
        values = await set_values(conn, ct, co, co, action.set, record)
        await writes.update(conn, ct, co, record_id, values, intent)
        return {"fields": sorted(values)}
    if action.kind == "create":
        assert action.object is not None  # the document requires it
        target = ct.object(action.object)
        values = await set_values(conn, ct, co, target, action.set, record)
        if action.link is not None:
            values[action.link] = record_id
        created = await writes.create(conn, ct, target, values, intent)
        return {"object": target.name, "id": str(created["id"])}
    if action.kind == "assign":
        from metacrm.runtime.automation.assignment import choose_owner

        assert action.assign_to is not None
        owner = await choose_owner(conn, ct, co, record, action.assign_to)
        if owner is None or owner == record["owner_id"]:
            return {"owner_id": str(record["owner_id"]), "changed": False}
        await writes.transfer_owner(conn, ct, co, record_id, owner, intent)
        return {"owner_id": str(owner), "changed": True}
    if action.kind == "notify":
        from metacrm.runtime.automation.notify import notify

        assert action.title is not None
        sent = await notify(conn, ct, co, record, action.to, action.title, action.message)
        return {"notified": sent}
    if action.kind == "email":
        from metacrm.runtime.automation.notify import send_email

        assert action.template is not None
        queued = await send_email(conn, ct, co, record, action.to, action.template)
        return {"emails": queued}
    if action.kind == "webhook":
        from metacrm.runtime.automation.webhooks import call_endpoint

        assert action.endpoint is not None
        delivery = await call_endpoint(conn, ct, co, record, action.endpoint, "automation")
        return {"delivery": str(delivery)}
    if action.kind == "stage":
        assert action.stage is not None
        await stages.move(conn, ct, co, record_id, intent, to=action.stage)
        return {"stage": action.stage}
    assert action.kind == "submit" and action.flow is not None
    # Submitting needs edit access to the record; the rule acts with system rights.
    submitter = dataclasses.replace(intent.actor, is_admin=True)
    approval = await runs.submit(conn, ct, co, record_id, submitter, flow_name=action.flow)
    return {"approval": str(approval["id"])}


async def set_values(
    conn: AsyncConnection,
    ct: CompiledTenant,
    source: CompiledObject,
    target: CompiledObject,
    expressions: dict[str, str],
    record: dict[str, Any],
) -> dict[str, Any]:
    """The values a `set` gives fields of `target`, each an expression evaluated on
    `record` (of `source`) and converted to its field; RecordInvalid naming the field."""
    out: dict[str, Any] = {}
    for name, expression in expressions.items():
        expr = checked(ct, source, expression, "default")
        values = await load_paths(conn, ct, source, record, expr.paths)
        try:
            out[name] = coerce(target.fields[name], formula.evaluate(expr, values))
        except ValueProblem as problem:
            raise RecordInvalid(
                f"setting {target.name}.{name} gave no valid value",
                [FieldError(f"set/{name}", problem.code, problem.message)],
            ) from None
    return out
