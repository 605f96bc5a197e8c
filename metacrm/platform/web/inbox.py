"""The approval inbox: items waiting for the user and their delegators, decided in place."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from markupsafe import Markup
from starlette.responses import RedirectResponse, Response

from metacrm import i18n
from metacrm.errors import FieldError, MetacrmError, RecordInvalid
from metacrm.metadata.process import ApprovalFlow
from metacrm.platform.api.common import path_id
from metacrm.platform.api.process import _run_for
from metacrm.platform.state import StateDep
from metacrm.platform.web.render import is_htmx, page_language, render
from metacrm.platform.web.session import WebIdentityDep
from metacrm.platform.web.shell import object_label
from metacrm.platform.web.values import display, instant, link_name_paths
from metacrm.platform.web.workspace import Workspace, workspace
from metacrm.runtime.layouts import select_layout, summary_columns
from metacrm.runtime.listing import ListQuery, list_records
from metacrm.runtime.permissions import object_readable, readable
from metacrm.runtime.process import inbox as approval_queries
from metacrm.runtime.process import runs, submissions
from metacrm.ui_schema.labels import text

router = APIRouter(prefix="/app", include_in_schema=False)

#: The lists of the page: work waiting for the user, and the user's own submissions.
TABS = ("assigned", "submitted")
#: Confirmations a redirect may ask the page to show (only these words, nothing echoed).
NOTICES = {"approved", "rejected", "recalled"}
#: The most items a list shows (the oldest waiting first); deciding them brings the rest.
SHOWN = 100
#: How many records one list query reads: its `id in [...]` filter stays within the 4,000
#: characters an expression may have (40 characters an id).
_CHUNK = 80
COMMENT_LIMIT = 2000


@dataclass
class KeyField:
    """One of the record's key fields (its compact layout), drawn for the reader."""

    label: str
    value: Markup


@dataclass
class Item:
    """One line of the inbox: an approval task or one of the user's submissions."""

    approval_id: str
    object_label: str
    record_url: str | None
    #: The record's name; None when the reader may not see the record.
    title: str | None
    flow_label: str
    step_label: str
    submitted_by: str
    submitted_at: Markup
    comment: str | None
    #: Whose task it is, when it is not the reader's own (a delegator's).
    on_behalf_of: str | None = None
    overdue: bool = False
    due_at: Markup | None = None
    #: None: the reader may not see the record, so none of its fields are shown.
    fields: list[KeyField] | None = None
    #: For a submission: who must decide now, by step.
    waiting_on: list[str] = field(default_factory=list)
    #: Whether the reader may decide it here: the API refuses a delegate who may not see
    #: the record (they take no part in the run themselves), so no buttons are offered.
    can_decide: bool = True


def moment(value: Any) -> Markup:
    """An instant (ISO 8601 text) as values.instant draws it; nothing when there is none."""
    return instant(value) if value else Markup("")


def _flow(ws: Workspace, object_name: str, flow_name: str) -> ApprovalFlow | None:
    co = ws.ct.objects.get(object_name)
    if co is None:
        return None
    return next((f for f in co.approval_flows if f.api_name == flow_name), None)


def _step_label(flow: ApprovalFlow | None, step: str, language: str) -> str:
    found = next((s for s in flow.steps if s.api_name == step), None) if flow else None
    return text(found.label, [language, "en"], step) if found else step


def _link_name(record: dict[str, Any], name: str, paths: list[str]) -> Any:
    path = next((p for p in paths if p.split(".", 1)[0] == name), None)
    return record.get(path) if path else None


async def _key_fields(
    ws: Workspace, object_name: str, record_ids: list[str]
) -> dict[str, tuple[str, list[KeyField]]]:
    """record id -> (name, key fields) of the records the reader may see: their compact layout
    fields, hidden fields left out; one list query per object and 80 records, through the
    service of the API's record lists (record access, field access, lookup names)."""
    co = ws.ct.objects.get(object_name)
    if co is None or not object_readable(ws.ct, ws.actor, co):
        return {}
    visible = set(readable(ws.ct, ws.actor, co))
    layout = select_layout(ws.ct.model, co.obj, ws.actor)
    name_field = co.obj.record_name_field
    shown = [n for n in (layout.compact or summary_columns(co.obj)[:3]) if n in visible]
    columns = list(dict.fromkeys([*([name_field] if name_field in visible else []), *shown]))
    paths = link_name_paths(ws.ct, co, ws.actor, columns)
    language = ws.actor.language
    out: dict[str, tuple[str, list[KeyField]]] = {}
    ids = sorted({str(uuid.UUID(i)) for i in record_ids})
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        query = ListQuery(
            where="id in [" + ", ".join(f"'{i}'" for i in chunk) + "]",
            fields=",".join(["id", *columns, *paths]),
            limit=_CHUNK,
        )
        page = await list_records(
            ws.conn, ws.ct, co, query, actor=ws.actor, cursor_key=ws.state.signing_key.encode()
        )
        for record in page["records"]:
            values = [
                KeyField(
                    text(co.fields[n].label, [language, "en"], n),
                    display(
                        co.fields[n],
                        record.get(n),
                        language=language,
                        currency=ws.currency,
                        link_name=_link_name(record, n, paths),
                    ),
                )
                for n in shown
            ]
            name = record.get(name_field) if name_field in columns else None
            out[str(record["id"])] = ("" if name in (None, "") else str(name), values)
    return out


