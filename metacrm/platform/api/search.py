"""Global search endpoint: /api/v1/search?q= across every object the caller may read."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from metacrm.platform.state import IdentityDep, StateDep
from metacrm.runtime.search import search as search_records

router = APIRouter(tags=["search"])


@router.get("/search")
async def search(
    state: StateDep,
    identity: IdentityDep,
    q: Annotated[str, Query(max_length=200)] = "",
    limit: Annotated[int, Query(ge=1, le=50)] = 5,
) -> dict[str, Any]:
    """Records whose name or searchable fields contain `q` (ASCII case ignored), up to
    `limit` per object, grouped by object; record and field access apply."""
    async with state.tenant(identity, writes=False) as (conn, ct, actor):
        hits = await search_records(
            conn, ct, actor, q, cursor_key=state.signing_key.encode(), per_object=limit
        )
    return {
        "q": q,
        "results": [
            {
                "object": h.object,
                "fields": h.fields,
                "records": h.records,
                "more": h.more,
                "where": h.where,
            }
            for h in hits
        ],
    }
