"""Create and edit forms drawn from the form document, with live field rules."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import unicodedata
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from markupsafe import Markup
from starlette.datastructures import FormData, UploadFile
from starlette.responses import RedirectResponse, Response

from metacrm import i18n
from metacrm.errors import (
    MetacrmError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    StaleVersion,
    Unauthenticated,
)
from metacrm.metadata.model import FieldDef
from metacrm.platform.api.common import path_id
from metacrm.platform.state import AppState, StateDep, object_or_404
from metacrm.platform.web.form_duplicates import duplicate_panel, split_refusals, watched_fields
from metacrm.platform.web.session import CSRF_FIELD, WebIdentityDep
from metacrm.platform.web.shell import object_label
from metacrm.platform.web.texts import word
from metacrm.platform.web.values import choice_label, display
from metacrm.platform.web.workspace import Workspace, workspace
from metacrm.runtime import records, writes
from metacrm.runtime.compiler import CompiledObject
from metacrm.runtime.form_state import FormState, draft_state
from metacrm.runtime.hooks import Intent
from metacrm.runtime.layouts import select_layout
from metacrm.runtime.listing import ListQuery, list_records
from metacrm.runtime.permissions import field_access, require_object
from metacrm.runtime.tenant_tables import users
from metacrm.runtime.validation import apply_defaults
from metacrm.ui_schema.forms import form_document
from metacrm.ui_schema.labels import text

router = APIRouter(prefix="/app", include_in_schema=False)

#: Form inputs that are not fields of the record.
VERSION_FIELD = "_version"
#: Set by form.js when the draft calls for another layout: draw the form again, save nothing.
REDRAW_FIELD = "_redraw"
#: Set by the "Save anyway" button of the duplicates panel: save past `warn` rules.
ALLOW_DUPLICATES_FIELD = "_allow_duplicates"
_RESERVED = {CSRF_FIELD, VERSION_FIELD, REDRAW_FIELD, ALLOW_DUPLICATES_FIELD}
_LOOKUP_LIMIT = 10
_WIDGETS = {
    "text": "text",
    "long_text": "textarea",
    "number": "number",
    "currency": "number",
    "percent": "number",
    "boolean": "checkbox",
    "date": "date",
    "datetime": "datetime",
    "email": "email",
    "phone": "tel",
    "url": "url",
    "picklist": "select",
    "multi_picklist": "multiselect",
    "lookup": "lookup",
    "master_detail": "lookup",
    "json": "textarea",
}
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass
class Control:
    """One field of the form as the template draws it."""

    name: str
    label: str
    widget: str
    required: bool
    read_only: bool
    help: str = ""
    #: The value as the control holds it: text, a list of texts, or a boolean.
    value: Any = None
    #: The value drawn for reading (read-only fields).
    shown: Markup = field(default_factory=Markup)
    choices: list[tuple[str, str]] = field(default_factory=list)
    step: str | None = None
    minimum: str | None = None
    maximum: str | None = None
    max_length: int | None = None
    target: str = ""
    lookup_name: str = ""
    errors: list[str] = field(default_factory=list)
    #: Set by the field rules for the draft.
    rule_hidden: bool = False
    rule_required: bool = False
    rule_read_only: bool = False
    allowed: list[str] | None = None


@dataclass
class Section:
    title: str
    columns: int
    controls: list[Control]


@dataclass
class Problem:
    """A server error: its message, and the field it names (when the form shows it)."""

    message: str
    field: str | None = None
    label: str = ""


def _languages(ws: Workspace) -> list[str]:
    return [ws.actor.language, "en"]


def _document(ws: Workspace, co: CompiledObject, record: dict[str, Any] | None) -> dict[str, Any]:
    """The actor's form document for `record` (the layout chosen as the API chooses it)."""
    ct, actor = ws.ct, ws.actor
    chosen = select_layout(ct.model, co.obj, actor, record=record)
    key = ("ui:form", co.name, chosen.api_name, actor.role, actor.is_admin, actor.language)
    languages = _languages(ws)
    document: dict[str, Any] = ct.views.get_or_build(
        key, lambda: form_document(ct.model, co.obj, chosen, actor, languages)
    )
    return document


def _layout_name(ws: Workspace, co: CompiledObject, record: dict[str, Any] | None) -> str:
    return select_layout(ws.ct.model, co.obj, ws.actor, record=record).api_name


