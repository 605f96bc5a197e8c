"""The notifications page: the user's notifications, newest first, marked read one by one or all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from markupsafe import Markup
from starlette.responses import RedirectResponse, Response

from metacrm.metadata.base import label_text
from metacrm.platform.api.common import path_id
from metacrm.platform.state import StateDep
from metacrm.platform.web.session import WebIdentityDep
from metacrm.platform.web.shell import object_label
from metacrm.platform.web.values import instant
from metacrm.platform.web.workspace import Workspace, workspace
from metacrm.runtime.automation import notify
from metacrm.runtime.permissions import object_readable

router = APIRouter(prefix="/app", include_in_schema=False)

#: Notifications a page shows; older ones follow with "Older".
PAGE = 50


@dataclass(frozen=True)
class Item:
    """One notification as the page draws it, in the reader's language."""

    id: str
    title: str
    message: str | None
    at: Markup
    read: bool
    #: The record's page, when the notification is about a record the reader may open.
    record_url: str | None
    object_label: str | None


def _item(ws: Workspace, row: dict[str, Any]) -> Item:
    language = ws.actor.language
    name, record_id = row["object"], row["record_id"]
    co = ws.ct.objects.get(name) if name else None
    readable = co is not None and record_id is not None and object_readable(ws.ct, ws.actor, co)
    return Item(
        id=str(row["id"]),
        title=label_text(row["title"], language),
        message=label_text(row["message"], language) if row["message"] else None,
        at=instant(row["created_at"]),
        read=row["read_at"] is not None,
        record_url=f"/app/o/{name}/{record_id}" if readable else None,
        object_label=object_label(ws.ct, name, language) if co is not None else None,
    )


@router.get("/notifications")
async def notifications_page(
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    unread: bool = False,
    before: Annotated[str | None, Query(max_length=36)] = None,
) -> Response:
    """The reader's notifications (`unread=true`: unread ones only), `before` for older."""
    async with workspace(request, state, identity) as ws:
        rows = await notify.notification_rows(
            ws.conn,
            ws.actor.user_id,
            unread=unread,
            limit=PAGE + 1,
            before=path_id(before, "notification") if before else None,
        )
        items = [_item(ws, row) for row in rows[:PAGE]]
        return await ws.page(
            "notifications.html",
            {
                "items": items,
                "unread_only": unread,
                "older": items[-1].id if len(rows) > PAGE else None,
            },
        )


def _back(unread: str) -> str:
    return "/app/notifications?unread=true" if unread == "true" else "/app/notifications"


@router.post("/notifications/read-all")
async def read_all(
    request: Request, state: StateDep, identity: WebIdentityDep, unread: str = ""
) -> Response:
    """Mark every notification of the reader read, then show the list again."""
    async with workspace(request, state, identity, writes=True) as ws:
        await notify.mark_read(ws.conn, ws.actor.user_id)
    return RedirectResponse(_back(unread), status_code=303)


@router.post("/notifications/{notification_id}/read")
async def read_one(
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    notification_id: str,
    unread: str = "",
) -> Response:
    """Mark one of the reader's notifications read (anyone else's is not found)."""
    found = path_id(notification_id, "notification")
    async with workspace(request, state, identity, writes=True) as ws:
        await notify.mark_read(ws.conn, ws.actor.user_id, found)
    return RedirectResponse(_back(unread), status_code=303)
