"""GET /api/v1/data/{object}/export: a list as a streamed CSV or Excel file, audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response, StreamingResponse

from metacrm.errors import MetacrmError, NotFound
from metacrm.metadata.layouts import ListView
from metacrm.platform.auth import Identity
from metacrm.platform.state import AppState, IdentityDep, StateDep, object_or_404
from metacrm.runtime import personal_views
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.data.export import (
    MEDIA_TYPES,
    Cell,
    ExportPlan,
    Format,
    Headers,
    file_chunks,
    plan_export,
    plan_rows,
    record_export,
    require_export,
)
from metacrm.runtime.records import utcnow
from metacrm.ui_schema.selection import select_list_view

router = APIRouter(prefix="/data", tags=["records"], include_in_schema=False)

TextParam = Annotated[str | None, Query(max_length=4000)]


async def choose_view(
    conn: AsyncConnection, ct: CompiledTenant, actor: Actor, co: CompiledObject, name: str
) -> ListView:
    """The list view `name` of `co` that the actor may see: a shared one or their own."""
    if name.startswith(personal_views.PREFIX):
        own = await personal_views.find(conn, ct, actor, co, name)
        if own is None:
            raise NotFound(f"{co.name} has no list view named {name[:64]!r} that you may see")
        return own
    return select_list_view(ct.model, co.obj, actor, name=name)


def export_response(
    state: AppState,
    identity: Identity,
    actor: Actor,
    plan: ExportPlan,
    format: Format,
    headers: Headers,
) -> Response:
    """The streamed file of an export `actor` was allowed, named
    `<object>-YYYYMMDD-HHMMSS.<format>`; its audit entry is written when the stream ends,
    however it ends (an error or a cut-off download too, with the rows sent by then)."""
    stamp = utcnow().strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        _stream(state, identity, actor, plan, format, headers),
        media_type=MEDIA_TYPES[format],
        headers={
            "Content-Disposition": f'attachment; filename="{plan.object}-{stamp}.{format}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def _stream(
    state: AppState,
    identity: Identity,
    actor: Actor,
    plan: ExportPlan,
    format: Format,
    headers: Headers,
) -> AsyncIterator[bytes]:
    sent = 0
    error: str | None = None
    try:
        # One read transaction for the whole file: the rows come page by page from it.
        async with state.tenant(identity, writes=False) as (conn, ct, reader):

            async def counted() -> AsyncIterator[list[Cell]]:
                nonlocal sent
                async for row in plan_rows(conn, ct, plan, reader):
                    yield row
                    sent += 1

            async for chunk in file_chunks(plan, counted(), format, headers):
                yield chunk
    except MetacrmError as exc:
        error = str(exc.detail)[:500]
        raise
    except BaseException as exc:  # a cancelled download too: the entry says how far it got
        error = type(exc).__name__
        raise
    finally:
        with anyio.CancelScope(shield=True):
            # Written for the actor the export was allowed to, straight to the tenant's
            # storage: a read-only API key's export is audited too.
            async with state.db.tenant(identity.storage) as conn:
                await record_export(
                    conn, actor, plan, format=format, headers=headers, rows=sent, error=error
                )


@router.get("/{object_name}/export")
async def export_records(
    object_name: str,
    state: StateDep,
    identity: IdentityDep,
    format: Annotated[Format, Query()] = "csv",
    view: Annotated[str | None, Query(max_length=100)] = None,
    where: TextParam = None,
    fields: TextParam = None,
    order_by: Annotated[str | None, Query(max_length=500)] = None,
    headers: Annotated[Headers, Query()] = "api",
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """Every record of a list the caller may read, as CSV (UTF-8 with BOM) or Excel.

    `view` (a list view's api name: its filter, sort and columns), `where`, `fields`,
    `order_by` as for the list; `headers=api|labels`; `limit` caps the rows. Needs the
    export_data permission; everything is checked before the first byte is sent."""
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        require_export(ct, actor)  # before a view's name is looked at
        chosen = await choose_view(conn, ct, actor, co, view) if view else None
        plan = await plan_export(
            conn,
            ct,
            co,
            actor,
            view=chosen,
            where=where,
            fields=fields,
            order_by=order_by,
            limit=limit,
        )
    return export_response(state, identity, actor, plan, format, headers)
