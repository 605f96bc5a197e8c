"""Users of a tenant: list, create, change (role, manager, activity) and passwords."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from metacrm.errors import FieldError, MetadataInvalid, NotFound, PermissionDenied, Unauthenticated
from metacrm.platform.api.common import path_id
from metacrm.platform.auth import hash_password, verify_password
from metacrm.platform.body import read_object
from metacrm.platform.state import IdentityDep, StateDep, TenantSession
from metacrm.platform.tenancy import check_password, normalise_email
from metacrm.runtime import audit
from metacrm.runtime.permissions import (
    field_access,
    has_platform_permission,
    object_permission,
    role_of,
)
from metacrm.runtime.records import new_id, utcnow
from metacrm.runtime.tenant_tables import users

router = APIRouter(prefix="/users", tags=["users"])
_SHOWN = (
    users.c.id,
    users.c.email,
    users.c.full_name,
    users.c.is_admin,
    users.c.is_active,
    users.c.role,
    users.c.manager_id,
    users.c.created_at,
)
_ACCESS_RANK = {"hidden": 0, "read": 1, "edit": 2}
_EDITABLE: dict[str, type | tuple[type, ...]] = {
    "full_name": str,
    "is_admin": bool,
    "is_active": bool,
    "role": (str, type(None)),
    "manager_id": (str, type(None)),
}


def _user(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    for key in ("id", "manager_id"):
        out[key] = str(out[key]) if out[key] is not None else None
    out["created_at"] = out["created_at"].isoformat().replace("+00:00", "Z")
    return out


def _audited(row: Any) -> dict[str, Any]:
    """What a permission change is about: the user's role, manager and admin flag."""
    return {
        "email": row.email,
        "role": row.role,
        "is_admin": row.is_admin,
        "is_active": row.is_active,
        "manager_id": str(row.manager_id) if row.manager_id else None,
    }


def _require_user_admin(session: TenantSession) -> None:
    if not has_platform_permission(session.ct.model, session.actor, "manage_users"):
        raise PermissionDenied("only user administrators may manage users")


def _beyond_grant(session: TenantSession, role_name: str | None) -> list[str]:
    """What the role grants that the actor does not hold themselves (empty: they may
    grant it): platform permissions, object permissions and field access."""
    actor, model = session.actor, session.ct.model
    role = role_of(model, role_name)
    if actor.is_admin or role is None:
        return []
    missing = [p for p in role.permissions if not has_platform_permission(model, actor, p)]
    for object_name, granted in role.objects.items():
        held = object_permission(model, actor, object_name).model_dump()
        missing += [
            f"{verb} on {object_name}"
            for verb, allowed in granted.model_dump().items()
            if allowed and not held[verb]
        ]
    holder = replace(actor, role=role.api_name)
    for obj in model.objects:
        for field in obj.fields:
            theirs = field_access(model, holder, obj.api_name, field.api_name)
            mine = field_access(model, actor, obj.api_name, field.api_name)
            if _ACCESS_RANK[theirs] > _ACCESS_RANK[mine]:
                missing.append(f"{theirs} {obj.api_name}.{field.api_name}")
    return missing


def _check_grant(session: TenantSession, role_name: str | None) -> None:
    """Refuse (403) a role that grants more than the actor holds."""
    missing = _beyond_grant(session, role_name)
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise PermissionDenied(
            f"you may not grant the role {role_name!r}: it holds what you do not ({shown})"
        )


async def _check_target(session: TenantSession, user_id: uuid.UUID) -> None:
    """Refuse (403) a non-administrator changing an administrator, or a user whose role
    holds more than they do; 404 when no user has the id."""
    row = (
        await session.conn.execute(
            sa.select(users.c.is_admin, users.c.role).where(users.c.id == user_id)
        )
    ).first()
    if row is None:
        raise NotFound("no user has this id")
    if session.actor.is_admin:
        return
    if row.is_admin:
        raise PermissionDenied("only administrators may change administrators")
    if _beyond_grant(session, row.role):
        raise PermissionDenied("this user's role holds more than yours; you may not change them")


async def _check_fields(
    session: TenantSession, body: dict[str, Any], user_id: uuid.UUID | None
) -> dict[str, Any]:
    """The editable properties of `body`, checked: types, the role exists, no manager loop."""
    errors: list[FieldError] = []
    values: dict[str, Any] = {}
    for key, value in body.items():
        if key not in _EDITABLE:
            errors.append(FieldError(key[:64], "unknown-field", "not an editable user property"))
        elif not isinstance(value, _EDITABLE[key]):
            errors.append(FieldError(key, "type", f"{key} has the wrong type"))
        else:
            values[key] = value
    if "is_admin" in values and not session.actor.is_admin:
        # manage_users may not mint administrators (nor demote them).
        raise PermissionDenied("only administrators may grant or remove administration")
    role = values.get("role")
    if role is not None and not any(r.api_name == role for r in session.ct.model.roles):
        errors.append(FieldError("role", "unknown-role", f"role {role!r} does not exist"))
    _check_grant(session, role)
    if values.get("manager_id") is not None:
        try:
            manager = uuid.UUID(values["manager_id"])
        except ValueError:
            manager = None
        chain, current = set(), manager
        while current is not None and current not in chain:
            if current == user_id:
                errors.append(
                    FieldError("manager_id", "cycle", "a user cannot manage their own manager")
                )
                break
            chain.add(current)
            current = await session.conn.scalar(
                sa.select(users.c.manager_id).where(users.c.id == current)
            )
        exists = manager and await session.conn.scalar(
            sa.select(users.c.id).where(users.c.id == manager)
        )
        if not exists:
            errors.append(FieldError("manager_id", "unknown-user", "no user has this id"))
        values["manager_id"] = manager
    if errors:
        raise MetadataInvalid("the user is invalid", errors)
    return values


