"""The home page: where a user lands after signing in."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from metacrm.platform.state import StateDep
from metacrm.platform.web.session import WebIdentityDep
from metacrm.platform.web.workspace import workspace

router = APIRouter(prefix="/app", include_in_schema=False)


@router.get("")
async def home(request: Request, state: StateDep, identity: WebIdentityDep) -> Response:
    """The user's objects, grouped by app, as the first thing they see."""
    async with workspace(request, state, identity) as ws:
        return await ws.page("home.html", {})
