"""The record page: layout, stage path, related lists, timeline and action buttons; customer 360."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Request
from markupsafe import Markup
from starlette.responses import Response

from metacrm import i18n
from metacrm.errors import MetacrmError, NotFound, PermissionDenied
from metacrm.metadata.layouts import RelatedList
from metacrm.metadata.model import FieldDef
from metacrm.metadata.process import StageRule
from metacrm.platform.api.common import path_id
from metacrm.platform.state import StateDep
from metacrm.platform.web.session import WebIdentityDep
from metacrm.platform.web.shell import colleague_name, object_label
from metacrm.platform.web.texts import CATALOGUE, word
from metacrm.platform.web.values import choice_label, display, instant, link_name_paths
from metacrm.platform.web.workspace import Workspace, workspace
from metacrm.runtime import record_actions, records, related, timeline
from metacrm.runtime.compiler import CompiledObject
from metacrm.runtime.layouts import select_layout, summary_columns
from metacrm.runtime.listing import ListQuery, list_records
from metacrm.runtime.permissions import (
    field_access,
    linked,
    object_permission,
    object_readable,
    readable,
    record_filter,
)
from metacrm.runtime.process import inbox, tasks
from metacrm.runtime.process.expressions import blank, condition_holds
from metacrm.runtime.tenant_tables import users
from metacrm.ui_schema.labels import text

router = APIRouter(prefix="/app", include_in_schema=False)

#: Notices a redirect back to the record page may name (`?done=`), and their words.
_DONE = {
    "moved": "record_done_moved",
    "submitted": "record_done_submitted",
    "transferred": "record_done_transferred",
    "shared": "record_done_shared",
    "commented": "record_done_commented",
    "task": "record_done_task",
    "merged": "merge_done",
    "unmerged": "merge_undone",
}
#: How many events the timeline shows; how many records a related list of the 360 shows.
TIMELINE_LIMIT = 50
RELATED_LIMIT = 10


# ------------------------------------------------------------------ what the page draws


@dataclass
class Shown:
    name: str
    label: str
    html: Markup
    wide: bool = False


@dataclass
class SectionView:
    title: str
    columns: int
    fields: list[Shown]


@dataclass
class Check:
    label: str
    ok: bool


@dataclass
class NextStage:
    value: str
    label: str
    checks: list[Check]

    @property
    def ready(self) -> bool:
        return all(c.ok for c in self.checks)


@dataclass
class StepView:
    value: str
    label: str
    state: str  # done, current, todo
    closed: bool


@dataclass
class PathView:
    label: str
    steps: list[StepView]
    current_label: str
    guidance: str
    next: list[NextStage]
    tasks: list[dict[str, Any]]


@dataclass
class RelatedView:
    object: str
    label: str
    columns: list[tuple[str, str]]
    rows: list[tuple[str, list[Markup]]]
    more: bool
    view_all: str
    key: str


@dataclass
class SummaryView:
    object: str
    label: str
    stages: list[tuple[str, str, int, Markup]]
    count: int
    amount: Markup | None


@dataclass
class EventView:
    at: Markup
    kind: str
    who: str
    text: Markup
    about: Markup | None


@dataclass
class RunView:
    flow: str
    status: str
    status_label: str
    submitted_at: Markup
    events: list[tuple[Markup, str, str, str]] = field(default_factory=list)


@dataclass
class RecordPage:
    object: str
    object_label: str
    object_plural: str
    id: str
    name: str
    compact: list[Shown]
    sections: list[SectionView]
    owner_name: str
    path: PathView | None
    related: list[RelatedView]
    summaries: list[SummaryView]
    timeline: list[EventView]
    runs: list[RunView]
    actions: dict[str, Any]
    users: list[tuple[str, str]]
    roles: list[tuple[str, str]]
    hub: bool


# ------------------------------------------------------------------ reading


def object_of(ws: Workspace, name: str) -> CompiledObject:
    co = ws.ct.objects.get(name)
    if co is None:
        raise NotFound(f"no object named {name[:64]!r}")
    return co


def _languages(ws: Workspace) -> list[str]:
    return [ws.actor.language, "en"]


def _show(ws: Workspace, fd: FieldDef, value: Any, link_name: Any = None) -> Markup:
    return display(fd, value, language=ws.actor.language, currency=ws.currency, link_name=link_name)


async def _names(
    ws: Workspace, co: CompiledObject, rid: uuid.UUID, names: list[str]
) -> dict[str, Any]:
    """The names of the records the lookups among `names` point at (`lookup.name` paths)."""
    paths = link_name_paths(ws.ct, co, ws.actor, names)
    if not paths:
        return {}
    page = await list_records(
        ws.conn,
        ws.ct,
        co,
        ListQuery(where=f"id == '{rid}'", fields=",".join(paths), limit=1),
        actor=ws.actor,
        cursor_key=ws.state.signing_key.encode(),
    )
    found = page["records"][0] if page["records"] else {}
    return {p.split(".", 1)[0]: found.get(p) for p in paths}


async def _load(ws: Workspace, object_name: str, record_id: str) -> RecordPage:
    """Everything the record page draws, read with the user's access."""
    co = object_of(ws, object_name)
    rid = path_id(record_id)
    ct, actor, conn = ws.ct, ws.actor, ws.conn
    try:
        record = await records.get(conn, ct, co, rid, actor)
    except PermissionDenied:  # no permission on the object: as if there were no record
        raise NotFound(f"no {co.name} record has id {rid}") from None
    langs = _languages(ws)
    layout = select_layout(ct.model, co.obj, actor, record=record)
    visible = set(readable(ct, actor, co))

    def usable(name: str) -> bool:
        return co.obj.has_field(name) and name in visible

    placed: set[str] = set()
    wanted: list[str] = []
    for section in layout.sections:
        for placement in section.fields:
            if not placement.hidden and usable(placement.field) and placement.field not in placed:
                placed.add(placement.field)
                wanted.append(placement.field)
    compact_names = [n for n in layout.compact if usable(n)]
    names = await _names(ws, co, rid, list(dict.fromkeys([*wanted, *compact_names])))

    def shown(name: str) -> Shown:
        fd = co.obj.field(name)
        return Shown(
            name,
            text(fd.label, langs, name),
            _show(ws, fd, record.get(name), names.get(name)),
            wide=fd.type in ("long_text", "json"),
        )

    sections = []
    done: set[str] = set()
    for section in layout.sections:
        items = []
        for placement in section.fields:
            name = placement.field
            if placement.hidden or not usable(name) or name in done:
                continue
            done.add(name)
            items.append(shown(name))
        if items:
            title = text(section.title, langs, "") if section.title else ""
            sections.append(SectionView(title, section.columns, items))
    name_field = co.obj.record_name_field
    title = str(record.get(name_field) or "") if name_field and name_field in visible else ""
    owner_name = await conn.scalar(
        sa.select(users.c.full_name).where(users.c.id == uuid.UUID(record["owner_id"]))
    )
    actions = await record_actions.allowed_actions(conn, ct, co, rid, actor)
    referrers = related.referrers(ct, co, actor)
    hub = bool(referrers)
    page = RecordPage(
        object=co.name,
        object_label=object_label(ct, co.name, actor.language),
        object_plural=object_label(ct, co.name, actor.language, plural=True),
        id=str(rid),
        name=title or object_label(ct, co.name, actor.language),
        compact=[shown(n) for n in compact_names],
        sections=sections,
        owner_name=owner_name or "",
        path=await _path(ws, co, rid, record) if len(co.stage_rules) == 1 else None,
        related=await _related(ws, co, rid, layout.related_lists, referrers),
        summaries=await _summaries(ws, co, rid) if hub else [],
        timeline=await _timeline(ws, co, rid, children=hub),
        runs=await _runs(ws, co, rid) if co.approval_flows else [],
        actions=actions,
        users=await _users(ws) if actions["transfer"] or actions["share"] else [],
        roles=[(r.api_name, text(r.label, langs, r.api_name)) for r in ct.model.roles]
        if actions["share"]
        else [],
        hub=hub,
    )
    return page


