"""Kanban boards: records in columns by a picklist, moved through the stage endpoint."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Form, Header, Query, Request
from markupsafe import Markup
from starlette.responses import RedirectResponse, Response

from metacrm import i18n
from metacrm.errors import FieldError, MetacrmError, NotFound, RecordInvalid
from metacrm.metadata.base import label_text
from metacrm.metadata.process import StageRule
from metacrm.platform.api.common import if_match_version, path_id
from metacrm.platform.state import StateDep, object_or_404
from metacrm.platform.web.render import is_htmx, render
from metacrm.platform.web.session import WebIdentityDep, csrf_token, safe_next
from metacrm.platform.web.shell import object_label
from metacrm.platform.web.texts import word
from metacrm.platform.web.values import choice_label, display, link_name_paths
from metacrm.platform.web.workspace import Workspace, workspace
from metacrm.runtime import board, writes
from metacrm.runtime.compiler import CompiledObject
from metacrm.runtime.hooks import Intent, Origin
from metacrm.runtime.layouts import select_layout
from metacrm.runtime.listing import ListQuery, list_records
from metacrm.runtime.permissions import (
    field_access,
    object_permission,
    readable,
    require_object,
)
from metacrm.runtime.process import stages
from metacrm.runtime.tenant_tables import users
from metacrm.ui_schema.labels import text
from metacrm.ui_schema.selection import select_list_view

router = APIRouter(prefix="/app", include_in_schema=False)

#: Cards a column shows at first, and adds on each "Load more".
PAGE_SIZE = 20
#: Newest first, on the primary key (ids are time-ordered): a long column pages by keyset
#: on an index, never by OFFSET, and its first page stops after a few rows of the index.
CARD_ORDER = "-id"
#: Newest first too, for a column whose cards all fit on its first page: with no index to
#: walk, the database reads the table once and keeps the few matches, where a walk of the
#: primary key would visit every row of the table to find them.
SHORT_ORDER = "-created_at"
_ORDERS = (CARD_ORDER, SHORT_ORDER)
OWNER = "owner_id"
_Name = Annotated[str | None, Query(max_length=100)]


@dataclass
class Card:
    """One record drawn as a card: its title and its compact fields."""

    id: str
    version: int
    value: str
    title: str
    rows: list[tuple[str, Markup]]


@dataclass
class Lane:
    """One column: an active value of the picklist, its figures and its first cards."""

    index: int
    value: str
    label: str
    count: int
    amount: str | None
    total: Markup | None
    cards: list[Card] = field(default_factory=list)
    more: str | None = None


@dataclass
class BoardSpec:
    """What every card of a board is drawn from: the object, its field, its card fields."""

    co: CompiledObject
    field: str
    amount: str | None
    fields: list[str]
    title_field: str | None
    paths: list[str]
    choices: list[tuple[str, str]]
    #: Whether the user may change the field at all (object edit, field editable): else
    #: cards are drawn without a way to move them (the server would refuse anyway).
    movable: bool

    @property
    def values(self) -> list[str]:
        return [value for value, _ in self.choices]


def _spec(ws: Workspace, co: CompiledObject, field_name: str) -> BoardSpec:
    ct, actor, language = ws.ct, ws.actor, ws.actor.language
    shown = set(readable(ct, actor, co))
    amount = board.amount_field(ct, actor, co, field_name)
    compact = select_layout(ct.model, co.obj, actor).compact
    names = [n for n in compact if (n in shown or n == OWNER) and n != field_name]
    if not names:
        fallback = [co.obj.record_name_field, amount]
        names = [n for n in fallback if n and n in shown and n != field_name] + [OWNER]
    title_field = co.obj.record_name_field
    if title_field not in shown:
        title_field = next((n for n in names if n in co.fields), None)
    fields = [n for n in dict.fromkeys([*names]) if n != title_field]
    picklist = co.fields[field_name]
    choices = [
        (c.value, choice_label(picklist, c.value, language))
        for c in getattr(picklist, "values", ())
        if c.active
    ]
    paths = link_name_paths(ct, co, actor, [n for n in fields if n in co.fields])
    permission = object_permission(ct.model, actor, co.name)
    movable = (permission.edit or permission.modify_all) and field_access(
        ct.model, actor, co.name, field_name
    ) == "edit"
    return BoardSpec(co, field_name, amount, fields, title_field, paths, choices, movable)


def _where(spec: BoardSpec, value: str) -> str:
    """The filter of one column; the value comes from the metadata, quoted as a literal."""
    return f"{spec.field} == {value!r}"


def _more_url(spec: BoardSpec, value: str, cursor: str, order: str) -> str:
    query = urlencode({"field": spec.field, "value": value, "order": order, "cursor": cursor})
    return f"/app/o/{spec.co.name}/kanban/column?{query}"


async def _owner_names(ws: Workspace, records: list[dict[str, Any]]) -> dict[str, str]:
    """Full names of the owners of `records`: one query for a whole board."""
    ids = {r[OWNER] for r in records if r.get(OWNER)}
    if not ids:
        return {}
    rows = await ws.conn.execute(
        sa.select(users.c.id, users.c.full_name).where(users.c.id.in_(uuid.UUID(i) for i in ids))
    )
    return {str(row.id): row.full_name or "" for row in rows}


def _card(ws: Workspace, spec: BoardSpec, record: dict[str, Any], owners: dict[str, str]) -> Card:
    language, co = ws.actor.language, spec.co
    rows: list[tuple[str, Markup]] = []
    for name in spec.fields:
        if name == OWNER:
            owner = owners.get(str(record.get(OWNER)), "")
            rows.append((word("kanban_owner", language), Markup("{}").format(owner or "—")))
            continue
        definition = co.fields[name]
        target = getattr(definition, "target", None)
        link = None
        if target is not None:
            name_field = ws.ct.model.object(target).record_name_field
            link = record.get(f"{name}.{name_field}")
        value = display(
            definition,
            record.get(name),
            language=language,
            currency=ws.currency,
            link_name=link,
        )
        rows.append((text(definition.label, [language, "en"], name), value))
    title = record.get(spec.title_field) if spec.title_field else None
    return Card(
        id=str(record["id"]),
        version=int(record["version"]),
        value=str(record.get(spec.field)),
        title=str(title) if title not in (None, "") else str(record["id"])[:8],
        rows=rows,
    )


async def _page_of(
    ws: Workspace, spec: BoardSpec, value: str, cursor: str | None, order: str = CARD_ORDER
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a column's records, through the record list every list uses."""
    fields = ["id", "version", spec.field, *(f for f in spec.fields if f != spec.field)]
    if spec.title_field:
        fields.append(spec.title_field)
    query = ListQuery(
        where=_where(spec, value),
        order_by=order,
        fields=",".join(dict.fromkeys([*fields, *spec.paths])),
        limit=PAGE_SIZE,
        cursor=cursor,
    )
    page = await list_records(
        ws.conn, ws.ct, spec.co, query, actor=ws.actor, cursor_key=ws.state.signing_key.encode()
    )
    return page["records"], page["next_cursor"]


