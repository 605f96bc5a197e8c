"""List totals over HTTP: sums of number and currency fields over a whole filtered list."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from metacrm.platform.state import IdentityDep, StateDep, object_or_404
from metacrm.runtime.list_totals import totals
from metacrm.runtime.listing import ListQuery

router = APIRouter(tags=["analytics"])


@router.get("/analytics/totals/{object_name}")
async def list_totals(
    object_name: str,
    state: StateDep,
    identity: IdentityDep,
    fields: Annotated[str, Query(max_length=2000)],
    where: Annotated[str | None, Query(max_length=4000)] = None,
) -> dict[str, Any]:
    """The sum of each of `fields` (number and currency fields, comma-separated) over every
    record matching `where` that the caller may see: the totals row of a list."""
    names = [n.strip() for n in fields.split(",") if n.strip()]
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        co = object_or_404(ct, object_name)
        sums = await totals(conn, ct, co, ListQuery(where=where), names, actor=actor)
    return {"totals": sums}