def _conditional_layouts(ws: Workspace, co: CompiledObject) -> bool:
    """Whether a layout of the object depends on a record's values (a record type)."""
    return any(
        layout.object == co.name and layout.when is not None for layout in ws.ct.model.layouts
    )


def _watched(ws: Workspace, co: CompiledObject, controls: list[Control]) -> list[str]:
    """The form's fields whose change may change the form: those the field rules' conditions
    and the layouts' record types read (only fields the form shows are named)."""
    names = {path.split(".", 1)[0] for _rule, checked in co.field_rules for path in checked.paths}
    names |= {
        layout.when.field
        for layout in ws.ct.model.layouts
        if layout.object == co.name and layout.when is not None
    }
    return sorted(c.name for c in controls if c.name in names and not c.read_only)


def _form_value(definition: FieldDef, value: Any) -> Any:
    """A record's JSON value as its control holds it."""
    if value is None:
        return [] if definition.type == "multi_picklist" else ""
    match definition.type:
        case "boolean":
            return bool(value)
        case "multi_picklist":
            return [str(v) for v in value] if isinstance(value, list) else [str(value)]
        case "datetime":
            return str(value).replace(" ", "T")[:16]
        case "date":
            return str(value)[:10]
        case "json":
            return json.dumps(value, ensure_ascii=False, indent=2)
    return str(value)


def _posted_value(definition: FieldDef, items: list[str]) -> Any:
    """What the user typed, kept as the control holds it (shown again after an error)."""
    if definition.type == "multi_picklist":
        return [v for v in items if v]
    if definition.type == "boolean":
        return bool(items) and items[-1] in ("true", "on", "1")
    return items[-1] if items else ""


def _convert(definition: FieldDef, items: list[str]) -> Any:
    """A form value as the API's JSON value: empty is null, checkboxes are booleans."""
    match definition.type:
        case "multi_picklist":
            chosen = [v for v in items if v]
            return chosen or None
        case "boolean":
            return bool(items) and items[-1] in ("true", "on", "1")
        case "json":
            raw = items[-1] if items else ""
            if not raw.strip():
                return None
            try:
                return json.loads(raw)
            except ValueError:
                return raw
    raw = items[-1] if items else ""
    if definition.type in ("number", "currency", "percent", "date", "datetime"):
        raw = raw.strip()
    return raw if raw != "" else None


def _keys(form: FormData) -> list[str]:
    seen: dict[str, None] = {}
    for key, _value in form.multi_items():
        seen.setdefault(key, None)
    return list(seen)


def _texts(form: FormData, key: str) -> list[str]:
    return [v for v in form.getlist(key) if isinstance(v, str)]


