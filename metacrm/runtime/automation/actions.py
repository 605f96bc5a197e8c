"""The actions of automation rules (and on-demand assignment), run through the one write path."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm import formula
from metacrm.errors import Conflict, FieldError, NotFound, RecordInvalid
from metacrm.metadata.automation import Action
from metacrm.metadata.values import ValueProblem, coerce
from metacrm.runtime import writes
from metacrm.runtime.automation import assignment, notify, webhooks
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.hooks import Intent
from metacrm.runtime.process import runs, stages
from metacrm.runtime.process.expressions import checked
from metacrm.runtime.records import editable, fetch
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
        assert action.assign_to is not None
        owner = await assignment.choose_owner(conn, ct, co, record, action.assign_to)
        if owner is None or owner == record["owner_id"]:
            return {"owner_id": str(record["owner_id"]), "changed": False}
        await writes.transfer_owner(conn, ct, co, record_id, owner, intent)
        return {"owner_id": str(owner), "changed": True}
    if action.kind == "notify":
        assert action.title is not None
        sent = await notify.notify(conn, ct, co, record, action.to, action.title, action.message)
        return {"notified": sent}
    if action.kind == "email":
        assert action.template is not None
        queued = await notify.send_email(conn, ct, co, record, action.to, action.template)
        return {"emails": queued}
    if action.kind == "webhook":
        assert action.endpoint is not None
        delivery = await webhooks.call_endpoint(conn, ct, co, record, action.endpoint, "automation")
        return {"delivery": str(delivery)}
    if action.kind == "stage":
        assert action.stage is not None
        await stages.move(conn, ct, co, record_id, intent, to=action.stage)
        return {"stage": action.stage}
    assert action.kind == "submit" and action.flow is not None
    # The rule's system intent: no edit access needed, and its chain depth carries on.
    approval = await runs.submit(conn, ct, co, record_id, intent, flow_name=action.flow)
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


async def reassign(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    intent: Intent,
) -> dict[str, Any]:
    """Run the object's active assignment rule on an existing record now; a new owner is
    given through the write path's owner transfer under `intent` (its rights apply).
    Returns the record's id, owner, whether it changed, and the entry that chose."""
    rule = assignment.active_rule(ct, co.name)
    if rule is None:
        raise Conflict(f"{co.name} has no active assignment rule")
    started = time.perf_counter()
    current, _pending = await editable(conn, ct, co, record_id, intent.actor, system=intent.system)
    owner, entry = await assignment.run_rule(conn, ct, co, rule, current)
    changed = owner is not None and owner != current["owner_id"]
    if changed:
        reason = intent.reason or f"assignment rule {rule.api_name}"
        await writes.transfer_owner(
            conn, ct, co, record_id, owner, dataclasses.replace(intent, reason=reason)
        )
    await assignment.record_assignment(
        conn, rule, "on_demand", co.name, record_id, owner, entry, intent.depth, started
    )
    return {
        "id": str(record_id),
        "owner_id": str(owner if changed else current["owner_id"]),
        "changed": changed,
        "entry": entry,
    }
