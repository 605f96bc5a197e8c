"""The per-process state handlers depend on: settings, databases and the tenant cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import NotFound, PermissionDenied, Unauthenticated
from metacrm.platform.auth import Identity, read_token
from metacrm.platform.db import Database
from metacrm.platform.settings import Settings
from metacrm.runtime.cache import TenantCache
from metacrm.runtime.compiler import CompiledObject, CompiledTenant


@dataclass
class AppState:
    """Made once in the lifespan; shared by every request of the process."""

    settings: Settings
    db: Database
    cache: TenantCache = field(default_factory=TenantCache)
    signing_key: str = ""

    @asynccontextmanager
    async def tenant(
        self, identity: Identity, *, writes: bool = True
    ) -> AsyncIterator[tuple[AsyncConnection, CompiledTenant]]:
        """A transaction in the caller's tenant, with its current compiled metadata."""
        async with self.db.tenant(identity.storage, writes=writes) as conn:
            yield conn, await self.cache.get(conn, identity.storage)


def get_state(request: Request) -> AppState:
    return request.app.state.metacrm


def get_identity(request: Request) -> Identity:
    """The caller, from `Authorization: Bearer <token>`."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send Authorization: Bearer <token>; get one at /api/v1/auth/token")
    return read_token(token.strip(), get_state(request).signing_key)


def get_admin(identity: Annotated[Identity, Depends(get_identity)]) -> Identity:
    """The caller, who must administer the tenant's metadata."""
    if not identity.is_admin:
        raise PermissionDenied("only tenant administrators may change metadata")
    return identity


def object_or_404(ct: CompiledTenant, name: str) -> CompiledObject:
    compiled = ct.objects.get(name)
    if compiled is None:
        raise NotFound(f"no object named {name[:64]!r}")
    return compiled


StateDep = Annotated[AppState, Depends(get_state)]
IdentityDep = Annotated[Identity, Depends(get_identity)]
AdminDep = Annotated[Identity, Depends(get_admin)]
