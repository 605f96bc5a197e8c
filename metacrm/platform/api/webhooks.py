"""Webhook subscriptions for administrators: create (secret shown once), list, change,
delete, rotate the secret, try out, read the delivery log and replay a delivery."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import JSONResponse, Response

from metacrm.errors import FieldError, NotFound, RecordInvalid
from metacrm.platform.api.common import path_id
from metacrm.platform.api.jobs import require_automation_manager
from metacrm.platform.auth import Identity
from metacrm.platform.body import read_object
from metacrm.platform.state import AppState, IdentityDep, StateDep, TenantSession
from metacrm.runtime import audit
from metacrm.runtime.automation import webhooks as hooks
from metacrm.runtime.records import utcnow
from metacrm.runtime.serialize import row_to_record

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
_FIELDS = frozenset({"name", "url", "object", "events", "filter", "active"})
_DEFAULTS: dict[str, Any] = {
    "object": None,
    "events": list(hooks.EVENTS),
    "filter": None,
    "active": True,
}


async def _body(request: Request, state: AppState) -> dict[str, Any]:
    body = await read_object(request, state.settings.max_body_bytes)
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise RecordInvalid(
            "the webhook is invalid",
            [FieldError(k[:64], "unknown-field", "not a webhook property") for k in unknown],
        )
    return body


async def _target_errors(
    state: AppState, identity: Identity, body: dict[str, Any]
) -> list[FieldError]:
    """The problem with a new URL's target, under the SSRF rules the deliveries follow;
    checked before the write transaction opens (resolving a name may take a while), and
    only for a manager (what a name resolves to is nobody else's business)."""
    async with state.tenant(identity, writes=False) as session:
        require_automation_manager(session)
    url = body.get("url")
    if not isinstance(url, str):
        return []  # reported with the other fields
    try:
        await hooks.check_target(
            url,
            allow_private=state.settings.webhooks_allow_private,
            timeout=state.settings.webhook_timeout_seconds,
        )
    except hooks.TargetRefused as refused:
        return [FieldError("url", refused.code, refused.message)]
    return []


def _refuse(session: TenantSession, values: dict[str, Any], errors: list[FieldError]) -> None:
    """Refuse a subscription with any problem, all of them reported at once."""
    errors = hooks.definition_errors(session.ct, values) + errors
    if errors:
        raise RecordInvalid("the webhook is invalid", errors)


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return row_to_record({k: v for k, v in row.items() if k != "secret"})


@router.post("", status_code=201)
async def create_webhook(request: Request, state: StateDep, identity: IdentityDep) -> JSONResponse:
    """`{"name", "url", "object"?, "events"?, "filter"?, "active"?}`; the answer holds the
    signing `secret`, shown this once."""
    body = await _body(request, state)
    target_errors = await _target_errors(state, identity, body)
    async with state.tenant(identity) as session:
        require_automation_manager(session)
        values = _DEFAULTS | body
        _refuse(session, values, target_errors)
        row = await hooks.add_webhook(session.conn, values, session.actor.user_id)
        await audit.record(
            session.conn,
            "webhook.create",
            actor=session.actor,
            detail={"webhook_id": str(row["id"])},
        )
    return JSONResponse(_shown(row) | {"secret": row["secret"]}, status_code=201)


@router.get("")
async def list_webhooks(state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    """Every subscription, by name (never the secrets)."""
    async with state.tenant(identity, writes=False) as session:
        require_automation_manager(session)
        rows = await hooks.webhook_rows(session.conn)
    return {"webhooks": [row_to_record(row) for row in rows]}


@router.get("/{webhook_id}")
async def get_webhook(webhook_id: str, state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    """One subscription (never its secret)."""
    async with state.tenant(identity, writes=False) as session:
        require_automation_manager(session)
        return _shown(await _found(session.conn, webhook_id))


@router.patch("/{webhook_id}")
async def change_webhook(
    webhook_id: str, request: Request, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    """Change some of `name`, `url`, `object`, `events`, `filter`, `active`."""
    body = await _body(request, state)
    target_errors = await _target_errors(state, identity, body)
    async with state.tenant(identity) as session:
        require_automation_manager(session)
        current = await _found(session.conn, webhook_id)
        _refuse(session, {k: current[k] for k in _FIELDS} | body, target_errors)
        await hooks.change_webhook(session.conn, current["id"], body)
        await audit.record(
            session.conn,
            "webhook.change",
            actor=session.actor,
            detail={"webhook_id": webhook_id, "fields": sorted(body)},
        )
        return _shown(await _found(session.conn, webhook_id))


@router.delete("/{webhook_id}", status_code=204)
async def delete_webhook(webhook_id: str, state: StateDep, identity: IdentityDep) -> Response:
    """Delete a subscription and its delivery log; queued deliveries are dropped."""
    async with state.tenant(identity) as session:
        require_automation_manager(session)
        if not await hooks.remove_webhook(session.conn, path_id(webhook_id, "webhook")):
            raise NotFound("no webhook has this id")
        await audit.record(
            session.conn, "webhook.delete", actor=session.actor, detail={"webhook_id": webhook_id}
        )
    return Response(status_code=204)


@router.post("/{webhook_id}/rotate-secret")
async def rotate_secret(webhook_id: str, state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    """A new signing secret, shown this once; for 24 hours deliveries carry a signature
    with the old one too (`previous_until`), then only with the new one."""
    async with state.tenant(identity) as session:
        require_automation_manager(session)
        rotated = await hooks.rotate_secret(session.conn, path_id(webhook_id, "webhook"), utcnow())
        if rotated is None:
            raise NotFound("no webhook has this id")
        await audit.record(
            session.conn, "webhook.rotate", actor=session.actor, detail={"webhook_id": webhook_id}
        )
    return {"id": webhook_id} | row_to_record(rotated)


@router.post("/{webhook_id}/test", status_code=202)
async def test_webhook(webhook_id: str, state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    """Queue a `webhook.ping` delivery; its outcome shows in the delivery log."""
    async with state.tenant(identity) as session:
        require_automation_manager(session)
        job_id = await hooks.ping(session.conn, await _found(session.conn, webhook_id))
    return {"job_id": str(job_id)}


@router.get("/{webhook_id}/deliveries")
async def list_deliveries(
    webhook_id: str,
    state: StateDep,
    identity: IdentityDep,
    before: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """The delivery attempts, newest first; page with `before` = the last one's `at`."""
    async with state.tenant(identity, writes=False) as session:
        require_automation_manager(session)
        found = await _found(session.conn, webhook_id)
        rows = await hooks.delivery_rows(session.conn, found["id"], before=before, limit=limit)
    return {"deliveries": [row_to_record(row) for row in rows]}


@router.post("/deliveries/{delivery_id}/replay", status_code=202)
async def replay_delivery(
    delivery_id: str, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    """Send a logged delivery's body again, as a new delivery with a new webhook-id."""
    async with state.tenant(identity) as session:
        require_automation_manager(session)
        job_id = await hooks.replay(session.conn, path_id(delivery_id, "delivery"))
        if job_id is None:
            raise NotFound("no delivery has this id")
    return {"job_id": str(job_id)}


async def _found(conn: AsyncConnection, webhook_id: str) -> dict[str, Any]:
    row = await hooks.webhook_row(conn, path_id(webhook_id, "webhook"))
    if row is None:
        raise NotFound("no webhook has this id")
    return row
