"""Stage moves, stage history and tasks, the funnel, and approvals over HTTP."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import JSONResponse

from metacrm.errors import FieldError, NotFound, PermissionDenied, RecordInvalid
from metacrm.platform.api.common import if_match_version, path_id, record_response
from metacrm.platform.body import read_object
from metacrm.platform.state import IdentityDep, StateDep, object_or_404
from metacrm.runtime import analytics, records
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.hooks import Intent, Origin
from metacrm.runtime.permissions import object_permission, readable, record_filter
from metacrm.runtime.process import (
    assignments,
    delegation,
    escalation,
    history,
    runs,
    stages,
    submissions,
    tasks,
    warnings,
)
from metacrm.runtime.process import (
    inbox as approval_queries,
)

router = APIRouter(tags=["process"])


def _text(body: dict[str, Any], name: str, *, required: bool = False, limit: int = 2000) -> Any:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise RecordInvalid(
            f"{name} is invalid",
            [FieldError(name, "type", f"{name} must be a text of 1 to {limit} characters")],
        )
    return value


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise RecordInvalid(
            "the request has unknown properties",
            [FieldError(k[:64], "unknown-field", "not a parameter here") for k in unknown],
        )


def _when(body: dict[str, Any], name: str) -> dt.datetime:
    value = body.get(name)
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise RecordInvalid(
            f"{name} is invalid", [FieldError(name, "type", "use an ISO 8601 date-time")]
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


async def _visible(
    conn: AsyncConnection, ct: CompiledTenant, co: CompiledObject, record_id: Any, actor: Actor
) -> None:
    """404 unless the caller may see this very record (not only its object)."""
    await records.fetch(conn, co, record_id, access=record_filter(ct, actor, co, "read"))


def _readable(ct: CompiledTenant, actor: Actor, object_name: str) -> None:
    permission = object_permission(ct.model, actor, object_name)
    if not (permission.read or permission.view_all):
        raise PermissionDenied(f"you may not read {object_name} records")


# ------------------------------------------------------------------ stages


@router.post("/data/{object_name}/{record_id}/stage")
async def move_stage(
    object_name: str,
    record_id: str,
    request: Request,
    state: StateDep,
    identity: IdentityDep,
    if_match: Annotated[str | None, Header(max_length=100)] = None,
) -> Response:
    """Move a record to a stage: `{"to", "reason"?, "fields"?, "rule"?}`; gates apply."""
    body = await read_object(request, state.settings.max_body_bytes)
    _only(body, {"to", "reason", "fields", "rule"})
    to = _text(body, "to", required=True, limit=100)
    reason = _text(body, "reason")
    fields = body.get("fields") or {}
    if not isinstance(fields, dict):
        raise RecordInvalid("fields is invalid", [FieldError("fields", "type", "an object")])
    async with state.tenant(identity) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        record = await stages.move(
            conn,
            ct,
            co,
            path_id(record_id),
            Intent(actor, origin=Origin.STAGE, reason=reason),
            to=to,
            fields=fields,
            rule=_text(body, "rule", limit=63),
            if_match=if_match_version(if_match),
        )
    return record_response(record)


@router.get("/data/{object_name}/{record_id}/stage-history")
async def stage_history(
    object_name: str, record_id: str, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    """Every stage move of the record, and the time it spent in each stage."""
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        await _visible(conn, ct, co, path_id(record_id), actor)
        return await history.history(conn, co, path_id(record_id))


@router.get("/data/{object_name}/{record_id}/stage-tasks")
async def stage_tasks(
    object_name: str, record_id: str, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        await _visible(conn, ct, co, path_id(record_id), actor)
        return {"tasks": await tasks.list_tasks(conn, co, path_id(record_id))}


@router.post("/stage-tasks/{task_id}/done")
async def complete_stage_task(task_id: str, state: StateDep, identity: IdentityDep) -> Any:
    """Complete a stage task: its assignee (or role), who may also edit the record."""
    async with state.tenant(identity) as (conn, ct, actor):
        return await tasks.complete_task(conn, ct, actor, path_id(task_id, "stage task"))


@router.get("/analytics/funnel/{rule_name}")
async def funnel(
    rule_name: str,
    state: StateDep,
    identity: IdentityDep,
    amount: Annotated[str | None, Query(max_length=63)] = None,
) -> dict[str, Any]:
    """Counts and amounts per stage, conversion between stages, average days in stage."""
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        rule = next((r for r in ct.model.stage_rules if r.api_name == rule_name), None)
        if rule is None:
            raise NotFound(f"no stage rule named {rule_name[:64]!r}")
        _readable(ct, actor, rule.object)
        co = ct.object(rule.object)
        shown = set(readable(ct, actor, co))
        if rule.field not in shown or (amount is not None and amount not in shown):
            raise NotFound(f"no stage rule named {rule_name[:64]!r}")
        access = record_filter(ct, actor, co, "read")
        return await analytics.funnel(conn, ct, rule, amount, access)


@router.get("/process/warnings")
async def process_warnings(state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    """Warnings about the stage rules (stages no allowed move reaches)."""
    async with state.tenant(identity, writes=False) as (_conn, ct, _actor):
        return {"warnings": [w.as_dict() for w in warnings.warnings(ct.model)]}


# ------------------------------------------------------------------ approvals


@router.post("/data/{object_name}/{record_id}/approvals", status_code=201)
async def submit(
    object_name: str, record_id: str, request: Request, state: StateDep, identity: IdentityDep
) -> JSONResponse:
    """Submit the record for approval: `{"flow"?, "comment"?}`; needs edit access to it."""
    body = await read_object(request, state.settings.max_body_bytes)
    _only(body, {"flow", "comment"})
    async with state.tenant(identity) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        run = await runs.submit(
            conn,
            ct,
            co,
            path_id(record_id),
            Intent(actor),
            flow_name=_text(body, "flow", limit=63),
            comment=_text(body, "comment"),
        )
    return JSONResponse(
        run, status_code=201, headers={"Location": f"/api/v1/approvals/{run['id']}"}
    )


@router.get("/data/{object_name}/{record_id}/approvals")
async def record_approvals(
    object_name: str, record_id: str, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    """Every approval run of the record, with its tasks and events."""
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        await _visible(conn, ct, co, path_id(record_id), actor)
        return {"approvals": await approval_queries.for_record(conn, co, path_id(record_id))}


@router.get("/approvals")
async def inbox(
    state: StateDep,
    identity: IdentityDep,
    assigned_to: Annotated[str, Query(max_length=64)] = "me",
    status: Annotated[str, Query(pattern="^(pending|approved|rejected|closed)$")] = "pending",
) -> dict[str, Any]:
    """The approval tasks of `assigned_to` (`me`, or a user id for administrators)."""
    async with state.tenant(identity, writes=False) as (conn, _ct, actor):
        user_id = actor.user_id
        if assigned_to != "me":
            user_id = path_id(assigned_to, "user")
            if user_id != actor.user_id and not actor.is_admin:
                raise PermissionDenied("only administrators may read another user's approvals")
        return {"tasks": await approval_queries.inbox(conn, user_id, status=status)}


@router.get("/approvals/delegations")
async def list_delegations(state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    async with state.tenant(identity, writes=False) as (conn, _ct, actor):
        return {"delegations": await delegation.list_delegations(conn, actor)}


@router.post("/approvals/delegations", status_code=201)
async def add_delegation(request: Request, state: StateDep, identity: IdentityDep) -> Any:
    """`{"delegate", "starts_at", "ends_at", "user"?}`: approvals go to the delegate meanwhile."""
    body = await read_object(request, state.settings.max_body_bytes)
    _only(body, {"delegate", "starts_at", "ends_at", "user"})
    async with state.tenant(identity) as (conn, _ct, actor):
        return await delegation.add_delegation(
            conn,
            actor,
            delegate=_text(body, "delegate", required=True, limit=320),
            starts_at=_when(body, "starts_at"),
            ends_at=_when(body, "ends_at"),
            user=_text(body, "user", limit=320),
        )


@router.delete("/approvals/delegations/{delegation_id}", status_code=204)
async def remove_delegation(delegation_id: str, state: StateDep, identity: IdentityDep) -> Response:
    async with state.tenant(identity) as (conn, _ct, actor):
        await delegation.remove_delegation(conn, actor, path_id(delegation_id, "delegation"))
    return Response(status_code=204)


@router.post("/approvals/run-due")
async def run_due(state: StateDep, identity: IdentityDep) -> dict[str, int]:
    """Send due reminders and escalate overdue tasks (for a scheduler; administrators)."""
    async with state.tenant(identity) as (conn, ct, actor):
        if not actor.is_admin:
            raise PermissionDenied("only administrators may run due approvals")
        return await escalation.process_due(conn, ct)


@router.get("/approvals/submitted")
async def submitted(
    state: StateDep,
    identity: IdentityDep,
    status: Annotated[str, Query(pattern="^(pending|approved|rejected|recalled)$")] = "pending",
) -> dict[str, Any]:
    """The caller's own submissions (pending by default), each with the tasks it waits on."""
    async with state.tenant(identity, writes=False) as (conn, _ct, actor):
        return {"approvals": await submissions.submissions(conn, actor.user_id, status=status)}


