"""The merge page: 2 or 3 records side by side, a survivor and a value per field, a dry-run
preview, then the merge (back to the survivor's page, with Undo)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from metacrm.errors import MetacrmError, NotFound
from metacrm.metadata.names import API_NAME_PATTERN
from metacrm.platform.api.common import path_id
from metacrm.platform.state import StateDep
from metacrm.platform.web.records import draw, object_of
from metacrm.platform.web.session import WebIdentityDep
from metacrm.platform.web.shell import object_label
from metacrm.platform.web.texts import word
from metacrm.platform.web.values import display, link_name_paths
from metacrm.platform.web.workspace import Workspace, workspace
from metacrm.runtime.compiler import CompiledObject
from metacrm.runtime.data import merge
from metacrm.runtime.hooks import Intent, Origin
from metacrm.runtime.listing import ListQuery, list_records
from metacrm.runtime.permissions import field_access, readable
from metacrm.ui_schema.labels import text

router = APIRouter(prefix="/app", include_in_schema=False)

#: The most records the page shows (the survivor and MAX_MERGED others).
MAX_RECORDS = merge.MAX_MERGED + 1


def _ids(values: list[str]) -> list[uuid.UUID]:
    """Distinct record ids from `ids=a,b,c` or repeated `ids`, in order; a malformed one
    is not found (as in a path)."""
    found: list[uuid.UUID] = []
    for value in values:
        for part in value.split(","):
            if part.strip():
                record_id = path_id(part.strip()[:64])
                if record_id not in found:
                    found.append(record_id)
    return found


async def _records(
    ws: Workspace, co: CompiledObject, ids: list[uuid.UUID], names: list[str]
) -> dict[uuid.UUID, dict[str, Any]]:
    """The records as the user may read them, lookups with their targets' names; 404 when
    one is missing or hidden."""
    paths = link_name_paths(ws.ct, co, ws.actor, names)
    page = await list_records(
        ws.conn,
        ws.ct,
        co,
        ListQuery(
            where=" or ".join(f"id == '{i}'" for i in ids),
            fields=",".join(["id", *names, *paths]),
            limit=len(ids),
        ),
        actor=ws.actor,
        cursor_key=ws.state.signing_key.encode(),
    )
    found = {uuid.UUID(r["id"]): r for r in page["records"]}
    for record_id in ids:
        if record_id not in found:
            raise NotFound(f"no {co.name} record has id {record_id}")
    return found


async def _draw(
    ws: Workspace,
    co: CompiledObject,
    ids: list[uuid.UUID],
    *,
    survivor: uuid.UUID | None = None,
    given: dict[str, uuid.UUID] | None = None,
    preview: merge.MergeResult | None = None,
    problems: list[str] | None = None,
    status: int = 200,
) -> Response:
    language = ws.actor.language
    label = object_label(ws.ct, co.name, language)
    context: dict[str, Any] = {
        "object": co.name,
        "label": label,
        "plural": object_label(ws.ct, co.name, language, plural=True),
        "problems": problems or [],
    }
    if not 2 <= len(ids) <= MAX_RECORDS:
        context["problems"] = [word("merge_pick", language, most=MAX_RECORDS)]
        return await ws.page("merge.html", context | {"records": []}, status=422)
    seen = set(readable(ws.ct, ws.actor, co))
    names = [n for n in merge.choosable(co) if n in seen]
    found = await _records(ws, co, ids, names)
    survivor = survivor if survivor in found else ids[0]
    others = [i for i in ids if i != survivor]
    raw = {i: {n: found[i].get(n) for n in names} for i in ids}
    intent = Intent(ws.actor, origin=Origin.MERGE)
    editable = {
        n
        for n in names
        if ws.actor.is_admin or field_access(ws.ct.model, ws.actor, co.name, n) == "edit"
    }
    given = {k: v for k, v in (given or {}).items() if k in editable and v in found}
    chosen = merge.choices_for(ws.ct, co, raw, survivor, others, given, intent)
    rows = []
    for name in names:
        fd = co.fields[name]
        cells = [
            {
                "id": str(i),
                "html": display(
                    fd,
                    found[i].get(name),
                    language=language,
                    currency=ws.currency,
                    link_name=found[i].get(f"{name}.{_name_field(ws, co, name)}"),
                ),
                "chosen": chosen.get(name) == i,
            }
            for i in ids
        ]
        values = {repr(found[i].get(name)) for i in ids}
        rows.append(
            {
                "name": name,
                "label": text(fd.label, [language, "en"]) or name,
                "cells": cells,
                "differs": len(values) > 1,
                "editable": name in editable,
            }
        )
    context |= {
        "records": [
            {"id": str(i), "title": _title(co, found[i]), "survivor": i == survivor} for i in ids
        ],
        "rows": rows,
        "preview": _preview(ws, co, preview) if preview is not None else None,
    }
    return await ws.page("merge.html", context, status=status)


def _name_field(ws: Workspace, co: CompiledObject, name: str) -> str:
    """The name field of the object a lookup field points at ('' for other fields)."""
    target = getattr(co.fields[name], "target", None)
    if target is None or target not in ws.ct.objects:
        return ""
    return ws.ct.object(target).obj.record_name_field or ""


def _title(co: CompiledObject, record: dict[str, Any]) -> str:
    name_field = co.obj.record_name_field
    value = record.get(name_field) if name_field else None
    return str(value) if value not in (None, "") else str(record["id"])[:8]


def _preview(ws: Workspace, co: CompiledObject, result: merge.MergeResult) -> dict[str, Any]:
    """What the dry run found, in words: children moving per object, rows, blockers."""
    language = ws.actor.language
    children = [
        {"label": object_label(ws.ct, name, language, plural=True), "count": count}
        for name, count in sorted(result.moved_counts().items())
    ]
    return {
        "children": children,
        "rows": sum(result.moved_rows.values()),
        "changed": [
            text(co.fields[n].label, [language, "en"]) or n for n in sorted(result.changed)
        ],
        "blockers": [
            word("merge_blocker", language, flow=b["flow"], record=b["record_id"])
            for b in result.blockers
        ],
    }


def _messages(error: MetacrmError) -> list[str]:
    return [f"{e.field}: {e.message}" for e in error.errors] or [error.detail]


@router.get("/o/{object_name}/merge")
async def merge_page(
    object_name: str,
    request: Request,
    state: StateDep,
    identity: WebIdentityDep,
    ids: str = "",
) -> Response:
    """The records of `ids` (2 or 3, comma separated) side by side, to merge."""
    async with workspace(request, state, identity) as ws:
        co = object_of(ws, object_name)
        return await _draw(ws, co, _ids([ids[:1000]]))


@router.post("/o/{object_name}/merge/select")
async def merge_selected(object_name: str, request: Request, identity: WebIdentityDep) -> Response:
    """From the list's bulk bar: the merge page of the selected records."""
    if not re.fullmatch(API_NAME_PATTERN, object_name):
        raise NotFound(f"no object named {object_name[:64]!r}")
    form = await request.form()
    picked = [v for v in form.getlist("ids") if isinstance(v, str)][: MAX_RECORDS + 1]
    ids = ",".join(str(i) for i in _ids(picked))
    return RedirectResponse(f"/app/o/{object_name}/merge?ids={ids}", status_code=303)


