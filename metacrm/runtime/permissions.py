"""What a user may do: object and field permissions from roles, and record access in SQL."""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa

from metacrm import formula
from metacrm.errors import PermissionDenied
from metacrm.metadata.model import MetadataModel, ObjectDef
from metacrm.metadata.names import SYSTEM_FIELDS
from metacrm.metadata.security import ObjectPermission, Role, SharingRule
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.tenant_tables import shares, users

FieldAccess = Literal["hidden", "read", "edit"]
_ALL = ObjectPermission(
    create=True, read=True, edit=True, delete=True, view_all=True, modify_all=True
)
_NONE = ObjectPermission()


def role_of(model: MetadataModel, name: str | None) -> Role | None:
    if name is None:
        return None
    return next((r for r in model.roles if r.api_name == name), None)


def has_platform_permission(model: MetadataModel, actor: object, permission: str) -> bool:
    """Administrators hold every platform permission; others through their role's list."""
    if getattr(actor, "is_admin", False):
        return True
    role = role_of(model, getattr(actor, "role", None))
    return role is not None and permission in role.permissions


def object_permission(model: MetadataModel, actor: object, object_name: str) -> ObjectPermission:
    """The actor's permissions on an object: administrators may do everything."""
    if getattr(actor, "is_admin", False):
        return _ALL
    role = role_of(model, getattr(actor, "role", None))
    if role is None:
        return _NONE
    return role.objects.get(object_name, _NONE)


def field_access(model: MetadataModel, actor: object, object_name: str, field: str) -> FieldAccess:
    """hidden, read or edit: the role's field setting, capped by its object permission."""
    permission = object_permission(model, actor, object_name)
    if not (permission.read or permission.view_all):
        return "hidden"
    if getattr(actor, "is_admin", False):
        access: FieldAccess = "edit"
    else:
        role = role_of(model, getattr(actor, "role", None))
        access = role.fields.get(object_name, {}).get(field, "edit") if role else "hidden"
    if access == "edit" and not (permission.edit or permission.create or permission.modify_all):
        return "read"
    return access


def subordinate_roles(model: MetadataModel, role: str) -> set[str]:
    """Every role below `role` in the hierarchy (not `role` itself)."""
    children: dict[str, list[str]] = {}
    for r in model.roles:
        if r.reports_to:
            children.setdefault(r.reports_to, []).append(r.api_name)
    found: set[str] = set()
    stack = list(children.get(role, []))
    while stack:
        name = stack.pop()
        if name not in found:
            found.add(name)
            stack.extend(children.get(name, []))
    return found


# ------------------------------------------------------------------ record access in SQL

Action = Literal["read", "edit"]


def require_object(
    model: MetadataModel, actor: object, object_name: str, verb: str
) -> ObjectPermission:
    """The actor's permission on an object, refusing (403) when it lacks `verb` there."""
    permission = object_permission(model, actor, object_name)
    allowed = {
        "read": permission.read or permission.view_all or permission.modify_all,
        "create": permission.create or permission.modify_all,
        "edit": permission.edit or permission.modify_all,
        "delete": permission.delete or permission.modify_all,
    }[verb]
    if not allowed:
        raise PermissionDenied(f"you may not {verb} {object_name} records")
    return permission


def _role_receives(model: MetadataModel, rule: SharingRule, role: str | None) -> bool:
    if role is None:
        return False
    target = rule.share_with
    return role == target.role or (
        target.include_subordinates and role in subordinate_roles(model, target.role)
    )


def record_filter(
    ct: CompiledTenant, actor: object, co: CompiledObject, action: Action
) -> sa.ColumnElement[bool] | None:
    """The SQL condition a record must meet for `actor` to `action` it (None: every record).

    Ownership, the role hierarchy (records owned by users in subordinate roles),
    criteria-based sharing rules and manual shares, on top of the object's default.
    Object-level permission is checked first (403 when missing).
    """
    model = ct.model
    if getattr(actor, "is_admin", False):
        return None
    permission = require_object(model, actor, co.name, action)
    if permission.modify_all or (action == "read" and permission.view_all):
        return None
    if co.obj.sharing == "public_read_write" or (
        action == "read" and co.obj.sharing == "public_read"
    ):
        return None
    role = getattr(actor, "role", None)
    user_id = actor.user_id  # type: ignore[attr-defined]
    shared = ct.views.get_or_build(
        ("record_filter", co.name, action, role), lambda: _role_clauses(ct, co, action, role)
    )
    t = co.table
    share = sa.select(shares.c.record_id).where(
        shares.c.object == co.name,
        sa.or_(shares.c.user_id == user_id, shares.c.role == role)
        if role
        else shares.c.user_id == user_id,
    )
    if action == "edit":
        share = share.where(shares.c.access == "edit")
    return sa.or_(t.c.owner_id == user_id, t.c.id.in_(share), *shared)


def _role_clauses(
    ct: CompiledTenant, co: CompiledObject, action: Action, role: str | None
) -> list[Any]:
    """The parts of the filter that depend on the role only: hierarchy and sharing rules."""
    model, t = ct.model, co.table
    clauses: list[Any] = []
    below = subordinate_roles(model, role) if role else set()
    if below:
        clauses.append(
            t.c.owner_id.in_(sa.select(users.c.id).where(users.c.role.in_(sorted(below))))
        )
    for rule in model.sharing_rules:
        if rule.object != co.name or not rule.active or not _role_receives(model, rule, role):
            continue
        if action == "edit" and rule.access != "edit":
            continue
        clauses.append(formula.compile_filter(rule.criteria, co.obj, model, ct.table_for))
    return clauses


def object_readable(ct: CompiledTenant, actor: object, co: CompiledObject) -> bool:
    """Whether the actor may read any record of the object at all."""
    permission = object_permission(ct.model, actor, co.name)
    return permission.read or permission.view_all or permission.modify_all


def readable(ct: CompiledTenant, actor: object, co: CompiledObject) -> list[str]:
    """The fields of `co` the actor may see, in definition order."""
    if getattr(actor, "is_admin", False):
        return list(co.fields)
    if not object_readable(ct, actor, co):
        return []
    return ct.views.get_or_build(
        ("readable", co.name, getattr(actor, "role", None)),
        lambda: [n for n in co.fields if field_access(ct.model, actor, co.name, n) != "hidden"],
    )


def path_readable(ct: CompiledTenant, actor: object, co: CompiledObject, path: str) -> bool:
    """Whether every hop of a dotted field path is a field the actor may read."""
    current = co
    parts = path.split(".")
    for i, part in enumerate(parts):
        if part in SYSTEM_FIELDS:
            return i == len(parts) - 1
        if part not in readable(ct, actor, current):
            return False
        if i < len(parts) - 1:
            link = current.references.get(part)
            if link is None:
                return False
            current = ct.object(link.target)
    return True


def visible_definition(
    ct: CompiledTenant, actor: object, obj: ObjectDef, *, writable: bool = False
) -> ObjectDef | None:
    """`obj` as the actor may know it: None when unreadable, else without hidden fields
    (and, with `writable`, only the fields the actor may edit)."""
    co = ct.object(obj.api_name)
    if not object_readable(ct, actor, co):
        return None
    if getattr(actor, "is_admin", False):
        return obj
    wanted = {"edit"} if writable else {"read", "edit"}
    fields = [
        f for f in obj.fields if field_access(ct.model, actor, obj.api_name, f.api_name) in wanted
    ]
    return obj.model_copy(update={"fields": fields})
