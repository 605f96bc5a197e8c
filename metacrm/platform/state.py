"""The per-process state handlers depend on: settings, databases and the tenant cache."""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, NamedTuple

import sqlalchemy as sa
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm import i18n
from metacrm.errors import NotFound, PermissionDenied, Unauthenticated
from metacrm.metadata.store import metadata_versions
from metacrm.platform.auth import API_KEY_PREFIX, Identity, hash_secret, read_api_key, read_token
from metacrm.platform.db import Database
from metacrm.platform.settings import Settings
from metacrm.platform.system_tables import tenants
from metacrm.platform.worker import Worker
from metacrm.runtime.actor import Actor
from metacrm.runtime.cache import TenantCache
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.events import Subscribers, collecting
from metacrm.runtime.permissions import has_platform_permission
from metacrm.runtime.records import utcnow
from metacrm.runtime.tenant_tables import api_keys, create_tenant_tables, users, web_sessions


class TenantSession(NamedTuple):
    """One request's transaction in a tenant, its compiled metadata, and its caller."""

    conn: AsyncConnection
    ct: CompiledTenant
    actor: Actor


# The caller's row and the tenant's metadata version, in one round trip.
_VERSION = sa.select(sa.func.max(metadata_versions.c.version)).scalar_subquery().label("version")
_USER = (
    users.c.id,
    users.c.is_admin,
    users.c.is_active,
    users.c.role,
    users.c.manager_id,
    users.c.token_epoch,
)
_CALLER = sa.select(*_USER, _VERSION).where(users.c.id == sa.bindparam("user_id"))
_KEY_CALLER = (
    sa.select(
        *_USER,
        _VERSION,
        api_keys.c.secret_hash,
        api_keys.c.scope,
        api_keys.c.revoked_at,
        api_keys.c.last_used_at,
    )
    .join(users, users.c.id == api_keys.c.user_id)
    .where(api_keys.c.id == sa.bindparam("key_id"))
)
_SESSION_CALLER = (
    sa.select(
        *_USER,
        _VERSION,
        web_sessions.c.secret_hash,
        web_sessions.c.token_epoch.label("session_epoch"),
        web_sessions.c.expires_at,
        web_sessions.c.ended_at,
    )
    .join(users, users.c.id == web_sessions.c.user_id)
    .where(web_sessions.c.id == sa.bindparam("session_id"))
)
_LAST_USED_GRANULARITY = dt.timedelta(minutes=1)
_REVOKED = "the token is no longer valid; log in again"


@dataclass
class AppState:
    """Made once in the lifespan; shared by every request of the process."""

    settings: Settings
    db: Database
    cache: TenantCache = field(default_factory=TenantCache)
    #: Receivers of record events, called after the request's transaction commits.
    events: Subscribers = field(default_factory=Subscribers)
    signing_key: str = ""
    #: This process's job worker (running in the background when `jobs_in_process`).
    worker: Worker | None = None
    _ready: set[str] = field(default_factory=set)
    #: Storage -> the tenant's default language, for tenants seen (it never changes).
    _known: dict[str, i18n.Language] = field(default_factory=dict)

    @asynccontextmanager
    async def tenant(
        self, identity: Identity, *, writes: bool = True
    ) -> AsyncIterator[TenantSession]:
        """A transaction in the caller's tenant; refuses a caller who is gone or revoked.
        Record events of its writes go to `events` once it has committed."""
        if identity.storage not in self._ready:
            # Once per process: add internal tables that a newer metacrm introduced.
            async with self.db.tenant(identity.storage) as conn:
                await create_tenant_tables(conn)
            self._ready.add(identity.storage)
        async with (
            self.db.tenant(identity.storage, writes=writes) as conn,
            collecting(conn) as outbox,
        ):
            actor, version = await _caller(conn, identity)
            if writes and actor.scope == "read":
                raise PermissionDenied("this API key may only read")
            ct = await self.cache.compiled(conn, identity.storage, version)
            yield TenantSession(conn, ct, actor)
        # Committed: now the writes' events may be seen (none for a rolled-back request).
        await self.events.publish(outbox.events)
        if outbox.jobs and self.worker is not None:
            self.worker.wake(identity.storage)

    async def tenant_exists(self, storage: str) -> bool:
        """Whether a tenant has this storage (remembered once seen)."""
        return await self.tenant_language(storage) is not None

    async def tenant_language(self, storage: str) -> i18n.Language | None:
        """The default language of the tenant with this storage; None when there is none."""
        if storage not in self._known:
            async with self.db.system() as conn:
                found = (
                    await conn.execute(
                        sa.select(tenants.c.default_language).where(tenants.c.storage == storage)
                    )
                ).first()
            if found is None:
                return None
            self._known[storage] = i18n.supported(found.default_language) or "en"
        return self._known[storage]


