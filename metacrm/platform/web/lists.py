"""List pages: list views, ad-hoc filters, sorting, columns, paging and bulk actions."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Request
from markupsafe import Markup
from starlette.responses import RedirectResponse, Response

from metacrm.errors import FormulaError, MetacrmError, NotFound, PermissionDenied, QueryInvalid
from metacrm.metadata.layouts import ListView
from metacrm.platform.api.export import export_response
from metacrm.platform.state import StateDep, object_or_404
from metacrm.platform.web.imports import may_import
from metacrm.platform.web.session import WebIdentityDep, safe_next
from metacrm.platform.web.shell import colleague_name, object_label
from metacrm.platform.web.texts import word
from metacrm.platform.web.values import choice_label, display, kind_of, link_name_paths
from metacrm.platform.web.workspace import Workspace, workspace
from metacrm.runtime import personal_views, records, writes
from metacrm.runtime.compiler import UNSORTABLE, CompiledObject
from metacrm.runtime.data.export import Format, plan_export, require_export
from metacrm.runtime.hooks import Intent
from metacrm.runtime.listing import ListQuery, list_records, summable
from metacrm.runtime.permissions import (
    has_platform_permission,
    object_permission,
    object_readable,
    readable,
)
from metacrm.runtime.tenant_tables import users
from metacrm.ui_schema.labels import text
from metacrm.ui_schema.lists import list_document
from metacrm.ui_schema.selection import list_views_of, select_list_view, view_visible

router = APIRouter(prefix="/app", include_in_schema=False)

#: How many earlier pages the URL remembers for "previous".
MAX_BACK = 40
#: Records one bulk action may change.
MAX_BULK = 200
_MAX_WHERE = 4000
_MAX_COLUMNS = 100
_CHOICE_KINDS = ("picklist", "multi_picklist")


@dataclass
class ListParams:
    """What a list page shows, as given in its URL (or in a form copying it)."""

    view: str | None = None
    where: str = ""
    order_by: str | None = None
    columns: list[str] = field(default_factory=list)
    cursor: str | None = None
    back: list[str] = field(default_factory=list)
    #: How many pages come before this one (the URL keeps only the last MAX_BACK cursors).
    page: int = 0

    @classmethod
    def read(cls, values: Any) -> ListParams:
        """The parameters from a query string or a form: lengths capped, nothing trusted."""

        def one(name: str, limit: int) -> str | None:
            value = values.get(name)
            return value[:limit] if isinstance(value, str) and value else None

        columns: list[str] = []
        for item in values.getlist("columns"):
            if isinstance(item, str):
                columns += [c.strip()[:63] for c in item.split(",") if c.strip()]
        back = [b[:4000] for b in values.getlist("back") if isinstance(b, str)][-MAX_BACK:]
        page = one("page", 9)
        cursor = one("cursor", 4000)
        return cls(
            view=one("view", 100),
            where=(one("where", _MAX_WHERE + 1) or "").strip(),
            order_by=one("order_by", 500),
            columns=list(dict.fromkeys(columns))[:_MAX_COLUMNS],
            cursor=cursor,
            back=back,
            page=int(page) if cursor and page and page.isdigit() else 0,
        )

    def query(self, **changes: Any) -> str:
        """This page's query string with `changes` (None drops a parameter)."""
        values: dict[str, Any] = {
            "view": self.view,
            "where": self.where or None,
            "order_by": self.order_by,
            "columns": ",".join(self.columns) or None,
            "cursor": self.cursor,
            "back": self.back or None,
            "page": self.page or None,
        }
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v not in (None, [], "")}, doseq=True)


@dataclass
class Column:
    name: str
    label: str
    kind: str
    number: bool
    sort_url: str | None
    sorted: str | None  # "ascending", "descending" or None


@dataclass
class Plan:
    """A list page resolved: the view, its columns and the query that fills it."""

    co: CompiledObject
    view: ListView
    document: dict[str, Any]
    columns: list[str]
    where: str | None
    order_by: str | None
    fields: list[str]
    problems: list[str] = field(default_factory=list)


def _languages(ws: Workspace) -> list[str]:
    return [ws.actor.language, "en"]


def _t(ws: Workspace, key: str, **values: object) -> str:
    return word(key, ws.actor.language, **values)


def _require_readable(ws: Workspace, co: CompiledObject) -> None:
    if not object_readable(ws.ct, ws.actor, co):
        raise PermissionDenied(f"your role may not read {co.name} records")


