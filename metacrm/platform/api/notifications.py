"""The caller's in-app notifications: list, unread count, mark read."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from metacrm.metadata.base import label_text
from metacrm.platform.api.common import path_id
from metacrm.platform.state import IdentityDep, StateDep
from metacrm.runtime.automation import notify
from metacrm.runtime.serialize import json_value

router = APIRouter(prefix="/notifications", tags=["notifications"])


def notification_document(row: dict[str, Any], language: str) -> dict[str, Any]:
    """A notification as the API answers it: title and message in `language`."""
    return {
        "id": str(row["id"]),
        "title": label_text(row["title"], language),
        "message": label_text(row["message"], language) if row["message"] else None,
        "object": row["object"],
        "record_id": json_value(row["record_id"]),
        "created_at": json_value(row["created_at"]),
        "read_at": json_value(row["read_at"]),
        "read": row["read_at"] is not None,
    }


@router.get("")
async def list_notifications(
    state: StateDep,
    identity: IdentityDep,
    unread: bool = False,
    before: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """The caller's notifications, newest first; `unread=true` for unread ones only; the
    next page with `before` = the last one's id (`next_before`)."""
    async with state.tenant(identity, writes=False) as session:
        actor = session.actor
        rows = await notify.notification_rows(
            session.conn,
            actor.user_id,
            unread=unread,
            limit=limit,
            before=path_id(before, "notification") if before else None,
        )
    found = [notification_document(row, actor.language) for row in rows]
    return {
        "notifications": found,
        "next_before": found[-1]["id"] if len(found) == limit else None,
    }


@router.get("/unread-count")
async def unread_count(state: StateDep, identity: IdentityDep) -> dict[str, int]:
    """How many of the caller's notifications are unread."""
    async with state.tenant(identity, writes=False) as session:
        return {"unread": await notify.unread_count(session.conn, session.actor.user_id)}


@router.post("/read-all")
async def read_all(state: StateDep, identity: IdentityDep) -> dict[str, int]:
    """Mark every notification of the caller read."""
    async with state.tenant(identity) as session:
        return {"marked": await notify.mark_read(session.conn, session.actor.user_id)}


@router.post("/{notification_id}/read")
async def read_one(notification_id: str, state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    """Mark one of the caller's notifications read (404 for anyone else's)."""
    found = path_id(notification_id, "notification")
    async with state.tenant(identity) as session:
        await notify.mark_read(session.conn, session.actor.user_id, found)
    return {"id": notification_id, "read": True}