def record_from_form(
    co: CompiledObject, form: FormData, *, drawn: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The record a form submits, as the REST API's JSON body: fields converted by type;
    anything else passed on as given, for the write path to refuse. With `drawn` (the
    record the edit form was drawn from), a field whose control still holds the value it
    was drawn with is left out: untouched, so unchanged (to the microsecond)."""
    data: dict[str, Any] = {}
    for key in _keys(form):
        if key in _RESERVED:
            continue
        items = _texts(form, key)
        definition = co.fields.get(key)
        if definition is None:
            data[key] = items[-1] if len(items) == 1 else items
            continue
        if drawn is not None and _untouched(definition, items, drawn.get(key)):
            continue
        data[key] = _convert(definition, items)
    return data


def _untouched(definition: FieldDef, items: list[str], value: Any) -> bool:
    posted = _posted_value(definition, items)
    held = _form_value(definition, value)
    if isinstance(posted, list) and isinstance(held, list):
        return sorted(posted) == sorted(held)
    return bool(posted == held)


def _scale_step(definition: FieldDef) -> str | None:
    scale = getattr(definition, "scale", None)
    if scale is None:
        return "any"
    return "1" if scale == 0 else "0." + "0" * (scale - 1) + "1"


def _choices(definition: FieldDef, language: str, current: Any) -> list[tuple[str, str]]:
    values = getattr(definition, "values", [])
    held = set(current if isinstance(current, list) else [current])
    return [
        (v.value, choice_label(definition, v.value, language))
        for v in values
        if v.active or v.value in held
    ]


def _sections(
    ws: Workspace,
    co: CompiledObject,
    document: dict[str, Any],
    values: dict[str, Any],
    shown: dict[str, Any],
) -> list[Section]:
    """The document's sections with a control per field; `values` are the controls' values,
    `shown` the record's values for read-only fields."""
    schema = document["schema"]
    properties: dict[str, Any] = schema["properties"]
    required = set(schema.get("required", []))
    language = ws.actor.language
    sections = []
    for element in document["uischema"]["elements"]:
        rows = element.get("elements", [])
        columns = max(
            (len(r["elements"]) for r in rows if r["type"] == "HorizontalLayout"), default=1
        )
        controls = []
        for scope in _scopes(rows):
            name = scope.rsplit("/", 1)[-1]
            definition = co.fields[name]
            prop = properties[name]
            widget = _WIDGETS.get(definition.type, "text")
            if definition.type == "text" and "multi" in str(prop.get("x-widget", "")):
                widget = "textarea"
            value = values.get(name, _form_value(definition, None))
            control = Control(
                name=name,
                label=str(prop.get("title", name)),
                widget=widget,
                required=name in required or bool(getattr(definition, "required", False)),
                read_only=bool(prop.get("readOnly")),
                help=str(prop.get("description", "")),
                value=value,
                shown=display(
                    definition,
                    shown.get(name),
                    language=language,
                    currency=ws.currency,
                ),
                choices=_choices(definition, language, value),
                step=_scale_step(definition) if widget == "number" else None,
                minimum=_bound(getattr(definition, "min", None)),
                maximum=_bound(getattr(definition, "max", None)),
                max_length=getattr(definition, "max_length", None),
                target=str(getattr(definition, "target", "")),
            )
            controls.append(control)
        title = text(element.get("label"), _languages(ws)) if element.get("label") else ""
        sections.append(Section(title, columns, controls))
    return sections


def _bound(value: Any) -> str | None:
    return None if value is None else str(value)


def _scopes(elements: list[dict[str, Any]]) -> list[str]:
    found = []
    for element in elements:
        if element["type"] == "Control":
            found.append(element["scope"])
        else:
            found += _scopes(element.get("elements", []))
    return found


async def _lookup_names(ws: Workspace, co: CompiledObject, controls: list[Control]) -> None:
    """The names of the records the form's lookups hold, as the actor may read them."""
    for control in controls:
        if control.widget != "lookup" or not control.value:
            continue
        try:
            record_id = uuid.UUID(str(control.value))
        except ValueError:
            control.lookup_name = str(control.value)
            continue
        target = ws.ct.objects.get(control.target)
        name_field = target.obj.record_name_field if target else None
        if target is None or not name_field or not _may_read_field(ws, target, name_field):
            control.lookup_name = str(record_id)[:8]
            continue
        try:
            page = await list_records(
                ws.conn,
                ws.ct,
                target,
                ListQuery(where=f'id == "{record_id}"', fields=name_field, limit=1),
                actor=ws.actor,
                cursor_key=ws.state.signing_key.encode(),
            )
        except PermissionDenied:
            page = {"records": []}
        found = page["records"]
        control.lookup_name = str(found[0].get(name_field) or "") if found else str(record_id)[:8]


def _may_read_field(ws: Workspace, co: CompiledObject, name: str) -> bool:
    return field_access(ws.ct.model, ws.actor, co.name, name) != "hidden"


def _apply_state(sections: list[Section], state: FormState) -> None:
    for section in sections:
        for control in section.controls:
            control.rule_hidden = control.name in state.hidden
            control.rule_required = control.name in state.required
            control.rule_read_only = control.name in state.read_only
            control.allowed = state.allowed.get(control.name)


def _problems(
    ws: Workspace,
    co: CompiledObject,
    sections: list[Section],
    error: MetacrmError,
) -> list[Problem]:
    """The server's errors in the user's language, each put on the control it names."""
    language: i18n.Language = ws.actor.language
    by_name = {c.name: c for s in sections for c in s.controls}
    problems = []
    for problem in error.errors:
        name = problem.field
        control = by_name.get(name)
        label = control.label if control else name
        if control is None and name in co.fields and _may_read_field(ws, co, name):
            label = text(co.fields[name].label, _languages(ws), name)
        message = i18n.message(problem.code, label, language, problem.message)
        if control is not None and not control.rule_hidden:
            control.errors.append(message)
            problems.append(Problem(message, control.name, control.label))
        else:
            problems.append(Problem(message, None, label))
    if not problems:
        problems.append(Problem(i18n.detail(error.code, language, error.detail)))
    return problems


async def _who_changed(ws: Workspace, co: CompiledObject, record_id: uuid.UUID) -> dict[str, str]:
    """Who changed the record last, and when (for the stale-version message)."""
    try:
        current = await records.get(ws.conn, ws.ct, co, record_id, ws.actor)
    except NotFound:
        return {"name": "?", "when": ""}
    name = None
    if current.get("updated_by"):
        name = await ws.conn.scalar(
            sa.select(users.c.full_name).where(users.c.id == uuid.UUID(current["updated_by"]))
        )
    when = str(current.get("updated_at") or "")
    try:
        moment = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
        when = moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        pass
    return {"name": name or "?", "when": when}


async def _draw(
    ws: Workspace,
    co: CompiledObject,
    *,
    record_id: uuid.UUID | None,
    current: dict[str, Any] | None,
    posted: FormData | None = None,
    version: str = "",
    error: MetacrmError | None = None,
    pending: bool = False,
) -> Response:
    """The form page: from the record (or blank), or from what the user posted;
    `pending`: an approval of the record is pending (it may lock the record)."""
    shown = dict(current or {})
    values: dict[str, Any] = {n: _form_value(f, shown.get(n)) for n, f in co.fields.items()}
    if record_id is None:
        defaults: dict[str, Any] = {}
        with contextlib.suppress(MetacrmError):  # a default that fails is reported on save
            apply_defaults(co, defaults, skip=set())
        values |= {n: _form_value(co.fields[n], v) for n, v in defaults.items() if v is not None}
    draft: dict[str, Any] = {}
    if posted is not None:
        for key in _keys(posted):
            definition = co.fields.get(key)
            if definition is not None:
                items = _texts(posted, key)
                values[key] = _posted_value(definition, items)
                draft[key] = _convert(definition, items)
        selector = {**shown, **{k: v for k, v in draft.items() if isinstance(v, str)}}
    else:
        selector = shown
    document = _document(ws, co, selector or None)
    layout = _layout_name(ws, co, selector or None)
    sections = _sections(ws, co, document, values, shown)
    controls = [c for s in sections for c in s.controls]
    await _lookup_names(ws, co, controls)
    for control in controls:
        if control.widget == "lookup" and control.read_only and control.value:
            control.shown = display(
                co.fields[control.name],
                shown.get(control.name),
                language=ws.actor.language,
                link_name=control.lookup_name,
            )
    state = await draft_state(ws.conn, ws.ct, co, draft, ws.actor, record_id=record_id)
    _apply_state(sections, state)
    problems: list[Problem] = []
    stale: dict[str, str] | None = None
    duplicates = None
    status = 200
    if isinstance(error, StaleVersion) and record_id is not None:
        stale = await _who_changed(ws, co, record_id)
        status = 409
    elif error is not None:
        status = error.status
        refusals, rest = split_refusals(error)
        if refusals:
            values = shown | (record_from_form(co, posted) if posted is not None else {})
            duplicates = await duplicate_panel(
                ws.conn, ws.ct, co, ws.actor, values, record_id=record_id, refusals=refusals
            )
        if rest is not None:
            problems = _problems(ws, co, sections, rest)
    language = ws.actor.language
    label = object_label(ws.ct, co.name, language)
    base = f"/app/o/{co.name}"
    if record_id is None:
        action, state_url, cancel = f"{base}/new", f"{base}/form-state", base
        heading = word("form_new_title", language, object=label)
    else:
        action = f"{base}/{record_id}/edit"
        state_url = f"{base}/form-state?record={record_id}"
        cancel = f"{base}/{record_id}"
        name_field = co.obj.record_name_field
        name = shown.get(name_field) if name_field else None
        heading = word("form_edit_title", language, object=label, name=name or str(record_id)[:8])
    context = {
        "object": co.name,
        "object_label": label,
        "heading": heading,
        "sections": sections,
        "problems": problems,
        "stale": stale,
        "action": action,
        "state_url": state_url,
        "cancel": cancel,
        "reload": action,
        "version": version,
        "editing": record_id is not None,
        "state_json": json.dumps(state.as_dict() | {"layout": layout}),
        "layout": layout,
        "pending": pending,
        "watched": _watched(ws, co, controls),
        "duplicates": duplicates,
        "duplicates_url": f"{base}/duplicates"
        + (f"?record={record_id}" if record_id is not None else ""),
        "duplicates_watch": sorted(
            c.name for c in controls if c.name in watched_fields(ws.ct, co) and not c.read_only
        ),
    }
    return await ws.page("form.html", context, status=status)


async def _read_form(request: Request, state: AppState) -> FormData:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > state.settings.max_body_bytes:
        raise PayloadTooLarge("the form is too large")
    return await request.form()


@router.get("/o/{object_name}/new")
async def new_form(
    object_name: str, request: Request, state: StateDep, identity: WebIdentityDep
) -> Response:
    """A blank form for a new record of the object; `?field=value` fills fields in (a
    related list's "New" names the parent; a record type picks its layout)."""
    async with workspace(request, state, identity) as ws:
        co = object_or_404(ws.ct, object_name)
        require_object(ws.ct.model, ws.actor, co.name, "create")
        given: list[tuple[str, str | UploadFile]] = [
            (k, v)
            for k, v in request.query_params.multi_items()
            if k in co.writable and _may_read_field(ws, co, k)
        ]
        prefill = FormData(given) if given else None
        return await _draw(ws, co, record_id=None, current=None, posted=prefill)


@router.post("/o/{object_name}/new")
async def create(
    object_name: str, request: Request, state: StateDep, identity: WebIdentityDep
) -> Response:
    """Save a new record through the write path; on problems, the form again with them."""
    form = await _read_form(request, state)
    if form.get(REDRAW_FIELD) == "1":
        async with workspace(request, state, identity) as ws:
            co = object_or_404(ws.ct, object_name)
            require_object(ws.ct.model, ws.actor, co.name, "create")
            return await _draw(ws, co, record_id=None, current=None, posted=form)
    try:
        async with workspace(request, state, identity, writes=True) as ws:
            co = object_or_404(ws.ct, object_name)
            record = await writes.create(
                ws.conn, ws.ct, co, record_from_form(co, form), _intent(ws, form)
            )
    except MetacrmError as error:
        if not _shown_on_form(error):
            raise
        async with workspace(request, state, identity) as ws:
            co = object_or_404(ws.ct, object_name)
            return await _draw(ws, co, record_id=None, current=None, posted=form, error=error)
    return RedirectResponse(f"/app/o/{object_name}/{record['id']}", status_code=303)


def _intent(ws: Workspace, form: FormData) -> Intent:
    """A form's save: the user's, past `warn` duplicate rules when they chose "Save anyway"."""
    return Intent(ws.actor, allow_duplicates=form.get(ALLOW_DUPLICATES_FIELD) == "1")


def _shown_on_form(error: MetacrmError) -> bool:
    """Whether an error belongs on the form (the input), not on an error page (access)."""
    return not isinstance(error, Unauthenticated | PermissionDenied | NotFound) or bool(
        error.errors
    )


@router.get("/o/{object_name}/{record_id}/edit")
async def edit_form(
    object_name: str,
    record_id: str,
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
) -> Response:
    """The record in a form, with its version for If-Match."""
    async with workspace(request, state, identity) as ws:
        co = object_or_404(ws.ct, object_name)
        key = path_id(record_id)
        raw, pending = await records.editable(ws.conn, ws.ct, co, key, ws.actor)
        current = records.shown(ws.ct, co, raw, ws.actor)
        return await _draw(
            ws, co, record_id=key, current=current, version=str(raw["version"]), pending=pending
        )


@router.post("/o/{object_name}/{record_id}/edit")
async def update(
    object_name: str,
    record_id: str,
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
) -> Response:
    """Save the change if the record is still at the version the form was drawn from."""
    form = await _read_form(request, state)
    key = path_id(record_id)
    sent = form.get(VERSION_FIELD)
    version = sent.strip() if isinstance(sent, str) else ""
    if form.get(REDRAW_FIELD) == "1":
        async with workspace(request, state, identity) as ws:
            co = object_or_404(ws.ct, object_name)
            raw, _pending = await records.editable(ws.conn, ws.ct, co, key, ws.actor)
            current = records.shown(ws.ct, co, raw, ws.actor)
            return await _draw(ws, co, record_id=key, current=current, posted=form, version=version)
    try:
        async with workspace(request, state, identity, writes=True) as ws:
            co = object_or_404(ws.ct, object_name)
            if not version.isdigit() or len(version) > 12:
                raise StaleVersion("the form names no version of this record")
            drawn = await records.get(ws.conn, ws.ct, co, key, ws.actor)
            await writes.update(
                ws.conn,
                ws.ct,
                co,
                key,
                record_from_form(co, form, drawn=drawn),
                _intent(ws, form),
                if_match=int(version),
            )
    except MetacrmError as error:
        if not _shown_on_form(error):
            raise
        async with workspace(request, state, identity) as ws:
            co = object_or_404(ws.ct, object_name)
            current = await records.get(ws.conn, ws.ct, co, key, ws.actor)
            return await _draw(
                ws, co, record_id=key, current=current, posted=form, version=version, error=error
            )
    return RedirectResponse(f"/app/o/{object_name}/{key}", status_code=303)


@router.post("/o/{object_name}/form-state")
async def form_state(
    object_name: str,
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    record: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The field rules' state of the draft being typed (htmx swaps it in; form.js applies it)."""
    form = await _read_form(request, state)
    async with workspace(request, state, identity) as ws:
        co = object_or_404(ws.ct, object_name)
        draft = {k: _convert(co.fields[k], _texts(form, k)) for k in _keys(form) if k in co.fields}
        record_id = path_id(record) if record else None
        found = await draft_state(ws.conn, ws.ct, co, draft, ws.actor, record_id=record_id)
        answer = found.as_dict()
        if _conditional_layouts(ws, co):
            selector = {k: v for k, v in draft.items() if isinstance(v, str)}
            if record_id is not None:
                current = await records.get(ws.conn, ws.ct, co, record_id, ws.actor)
                selector = current | selector
            answer["layout"] = _layout_name(ws, co, selector)
        return ws.fragment("form_state.html", {"state_json": json.dumps(answer)})


@router.post("/o/{object_name}/duplicates")
async def duplicates_hint(
    object_name: str,
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    record: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The readable records the draft being typed would duplicate (the "possible
    duplicates" panel, empty when none), asked for once the user leaves a compared field."""
    form = await _read_form(request, state)
    async with workspace(request, state, identity) as ws:
        co = object_or_404(ws.ct, object_name)
        record_id = path_id(record) if record else None
        current = await records.get(ws.conn, ws.ct, co, record_id, ws.actor) if record_id else {}
        values = current | record_from_form(co, form)
        panel = await duplicate_panel(ws.conn, ws.ct, co, ws.actor, values, record_id=record_id)
        return ws.fragment("form_duplicates.html", {"object": co.name, "duplicates": panel})


def _search_text(q: str) -> str:
    """The search words as a formula text literal: printable characters only, quoted."""
    kept = "".join(c for c in q if unicodedata.category(c)[0] != "C")[:100]
    return repr(kept.translate(_ASCII_LOWER).strip())


@router.get("/o/{object_name}/lookup/{field_name}")
async def lookup(
    object_name: str,
    field_name: str,
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    q: Annotated[str, Query(max_length=1000)] = "",
) -> Response:
    """Up to ten records of the lookup's target the user may read, whose name holds `q`."""
    async with workspace(request, state, identity) as ws:
        co = object_or_404(ws.ct, object_name)
        definition = co.fields.get(field_name)
        if (
            definition is None
            or definition.type not in ("lookup", "master_detail")
            or not _may_read_field(ws, co, field_name)
        ):
            raise NotFound(f"{co.name} has no lookup field {field_name[:64]!r}")
        target = object_or_404(ws.ct, str(getattr(definition, "target", "")))
        name_field = target.obj.record_name_field
        searchable = bool(name_field) and _may_read_field(ws, target, str(name_field))
        query = ListQuery(fields="id", limit=_LOOKUP_LIMIT)
        if searchable:
            where = None
            if q.strip():
                where = f"CONTAINS(LOWER({name_field}), {_search_text(q)})"
            query = ListQuery(
                where=where, fields=f"id,{name_field}", order_by=name_field, limit=_LOOKUP_LIMIT
            )
        try:
            page = await list_records(
                ws.conn,
                ws.ct,
                target,
                query,
                actor=ws.actor,
                cursor_key=ws.state.signing_key.encode(),
            )
        except PermissionDenied:  # the role may not read the target at all
            return ws.fragment("form_lookup.html", {"options": [], "denied": True})
        options = [
            {
                "id": r["id"],
                "name": str(r.get(name_field) or "") if searchable else str(r["id"])[:8],
            }
            for r in page["records"]
        ]
        return ws.fragment("form_lookup.html", {"options": options, "denied": False})