@router.get("")
async def list_users(state: StateDep, identity: IdentityDep) -> dict[str, Any]:
    """Every user: their accounts for user administrators, a directory (id, name, active)
    for everyone else."""
    async with state.tenant(identity, writes=False) as session:
        if has_platform_permission(session.ct.model, session.actor, "manage_users"):
            rows = await session.conn.execute(sa.select(*_SHOWN).order_by(users.c.email))
            return {"users": [_user(r) for r in rows]}
        rows = await session.conn.execute(
            sa.select(users.c.id, users.c.full_name, users.c.email, users.c.is_active).order_by(
                users.c.full_name, users.c.id
            )
        )
        return {"users": [_directory_entry(r) for r in rows]}


def _directory_entry(row: Any) -> dict[str, Any]:
    """What every colleague sees of a user: id, name and whether they are active. A user
    named by their e-mail (the default) is shown by its local part, not the address."""
    name = row.full_name
    if name == row.email:
        name = name.split("@")[0]
    return {"id": str(row.id), "full_name": name, "is_active": row.is_active}


@router.post("", status_code=201)
async def create_user(request: Request, state: StateDep, identity: IdentityDep) -> JSONResponse:
    """Add a user: `{email, password, full_name?, role?, manager_id?, is_admin?}`."""
    body = await read_object(request, state.settings.max_body_bytes)
    email, password = body.pop("email", None), body.pop("password", None)
    if not isinstance(email, str) or not isinstance(password, str):
        raise MetadataInvalid(
            "email and password are required",
            [FieldError("email", "required", "email and password are required text")],
        )
    check_password(password, login=email)
    email = normalise_email(email)
    async with state.tenant(identity) as session:
        _require_user_admin(session)
        values = await _check_fields(session, body, None)
        if await session.conn.scalar(sa.select(users.c.id).where(users.c.email == email)):
            raise MetadataInvalid(
                "the e-mail is taken", [FieldError("email", "unique", f"{email} is already a user")]
            )
        now, user_id = utcnow(), new_id()
        await session.conn.execute(
            users.insert().values(
                {"full_name": email, "is_admin": False, "is_active": True}
                | values
                | {
                    "id": user_id,
                    "email": email,
                    "password_hash": hash_password(password),
                    "created_at": now,
                    "password_changed_at": now,
                    "token_epoch": 0,
                }
            )
        )
        row = (await session.conn.execute(sa.select(*_SHOWN).where(users.c.id == user_id))).one()
        await audit.record(session.conn, "user.create", actor=session.actor, detail=_audited(row))
    return JSONResponse(_user(row), status_code=201)


@router.patch("/{user_id}")
async def change_user(
    user_id: str, request: Request, state: StateDep, identity: IdentityDep
) -> dict[str, Any]:
    body = await read_object(request, state.settings.max_body_bytes)
    uid = path_id(user_id, "user")
    async with state.tenant(identity) as session:
        _require_user_admin(session)
        await _check_target(session, uid)
        values = await _check_fields(session, body, uid)
        if values.get("is_active") is False:
            values["token_epoch"] = users.c.token_epoch + 1  # deactivation revokes sessions
        result = await session.conn.execute(users.update().where(users.c.id == uid).values(values))
        if result.rowcount != 1:
            raise NotFound("no user has this id")
        row = (await session.conn.execute(sa.select(*_SHOWN).where(users.c.id == uid))).one()
        detail = {"user_id": str(uid), "changed": sorted(body)} | _audited(row)
        await audit.record(session.conn, "user.update", actor=session.actor, detail=detail)
    return _user(row)


@router.post("/{user_id}/password", status_code=204)
async def change_password(
    user_id: str, request: Request, state: StateDep, identity: IdentityDep
) -> Response:
    """Set a password: yours (with `current_password`) or, as an administrator, anyone's.

    Every token issued before stops working.
    """
    body = await read_object(request, state.settings.max_body_bytes)
    uid = path_id(user_id, "user")
    new = body.get("new_password")
    if not isinstance(new, str):
        raise MetadataInvalid(
            "new_password is required",
            [FieldError("new_password", "required", "give the new password")],
        )
    check_password(new)
    async with state.tenant(identity) as session:
        if uid == identity.user_id and not session.actor.is_admin:
            current = await session.conn.scalar(
                sa.select(users.c.password_hash).where(users.c.id == uid)
            )
            given = body.get("current_password")
            if not isinstance(given, str) or not verify_password(current, given):
                raise Unauthenticated("the current password is wrong")
        elif not session.actor.is_admin:
            raise PermissionDenied("only administrators may set another user's password")
        result = await session.conn.execute(
            users.update()
            .where(users.c.id == uid)
            .values(
                password_hash=hash_password(new),
                password_changed_at=utcnow(),
                token_epoch=users.c.token_epoch + 1,
            )
        )
        if result.rowcount != 1:
            raise NotFound("no user has this id")
        await audit.record(
            session.conn, "user.password", actor=session.actor, detail={"user_id": str(uid)}
        )
    return Response(status_code=204)