async def _users(ws: Workspace) -> list[tuple[str, str]]:
    rows = await ws.conn.execute(
        sa.select(users.c.id, users.c.full_name, users.c.email)
        .where(users.c.is_active.is_(True))
        .order_by(users.c.full_name, users.c.email)
    )
    return [(str(r.id), colleague_name(r.full_name, r.email)) for r in rows]


def _stage_label(ws: Workspace, co: CompiledObject, rule: StageRule, value: Any) -> str:
    stage = rule.stage(value)
    fd = co.obj.field(rule.field) if co.obj.has_field(rule.field) else None
    fallback = choice_label(fd, value, ws.actor.language) if fd is not None else str(value)
    return text(stage.label, _languages(ws), fallback) if stage is not None else fallback


async def _path(
    ws: Workspace, co: CompiledObject, rid: uuid.UUID, record: dict[str, Any]
) -> PathView | None:
    """The stage path of the record's stage rule, with the gates of the next stages."""
    rule = co.stage_rules[0]
    ct, actor, langs = ws.ct, ws.actor, _languages(ws)
    visible = set(readable(ct, actor, co))
    if rule.field not in visible:
        return None
    current = record.get(rule.field)
    index = rule.index(current)
    steps = [
        StepView(
            s.value,
            _stage_label(ws, co, rule, s.value),
            "current" if i == index else ("done" if index >= 0 and i < index else "todo"),
            s.closed,
        )
        for i, s in enumerate(rule.stages)
        if not s.closed or i == index or not (index >= 0 and rule.stages[index].closed)
    ]
    raw = await records.fetch(ws.conn, co, rid, access=record_filter(ct, actor, co, "read"))
    following = rule.allowed_next(str(current)) if index >= 0 else rule.initial_stages()
    if index >= 0 and rule.stages[index].allow_back:
        following += [s.value for s in rule.stages[:index] if s.value not in following]
    open_tasks = [
        t
        for t in await tasks.list_tasks(ws.conn, co, rid)
        if t["status"] == "open" and t["stage"] == current
    ]
    next_stages = []
    for value in following:
        target = rule.stage(value)
        if target is None:
            continue
        checks = []
        hidden_missing = 0
        for name in target.required_fields:
            filled = not blank(raw.get(name))
            if name in visible:
                label = text(co.obj.field(name).label, langs, name)
                checks.append(Check(word("record_gate_field", actor.language, field=label), filled))
            elif not filled:
                hidden_missing += 1
        if hidden_missing:
            checks.append(Check(word("record_gate_hidden", actor.language), False))
        if target.entry_condition:
            after = raw | {rule.field: value}
            try:
                holds = await condition_holds(ws.conn, ct, co, target.entry_condition, after, raw)
            except MetacrmError:
                holds = False
            message = text(target.entry_message, langs, "") or word(
                "record_gate_condition", actor.language
            )
            checks.append(Check(message, holds))
        for task in open_tasks:
            if not task["optional"]:
                checks.append(
                    Check(word("record_gate_task", actor.language, task=task["subject"]), False)
                )
        if target.requires_approval:
            checks.append(
                Check(
                    word("record_gate_approval", actor.language, flow=target.requires_approval),
                    True,
                )
            )
        next_stages.append(NextStage(value, _stage_label(ws, co, rule, value), checks))
    stage = rule.stage(current)
    return PathView(
        label=text(rule.label, langs, rule.api_name),
        steps=steps,
        current_label=_stage_label(ws, co, rule, current) if current is not None else "",
        guidance=text(stage.guidance, langs, "") if stage is not None else "",
        next=next_stages,
        tasks=open_tasks,
    )


