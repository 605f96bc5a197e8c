"""What a user does from a record page: move its stage, finish a task, submit it for approval,
delete, transfer, share, comment; a refusal redraws the page with the server's messages."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from metacrm.errors import MetacrmError, NotFound
from metacrm.platform.api.common import path_id
from metacrm.platform.auth import Identity
from metacrm.platform.state import AppState, StateDep
from metacrm.platform.web.records import draw, object_of
from metacrm.platform.web.session import WebIdentityDep
from metacrm.platform.web.workspace import Workspace, workspace
from metacrm.runtime import comments, records, sharing, writes
from metacrm.runtime.compiler import CompiledObject
from metacrm.runtime.hooks import Intent, Origin
from metacrm.runtime.process import runs, stages, tasks

router = APIRouter(prefix="/app", include_in_schema=False)


Action = Callable[[Workspace, CompiledObject, uuid.UUID], Awaitable[str]]


def _messages(error: MetacrmError) -> list[str]:
    found = [e.message for e in error.errors]
    return found or [error.detail]


async def _act(
    request: Request,
    state: AppState,
    identity: Identity,
    object_name: str,
    record_id: str,
    action: Action,
) -> Response:
    """Run `action` in a write transaction, then go where it says; a refusal draws the
    record page again with the server's messages (a record gone or hidden: the 404 page)."""
    try:
        async with workspace(request, state, identity, writes=True) as ws:
            co = object_of(ws, object_name)
            target = await action(ws, co, path_id(record_id))
    except NotFound:
        raise
    except MetacrmError as error:
        if error.status not in (400, 403, 409, 412, 422):
            raise
        async with workspace(request, state, identity) as ws:
            return await draw(
                ws, object_name, record_id, problems=_messages(error), status=error.status
            )
    return RedirectResponse(target, status_code=303)


def _back(object_name: str, record_id: uuid.UUID, done: str) -> str:
    return f"/app/o/{object_name}/{record_id}?done={done}"


TextForm = Annotated[str, Form(max_length=4000)]


@router.post("/o/{object_name}/{record_id}/path")
async def move_stage(
    object_name: str,
    record_id: str,
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    to: Annotated[str, Form(max_length=100)] = "",
    reason: TextForm = "",
) -> Response:
    """Move the record to stage `to` from the path bar; every failing gate is shown."""

    async def run(ws: Workspace, co: CompiledObject, rid: uuid.UUID) -> str:
        intent = Intent(ws.actor, origin=Origin.STAGE, reason=reason.strip() or None)
        await stages.move(ws.conn, ws.ct, co, rid, intent, to=to)
        return _back(co.name, rid, "moved")

    return await _act(request, state, identity, object_name, record_id, run)


@router.post("/o/{object_name}/{record_id}/tasks/{task_id}/done")
async def complete_task(
    object_name: str,
    record_id: str,
    task_id: str,
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
) -> Response:
    """Mark a stage task of the record done (its assignee, who may also edit the record)."""

    async def run(ws: Workspace, co: CompiledObject, rid: uuid.UUID) -> str:
        await tasks.complete_task(ws.conn, ws.ct, ws.actor, path_id(task_id, "stage task"))
        return _back(co.name, rid, "task")

    return await _act(request, state, identity, object_name, record_id, run)


@router.post("/o/{object_name}/{record_id}/submit")
async def submit_for_approval(
    object_name: str,
    record_id: str,
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    comment: TextForm = "",
) -> Response:
    """Submit the record for approval, with a comment (as POST .../approvals does)."""

    async def run(ws: Workspace, co: CompiledObject, rid: uuid.UUID) -> str:
        text_ = comment.strip()[:2000] or None
        await runs.submit(ws.conn, ws.ct, co, rid, Intent(ws.actor), comment=text_)
        return _back(co.name, rid, "submitted")

    return await _act(request, state, identity, object_name, record_id, run)


@router.post("/o/{object_name}/{record_id}/delete")
async def delete_record(
    object_name: str,
    record_id: str,
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
) -> Response:
    """Delete the record (to the recycle bin) and go back to its list."""

    async def run(ws: Workspace, co: CompiledObject, rid: uuid.UUID) -> str:
        await writes.delete(ws.conn, ws.ct, co, rid, Intent(ws.actor))
        return f"/app/o/{co.name}"

    return await _act(request, state, identity, object_name, record_id, run)


@router.post("/o/{object_name}/{record_id}/transfer")
async def transfer_owner(
    object_name: str,
    record_id: str,
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    owner_id: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Give the record to another active user."""

    async def run(ws: Workspace, co: CompiledObject, rid: uuid.UUID) -> str:
        await writes.transfer_owner(ws.conn, ws.ct, co, rid, owner_id, Intent(ws.actor))
        try:
            await records.get(ws.conn, ws.ct, co, rid, ws.actor)
        except NotFound:  # given away for good: the record is no longer the user's to see
            return f"/app/o/{co.name}"
        return _back(co.name, rid, "transferred")

    return await _act(request, state, identity, object_name, record_id, run)


@router.post("/o/{object_name}/{record_id}/share")
async def share_record(
    object_name: str,
    record_id: str,
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    with_: Annotated[str, Form(alias="with", max_length=100)] = "",
    access: Annotated[str, Form(max_length=8)] = "read",
) -> Response:
    """Share the record with a user (`user:<id>`) or a role (`role:<name>`), read or edit."""

    async def run(ws: Workspace, co: CompiledObject, rid: uuid.UUID) -> str:
        kind, _, value = with_.partition(":")
        body: dict[str, Any] = {"access": access}
        body["role" if kind == "role" else "user_id"] = value
        await sharing.add_share(ws.conn, ws.ct, co, rid, body, ws.actor)
        return _back(co.name, rid, "shared")

    return await _act(request, state, identity, object_name, record_id, run)


@router.post("/o/{object_name}/{record_id}/comments")
async def add_comment(
    object_name: str,
    record_id: str,
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    body: Annotated[str, Form(max_length=8000)] = "",
) -> Response:
    """Comment on the record; the timeline shows it at once."""

    async def run(ws: Workspace, co: CompiledObject, rid: uuid.UUID) -> str:
        await comments.add_comment(ws.conn, ws.ct, co, rid, body, ws.actor)
        return _back(co.name, rid, "commented") + "#timeline"

    return await _act(request, state, identity, object_name, record_id, run)
