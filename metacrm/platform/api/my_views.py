"""Personal list views: /api/v1/ui/{object}/my-list-views, each user's own saved lists."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from metacrm.errors import PermissionDenied
from metacrm.platform.body import read_object
from metacrm.platform.state import IdentityDep, StateDep, object_or_404
from metacrm.runtime import personal_views
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.permissions import object_readable

router = APIRouter(prefix="/ui", tags=["ui"])


def _readable(ct: CompiledTenant, actor: Actor, co: CompiledObject) -> None:
    if not object_readable(ct, actor, co):
        raise PermissionDenied(f"your role may not read {co.name} records")


@router.get("/{object_name}/my-list-views")
async def my_list_views(object_name: str, state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    """The caller's own saved list views of an object (no one else sees them); choose one
    with `GET /api/v1/ui/{object}/list?view=<api_name>`."""
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        _readable(ct, actor, co)
        views = await personal_views.views_of(conn, ct, actor, co)
        return {"list_views": [personal_views.document(v) for v in views]}


@router.post("/{object_name}/my-list-views", status_code=201)
async def save_my_list_view(
    object_name: str, request: Request, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    """Save a personal list view: `{"label", "columns", "filter", "sort", "limit"}`; it is
    checked like a metadata list view, but makes no metadata version."""
    body = await read_object(request, state.settings.max_body_bytes)
    async with state.tenant(identity) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        _readable(ct, actor, co)
        view = await personal_views.save(conn, ct, actor, co, body)
        return personal_views.document(view)


@router.delete("/{object_name}/my-list-views/{view_name}", status_code=204)
async def delete_my_list_view(
    object_name: str, view_name: str, state: StateDep, identity: IdentityDep
) -> Response:
    """Forget one of the caller's personal list views."""
    async with state.tenant(identity) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        await personal_views.remove(conn, ct, actor, co, view_name)
    return Response(status_code=204)