async def _choose_view(ws: Workspace, co: CompiledObject, name: str | None) -> ListView:
    if name and name.startswith(personal_views.PREFIX):
        own = await personal_views.find(ws.conn, ws.ct, ws.actor, co, name)
        if own is None:
            raise NotFound(f"{co.name} has no list view named {name[:64]!r} that you may see")
        return own
    return select_list_view(ws.ct.model, co.obj, ws.actor, name=name)


def _combined(view_filter: str | None, where: str) -> str | None:
    if view_filter and where:
        return f"({view_filter}) and ({where})"
    return view_filter or where or None


async def _plan(ws: Workspace, co: CompiledObject, params: ListParams) -> Plan:
    """The view chosen, the columns shown (readable only), the query to run."""
    _require_readable(ws, co)
    view = await _choose_view(ws, co, params.view)
    visible = set(readable(ws.ct, ws.actor, co))
    problems = []
    columns = list(view.columns)
    if params.columns:
        unknown = [c for c in params.columns if c not in visible]
        if unknown:
            problems.append(_t(ws, "list_unknown_columns", names=", ".join(unknown)[:200]))
        chosen = [c for c in params.columns if c in visible]
        if chosen:
            columns = chosen
    document = list_document(
        ws.ct.model, co.obj, view.model_copy(update={"columns": columns}), ws.actor, _languages(ws)
    )
    shown = [c["field"] for c in document["columns"]]
    if not shown:
        name = co.obj.record_name_field
        shown = [name] if name and name in visible else sorted(visible)[:1]
        document = list_document(
            ws.ct.model,
            co.obj,
            view.model_copy(update={"columns": shown}),
            ws.actor,
            _languages(ws),
        )
    name = co.obj.record_name_field
    fields = list(shown)
    if name and name in visible and name not in fields:
        fields.append(name)
    fields += link_name_paths(ws.ct, co, ws.actor, shown)
    order_by = params.order_by or document["query"].get("order_by")
    return Plan(
        co,
        view,
        document,
        shown,
        _combined(view.filter, params.where),
        order_by,
        fields,
        problems,
    )


def _message(error: MetacrmError) -> str:
    return str(error.detail)


async def _run(
    ws: Workspace, plan: Plan, params: ListParams
) -> tuple[dict[str, Any] | None, str | None]:
    """One page of the list and its exact count, or the problem that stopped it."""
    query = ListQuery(
        where=plan.where,
        order_by=plan.order_by,
        fields=",".join(plan.fields),
        limit=plan.view.limit,
        cursor=params.cursor,
        count=True,
        # The totals row, added up in the count's own query.
        sums=tuple(n for n in plan.columns if summable(plan.co, n)),
    )
    key = ws.state.signing_key.encode()
    if len(params.where) > _MAX_WHERE:
        return None, _t(ws, "list_where_too_long", limit=f"{_MAX_WHERE:,}")
    try:
        return await list_records(
            ws.conn, ws.ct, plan.co, query, actor=ws.actor, cursor_key=key
        ), None
    except (QueryInvalid, FormulaError) as error:
        if isinstance(error, FormulaError) and params.where and plan.view.filter:
            # Report the position in what the user wrote, not in the combined filter.
            alone = ListQuery(where=params.where, fields="id", limit=1)
            try:
                await list_records(ws.conn, ws.ct, plan.co, alone, actor=ws.actor, cursor_key=key)
            except (QueryInvalid, FormulaError) as own:
                return None, _message(own)
        return None, _message(error)


def _sort_state(order_by: str | None) -> tuple[str | None, bool]:
    first = (order_by or "").split(",")[0].strip()
    if not first:
        return None, False
    return first.lstrip("+-"), first.startswith("-")


def _sortable(co: CompiledObject, name: str) -> bool:
    f = co.obj.field(name)
    return kind_of(f) not in (*UNSORTABLE, "lookup", "master_detail")


def _columns(ws: Workspace, plan: Plan, params: ListParams) -> list[Column]:
    sorted_by, descending = _sort_state(plan.order_by)
    out = []
    for column in plan.document["columns"]:
        name = column["field"]
        f = plan.co.obj.field(name)
        kind = kind_of(f)
        sort_url = None
        if _sortable(plan.co, name):
            target = f"-{name}" if sorted_by == name and not descending else name
            sort_url = f"/app/o/{plan.co.name}?" + params.query(
                order_by=target, cursor=None, back=None, page=None
            )
        state = None
        if sorted_by == name:
            state = "descending" if descending else "ascending"
        number = kind in ("number", "currency", "percent")
        out.append(Column(name, column["label"], kind, number, sort_url, state))
    return out