def _target_readable(ws: Workspace, co: CompiledObject, name: str) -> bool:
    """Whether a column may be shown: not a lookup to an object the user may not read."""
    target = linked(ws.ct, co, name)
    return target is None or object_readable(ws.ct, ws.actor, target)


async def _related_view(
    ws: Workspace,
    co: CompiledObject,
    rid: uuid.UUID,
    item: RelatedList,
    key: str,
) -> RelatedView | None:
    """One related list: one list query on the link field, under the user's access."""
    ct, actor, langs = ws.ct, ws.actor, _languages(ws)
    child = ct.objects.get(item.object)
    if child is None or not child.obj.has_field(item.field):
        return None
    permission = object_permission(ct.model, actor, child.name)
    if not (permission.read or permission.view_all or permission.modify_all):
        return None
    if field_access(ct.model, actor, child.name, item.field) == "hidden":
        return None
    visible = set(readable(ct, actor, child))
    name_field = child.obj.record_name_field
    columns = [
        c
        for c in item.columns
        if c in visible and c != item.field and _target_readable(ws, child, c)
    ]
    if not columns:
        columns = [n for n in [name_field] if n and n in visible] or [
            n for n in list(visible)[:3] if n != item.field
        ]
    if name_field and name_field in visible and name_field not in columns:
        columns = [name_field, *columns]
    paths = link_name_paths(ct, child, actor, columns)
    where = f"{item.field} == '{rid}'"
    try:
        page = await list_records(
            ws.conn,
            ct,
            child,
            ListQuery(
                where=where,
                order_by=item.sort,
                fields=",".join([*columns, *paths]),
                limit=min(item.limit, 50),
            ),
            actor=actor,
            cursor_key=ws.state.signing_key.encode(),
        )
    except MetacrmError:  # a stale sort in the layout: fall back to the default order
        page = await list_records(
            ws.conn,
            ct,
            child,
            ListQuery(where=where, fields=",".join([*columns, *paths]), limit=min(item.limit, 50)),
            actor=actor,
            cursor_key=ws.state.signing_key.encode(),
        )
    link_of = {p.split(".", 1)[0]: p for p in paths}
    linked_column = columns.index(name_field) if name_field in columns else 0
    rows = []
    for found in page["records"]:
        cells = []
        for i, name in enumerate(columns):
            fd = child.obj.field(name)
            value = found.get(name)
            path = link_of.get(name)
            cell = _show(ws, fd, value, found.get(path) if path else None)
            if i == linked_column:
                label = (
                    found.get(name) if name == name_field and found.get(name) else found["id"][:8]
                )
                cell = Markup('<a href="/app/o/{}/{}">{}</a>').format(
                    child.name, found["id"], label
                )
            cells.append(cell)
        rows.append((found["id"], cells))
    label = text(item.label, langs, "") or object_label(ct, child.name, actor.language, plural=True)
    return RelatedView(
        object=child.name,
        label=label,
        columns=[(n, text(child.obj.field(n).label, langs, n)) for n in columns],
        rows=rows,
        more=page["next_cursor"] is not None,
        view_all=f"/app/o/{child.name}?" + urlencode({"where": where}, quote_via=quote),
        key=key,
    )


