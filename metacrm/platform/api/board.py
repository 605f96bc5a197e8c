"""Kanban board figures over HTTP: each column's count and amount, under record access."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from metacrm.platform.state import IdentityDep, StateDep, object_or_404
from metacrm.runtime import board
from metacrm.runtime.permissions import require_object
from metacrm.ui_schema.selection import select_list_view

router = APIRouter(tags=["analytics"])


@router.get("/analytics/board/{object_name}")
async def board_figures(
    object_name: str,
    state: StateDep,
    identity: IdentityDep,
    field: Annotated[str | None, Query(max_length=63)] = None,
) -> dict[str, Any]:
    """Columns of a board by a picklist `field` (default: the stage rule's, else the list
    view's, else the first picklist): count and amount total of each active value."""
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        require_object(ct.model, actor, co.name, "read")
        view_field = select_list_view(ct.model, co.obj, actor).kanban_field
        chosen = board.choose_field(ct, actor, co, field, view_field=view_field)
        return await board.board(conn, ct, actor, co, chosen)
