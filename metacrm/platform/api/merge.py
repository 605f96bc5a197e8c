"""Merging duplicate records over HTTP: merge (or its dry run), list, read and undo merges."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import JSONResponse

from metacrm.errors import FieldError, RecordInvalid
from metacrm.platform.api.common import path_id
from metacrm.platform.body import read_object
from metacrm.platform.state import IdentityDep, StateDep, object_or_404
from metacrm.runtime.data import merge
from metacrm.runtime.hooks import Intent, Origin

router = APIRouter(tags=["merge"])

_PARAMETERS = {"survivor", "merged", "values", "dry_run"}


def _uuid(value: Any, where: str, errors: list[FieldError]) -> uuid.UUID | None:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    errors.append(FieldError(where, "type", "a record id (UUID) is expected"))
    return None


def merge_request(
    body: dict[str, Any],
) -> tuple[uuid.UUID, list[uuid.UUID], dict[str, uuid.UUID], bool]:
    """survivor, merged ids, field choices and dry_run from a request body, or 422
    naming every bad part."""
    errors = [
        FieldError(k[:64], "unknown-field", "not a merge parameter")
        for k in sorted(set(body) - _PARAMETERS)
    ]
    survivor = _uuid(body.get("survivor"), "survivor", errors)
    raw_merged = body.get("merged")
    merged: list[uuid.UUID] = []
    if not isinstance(raw_merged, list):
        errors.append(FieldError("merged", "type", "merged must be a list of record ids"))
    elif len(raw_merged) > merge.MAX_MERGED:
        message = f"at most {merge.MAX_MERGED} records merge into one survivor"
        errors.append(FieldError("merged", "max-items", message))
    else:
        for i, value in enumerate(raw_merged):
            found = _uuid(value, f"merged.{i}", errors)
            if found is not None:
                merged.append(found)
    raw_values = body.get("values", {})
    values: dict[str, uuid.UUID] = {}
    if not isinstance(raw_values, dict):
        errors.append(FieldError("values", "type", "values maps field names to record ids"))
    else:
        for name, value in raw_values.items():
            found = _uuid(value, f"values.{name[:64]}", errors)
            if found is not None:
                values[name] = found
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        errors.append(FieldError("dry_run", "type", "dry_run must be true or false"))
    if errors:
        raise RecordInvalid("the merge is invalid", errors)
    assert survivor is not None
    return survivor, merged, values, bool(dry_run)


# Out of the generic schema like every /data route (openapi.py draws those per object).
@router.post("/data/{object_name}/merge", include_in_schema=False)
async def merge_records(
    object_name: str, request: Request, state: StateDep, identity: IdentityDep
) -> JSONResponse:
    """Merge `merged` (1 or 2 record ids) into `survivor`; `values` maps a field to the
    record whose value survives. 201 with the merge, or 200 with what a `dry_run` would do."""
    body = await read_object(request, state.settings.max_body_bytes)
    survivor, merged, values, dry_run = merge_request(body)
    async with state.tenant(identity) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        result = await merge.merge(
            conn,
            ct,
            co,
            survivor,
            merged,
            values,
            Intent(actor, origin=Origin.MERGE),
            dry_run=dry_run,
        )
    return JSONResponse(result.as_dict(), status_code=200 if dry_run else 201)


@router.get("/merges")
async def list_merges(
    state: StateDep,
    identity: IdentityDep,
    object: Annotated[str | None, Query(max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """Merges newest first, of one `object` or all, whose survivor the caller may read."""
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        if object is not None:
            object_or_404(ct, object)
        found = await merge.list_merges(conn, ct, actor, object_name=object, limit=limit)
    return {"merges": found}


@router.get("/merges/{merge_id}")
async def get_merge(merge_id: str, state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    """One merge: survivor, merged records' before-images, what moved, undone or not."""
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        return await merge.get_merge(conn, ct, path_id(merge_id, "merge"), actor)


@router.post("/merges/{merge_id}/undo")
async def undo_merge(merge_id: str, state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    """Undo a merge: the merged records back, every moved reference and row back, the
    survivor's values as before; 409 listing what changed since, when it cannot."""
    async with state.tenant(identity) as (conn, ct, actor):
        return await merge.undo_merge(
            conn, ct, path_id(merge_id, "merge"), Intent(actor, origin=Origin.MERGE)
        )