async def _related(
    ws: Workspace,
    co: CompiledObject,
    rid: uuid.UUID,
    listed: list[RelatedList],
    referrers: list[related.Referrer],
) -> list[RelatedView]:
    """The layout's related lists, then (customer 360) every other readable object that
    points at the record."""
    items = list(listed)
    seen = {(i.object, i.field) for i in items}
    for referrer in referrers:
        if (referrer.co.name, referrer.field) not in seen:
            columns = summary_columns(referrer.co.obj, skip=referrer.field)[:4]
            items.append(
                RelatedList(
                    object=referrer.co.name,
                    field=referrer.field,
                    columns=columns,
                    limit=RELATED_LIMIT,
                )
            )
            seen.add((referrer.co.name, referrer.field))
    out = []
    for i, item in enumerate(items):
        view = await _related_view(ws, co, rid, item, f"related-{i}")
        if view is not None:
            out.append(view)
    return out


async def _summaries(ws: Workspace, co: CompiledObject, rid: uuid.UUID) -> list[SummaryView]:
    """Open records pointing at this one, per stage: count and total (customer 360)."""
    out = []
    for summary in await related.stage_summary(ws.conn, ws.ct, co, rid, ws.actor):
        if not summary["count"] and not summary["amount_field"]:
            continue  # an empty count of things that carry no amount says nothing
        child = ws.ct.object(summary["object"])
        rule = child.stage_rules[0]
        amount_fd = child.obj.field(summary["amount_field"]) if summary["amount_field"] else None
        stages = [
            (
                s["stage"],
                _stage_label(ws, child, rule, s["stage"]),
                s["count"],
                _show(ws, amount_fd, s["amount"]) if amount_fd is not None else Markup(""),
            )
            for s in summary["stages"]
        ]
        out.append(
            SummaryView(
                object=child.name,
                label=object_label(ws.ct, child.name, ws.actor.language, plural=True),
                stages=stages,
                count=summary["count"],
                amount=_show(ws, amount_fd, summary["amount"]) if amount_fd is not None else None,
            )
        )
    return out


