"""The automation monitor for administrators: rule runs, the job queue, webhook deliveries."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, get_args
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from markupsafe import Markup
from starlette.responses import RedirectResponse, Response

from metacrm.errors import NotFound, PermissionDenied
from metacrm.metadata.names import API_NAME_PATTERN
from metacrm.platform.api.common import path_id
from metacrm.platform.state import StateDep
from metacrm.platform.web.session import WebIdentityDep
from metacrm.platform.web.shell import object_label
from metacrm.platform.web.texts import CATALOGUE, word
from metacrm.platform.web.values import instant
from metacrm.platform.web.workspace import Workspace, workspace
from metacrm.runtime import jobs
from metacrm.runtime.automation import webhooks as hooks
from metacrm.runtime.automation.history import Outcome, run_rows
from metacrm.runtime.job_kinds import REGISTRY
from metacrm.runtime.permissions import has_platform_permission, object_readable, readable
from metacrm.runtime.records import utcnow

router = APIRouter(prefix="/app/automation", include_in_schema=False)

#: Lines a page shows; older ones follow with "Older".
PAGE = 50
OUTCOMES: tuple[str, ...] = get_args(Outcome)
#: Confirmations a redirect may ask the page to show (only these words, nothing echoed).
NOTICES = frozenset({"retried", "replayed"})


def _require_manager(ws: Workspace) -> None:
    """The same rule as the API's: administrators and holders of manage_automation."""
    if not has_platform_permission(ws.ct.model, ws.actor, "manage_automation"):
        raise PermissionDenied("your role may not manage automation (manage_automation)")


def _words(ws: Workspace) -> Callable[[str, str], str]:
    """`named(group, value)`: a status, outcome or source in the reader's language; a value
    the page has no word for (a new source, say) is shown as it is."""

    def named(group: str, value: str) -> str:
        key = f"automation_{group}_{value}"
        return word(key, ws.actor.language) if key in CATALOGUE else value

    return named


@dataclass(frozen=True)
class RecordLink:
    """The record a run, job or delivery is about: a link when the reader may open it."""

    label: str
    url: str | None


Names = dict[tuple[str, str], str]


async def _names(ws: Workspace, rows: list[dict[str, Any]]) -> Names:
    """The name of each record the rows are about, one query per object; only where the
    reader may read the object and its name field (else the line shows the id)."""
    wanted: dict[str, set[uuid.UUID]] = {}
    for row in rows:
        if row["object"] and row["record_id"] is not None:
            wanted.setdefault(row["object"], set()).add(row["record_id"])
    found: Names = {}
    for name, ids in wanted.items():
        co = ws.ct.objects.get(name)
        field = co.obj.record_name_field if co is not None else None
        if (
            co is None
            or not field
            or not co.has(field)
            or field not in readable(ws.ct, ws.actor, co)
        ):
            continue
        result = await ws.conn.execute(
            sa.select(co.table.c.id, co.sql(field)).where(co.table.c.id.in_(ids))
        )
        found |= {(name, str(i)): str(n) for i, n in result if n is not None}
    return found


def _record(ws: Workspace, names: Names, name: str | None, record_id: Any) -> RecordLink | None:
    if record_id is None:
        return None
    co = ws.ct.objects.get(name) if name else None
    if co is None:  # the object is gone
        return RecordLink(str(record_id), None)
    title = names.get((co.name, str(record_id))) or str(record_id)[:8]
    label = f"{object_label(ws.ct, co.name, ws.actor.language)} · {title}"
    url = f"/app/o/{co.name}/{record_id}" if object_readable(ws.ct, ws.actor, co) else None
    return RecordLink(label, url)


def _duration(ms: int | None) -> str:
    if ms is None:
        return ""
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _cursor(value: dt.datetime) -> str:
    """A `before` value for the next page (as the API pages: the last line's time)."""
    return value.astimezone(dt.UTC).isoformat()


def _url(path: str, **params: str | None) -> str:
    kept = {k: v for k, v in params.items() if v}
    return path + ("?" + urlencode(kept) if kept else "")


@dataclass(frozen=True)
class Run:
    """One line of the run history, as the page draws it."""

    id: str
    at: Markup
    source: str
    name: str
    trigger: str
    record: RecordLink | None
    outcome: str
    duration: str
    depth: int
    detail: str | None


