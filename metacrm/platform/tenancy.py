"""Tenants and their users: creation, look-up and login."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from metacrm.errors import Conflict, FieldError, MetadataInvalid, NotFound
from metacrm.platform.auth import hash_password
from metacrm.platform.db import TENANT_NAME, Database
from metacrm.platform.system_tables import tenants
from metacrm.runtime.records import new_id
from metacrm.runtime.tenant_tables import create_tenant_tables, users

_LOGIN = re.compile(r"^[^@\s\x00]+@[^@\s\x00]+$")
MIN_PASSWORD_LENGTH = 10


@dataclass(frozen=True)
class Tenant:
    id: uuid.UUID
    name: str
    label: str
    storage: str
    default_language: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "label": self.label,
            "default_language": self.default_language,
        }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


#: Passwords too common to allow, whatever their length (the usual top of leaked lists).
COMMON_PASSWORDS = frozenset(
    [
        "1234567890",
        "12345678910",
        "123456789a",
        "qwertyuiop",
        "password12",
        "password123",
        "password1234",
        "iloveyou12",
        "1q2w3e4r5t",
        "qwerty1234",
        "abc1234567",
        "administrator",
        "passw0rd12",
        "welcome123",
        "changeme12",
        "letmein123",
        "0987654321",
        "1111111111",
        "aaaaaaaaaa",
        "zaq12wsxcde",
    ]
)


def check_password(password: str, *, login: str | None = None) -> None:
    """Refuse weak passwords: too short or long, one repeated character, common, or the login."""
    problem = None
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        problem = ("password-length", f"use at least {MIN_PASSWORD_LENGTH} characters")
    elif len(password) > 1024:
        problem = ("password-length", "use at most 1024 characters")
    elif len(set(password)) < 4:
        problem = ("password-weak", "use more than three different characters")
    elif password.lower() in COMMON_PASSWORDS:
        problem = ("password-common", "this password is too common")
    elif (
        login and len(name := login.strip().lower().split("@")[0]) >= 4 and name in password.lower()
    ):
        problem = ("password-login", "the password cannot contain the user name")
    if problem:
        raise MetadataInvalid("the password is too weak", [FieldError("password", *problem)])


def normalise_email(email: str) -> str:
    """A user's login name: an address `local@domain`, lower-cased (`admin@demo` is fine)."""
    email = email.strip().lower()
    if not _LOGIN.match(email) or len(email) > 320:
        raise MetadataInvalid(
            "invalid e-mail", [FieldError("email", "email", "expected name@domain")]
        )
    return email


async def create_tenant(
    db: Database, name: str, *, label: str | None = None, default_language: str = "en"
) -> Tenant:
    """Register a tenant and create its storage (a schema or a file) with internal tables."""
    if not isinstance(name, str) or not TENANT_NAME.match(name):
        raise MetadataInvalid(
            "invalid tenant name",
            [
                FieldError(
                    "name",
                    "tenant-name",
                    "use 1-41 lower-case letters, digits or underscores, starting with a letter",
                )
            ],
        )
    storage = db.storage_name(name)
    tenant = Tenant(new_id(), name, label or name, storage, default_language)
    async with db.system() as conn:
        exists = await conn.scalar(sa.select(tenants.c.id).where(tenants.c.name == name))
        if exists is not None:
            raise Conflict(f"a tenant named {name!r} exists already")
        await conn.execute(
            tenants.insert().values(
                id=tenant.id,
                name=name,
                label=tenant.label,
                storage=storage,
                default_language=default_language,
                status="active",
                created_at=_now(),
            )
        )
        await db.create_tenant_storage(storage)
        async with db.tenant(storage) as tconn:
            await create_tenant_tables(tconn)
    return tenant


async def get_tenant(db: Database, name: str) -> Tenant:
    async with db.system() as conn:
        row = (
            await conn.execute(
                sa.select(
                    tenants.c.id,
                    tenants.c.name,
                    tenants.c.label,
                    tenants.c.storage,
                    tenants.c.default_language,
                ).where(tenants.c.name == name)
            )
        ).first()
    if row is None:
        raise NotFound(f"no tenant named {name!r}")
    return Tenant(**row._mapping)


async def list_tenants(db: Database) -> list[Tenant]:
    async with db.system() as conn:
        rows = await conn.execute(
            sa.select(
                tenants.c.id,
                tenants.c.name,
                tenants.c.label,
                tenants.c.storage,
                tenants.c.default_language,
            ).order_by(tenants.c.name)
        )
        return [Tenant(**row._mapping) for row in rows]


async def create_user(
    db: Database,
    tenant: Tenant,
    email: str,
    password: str,
    *,
    full_name: str = "",
    is_admin: bool = False,
    role: str | None = None,
    manager_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Add a user to a tenant (stored in the tenant's own storage)."""
    check_password(password, login=email)
    email = normalise_email(email)
    user_id = new_id()
    async with db.tenant(tenant.storage) as conn:
        exists = await conn.scalar(sa.select(users.c.id).where(users.c.email == email))
        if exists is not None:
            raise Conflict(f"{email} is already a user of {tenant.name}")
        now = _now()
        await conn.execute(
            users.insert().values(
                id=user_id,
                email=email,
                full_name=full_name or email,
                password_hash=hash_password(password),
                is_admin=is_admin,
                is_active=True,
                role=role,
                manager_id=manager_id,
                created_at=now,
                password_changed_at=now,
                token_epoch=0,
            )
        )
    return user_id