async def _caller(conn: AsyncConnection, identity: Identity) -> tuple[Actor, int]:
    """The acting user and the tenant's metadata version; Unauthenticated when revoked."""
    row: Any  # one of three selects, told apart by the identity's kind
    scope = None
    if identity.session_id is not None:
        row = (await conn.execute(_SESSION_CALLER, {"session_id": identity.session_id})).first()
        given = hash_secret(identity.session_secret or "")
        if (
            row is None
            or row.ended_at is not None
            or row.expires_at <= utcnow()
            or not row.is_active
            or row.token_epoch != row.session_epoch
            or not hmac.compare_digest(given, row.secret_hash)
        ):
            raise Unauthenticated("the session has ended; sign in again")
    elif identity.api_key_id is None:
        row = (await conn.execute(_CALLER, {"user_id": identity.user_id})).first()
        if row is None or not row.is_active or row.token_epoch != identity.token_epoch:
            raise Unauthenticated(_REVOKED)
    else:
        row = (await conn.execute(_KEY_CALLER, {"key_id": identity.api_key_id})).first()
        given = hash_secret(identity.api_secret or "")
        if (
            row is None
            or row.revoked_at is not None
            or not row.is_active
            or not hmac.compare_digest(given, row.secret_hash)
        ):
            raise Unauthenticated("the API key is not valid")
        scope = "read" if row.scope == "read" else None
        now = utcnow()
        if row.last_used_at is None or now - row.last_used_at > _LAST_USED_GRANULARITY:
            await conn.execute(
                api_keys.update()
                .where(api_keys.c.id == identity.api_key_id)
                .values(last_used_at=now)
            )
    actor = Actor(
        row.id,
        is_admin=row.is_admin,
        role=row.role,
        manager_id=row.manager_id,
        ip=identity.ip,
        api_key_id=identity.api_key_id,
        scope=scope,
        language=identity.language,
    )
    return actor, row.version or 0


def get_state(request: Request) -> AppState:
    return request.app.state.metacrm


async def get_identity(request: Request) -> Identity:
    """The caller, from `Authorization: Bearer <token or API key>`, with the language the
    request is answered in: Accept-Language negotiated once here, else the tenant's default."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("send Authorization: Bearer <token>; get one at /api/v1/auth/token")
    ip = request.client.host if request.client else None
    state = get_state(request)
    if token.startswith(API_KEY_PREFIX + "."):
        identity = read_api_key(token)
        # A key names its tenant: check it exists before touching any storage.
        if identity is None or not await state.tenant_exists(identity.storage):
            raise Unauthenticated("the API key is not valid")
    else:
        identity = read_token(token, state.signing_key)
    language = i18n.negotiate(request.headers.get("accept-language"))
    if language is None:
        language = await state.tenant_language(identity.storage) or "en"
    request.state.language = language
    return replace(identity, ip=ip, language=language)


async def get_admin(
    identity: Annotated[Identity, Depends(get_identity)],
    state: Annotated[AppState, Depends(get_state)],
) -> Identity:
    """The caller, who must administer the tenant's metadata (administrators, and roles
    holding the platform permission manage_metadata, separate from data permissions)."""
    async with state.tenant(identity, writes=False) as session:
        allowed = has_platform_permission(session.ct.model, session.actor, "manage_metadata")
        if not allowed or session.actor.scope == "read":
            raise PermissionDenied("only metadata administrators may change metadata")
    return identity


def object_or_404(ct: CompiledTenant, name: str) -> CompiledObject:
    compiled = ct.objects.get(name)
    if compiled is None:
        raise NotFound(f"no object named {name[:64]!r}")
    return compiled


StateDep = Annotated[AppState, Depends(get_state)]
IdentityDep = Annotated[Identity, Depends(get_identity)]
AdminDep = Annotated[Identity, Depends(get_admin)]