async def _records(
    ws: Workspace, wanted: list[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, list[KeyField]]]:
    """(object, record id) -> (name, key fields), for those the reader may see."""
    by_object: dict[str, list[str]] = defaultdict(list)
    for object_name, record_id in wanted:
        by_object[object_name].append(record_id)
    out = {}
    for object_name, ids in by_object.items():
        for record_id, found in (await _key_fields(ws, object_name, ids)).items():
            out[(object_name, record_id)] = found
    return out


def _item(
    ws: Workspace,
    run: dict[str, Any],
    records: dict[tuple[str, str], tuple[str, list[KeyField]]],
    names: dict[str, str],
    comment: str | None,
) -> Item:
    """An inbox line for a run (an inbox task or a submission), with what the reader may see."""
    language = ws.actor.language
    object_name, record_id = run["object"], run["record_id"]
    flow = _flow(ws, object_name, run["flow"])
    found = records.get((object_name, record_id))
    known = object_name in ws.ct.objects
    return Item(
        approval_id=run.get("approval_id") or run["id"],
        object_label=object_label(ws.ct, object_name, language) if known else object_name,
        record_url=f"/app/o/{object_name}/{record_id}" if found else None,
        title=found[0] if found else None,
        flow_label=text(flow.label, [language, "en"], run["flow"]) if flow else run["flow"],
        step_label="",
        submitted_by=names.get(run["submitted_by"], ""),
        submitted_at=moment(run["submitted_at"]),
        comment=comment,
        fields=found[1] if found else None,
    )


async def assigned_items(ws: Workspace) -> tuple[list[Item], int]:
    """The approvals waiting for the reader or their delegators (one line per run), oldest
    first, as the API's `GET /approvals?assigned_to=me` lists them: the first `SHOWN`, and
    how many there are."""
    every = await approval_queries.inbox(ws.conn, ws.actor.user_id)
    if not every:
        return [], 0
    runs_of: dict[str, list[dict[str, Any]]] = {}
    for task in every:
        runs_of.setdefault(task["approval_id"], []).append(task)
    total = len(runs_of)
    runs_of = dict(list(runs_of.items())[:SHOWN])
    tasks = [t for own in runs_of.values() for t in own]
    comments = await submissions.comments(ws.conn, runs_of)
    people = {t["submitted_by"] for t in tasks} | {t["assignee_id"] for t in tasks}
    people |= {t["on_behalf_of"] for t in tasks if t["on_behalf_of"]}
    names = await submissions.user_names(ws.conn, people)
    records = await _records(ws, [(t["object"], t["record_id"]) for t in tasks])
    language = ws.actor.language
    items = []
    for approval_id, own in runs_of.items():
        first = own[0]
        item = _item(ws, first, records, names, comments.get(approval_id))
        flow = _flow(ws, first["object"], first["flow"])
        steps = dict.fromkeys(_step_label(flow, t["step"], language) for t in own)
        item.step_label = ", ".join(steps)
        # A delegator's task listed for the reader, or one assigned to them as a delegate.
        behalf = [t["assignee_id"] if t["delegated"] else t["on_behalf_of"] for t in own]
        others = dict.fromkeys(names.get(b, "") for b in behalf if b)
        if others and all(behalf):
            item.on_behalf_of = ", ".join(n for n in others if n)
        own_task = any(not t["delegated"] for t in own)
        item.can_decide = item.fields is not None or own_task or ws.actor.is_admin
        item.overdue = any(t["overdue"] for t in own)
        due = sorted(t["due_at"] for t in own if t["due_at"])
        item.due_at = moment(due[0]) if due else None
        items.append(item)
    return items, total


async def submitted_items(ws: Workspace) -> tuple[list[Item], int]:
    """The reader's own pending submissions, newest first, with who must decide now: the
    first `SHOWN`, and how many there are."""
    every = await submissions.submissions(ws.conn, ws.actor.user_id)
    if not every:
        return [], 0
    mine = every[:SHOWN]
    people = {run["submitted_by"] for run in mine}
    people |= {task["assignee_id"] for run in mine for task in run["waiting_on"]}
    names = await submissions.user_names(ws.conn, people)
    records = await _records(ws, [(run["object"], run["record_id"]) for run in mine])
    language = ws.actor.language
    items = []
    for run in mine:
        item = _item(ws, run, records, names, run["comment"])
        flow = _flow(ws, run["object"], run["flow"])
        item.step_label = ", ".join(
            dict.fromkeys(_step_label(flow, t["step"], language) for t in run["waiting_on"])
        )
        item.waiting_on = list(
            dict.fromkeys(
                f"{_step_label(flow, t['step'], language)}: {names.get(t['assignee_id'], '')}"
                for t in run["waiting_on"]
            )
        )
        items.append(item)
    return items, len(every)


