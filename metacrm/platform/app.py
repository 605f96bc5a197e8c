"""The FastAPI application: lifespan (engines, migrations, demo), routers and live docs."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse

from metacrm import __version__
from metacrm.platform import problems, web
from metacrm.platform.api import activity as activity_api
from metacrm.platform.api import assignment as assignment_api
from metacrm.platform.api import audit as audit_api
from metacrm.platform.api import auth, data, keys, metadata, tenants, users
from metacrm.platform.api import automation as automation_api
from metacrm.platform.api import board as board_api
from metacrm.platform.api import duplicates as duplicates_api
from metacrm.platform.api import export as export_api
from metacrm.platform.api import imports as imports_api
from metacrm.platform.api import jobs as jobs_api
from metacrm.platform.api import list_totals as list_totals_api
from metacrm.platform.api import merge as merge_api
from metacrm.platform.api import my_views as my_views_api
from metacrm.platform.api import notifications as notifications_api
from metacrm.platform.api import packs as packs_api
from metacrm.platform.api import process as process_api
from metacrm.platform.api import search as search_api
from metacrm.platform.api import ui as ui_api
from metacrm.platform.api import webhooks as webhooks_api
from metacrm.platform.db import Database
from metacrm.platform.migrate import upgrade_system
from metacrm.platform.openapi import static_document, tenant_document
from metacrm.platform.params import CHECK_PARAMS
from metacrm.platform.settings import Settings
from metacrm.platform.state import AppState, IdentityDep, StateDep
from metacrm.platform.worker import Worker

log = logging.getLogger("metacrm")


def create_app(settings: Settings | None = None) -> FastAPI:
    """A metacrm application for `settings` (default: from the environment)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(database_url=settings.database_url, data_dir=settings.data_dir)
        state = AppState(settings=settings, db=db, signing_key=settings.signing_key())
        app.state.metacrm = state
        if settings.auto_upgrade:
            await upgrade_system(db)
        if settings.demo:
            from metacrm.platform.demo import ensure_demo

            await ensure_demo(state)
        state.worker = Worker(
            db,
            state.cache,
            settings.outbound(),
            events=state.events,
            lease=dt.timedelta(seconds=settings.job_lease_seconds),
            poll_seconds=settings.job_poll_seconds,
            backups=settings.backup_schedule(),
        )
        stop = asyncio.Event()
        running = (
            asyncio.create_task(state.worker.run_forever(stop))
            if settings.jobs_in_process
            else None
        )
        try:
            yield
        finally:
            stop.set()
            if running is not None:
                await running
            await db.dispose()

    app = FastAPI(
        title="metacrm",
        version=__version__,
        lifespan=lifespan,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    problems.install(app)
    web.install(app)
    static: dict[str, Any] = {}  # the OpenAPI of the fixed routes, built on first use
    # The audit router first: its /data/{object}/{id}/history must win over /data/{object}/{id}.
    for router in (
        audit_api.router,
        activity_api.router,
        auth.router,
        metadata.router,
        export_api.router,  # before data: /data/{object}/export is no record id
        merge_api.router,
        data.router,
        duplicates_api.router,
        users.router,
        keys.router,
        tenants.router,
        ui_api.router,
        packs_api.router,
        packs_api.history,
        process_api.router,
        board_api.router,
        my_views_api.router,
        list_totals_api.router,
        search_api.router,
        jobs_api.router,
        imports_api.router,
        automation_api.router,
        notifications_api.router,
        webhooks_api.router,
        assignment_api.router,
    ):
        # Every /api/v1 route refuses query parameters it does not declare.
        app.include_router(router, prefix="/api/v1", dependencies=[CHECK_PARAMS])

    @app.get("/api/v1/openapi.json", include_in_schema=False, dependencies=[CHECK_PARAMS])
    async def openapi(state: StateDep, identity: IdentityDep) -> JSONResponse:
        """The live OpenAPI of the caller's tenant, as of its current metadata."""
        async with state.tenant(identity, writes=False) as (_conn, ct, actor):
            # One document per negotiated language and role: all that differs between callers.
            if not static:
                static.update(static_document(app))
            document = ct.views.get_or_build(
                ("openapi", actor.language, actor.is_admin, actor.role),
                lambda: tenant_document(static, ct, actor, actor.language),
            )
            return JSONResponse(document)

    app.mount("/static/docs", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/api/v1/docs", include_in_schema=False, dependencies=[CHECK_PARAMS])
    async def docs() -> HTMLResponse:
        return HTMLResponse(_DOCS_PAGE)

    @app.get("/healthz", include_in_schema=False)
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/app")

    return app


#: Swagger UI's files, shipped by fastapi-offline so the docs work with no CDN.
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"

# The live spec is per tenant, so the page asks for a bearer token, keeps it in this
# browser, and sends it with every request Swagger UI makes.
_DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>metacrm API</title>
<link rel="stylesheet" href="/static/docs/swagger-ui.css">
<link rel="icon" href="/static/docs/favicon.png"></head>
<body><div id="swagger-ui"></div>
<script src="/static/docs/swagger-ui-bundle.js"></script>
<script>
(function () {
  var token = localStorage.getItem("metacrm_token") ||
    prompt("Paste a bearer token from POST /api/v1/auth/token");
  if (!token) { return; }
  localStorage.setItem("metacrm_token", token);
  window.ui = SwaggerUIBundle({
    url: "/api/v1/openapi.json", dom_id: "#swagger-ui",
    requestInterceptor: function (req) { req.headers.Authorization = "Bearer " + token; return req; },
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout"
  });
})();
</script></body></html>
"""