@router.get("/approvals/{approval_id}")
async def get_approval(approval_id: str, state: StateDep, identity: IdentityDep) -> Any:
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        return await _run_for(conn, ct, actor, approval_id)


async def _run_for(
    conn: AsyncConnection, ct: CompiledTenant, actor: Actor, approval_id: str
) -> dict[str, Any]:
    """The run, if the caller takes part in it or may see its record; else 404, so that
    nobody learns which approval ids exist."""
    try:
        run = await approval_queries.get(conn, path_id(approval_id, "approval"))
        involved = actor.is_admin or str(actor.user_id) == run["submitted_by"]
        involved = involved or any(t["assignee_id"] == str(actor.user_id) for t in run["tasks"])
        if not involved:
            # Reading the object is not enough: the caller must see the very record.
            co = object_or_404(ct, run["object"])
            await _visible(conn, ct, co, path_id(run["record_id"]), actor)
    except (NotFound, PermissionDenied):
        raise NotFound("no approval has this id") from None
    return run


async def _decide(
    approval_id: str, request: Request, state: StateDep, identity: IdentityDep, decision: str
) -> Any:
    body = await read_object(request, state.settings.max_body_bytes)
    _only(body, {"comment", "step"})
    async with state.tenant(identity) as (conn, ct, actor):
        await _run_for(conn, ct, actor, approval_id)
        return await runs.decide(
            conn,
            ct,
            path_id(approval_id, "approval"),
            actor,
            decision,
            comment=_text(body, "comment"),
            step=_text(body, "step", limit=63),
        )