def _form_choices(form: FormData) -> dict[str, uuid.UUID]:
    found = {}
    for key, value in form.multi_items():
        if key.startswith("value.") and isinstance(value, str):
            try:
                found[key.removeprefix("value.")[:63]] = uuid.UUID(value)
            except ValueError:
                continue
    return found


@router.post("/o/{object_name}/merge")
async def merge_submit(
    object_name: str, request: Request, state: StateDep, identity: WebIdentityDep
) -> Response:
    """Preview (a dry run) or apply the merge the form describes; a refusal redraws the
    page with the server's messages."""
    form = await request.form()
    ids = _ids([v for v in form.getlist("ids") if isinstance(v, str)][: MAX_RECORDS + 1])
    raw_survivor = form.get("survivor")
    survivor = path_id(raw_survivor) if isinstance(raw_survivor, str) else ids[0] if ids else None
    choices = _form_choices(form)
    dry_run = form.get("action") != "merge"
    try:
        async with workspace(request, state, identity, writes=True) as ws:
            co = object_of(ws, object_name)
            if survivor not in ids or not 2 <= len(ids) <= MAX_RECORDS:
                return await _draw(ws, co, ids)
            others = [i for i in ids if i != survivor]
            intent = Intent(ws.actor, origin=Origin.MERGE)
            result = await merge.merge(
                ws.conn, ws.ct, co, survivor, others, choices, intent, dry_run=dry_run
            )
            if dry_run:
                return await _draw(ws, co, ids, survivor=survivor, given=choices, preview=result)
    except NotFound:
        raise
    except MetacrmError as error:
        if error.status not in (403, 409, 412, 422):
            raise
        async with workspace(request, state, identity) as ws:
            co = object_of(ws, object_name)
            return await _draw(
                ws,
                co,
                ids,
                survivor=survivor,
                given=choices,
                problems=_messages(error),
                status=error.status,
            )
    return RedirectResponse(
        f"/app/o/{co.name}/{survivor}?done=merged&merge={result.id}", status_code=303
    )


@router.post("/merges/{merge_id}/undo")
async def undo(
    merge_id: str, request: Request, state: StateDep, identity: WebIdentityDep
) -> Response:
    """Undo a merge from the survivor's page; back to it with a notice (or the reasons
    it cannot be undone)."""
    try:
        async with workspace(request, state, identity, writes=True) as ws:
            done = await merge.undo_merge(
                ws.conn, ws.ct, path_id(merge_id, "merge"), Intent(ws.actor, origin=Origin.MERGE)
            )
    except NotFound:
        raise
    except MetacrmError as error:
        if error.status not in (403, 409, 412, 422):
            raise
        async with workspace(request, state, identity) as ws:
            found = await merge.get_merge(ws.conn, ws.ct, path_id(merge_id, "merge"), ws.actor)
            return await draw(
                ws,
                found["object"],
                found["survivor"],
                problems=_messages(error),
                status=error.status,
            )
    return RedirectResponse(
        f"/app/o/{done['object']}/{done['survivor']}?done=unmerged", status_code=303
    )
