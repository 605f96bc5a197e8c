"""UI schema endpoints: an object's form (layout) and list (list view) for the caller."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from metacrm.errors import FieldError, PermissionDenied, RecordInvalid
from metacrm.platform.api.common import path_id
from metacrm.platform.body import read_object
from metacrm.platform.params import OPEN_QUERY
from metacrm.platform.state import IdentityDep, StateDep, object_or_404
from metacrm.runtime import personal_views
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledTenant
from metacrm.runtime.form_state import draft_state
from metacrm.runtime.layouts import select_layout
from metacrm.runtime.permissions import object_permission
from metacrm.ui_schema.forms import form_document
from metacrm.ui_schema.lists import list_document
from metacrm.ui_schema.selection import select_list_view

router = APIRouter(prefix="/ui", tags=["ui"])
Name = Annotated[str | None, Query(max_length=63)]


def _languages(actor: Actor) -> list[str]:
    """Label languages, best first: the negotiated one, then English."""
    return [actor.language, "en"]


def _readable(ct: CompiledTenant, actor: Actor, name: str) -> None:
    permission = object_permission(ct.model, actor, name)
    if not (permission.read or permission.view_all):
        raise PermissionDenied(f"your role may not read {name} records")


@router.get("/{object_name}/form", dependencies=[OPEN_QUERY])
async def form(
    object_name: str,
    request: Request,
    state: StateDep,
    identity: IdentityDep,
    layout: Name = None,
) -> dict[str, Any]:
    """The caller's form of an object: JSON Schema + JSON Forms UI schema.

    Without `layout`, the layout assigned to the caller's role is chosen; a layout with a
    picklist condition is chosen when that field's value is given, e.g. `?type=partner`.
    """
    async with state.tenant(identity, writes=False) as (_conn, ct, actor):
        co = object_or_404(ct, object_name)
        _readable(ct, actor, co.name)
        record = {
            key: value
            for key, value in request.query_params.items()
            if key != "layout" and key in co.fields and co.fields[key].type == "picklist"
        }
        chosen = select_layout(ct.model, co.obj, actor, name=layout, record=record)
        # Keyed by the layout chosen, never by raw query values: callers cannot grow it.
        key = ("ui:form", co.name, chosen.api_name, actor.role, actor.is_admin, actor.language)
        return ct.views.get_or_build(
            key, lambda: form_document(ct.model, co.obj, chosen, actor, _languages(actor))
        )


@router.get("/{object_name}/list")
async def list_view(
    object_name: str, state: StateDep, identity: IdentityDep, view: Name = None
) -> dict[str, Any]:
    """The caller's list view of an object: columns, filter, sort, kanban lanes, query.
    `view` may name one of the caller's personal views (`my_...`)."""
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        _readable(ct, actor, co.name)
        own = await personal_views.find(conn, ct, actor, co, view) if view else None
        chosen = own or select_list_view(ct.model, co.obj, actor, name=view)
        return list_document(ct.model, co.obj, chosen, actor, _languages(actor))


@router.post("/{object_name}/form-state")
async def form_state(
    object_name: str, request: Request, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    """What the field rules make of a draft: `{"record": {...}, "id": "<id when editing>"}`
    gives the fields hidden, required and read-only, and the picklist values allowed."""
    body = await read_object(request, state.settings.max_body_bytes)
    draft = body.get("record")
    if not isinstance(draft, dict):
        raise RecordInvalid(
            "record must be an object", [FieldError("record", "type", "record must be an object")]
        )
    raw_id = body.get("id")
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        record_id = None if raw_id is None else path_id(str(raw_id))
        found = await draft_state(conn, ct, co, draft, actor, record_id=record_id)
        return found.as_dict()