@router.post("/approvals/{approval_id}/approve")
async def approve(
    approval_id: str, request: Request, state: StateDep, identity: IdentityDep
) -> Any:
    """Approve your pending work on the run: `{"comment"?, "step"?}`."""
    return await _decide(approval_id, request, state, identity, "approved")


@router.post("/approvals/{approval_id}/reject")
async def reject(approval_id: str, request: Request, state: StateDep, identity: IdentityDep) -> Any:
    """Reject: the whole run is rejected (`{"comment"?, "step"?}`)."""
    return await _decide(approval_id, request, state, identity, "rejected")


@router.post("/approvals/{approval_id}/recall")
async def recall(approval_id: str, request: Request, state: StateDep, identity: IdentityDep) -> Any:
    body = await read_object(request, state.settings.max_body_bytes)
    _only(body, {"comment"})
    async with state.tenant(identity) as (conn, ct, actor):
        await _run_for(conn, ct, actor, approval_id)
        return await runs.recall(
            conn, ct, path_id(approval_id, "approval"), actor, comment=_text(body, "comment")
        )


@router.post("/approvals/{approval_id}/reassign")
async def reassign(
    approval_id: str, request: Request, state: StateDep, identity: IdentityDep
) -> Any:
    """Hand your pending task (or, as an administrator, `task_id`) to `to`."""
    body = await read_object(request, state.settings.max_body_bytes)
    _only(body, {"to", "task_id", "comment"})
    task_id = _text(body, "task_id", limit=64)
    async with state.tenant(identity) as (conn, ct, actor):
        await _run_for(conn, ct, actor, approval_id)
        return await assignments.reassign(
            conn,
            path_id(approval_id, "approval"),
            actor,
            to=_text(body, "to", required=True, limit=320),
            task_id=path_id(task_id, "task") if task_id else None,
            comment=_text(body, "comment"),
        )


@router.post("/approvals/{approval_id}/approvers")
async def add_approver(
    approval_id: str, request: Request, state: StateDep, identity: IdentityDep
) -> Any:
    """Add a co-approver to a step of the current phase: `{"user", "step"?, "comment"?}`."""
    body = await read_object(request, state.settings.max_body_bytes)
    _only(body, {"user", "step", "comment"})
    async with state.tenant(identity) as (conn, ct, actor):
        await _run_for(conn, ct, actor, approval_id)
        return await assignments.add_approver(
            conn,
            path_id(approval_id, "approval"),
            actor,
            user=_text(body, "user", required=True, limit=320),
            step=_text(body, "step", limit=63),
            comment=_text(body, "comment"),
        )
