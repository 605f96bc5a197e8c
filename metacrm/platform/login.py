"""Login: credentials checked against a tenant's users, throttled per user name and address."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa

from metacrm.errors import TooManyRequests, Unauthenticated
from metacrm.platform.auth import Identity, verify_password
from metacrm.platform.db import TENANT_NAME, Database
from metacrm.platform.system_tables import tenants
from metacrm.runtime import audit
from metacrm.runtime.tenant_tables import login_throttle, users

#: What tells the time: a dependency, so tests move it instead of sleeping.
Clock = Callable[[], dt.datetime]

#: Failed logins a (user name, address) pair may make before it has to wait; each failure
#: after that doubles the wait, from FIRST_DELAY up to MAX_DELAY.
FREE_FAILURES = 5
FIRST_DELAY = dt.timedelta(minutes=1)
MAX_DELAY = dt.timedelta(hours=1)


def system_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def get_clock() -> Clock:
    """The clock logins are throttled by (tests override this dependency)."""
    return system_clock


def delay_after(failures: int) -> dt.timedelta | None:
    """How long an address waits after its `failures`-th failure at a name (None: no wait)."""
    if failures < FREE_FAILURES:
        return None
    doublings = min(failures - FREE_FAILURES, 32)
    return min(FIRST_DELAY * (1 << doublings), MAX_DELAY)


async def authenticate(
    db: Database,
    tenant_name: str,
    email: str,
    password: str,
    *,
    ip: str | None,
    now: dt.datetime,
) -> Identity:
    """The identity of valid credentials; one vague Unauthenticated for any mistake.

    Failures are counted per user name (known or not) and client address: after
    FREE_FAILURES, that address waits a delay that doubles with each failure (429 until
    then), while a login from any other address goes through. Every attempt is audited.
    """
    refused = Unauthenticated("the tenant, user name or password is wrong")
    login = email.strip().lower()[:320]
    address = (ip or "")[:64]
    storage = None
    if TENANT_NAME.match(tenant_name or "") and len(email) <= 320 and len(password) <= 1024:
        async with db.system() as conn:
            storage = await conn.scalar(
                sa.select(tenants.c.storage).where(tenants.c.name == tenant_name)
            )
    if storage is None:
        verify_password(None, password[:1024])  # spend the same time as for a real tenant
        raise refused
    pair = (login_throttle.c.login == login, login_throttle.c.address == address)
    async with db.tenant(storage) as conn:
        attempt = (await conn.execute(sa.select(login_throttle).where(*pair))).first()
        if attempt and attempt.blocked_until and attempt.blocked_until > now:
            raise TooManyRequests("too many failed logins from this address; try again later")
        row = (
            await conn.execute(
                sa.select(
                    users.c.id, users.c.password_hash, users.c.is_active, users.c.token_epoch
                ).where(users.c.email == login)
            )
        ).first()
        ok = verify_password(row.password_hash if row else None, password[:1024])
        user_id = row.id if row else None
        if ok and row is not None and row.is_active:
            await conn.execute(login_throttle.delete().where(*pair))
            await audit.record(conn, "login.success", user_id=user_id, ip=ip)
            return Identity(
                user_id=row.id, tenant=tenant_name, storage=storage, token_epoch=row.token_epoch
            )
        failures = (attempt.failures if attempt else 0) + 1
        delay = delay_after(failures)
        values = {
            "failures": failures,
            "last_failure_at": now,
            "blocked_until": now + delay if delay else None,
        }
        if attempt:
            await conn.execute(login_throttle.update().where(*pair).values(values))
        else:
            await conn.execute(
                login_throttle.insert().values(login=login, address=address, **values)
            )
        await audit.record(
            conn,
            "login.failure",
            user_id=user_id,
            ip=ip,
            detail={"login": login, "failures": failures},
        )
    raise refused