@router.get("")
async def runs_page(
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    outcome: Annotated[str | None, Query(max_length=16)] = None,
    rule: Annotated[str | None, Query(max_length=63)] = None,
    before: dt.datetime | None = None,
) -> Response:
    """Rule, assignment and SLA runs, newest first; by `outcome` and `rule`."""
    outcome = outcome if outcome in OUTCOMES else None
    async with workspace(request, state, identity) as ws:
        _require_manager(ws)
        # No run has a name that is not an api_name: nothing to look up.
        named = not rule or re.fullmatch(API_NAME_PATTERN, rule) is not None
        rows = (
            await run_rows(
                ws.conn, name=rule or None, outcome=outcome, before=before, limit=PAGE + 1
            )
            if named
            else []
        )
        names = await _names(ws, rows[:PAGE])
        runs = [
            Run(
                id=str(row["id"]),
                at=instant(row["at"]),
                source=row["source"],
                name=row["name"],
                trigger=row["trigger"],
                record=_record(ws, names, row["object"], row["record_id"]),
                outcome=row["outcome"],
                duration=_duration(row["duration_ms"]),
                depth=row["depth"],
                detail=json.dumps(row["detail"], indent=2, ensure_ascii=False)
                if row["detail"]
                else None,
            )
            for row in rows[:PAGE]
        ]
        older = (
            _url(
                "/app/automation", outcome=outcome, rule=rule, before=_cursor(rows[PAGE - 1]["at"])
            )
            if len(rows) > PAGE
            else None
        )
        return await ws.page(
            "automation.html",
            {
                "named": _words(ws),
                "tab": "runs",
                "runs": runs,
                "outcomes": OUTCOMES,
                "outcome": outcome,
                "rule": rule or "",
                "older": older,
                "notice": None,
            },
        )


@dataclass(frozen=True)
class JobLine:
    """One job of the queue, as the page draws it."""

    id: str
    kind: str
    status: str
    run_at: Markup
    created_at: Markup
    attempts: int
    max_attempts: int
    last_error: str | None
    record: RecordLink | None
    duration: str
    #: Dead and cancelled jobs may be put back in the queue.
    retryable: bool


