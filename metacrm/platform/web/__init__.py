"""The web workspace: server-rendered pages, drawn from metadata, for people who work records."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from metacrm.platform.web import (
    actions,
    automation,
    errors,
    forms,
    home,
    imports,
    inbox,
    kanban,
    limits,
    lists,
    merge,
    notifications,
    records,
    search,
    session,
)

STATIC = Path(__file__).parent / "static"

#: The routers of the workspace's pages, in the order their paths must be tried: fixed
#: segments (`/app/o/{object}/kanban`, `/new`) before `/app/o/{object}/{record_id}`.
ROUTERS = (
    session.router,
    home.router,
    search.router,
    inbox.router,
    notifications.router,
    automation.router,
    kanban.router,
    forms.router,
    merge.router,
    imports.router,
    lists.router,
    actions.router,
    records.router,
)


def install(app: FastAPI) -> None:
    """Add the workspace's pages, static files and error pages to `app`."""
    errors.install(app)
    app.add_middleware(limits.BodyLimit)
    app.mount("/app/static", StaticFiles(directory=STATIC), name="web-static")
    for router in ROUTERS:
        app.include_router(router)
