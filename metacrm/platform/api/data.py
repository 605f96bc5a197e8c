"""Generated record endpoints: /api/v1/data/{object}[/{id}], batch, recycle bin, restore."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import Conflict, FieldError, RecordInvalid
from metacrm.platform.api.common import if_match_version, path_id, record_response
from metacrm.platform.auth import Identity
from metacrm.platform.body import read_object
from metacrm.platform.state import IdentityDep, StateDep, object_or_404
from metacrm.runtime import bulk, records, sharing, writes
from metacrm.runtime.hooks import Intent
from metacrm.runtime.listing import ListQuery, list_records
from metacrm.runtime.tenant_tables import idempotency_keys

# The generic routes stay out of the schema: each object gets its own paths (openapi.py).
router = APIRouter(prefix="/data", tags=["records"], include_in_schema=False)

TextParam = Annotated[str | None, Query(max_length=4000)]
#: Save although a duplicate rule of action `warn` matches (`block` rules still refuse).
AllowDuplicates = Annotated[bool, Query()]


@dataclass
class ListParams:
    """The query parameters every record list takes."""

    where: TextParam = None
    order_by: Annotated[str | None, Query(max_length=500)] = None
    fields: TextParam = None
    limit: Annotated[int | None, Query()] = None
    cursor: Annotated[str | None, Query(max_length=4000)] = None
    count: Annotated[bool, Query()] = False


ListParamsDep = Annotated[ListParams, Depends()]


async def _list(
    state: StateDep, identity: IdentityDep, object_name: str, params: ListParams, *, deleted: bool
) -> dict[str, Any]:
    settings = state.settings
    limit = settings.list_limit_default if params.limit is None else params.limit
    if not 1 <= limit <= settings.list_limit_max:
        message = f"limit must be between 1 and {settings.list_limit_max}"
        raise RecordInvalid("limit out of range", [FieldError("limit", "range", message)])
    query = ListQuery(
        where=params.where,
        order_by=params.order_by,
        fields=params.fields,
        limit=limit,
        cursor=params.cursor,
        deleted=deleted,
        count=params.count,
    )
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        return await list_records(
            conn, ct, co, query, actor=actor, cursor_key=state.signing_key.encode()
        )


@router.get("/{object_name}")
async def list_object(
    object_name: str, state: StateDep, identity: IdentityDep, params: ListParamsDep
) -> dict[str, Any]:
    """List live records: `where`, `order_by`, `fields`, `limit`, `cursor`, `count`."""
    return await _list(state, identity, object_name, params, deleted=False)


@router.get("/{object_name}/recycle-bin")
async def list_deleted(
    object_name: str, state: StateDep, identity: IdentityDep, params: ListParamsDep
) -> dict[str, Any]:
    """List deleted records that can still be restored."""
    return await _list(state, identity, object_name, params, deleted=True)


@router.post("/{object_name}", status_code=201)
async def create_record(
    object_name: str,
    request: Request,
    state: StateDep,
    identity: IdentityDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
    allow_duplicates: AllowDuplicates = False,
) -> Response:
    """Create a record; with `Idempotency-Key`, a retry returns the first response."""
    raw_body = await read_object(request, state.settings.max_body_bytes)
    fingerprint = hashlib.sha256(
        f"POST {request.url.path} {sorted(raw_body.items())!r}".encode()
    ).hexdigest()
    caller = _caller_id(identity)
    try:
        async with state.tenant(identity) as (conn, ct, actor):
            co = object_or_404(ct, object_name)
            if idempotency_key:
                replay = await _replay(conn, caller, idempotency_key, fingerprint)
                if replay is not None:
                    return replay
            intent = Intent(actor, allow_duplicates=allow_duplicates)
            record = await writes.create(conn, ct, co, raw_body, intent)
            location = f"/api/v1/data/{object_name}/{record['id']}"
            if idempotency_key:
                await conn.execute(
                    idempotency_keys.insert().values(
                        caller_id=caller,
                        key=idempotency_key,
                        request_hash=fingerprint,
                        status=201,
                        body=record,
                        location=location,
                        created_at=records.utcnow(),
                    )
                )
    except IntegrityError:
        # A concurrent request with the same key committed first: answer with its response.
        replay = None
        if idempotency_key:
            async with state.tenant(identity, writes=False) as (conn, _ct, _actor):
                replay = await _replay(conn, caller, idempotency_key, fingerprint)
        if replay is None:
            raise Conflict("a concurrent change conflicted with this one; send it again") from None
        return replay
    return record_response(record, 201, {"Location": location})


def _caller_id(identity: Identity) -> uuid.UUID:
    """Whose Idempotency-Keys a request shares: its API key's, else its user's."""
    caller = identity.api_key_id or identity.user_id
    assert caller is not None  # every identity is a user or an API key
    return caller


async def _replay(
    conn: AsyncConnection, caller: uuid.UUID, key: str, fingerprint: str
) -> Response | None:
    t = idempotency_keys
    row = (
        await conn.execute(
            sa.select(t.c.request_hash, t.c.status, t.c.body, t.c.location).where(
                t.c.caller_id == caller, t.c.key == key
            )
        )
    ).first()
    if row is None:
        return None
    if row.request_hash != fingerprint:
        raise RecordInvalid(
            "the Idempotency-Key was used for a different request",
            [
                FieldError(
                    "Idempotency-Key", "idempotency-key-reused", "use a new key for a new request"
                )
            ],
        )
    headers = {"Idempotent-Replayed": "true", "Location": row.location or ""}
    return record_response(row.body, row.status, headers)


@router.post("/{object_name}/batch")
async def batch_records(
    object_name: str,
    request: Request,
    state: StateDep,
    identity: IdentityDep,
    allow_duplicates: AllowDuplicates = False,
) -> dict[str, Any]:
    """Create, or upsert by an external-id field, up to `batch_max` records in one transaction."""
    body = await read_object(request, state.settings.batch_max * 64 * 1024)
    raw_items = body.get("records")
    items: list[Any] = raw_items if isinstance(raw_items, list) else []
    upsert_on = body.get("upsert_on")
    unknown = set(body) - {"records", "upsert_on"}
    errors = [FieldError(k[:64], "unknown-field", "not a batch parameter") for k in sorted(unknown)]
    if not items:
        errors.append(FieldError("records", "type", "records must be a non-empty list"))
    elif len(items) > state.settings.batch_max:
        errors.append(
            FieldError(
                "records", "max-items", f"at most {state.settings.batch_max} records per batch"
            )
        )
    if upsert_on is not None and not isinstance(upsert_on, str):
        errors.append(FieldError("upsert_on", "type", "upsert_on must be a field name"))
    if errors:
        raise RecordInvalid("the batch is invalid", errors)
    async with state.tenant(identity) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        intent = Intent(actor, allow_duplicates=allow_duplicates)
        results = await bulk.batch(conn, ct, co, items, intent, upsert_on=upsert_on)
    return {"results": results}


@router.get("/{object_name}/{record_id}")
async def get_record(
    object_name: str, record_id: str, state: StateDep, identity: IdentityDep
) -> Response:
    async with state.tenant(identity, writes=False) as (conn, ct, _actor):
        co = object_or_404(ct, object_name)
        record = await records.get(conn, ct, co, path_id(record_id), _actor)
    return record_response(record)


@router.patch("/{object_name}/{record_id}")
async def update_record(
    object_name: str,
    record_id: str,
    request: Request,
    state: StateDep,
    identity: IdentityDep,
    if_match: Annotated[str | None, Header(max_length=100)] = None,
    allow_duplicates: AllowDuplicates = False,
) -> Response:
    body = await read_object(request, state.settings.max_body_bytes)
    async with state.tenant(identity) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        record = await writes.update(
            conn,
            ct,
            co,
            path_id(record_id),
            body,
            Intent(actor, allow_duplicates=allow_duplicates),
            if_match=if_match_version(if_match),
        )
    return record_response(record)


@router.delete("/{object_name}/{record_id}", status_code=204)
async def delete_record(
    object_name: str,
    record_id: str,
    state: StateDep,
    identity: IdentityDep,
    if_match: Annotated[str | None, Header(max_length=100)] = None,
) -> Response:
    async with state.tenant(identity) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        await writes.delete(
            conn, ct, co, path_id(record_id), Intent(actor), if_match=if_match_version(if_match)
        )
    return Response(status_code=204)


@router.post("/{object_name}/{record_id}/owner")
async def transfer_owner(
    object_name: str, record_id: str, request: Request, state: StateDep, identity: IdentityDep
) -> Response:
    """Give the record to another user: `{"owner_id": "<user id>"}`."""
    body = await read_object(request, state.settings.max_body_bytes)
    async with state.tenant(identity) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        record = await writes.transfer_owner(
            conn, ct, co, path_id(record_id), body.get("owner_id"), Intent(actor)
        )
    return record_response(record)


@router.get("/{object_name}/{record_id}/shares")
async def list_shares(
    object_name: str, record_id: str, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        return {"shares": await sharing.list_shares(conn, ct, co, path_id(record_id), actor)}


@router.post("/{object_name}/{record_id}/shares", status_code=201)
async def add_share(
    object_name: str, record_id: str, request: Request, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    """Share the record with `{"user_id"}` or `{"role"}`, `"access": "read" | "edit"`."""
    body = await read_object(request, state.settings.max_body_bytes)
    async with state.tenant(identity) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        return await sharing.add_share(conn, ct, co, path_id(record_id), body, actor)


@router.delete("/{object_name}/{record_id}/shares/{share_id}", status_code=204)
async def remove_share(
    object_name: str, record_id: str, share_id: str, state: StateDep, identity: IdentityDep
) -> Response:
    async with state.tenant(identity) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        await sharing.remove_share(conn, ct, co, path_id(record_id), path_id(share_id), actor)
    return Response(status_code=204)


@router.post("/{object_name}/{record_id}/restore")
async def restore_record(
    object_name: str, record_id: str, state: StateDep, identity: IdentityDep
) -> Response:
    async with state.tenant(identity) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        record = await writes.restore(conn, ct, co, path_id(record_id), Intent(actor))
    return record_response(record)
