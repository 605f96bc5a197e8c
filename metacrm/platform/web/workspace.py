"""A page's unit of work: the tenant transaction, the signed-in user, and drawing the page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import HTMLResponse

from metacrm.platform.auth import Identity
from metacrm.platform.state import AppState
from metacrm.platform.web.render import render
from metacrm.platform.web.session import csrf_token
from metacrm.platform.web.shell import build_shell
from metacrm.platform.web.values import currency_symbol
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledTenant


@dataclass
class Workspace:
    """What a page handler works with; the same services the REST API calls."""

    request: Request
    state: AppState
    conn: AsyncConnection
    ct: CompiledTenant
    actor: Actor
    csrf: str
    #: The symbol currency fields are shown with (the tenant's, from its default language).
    currency: str

    async def page(
        self,
        template: str,
        context: dict[str, Any],
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        """A whole page: the template inside the shell (navigation, user, language)."""
        shell = await build_shell(self.conn, self.ct, self.actor, csrf=self.csrf)
        return render(
            self.request,
            template,
            {**context, "shell": shell, "csrf": self.csrf},
            language=self.actor.language,
            status=status,
            headers=headers,
        )

    def fragment(
        self,
        template: str,
        context: dict[str, Any],
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        """A part of a page, for htmx to swap in (no shell)."""
        return render(
            self.request,
            template,
            {**context, "csrf": self.csrf},
            language=self.actor.language,
            status=status,
            headers=headers,
        )


@asynccontextmanager
async def workspace(
    request: Request, state: AppState, identity: Identity, *, writes: bool = False
) -> AsyncIterator[Workspace]:
    """A transaction in the user's tenant (as `state.tenant`), ready to draw pages."""
    currency = currency_symbol(await state.tenant_language(identity.storage) or "en")
    async with state.tenant(identity, writes=writes) as (conn, ct, actor):
        csrf = csrf_token(identity, state.signing_key)
        yield Workspace(request, state, conn, ct, actor, csrf, currency)