async def _lanes(ws: Workspace, spec: BoardSpec, figures: dict[str, Any]) -> list[Lane]:
    """Every column with its figures (from the one grouped query) and its first cards."""
    amount_def = spec.co.fields.get(spec.amount or "")
    labels = dict(spec.choices)
    lanes = []
    for index, figure in enumerate(figures["lanes"]):
        total = None
        if amount_def is not None and figure["amount"] is not None:
            total = display(
                amount_def,
                Decimal(figure["amount"]),
                language=ws.actor.language,
                currency=ws.currency,
            )
        lanes.append(
            Lane(
                index=index,
                value=figure["value"],
                label=labels.get(figure["value"], figure["value"]),
                count=figure["count"],
                amount=figure["amount"],
                total=total,
            )
        )
    return lanes


def _field_choices(ws: Workspace, co: CompiledObject) -> list[tuple[str, str]]:
    """The picklists a user may group this board by, with their labels."""
    language = ws.actor.language
    return [
        (n, text(co.fields[n].label, [language, "en"], n))
        for n in board.board_fields(ws.ct, ws.actor, co)
    ]


async def _board_page(
    ws: Workspace,
    co: CompiledObject,
    requested: str | None,
    *,
    alert: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    ct, actor = ws.ct, ws.actor
    require_object(ct.model, actor, co.name, "read")
    context: dict[str, Any] = {
        "object": co.name,
        "object_label": object_label(ct, co.name, actor.language, plural=True),
        "choices": _field_choices(ws, co),
        "field": requested or "",
        "lanes": [],
        "elsewhere": 0,
        "problem": None,
        "alert": alert,
    }
    view_field = select_list_view(ct.model, co.obj, actor).kanban_field
    try:
        chosen = board.choose_field(ct, actor, co, requested or None, view_field=view_field)
    except MetacrmError as error:
        if error.status >= 500:
            raise
        context["problem"] = _localised(error, co, actor.language)[0]
        return await ws.page("kanban.html", context, status=error.status)
    spec = _spec(ws, co, chosen)
    figures = await board.board(ws.conn, ct, actor, co, chosen)
    lanes = await _lanes(ws, spec, figures)
    # The grouped figures tell which columns are empty (no query) and which are short.
    orders = [CARD_ORDER if lane.count > PAGE_SIZE else SHORT_ORDER for lane in lanes]
    pages = [
        await _page_of(ws, spec, lane.value, None, order) if lane.count else ([], None)
        for lane, order in zip(lanes, orders, strict=True)
    ]
    owners = await _owner_names(ws, [r for records, _ in pages for r in records])
    for lane, order, (records, cursor) in zip(lanes, orders, pages, strict=True):
        lane.cards = [_card(ws, spec, r, owners) for r in records]
        lane.more = _more_url(spec, lane.value, cursor, order) if cursor else None
    context |= {
        "field": chosen,
        "field_label": text(co.fields[chosen].label, [actor.language, "en"], chosen),
        "lanes": lanes,
        "lane_choices": spec.choices,
        "movable": spec.movable,
        "elsewhere": figures["elsewhere"],
        "has_amount": spec.amount is not None,
    }
    return await ws.page("kanban.html", context, status=status)


@router.get("/o/{object_name}/kanban")
async def board_page(
    object_name: str,
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    field: _Name = None,
) -> Response:
    """The board of an object: a column per active value of a picklist, cards in each."""
    async with workspace(request, state, identity) as ws:
        co = object_or_404(ws.ct, object_name)
        return await _board_page(ws, co, field)


@router.get("/o/{object_name}/kanban/column")
async def column_page(
    object_name: str,
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    field: Annotated[str, Query(max_length=100)],
    value: Annotated[str, Query(max_length=100)],
    cursor: Annotated[str | None, Query(max_length=4000)] = None,
    order: Annotated[str, Query(max_length=20)] = CARD_ORDER,
) -> Response:
    """The next cards of one column, after `cursor` (htmx appends them)."""
    async with workspace(request, state, identity) as ws:
        co = object_or_404(ws.ct, object_name)
        chosen = board.choose_field(ws.ct, ws.actor, co, field)
        spec = _spec(ws, co, chosen)
        if value not in spec.values:
            raise NotFound(f"the board by {chosen} has no column {value[:64]!r}")
        if order not in _ORDERS:
            raise NotFound(f"a column is ordered by {' or '.join(_ORDERS)}, not {order[:20]!r}")
        records, next_cursor = await _page_of(ws, spec, value, cursor, order)
        owners = await _owner_names(ws, records)
        context = {
            "object": co.name,
            "field": chosen,
            "lane_choices": spec.choices,
            "movable": spec.movable,
            "cards": [_card(ws, spec, r, owners) for r in records],
            "more": _more_url(spec, value, next_cursor, order) if next_cursor else None,
        }
        return ws.fragment("kanban_cards.html", context)


@dataclass
class _Move:
    """What a move names, kept for localising its refusal after the transaction ends."""

    co: CompiledObject | None = None
    rule: StageRule | None = None


@router.post("/o/{object_name}/{record_id}/stage")
async def move_card(
    object_name: str,
    record_id: str,
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    to: Annotated[str, Form(max_length=100)] = "",
    field: Annotated[str | None, Form(max_length=100)] = None,
    version: Annotated[str | None, Form(max_length=20)] = None,
    next: Annotated[str | None, Form(max_length=2000)] = None,
    reason: Annotated[str | None, Form(max_length=2000)] = None,
    if_match: Annotated[str | None, Header(max_length=100)] = None,
) -> Response:
    """Move a record to the column `to`: through the stage move (gates and all) when a stage
    rule governs the field, else an ordinary update of the field."""
    move = _Move()
    try:
        async with workspace(request, state, identity, writes=True) as ws:
            co = move.co = object_or_404(ws.ct, object_name)
            chosen = board.choose_field(ws.ct, ws.actor, co, field)
            move.rule = board.stage_rule(co, chosen)
            spec = _spec(ws, co, chosen)
            rid = path_id(record_id)
            expected = if_match_version(if_match or version)
            if to not in spec.values:
                message = f"{to[:64]!r} is not a column of this board"
                raise RecordInvalid(message, [FieldError(chosen, "not-a-value", message)])
            if move.rule is not None:
                intent = Intent(
                    ws.actor, origin=Origin.STAGE, reason=(reason or "").strip() or None
                )
                await stages.move(
                    ws.conn, ws.ct, co, rid, intent, to=to, rule=move.rule.api_name,
                    if_match=expected,
                )  # fmt: skip
            else:
                await writes.update(
                    ws.conn, ws.ct, co, rid, {chosen: to}, Intent(ws.actor), if_match=expected
                )
            if not is_htmx(request):
                target = f"/app/o/{co.name}/kanban?{urlencode({'field': chosen})}"
                return RedirectResponse(safe_next(next) if next else target, status_code=303)
            return await _moved(ws, spec, rid, to)
    except MetacrmError as error:
        if error.status in (401, 500):
            raise
        language = identity.language or "en"
        alert = {
            "title": _refusal_title(move, to, language),
            "messages": _localised(error, move.co, language, move.rule, to),
            # A move refused for want of a reason can be tried again with one, from the alert.
            "retry": {
                "action": f"/app/o/{object_name}/{record_id}/stage",
                "card": record_id,
                "field": field or "",
                "to": to,
                "version": version or "",
            }
            if any(e.code == "reason-required" for e in error.errors)
            else None,
        }
        if is_htmx(request):
            csrf = csrf_token(identity, state.signing_key)
            return render(
                request, "kanban_alert.html", {"alert": alert, "csrf": csrf}, language=language,
                status=error.status,
            )  # fmt: skip
        if move.co is None:
            raise
        async with workspace(request, state, identity) as ws:
            return await _board_page(ws, move.co, field, alert=alert, status=error.status)


async def _moved(ws: Workspace, spec: BoardSpec, record_id: uuid.UUID, to: str) -> Response:
    """The moved card, drawn afresh (its new version), and every column's new figures."""
    query = ListQuery(
        where=f"id == {str(record_id)!r}",
        fields=",".join(
            dict.fromkeys(
                [
                    "id",
                    "version",
                    spec.field,
                    *spec.fields,
                    *([spec.title_field] if spec.title_field else []),
                    *spec.paths,
                ]
            )
        ),
        limit=1,
    )
    page = await list_records(
        ws.conn, ws.ct, spec.co, query, actor=ws.actor, cursor_key=ws.state.signing_key.encode()
    )
    owners = await _owner_names(ws, page["records"])
    figures = await board.board(ws.conn, ws.ct, ws.actor, spec.co, spec.field)
    context = {
        "object": spec.co.name,
        "field": spec.field,
        "lane_choices": spec.choices,
        "movable": spec.movable,
        "cards": [_card(ws, spec, r, owners) for r in page["records"]],
        "more": None,
        "lanes": await _lanes(ws, spec, figures),
        "moved_to": dict(spec.choices).get(to, to),
    }
    return ws.fragment("kanban_moved.html", context)


def _refusal_title(move: _Move, to: str, language: i18n.Language) -> str:
    label = to
    if move.co is not None and move.rule is not None:
        label = choice_label(move.co.fields[move.rule.field], to, language)
    return word("kanban_refused", language, to=label)


def _localised(
    error: MetacrmError,
    co: CompiledObject | None,
    language: i18n.Language,
    rule: StageRule | None = None,
    to: str = "",
) -> list[str]:
    """Every problem of a refusal in the user's language, as the API words them (fields by
    their labels, a stage's own entry message when it has one)."""
    if error.code == "stale-version":
        return [word("kanban_stale", language)]
    if not error.errors:
        return [i18n.detail(error.code, language, error.detail)]
    out = []
    for problem in error.errors:
        shown = problem.field
        if co is not None and problem.field in co.fields:
            shown = text(co.fields[problem.field].label, [language, "en"], problem.field)
        stage = rule.stage(to) if rule is not None else None
        if problem.code == "entry-condition" and stage is not None and stage.entry_message:
            out.append(label_text(stage.entry_message, language, problem.message))
        else:
            out.append(i18n.message(problem.code, shown, language, problem.message))
    return out