def _known(prefix: str, value: str, language: i18n.Language) -> str:
    """The word for a process value (`record_action_submit`...), or the value itself."""
    key = f"{prefix}{value}"
    return word(key, language) if key in CATALOGUE else value


def _flow_label(ws: Workspace, object_name: str, flow: str) -> str:
    co = ws.ct.objects.get(object_name)
    found = next((f for f in co.approval_flows if f.api_name == flow), None) if co else None
    return text(found.label, _languages(ws), flow) if found is not None else flow


def _value_html(ws: Workspace, object_name: str, name: str, value: Any) -> Markup:
    co = ws.ct.objects.get(object_name)
    if co is None or not co.obj.has_field(name):
        return Markup("{}").format(value)
    return _show(ws, co.obj.field(name), value)


def _field_label(ws: Workspace, object_name: str, name: str) -> str:
    co = ws.ct.objects.get(object_name)
    if co is None or not co.obj.has_field(name):
        return name
    return text(co.obj.field(name).label, _languages(ws), name)


async def _timeline(
    ws: Workspace, co: CompiledObject, rid: uuid.UUID, *, children: bool
) -> list[EventView]:
    entries = await timeline.timeline(
        ws.conn, ws.ct, co, rid, ws.actor, children=children, limit=TIMELINE_LIMIT
    )
    lang = ws.actor.language
    out = []
    for e in entries:
        kind = e["kind"]
        obj = e["object"]
        if kind == "field":
            body = Markup("{}").format(
                word("record_event_field", lang, field=_field_label(ws, obj, e["field"]))
            )
            body += Markup(" ") + _value_html(ws, obj, e["field"], e["old"])
            body += Markup(" → ") + _value_html(ws, obj, e["field"], e["new"])
        elif kind == "stage":
            target = ws.ct.objects.get(obj)
            rule = (
                next((r for r in target.stage_rules if r.api_name == e["rule"]), None)
                if target
                else None
            )

            def label(v: Any, target: Any = target, rule: Any = rule) -> str:
                if v is None:
                    return "—"
                return _stage_label(ws, target, rule, v) if target and rule else str(v)

            body = Markup("{}").format(
                word("record_event_stage", lang, old=label(e["from"]), new=label(e["to"]))
            )
            if e["reason"]:
                body += Markup(" — {}").format(e["reason"])
        elif kind == "approval":
            body = Markup("{}").format(
                word(
                    "record_event_approval",
                    lang,
                    flow=_flow_label(ws, obj, e["flow"]),
                    action=_known("record_action_", e["action"], lang),
                )
            )
            if e["step"]:
                body += Markup(" ({})").format(e["step"])
            if e["comment"]:
                body += Markup(": “{}”").format(e["comment"])
        elif kind == "task":
            body = Markup("{}").format(word("record_event_task", lang, task=e["subject"]))
        elif kind == "task_closed":
            body = Markup("{}").format(
                word(
                    "record_event_task_closed",
                    lang,
                    task=e["subject"],
                    status=_known("record_task_status_", e["status"], lang),
                )
            )
        else:
            body = Markup('<span class="comment-body">{}</span>').format(e["body"])
        about = None
        if obj != co.name or e["record_id"] != str(rid):
            name = e["record_name"] or e["record_id"][:8]
            about = Markup('{}: <a href="/app/o/{}/{}">{}</a>').format(
                object_label(ws.ct, obj, lang), obj, e["record_id"], name
            )
        out.append(
            EventView(
                at=instant(e["at"]),
                kind=kind,
                who=e["user_name"] or "",
                text=body,
                about=about,
            )
        )
    return out


