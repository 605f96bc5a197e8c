"""The per-process state handlers depend on: settings, databases and the tenant cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, NamedTuple

import sqlalchemy as sa
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import NotFound, PermissionDenied, Unauthenticated
from metacrm.platform.auth import Identity, read_token
from metacrm.platform.db import Database
from metacrm.platform.settings import Settings
from metacrm.runtime.cache import TenantCache
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.records import Actor
from metacrm.runtime.tenant_tables import create_tenant_tables, metadata_versions, users


class TenantSession(NamedTuple):
    """One request's transaction in a tenant, its compiled metadata, and its caller."""

    conn: AsyncConnection
    ct: CompiledTenant
    actor: Actor


# The caller's row and the tenant's metadata version, in one round trip.
_CALLER = sa.select(
    users.c.is_admin,
    users.c.is_active,
    users.c.role,
    users.c.manager_id,
    users.c.token_epoch,
    sa.select(sa.func.max(metadata_versions.c.version)).scalar_subquery().label("version"),
).where(users.c.id == sa.bindparam("user_id"))


@dataclass
class AppState:
    """Made once in the lifespan; shared by every request of the process."""

    settings: Settings
    db: Database
    cache: TenantCache = field(default_factory=TenantCache)
    signing_key: str = ""
    _ready: set[str] = field(default_factory=set)

    @asynccontextmanager
    async def tenant(
        self, identity: Identity, *, writes: bool = True
    ) -> AsyncIterator[TenantSession]:
        """A transaction in the caller's tenant; refuses a caller who is gone or revoked."""
        if identity.storage not in self._ready:
            # Once per process: add internal tables that a newer metacrm introduced.
            async with self.db.tenant(identity.storage) as conn:
                await create_tenant_tables(conn)
            self._ready.add(identity.storage)
        async with self.db.tenant(identity.storage, writes=writes) as conn:
            row = (await conn.execute(_CALLER, {"user_id": identity.user_id})).first()
            if row is None or not row.is_active or row.token_epoch != identity.token_epoch:
                raise Unauthenticated("the token is no longer valid; log in again")
            ct = await self.cache.compiled(conn, identity.storage, row.version or 0)
            actor = Actor(
                identity.user_id, is_admin=row.is_admin, role=row.role, manager_id=row.manager_id
            )
            yield TenantSession(conn, ct, actor)


def get_state(request: Request) -> AppState:
    return request.app.state.metacrm


def get_identity(request: Request) -> Identity:
    """The caller, from `Authorization: Bearer <token>`."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send Authorization: Bearer <token>; get one at /api/v1/auth/token")
    return read_token(token.strip(), get_state(request).signing_key)


async def get_admin(
    identity: Annotated[Identity, Depends(get_identity)],
    state: Annotated[AppState, Depends(get_state)],
) -> Identity:
    """The caller, who must administer the tenant's metadata."""
    async with state.tenant(identity, writes=False) as session:
        if not session.actor.is_admin:
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