@router.get("/inbox")
async def inbox_page(
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    tab: Annotated[str, Query(max_length=20)] = "assigned",
    notice: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """The approvals waiting for the reader (tab `assigned`) or submitted by them (`submitted`)."""
    tab = tab if tab in TABS else "assigned"
    async with workspace(request, state, identity) as ws:
        if tab == "assigned":
            items, assigned_count = await assigned_items(ws)
            submitted_count = len(await submissions.submissions(ws.conn, ws.actor.user_id))
        else:
            items, submitted_count = await submitted_items(ws)
            assigned_count = await submissions.waiting_count(ws.conn, ws.actor.user_id)
        return await ws.page(
            "inbox.html",
            {
                "tab": tab,
                "items": items,
                "assigned_count": assigned_count,
                "submitted_count": submitted_count,
                "notice": notice if notice in NOTICES else None,
                "total": assigned_count if tab == "assigned" else submitted_count,
            },
        )


def _comment(value: str) -> str | None:
    """The decision's comment: optional, at most 2,000 characters (as the API's)."""
    value = value.strip()
    if not value:
        return None
    if len(value) > COMMENT_LIMIT:
        message = f"comment must be a text of 1 to {COMMENT_LIMIT} characters"
        raise RecordInvalid(message, [FieldError("comment", "type", message)])
    return value


def _refusal(request: Request, approval_id: str, error: MetacrmError) -> Response:
    """The server's refusal, drawn into the item's message slot (htmx), with its status."""
    language = page_language(request)
    try:
        target = f"#approval-{uuid.UUID(approval_id)} .item-message"
    except ValueError:
        target = "#inbox-notice"
    detail = i18n.detail(error.code, language, error.detail)
    messages = [i18n.message(e.code, e.field, language, e.message) for e in error.errors]
    return render(
        request,
        "inbox_refusal.html",
        {"detail": detail, "messages": [m for m in dict.fromkeys(messages) if m != detail]},
        language=language,
        status=error.status,
        headers={"HX-Retarget": target, "HX-Reswap": "innerHTML"},
    )


async def _act(
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    approval_id: str,
    action: str,
    comment: str,
) -> Response:
    """Approve, reject or recall as the REST handlers do (the same access check, the same
    service); the item leaves the list and a notice confirms."""
    try:
        note = _comment(comment)
        async with workspace(request, state, identity, writes=True) as ws:
            await _run_for(ws.conn, ws.ct, ws.actor, approval_id)
            run_id = path_id(approval_id, "approval")
            if action == "recalled":
                run = await runs.recall(ws.conn, ws.ct, run_id, ws.actor, comment=note)
                left = len(await submissions.submissions(ws.conn, ws.actor.user_id))
            else:
                run = await runs.decide(ws.conn, ws.ct, run_id, ws.actor, action, comment=note)
                tasks = await approval_queries.inbox(ws.conn, ws.actor.user_id)
                left = len({t["approval_id"] for t in tasks})
            if not is_htmx(request):
                tab = "submitted" if action == "recalled" else "assigned"
                return RedirectResponse(f"/app/inbox?tab={tab}&notice={action}", status_code=303)
            known = run["object"] in ws.ct.objects
            label = object_label(ws.ct, run["object"], ws.actor.language) if known else ""
            found = await _key_fields(ws, run["object"], [run["record_id"]]) if known else {}
            name = found[run["record_id"]][0] if run["record_id"] in found else ""
            return ws.fragment(
                "inbox_done.html",
                {
                    "action": action,
                    "object_label": label,
                    "record_name": name,
                    "status": run["status"],
                    "left": left,
                    "tab": "submitted" if action == "recalled" else "assigned",
                },
            )
    except MetacrmError as error:
        if not is_htmx(request):
            raise
        return _refusal(request, approval_id, error)


CommentForm = Annotated[str, Form()]


@router.post("/inbox/{approval_id}/approve")
async def approve(
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    approval_id: str,
    comment: CommentForm = "",
) -> Response:
    """Approve the reader's pending work on the run, with an optional comment."""
    return await _act(request, state, identity, approval_id, "approved", comment)


@router.post("/inbox/{approval_id}/reject")
async def reject(
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    approval_id: str,
    comment: CommentForm = "",
) -> Response:
    """Reject the run (the whole run is rejected), with an optional comment."""
    return await _act(request, state, identity, approval_id, "rejected", comment)


@router.post("/inbox/{approval_id}/recall")
async def recall(
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    approval_id: str,
    comment: CommentForm = "",
) -> Response:
    """Withdraw one of the reader's own pending submissions."""
    return await _act(request, state, identity, approval_id, "recalled", comment)