async def _runs(ws: Workspace, co: CompiledObject, rid: uuid.UUID) -> list[RunView]:
    """The record's approval runs, newest first, with their events."""
    found = await inbox.for_record(ws.conn, co, rid)
    ids = {e["actor_id"] for run in found for e in run["events"] if e["actor_id"]}
    names: dict[str, str] = {}
    if ids:
        rows = await ws.conn.execute(
            sa.select(users.c.id, users.c.full_name).where(
                users.c.id.in_([uuid.UUID(i) for i in ids])
            )
        )
        names = {str(i): str(n) for i, n in rows}
    lang = ws.actor.language
    out = []
    for run in reversed(found):
        flow = next((f for f in co.approval_flows if f.api_name == run["flow"]), None)
        view = RunView(
            flow=text(flow.label, _languages(ws), run["flow"]) if flow else run["flow"],
            status=run["status"],
            status_label=word(f"record_run_{run['status']}", ws.actor.language)
            if f"record_run_{run['status']}" in CATALOGUE
            else run["status"],
            submitted_at=instant(run["submitted_at"]),
        )
        for e in run["events"]:
            view.events.append(
                (
                    instant(e["at"]),
                    names.get(e["actor_id"] or "", ""),
                    _known("record_action_", e["action"], lang)
                    + (f" ({e['step']})" if e["step"] else ""),
                    e["comment"] or "",
                )
            )
        out.append(view)
    return out


async def draw(
    ws: Workspace,
    object_name: str,
    record_id: str,
    *,
    problems: list[str] | None = None,
    done: str | None = None,
    merge: uuid.UUID | None = None,
    status: int = 200,
) -> Response:
    """The record page, with `problems` (a refused action's messages) or a `done` notice
    (after a merge, with its Undo button)."""
    page = await _load(ws, object_name, record_id)
    notice = word(_DONE[done], ws.actor.language) if done in _DONE else None
    return await ws.page(
        "record.html",
        {"r": page, "problems": problems or [], "notice": notice, "merge_id": merge},
        status=status,
    )


@router.get("/o/{object_name}/{record_id}")
async def record_page(
    object_name: str,
    record_id: str,
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    done: str | None = None,
    merge: str | None = None,
) -> Response:
    """A record as the user may see it, with its path, related lists, timeline and actions."""
    merge_id = None
    if done == "merged" and merge:
        with contextlib.suppress(ValueError):
            merge_id = uuid.UUID(merge[:36])
    async with workspace(request, state, identity) as ws:
        return await draw(ws, object_name, record_id, done=done, merge=merge_id)
