"""A record's activity over HTTP: its comments, its timeline, and open work pointing at it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import JSONResponse

from metacrm.errors import FieldError, RecordInvalid
from metacrm.platform.api.common import path_id
from metacrm.platform.body import read_object
from metacrm.platform.state import IdentityDep, StateDep, object_or_404
from metacrm.runtime import comments, record_actions, related, timeline

router = APIRouter(prefix="/data", tags=["records"], include_in_schema=False)


@router.get("/{object_name}/{record_id}/comments")
async def list_comments(
    object_name: str, record_id: str, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    """The record's comments, newest first."""
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        return {"comments": await comments.list_comments(conn, ct, co, path_id(record_id), actor)}


@router.post("/{object_name}/{record_id}/comments", status_code=201)
async def add_comment(
    object_name: str, record_id: str, request: Request, state: StateDep, identity: IdentityDep
) -> JSONResponse:
    """Comment on a record you may read: `{"body": "..."}`."""
    body = await read_object(request, state.settings.max_body_bytes)
    unknown = sorted(set(body) - {"body"})
    if unknown:
        raise RecordInvalid(
            "the request has unknown properties",
            [FieldError(k[:64], "unknown-field", "not a parameter here") for k in unknown],
        )
    async with state.tenant(identity) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        comment = await comments.add_comment(
            conn, ct, co, path_id(record_id), body.get("body"), actor
        )
    return JSONResponse(comment, status_code=201)


@router.get("/{object_name}/{record_id}/timeline")
async def record_timeline(
    object_name: str,
    record_id: str,
    state: StateDep,
    identity: IdentityDep,
    children: Annotated[bool, Query()] = False,
    limit: Annotated[int, Query(ge=1, le=timeline.MAX_ENTRIES)] = 50,
) -> dict[str, Any]:
    """Field history, stage moves, approval events, stage tasks and comments, newest first;
    `children=true` adds those of the readable records that point at this one."""
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        entries = await timeline.timeline(
            conn, ct, co, path_id(record_id), actor, children=children, limit=limit
        )
    return {"entries": entries}


@router.get("/{object_name}/{record_id}/related-summary")
async def related_summary(
    object_name: str, record_id: str, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    """Open records pointing at this one, counted and summed per stage, per object."""
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        return {"summaries": await related.stage_summary(conn, ct, co, path_id(record_id), actor)}


@router.get("/{object_name}/{record_id}/actions")
async def allowed_actions(
    object_name: str, record_id: str, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    """What the caller may do to the record now: edit, delete, move_stage, transfer, share,
    submit (for approval), comment; and whether a locking approval holds it."""
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        return await record_actions.allowed_actions(conn, ct, co, path_id(record_id), actor)