@router.get("/jobs")
async def jobs_page(
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    before: dt.datetime | None = None,
    notice: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    """The job queue newest first, by `status` and `kind`; dead jobs can be retried."""
    status = status if status in jobs.STATUSES else None
    kind = kind if kind in REGISTRY.kinds else None  # every job is of a registered kind
    async with workspace(request, state, identity) as ws:
        _require_manager(ws)
        rows = await jobs.job_rows(
            ws.conn,
            statuses=[status] if status else (),
            kind=kind or None,
            before=before,
            limit=PAGE + 1,
        )
        names = await _names(ws, rows[:PAGE])
        lines = [
            JobLine(
                id=str(row["id"]),
                kind=row["kind"],
                status=row["status"],
                run_at=instant(row["run_at"]),
                created_at=instant(row["created_at"]),
                attempts=row["attempts"],
                max_attempts=row["max_attempts"],
                last_error=row["last_error"],
                record=_record(ws, names, row["object"], row["record_id"]),
                duration=_duration(row["duration_ms"]),
                retryable=row["status"] in ("dead", "cancelled"),
            )
            for row in rows[:PAGE]
        ]
        older = (
            _url(
                "/app/automation/jobs",
                status=status,
                kind=kind,
                before=_cursor(rows[PAGE - 1]["created_at"]),
            )
            if len(rows) > PAGE
            else None
        )
        return await ws.page(
            "automation.html",
            {
                "named": _words(ws),
                "tab": "jobs",
                "jobs": lines,
                "statuses": jobs.STATUSES,
                "status": status,
                "kinds": sorted(REGISTRY.kinds),
                "kind": kind or "",
                "older": older,
                "back": _url("/app/automation/jobs", status=status, kind=kind),
                "notice": notice if notice in NOTICES else None,
            },
        )


#: Where a form may return to: a page of the monitor, with a plain query (no open redirect,
#: nothing a header may not carry).
_BACK = re.compile(r"/app/automation/(jobs|webhooks)(\?[A-Za-z0-9=&%_.:+-]*)?")


def _back(target: str, fallback: str) -> str:
    """`target` when it is the monitor page `fallback` (with its filters), else `fallback`."""
    return target if _BACK.fullmatch(target) and target.startswith(fallback) else fallback


@router.post("/jobs/{job_id}/retry")
async def retry_job(
    request: Request, state: StateDep, identity: WebIdentityDep, job_id: str, back: str = ""
) -> Response:
    """Put a dead or cancelled job back in the queue, due now, with fresh tries."""
    found = path_id(job_id, "job")
    async with workspace(request, state, identity, writes=True) as ws:
        _require_manager(ws)
        if not await jobs.retry(ws.conn, found, utcnow()):
            raise NotFound("no dead or cancelled job has this id")
    target = _back(back, "/app/automation/jobs")
    return RedirectResponse(_with_notice(target, "retried"), status_code=303)


def _with_notice(target: str, notice: str) -> str:
    return target + ("&" if "?" in target else "?") + urlencode({"notice": notice})


@dataclass(frozen=True)
class Delivery:
    """One delivery attempt of a webhook, as the page draws it."""

    id: str
    at: Markup
    event: str
    attempt: int
    status: str
    http_status: int | None
    duration: str
    error: str | None
    #: The start of the endpoint's answer, as the log keeps it.
    response: str | None
    record_id: str | None


@router.get("/webhooks")
async def webhooks_page(
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    webhook: Annotated[str | None, Query(max_length=36)] = None,
    before: dt.datetime | None = None,
    notice: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    """The subscriptions, and the chosen one's delivery log newest first (replayable)."""
    async with workspace(request, state, identity) as ws:
        _require_manager(ws)
        subscriptions = await hooks.webhook_rows(ws.conn)
        chosen: dict[str, Any] | None = None
        if webhook:
            chosen = await hooks.webhook_row(ws.conn, path_id(webhook, "webhook"))
            if chosen is None:
                raise NotFound("no webhook has this id")
        elif subscriptions:
            chosen = subscriptions[0]
        rows = (
            await hooks.delivery_rows(ws.conn, chosen["id"], before=before, limit=PAGE + 1)
            if chosen is not None
            else []
        )
        deliveries = [
            Delivery(
                id=str(row["id"]),
                at=instant(row["at"]),
                event=row["event"],
                attempt=row["attempt"],
                status=row["status"],
                http_status=row["http_status"],
                duration=_duration(row["duration_ms"]),
                error=row["error"],
                response=row["response"],
                record_id=str(row["record_id"]) if row["record_id"] else None,
            )
            for row in rows[:PAGE]
        ]
        chosen_id = str(chosen["id"]) if chosen is not None else None
        older = (
            _url(
                "/app/automation/webhooks",
                webhook=chosen_id,
                before=_cursor(rows[PAGE - 1]["at"]),
            )
            if len(rows) > PAGE
            else None
        )
        return await ws.page(
            "automation.html",
            {
                "named": _words(ws),
                "tab": "webhooks",
                "subscriptions": [
                    {"id": str(s["id"]), "name": s["name"], "url": s["url"], "active": s["active"]}
                    for s in subscriptions
                ],
                "chosen": chosen_id,
                "chosen_name": chosen["name"] if chosen is not None else None,
                "deliveries": deliveries,
                "older": older,
                "back": _url("/app/automation/webhooks", webhook=chosen_id),
                "notice": notice if notice in NOTICES else None,
            },
        )


@router.post("/webhooks/deliveries/{delivery_id}/replay")
async def replay_delivery(
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    delivery_id: str,
    back: str = "",
) -> Response:
    """Send a logged delivery's body again, as a new delivery (queued at once)."""
    found: uuid.UUID = path_id(delivery_id, "delivery")
    async with workspace(request, state, identity, writes=True) as ws:
        _require_manager(ws)
        if await hooks.replay(ws.conn, found) is None:
            raise NotFound("no delivery has this id")
    target = _back(back, "/app/automation/webhooks")
    return RedirectResponse(_with_notice(target, "replayed"), status_code=303)