def _name_text(plan: Plan, record: dict[str, Any]) -> str:
    name = plan.co.obj.record_name_field
    value = record.get(name) if name else None
    if value in (None, ""):
        return str(record["id"])[:8]
    return str(value)


def _rows(ws: Workspace, plan: Plan, page_records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    language = ws.actor.language
    name_field = plan.co.obj.record_name_field
    link_column = name_field if name_field in plan.columns else plan.columns[0]
    rows = []
    for record in page_records:
        cells = []
        for name in plan.columns:
            f = plan.co.obj.field(name)
            value = record.get(name)
            if name == link_column:
                shown = value if value not in (None, "") else str(record["id"])[:8]
                if kind_of(f) in _CHOICE_KINDS and isinstance(value, str):
                    shown = choice_label(f, value, language)
                html = Markup('<a href="/app/o/{}/{}">{}</a>').format(
                    plan.co.name, record["id"], shown
                )
            else:
                target_name = _target_name(ws, f)
                link_name = record.get(f"{name}.{target_name}") if target_name else None
                html = display(
                    f, value, language=language, currency=ws.currency, link_name=link_name
                )
            number = kind_of(f) in ("number", "currency", "percent")
            cells.append({"html": html, "number": number})
        rows.append({"id": record["id"], "name": _name_text(plan, record), "cells": cells})
    return rows


def _target_name(ws: Workspace, f: Any) -> str | None:
    target = getattr(f, "target", None)
    if not target or not ws.ct.model.has_object(target):
        return None
    return ws.ct.model.object(target).record_name_field


def _labels(ws: Workspace, co: CompiledObject, names: list[str]) -> dict[str, str]:
    """Field labels in the user's language."""
    languages = _languages(ws)
    return {n: text(co.obj.field(n).label, languages, n) for n in names if co.obj.has_field(n)}


async def _owners(ws: Workspace) -> list[dict[str, str]]:
    rows = await ws.conn.execute(
        sa.select(users.c.id, users.c.full_name, users.c.email)
        .where(users.c.is_active.is_(True))
        .order_by(users.c.full_name, users.c.email)
        .limit(500)
    )
    return [{"id": str(r.id), "name": colleague_name(r.full_name, r.email)} for r in rows]


def _count_text(ws: Workspace, start: int, shown: int, total: int) -> str:
    if total == 0 or shown == 0:
        return _t(ws, "list_count_none")
    return _t(
        ws, "list_count", first=f"{start:,}", last=f"{start + shown - 1:,}", total=f"{total:,}"
    )


async def _page_context(
    ws: Workspace, co: CompiledObject, params: ListParams
) -> tuple[dict[str, Any], int]:
    """Everything list.html draws, and the page's status (422 when the query was refused)."""
    plan = await _plan(ws, co, params)
    page, problem = await _run(ws, plan, params)
    problems = [*plan.problems, *([problem] if problem else [])]
    status = 422 if problem else 200
    records_ = page["records"] if page else []
    total = page.get("total", 0) if page else 0
    limit = plan.view.limit
    start = params.page * limit + 1
    base = f"/app/o/{co.name}?"
    next_url = None
    if page and page["next_cursor"]:
        next_url = base + params.query(
            cursor=page["next_cursor"],
            back=[*params.back, params.cursor or "0"][-MAX_BACK:],
            page=params.page + 1,
        )
    prev_url = None
    if params.back:
        earlier = params.back[-1]
        prev_url = base + params.query(
            cursor=None if earlier == "0" else earlier,
            back=params.back[:-1] or None,
            page=max(params.page - 1, 0) or None,
        )
    first_url = base + params.query(cursor=None, back=None, page=None) if params.cursor else None
    shared = [v for v in list_views_of(ws.ct.model, co.obj) if view_visible(v, ws.actor)]
    if not plan.view.api_name.startswith(personal_views.PREFIX) and all(
        v.api_name != plan.view.api_name for v in shared
    ):
        shared.append(plan.view)  # the generated default, asked for by name
    mine = await personal_views.views_of(ws.conn, ws.ct, ws.actor, co)
    languages = _languages(ws)
    permission = object_permission(ws.ct.model, ws.actor, co.name)
    can_transfer = permission.edit or permission.modify_all or ws.actor.is_admin
    visible = readable(ws.ct, ws.actor, co)
    labels = _labels(ws, co, visible)
    builder = [
        {**f, "label": labels.get(f["name"], f["name"])} for f in _builder_fields(ws, co, visible)
    ]
    column_choices = [
        {"name": n, "label": labels.get(n, n), "checked": n in plan.columns}
        for n in [*plan.columns, *[n for n in visible if n not in plan.columns]]
        if n in labels
    ]
    footer = _totals_row(ws, plan, page.get("sums", {})) if page and records_ else []
    context = {
        "object": co.name,
        "footer": footer,
        "label": plan.document["label"],
        "views": [
            {"name": v.api_name, "label": text(v.label, languages, v.api_name)} for v in shared
        ],
        "my_views": [
            {"name": v.api_name, "label": text(v.label, languages, v.api_name)} for v in mine
        ],
        "view": plan.view.api_name,
        "is_personal": plan.view.api_name.startswith(personal_views.PREFIX),
        "params": params,
        "where": params.where,
        "problems": problems,
        "columns": _columns(ws, plan, params),
        "rows": _rows(ws, plan, records_),
        "count_text": _count_text(ws, start, len(records_), total) if page else "",
        "next_url": next_url,
        "prev_url": prev_url,
        "first_url": first_url,
        "builder": builder,
        "builder_json": json.dumps(builder, ensure_ascii=False),
        "column_choices": column_choices,
        "owners": await _owners(ws) if can_transfer else [],
        "board_url": (
            f"/app/o/{co.name}/kanban?" + urlencode({"field": plan.document["kanban"]["field"]})
            if plan.document["kanban"]
            else None
        ),
        "can_create": permission.create or ws.actor.is_admin,
        "can_delete": permission.delete or ws.actor.is_admin,
        "can_transfer": can_transfer,
        "can_export": has_platform_permission(ws.ct.model, ws.actor, "export_data"),
        "can_import": may_import(ws.ct, ws.actor, co.name),
        "save_filter": plan.where or "",
        "save_sort": plan.order_by or "",
        "save_columns": ",".join(plan.columns),
        "here": f"/app/o/{co.name}?" + params.query(),
    }
    return context, status


def _totals_row(ws: Workspace, plan: Plan, sums: dict[str, Any]) -> list[dict[str, Any]]:
    """The totals row: the sum of each number and currency column over every page (empty
    when no column adds up)."""
    if not sums:
        return []
    cells: list[dict[str, Any]] = []
    for i, name in enumerate(plan.columns):
        f = plan.co.obj.field(name)
        if name in sums:
            html = display(f, sums[name], language=ws.actor.language, currency=ws.currency)
            cells.append({"html": html, "number": True, "label": False})
        else:
            label = i == 0
            cells.append(
                {"html": _t(ws, "list_total") if label else "", "number": False, "label": label}
            )
    return cells


def _builder_fields(ws: Workspace, co: CompiledObject, visible: list[str]) -> list[dict[str, Any]]:
    language = ws.actor.language
    out = []
    for name in visible:
        f = co.obj.field(name)
        choices = [
            {"value": v.value, "label": choice_label(f, v.value, language)}
            for v in getattr(f, "values", ())
            if getattr(v, "active", True)
        ]
        out.append({"name": name, "kind": kind_of(f), "choices": choices})
    return out


@router.get("/o/{object_name}")
async def list_page(
    object_name: str, request: Request, state: StateDep, identity: WebIdentityDep
) -> Response:
    """A list view of any object: filter, sort, columns, paging with an exact count."""
    params = ListParams.read(request.query_params)
    async with workspace(request, state, identity) as ws:
        co = object_or_404(ws.ct, object_name)
        context, status = await _page_context(ws, co, params)
        return await ws.page("list.html", context, status=status)


@router.post("/o/{object_name}/views")
async def save_view(
    object_name: str, request: Request, state: StateDep, identity: WebIdentityDep
) -> Response:
    """Save the list as shown (columns, filter, sort) as one of the user's own views."""
    form = await request.form()
    params = ListParams.read(form)
    label = str(form.get("label") or "").strip()[:255]
    data = {
        "label": label,
        "columns": [c for c in str(form.get("save_columns") or "").split(",") if c],
        "filter": str(form.get("save_filter") or "")[:_MAX_WHERE] or None,
        "sort": str(form.get("save_sort") or "")[:500] or None,
    }
    async with workspace(request, state, identity, writes=True) as ws:
        co = object_or_404(ws.ct, object_name)
        _require_readable(ws, co)
        try:
            view = await personal_views.save(ws.conn, ws.ct, ws.actor, co, data)
        except MetacrmError as error:
            problems = "; ".join(e.message for e in getattr(error, "errors", [])) or _message(error)
            context, _status = await _page_context(ws, co, params)
            context["problems"] = [
                *context["problems"],
                _t(ws, "list_save_failed", problem=problems),
            ]
            return await ws.page("list.html", context, status=422)
    return RedirectResponse(f"/app/o/{co.name}?view={view.api_name}", status_code=303)


@router.post("/o/{object_name}/views/{view_name}/delete")
async def delete_view(
    object_name: str, view_name: str, request: Request, state: StateDep, identity: WebIdentityDep
) -> Response:
    """Forget one of the user's own list views."""
    async with workspace(request, state, identity, writes=True) as ws:
        co = object_or_404(ws.ct, object_name)
        await personal_views.remove(ws.conn, ws.ct, ws.actor, co, view_name[:100])
    return RedirectResponse(f"/app/o/{co.name}", status_code=303)


def _ids(values: list[Any]) -> list[str]:
    return [v[:64] for v in values if isinstance(v, str)][:MAX_BULK]


@router.post("/o/{object_name}/bulk")
async def bulk(
    object_name: str, request: Request, state: StateDep, identity: WebIdentityDep
) -> Response:
    """Change the owner of, or delete, the selected records; each refusal is reported."""
    form = await request.form()
    action = form.get("action")
    ids = _ids(form.getlist("ids"))
    back = safe_next(str(form.get("next") or ""))
    async with workspace(request, state, identity, writes=True) as ws:
        co = object_or_404(ws.ct, object_name)
        _require_readable(ws, co)
        if action not in ("owner", "delete"):
            raise QueryInvalid("choose an action: change owner or delete", [])
        owner = form.get("owner_id")
        outcomes = []
        for raw in ids:
            outcomes.append(await _bulk_one(ws, co, raw, action, owner))
        done = sum(1 for o in outcomes if o["ok"])
        refused = len(outcomes) - done
        summary_key = "list_bulk_deleted" if action == "delete" else "list_bulk_transferred"
        context = {
            "object": co.name,
            "label": object_label(ws.ct, co.name, ws.actor.language, plural=True),
            "summary": _t(ws, summary_key, done=done, refused=refused),
            "outcomes": outcomes,
            "back": back if back.startswith(f"/app/o/{co.name}") else f"/app/o/{co.name}",
            "nothing": not ids,
        }
        return await ws.page("list_bulk.html", context)


async def _bulk_one(
    ws: Workspace, co: CompiledObject, raw: str, action: Any, owner: Any
) -> dict[str, Any]:
    try:
        record_id = uuid.UUID(raw)
    except ValueError:
        return {"name": raw[:36], "ok": False, "message": _t(ws, "list_bulk_not_found")}
    name = str(record_id)[:8]
    try:
        async with ws.conn.begin_nested():
            current = await records.get(ws.conn, ws.ct, co, record_id, ws.actor)
            field_name = co.obj.record_name_field
            if field_name and current.get(field_name):
                name = str(current[field_name])
            if action == "delete":
                await writes.delete(ws.conn, ws.ct, co, record_id, Intent(ws.actor))
            else:
                await writes.transfer_owner(ws.conn, ws.ct, co, record_id, owner, Intent(ws.actor))
    except NotFound:
        return {"name": name, "ok": False, "message": _t(ws, "list_bulk_not_found")}
    except MetacrmError as error:
        detail = "; ".join(e.message for e in getattr(error, "errors", []) or []) or _message(error)
        return {"name": name, "ok": False, "message": detail}
    return {"name": name, "ok": True, "message": ""}


@router.post("/o/{object_name}/export")
async def export(
    object_name: str, request: Request, state: StateDep, identity: WebIdentityDep
) -> Response:
    """The whole list as shown (every page, its view, filter, sort and columns) as CSV or
    Excel (`format`), under the user's record and field access, with lookup names beside
    their ids; needs export_data, and the export is audited (runtime.data.export)."""
    form = await request.form()
    params = ListParams.read(form)
    params.cursor, params.back, params.page = None, [], 0
    chosen = form.get("format")
    file_format: Format = "xlsx" if chosen == "xlsx" else "csv"
    async with workspace(request, state, identity) as ws:
        co = object_or_404(ws.ct, object_name)
        require_export(ws.ct, ws.actor)
        plan = await _plan(ws, co, params)
        shown = plan.view.model_copy(update={"columns": plan.columns})
        try:
            checked = await plan_export(
                ws.conn,
                ws.ct,
                co,
                ws.actor,
                view=shown,
                where=params.where or None,
                order_by=plan.order_by,
            )
        except (QueryInvalid, FormulaError):
            context, status = await _page_context(ws, co, params)
            return await ws.page("list.html", context, status=max(status, 422))
    return export_response(state, identity, ws.actor, checked, file_format, "api")
