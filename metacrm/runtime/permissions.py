"""What a user may do: object and field permissions from roles, and record access in SQL."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import sqlalchemy as sa

from metacrm import formula
from metacrm.errors import PermissionDenied
from metacrm.formula import TargetFilter
from metacrm.metadata.model import MetadataModel, ObjectDef, link_target
from metacrm.metadata.names import SYSTEM_FIELDS
from metacrm.metadata.security import ObjectPermission, Role, SharingRule
from metacrm.runtime.actor import Actor
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


def has_platform_permission(model: MetadataModel, actor: Actor, permission: str) -> bool:
    """Administrators hold every platform permission; others through their role's list."""
    if actor.is_admin:
        return True
    role = role_of(model, actor.role)
    return role is not None and permission in role.permissions


def object_permission(model: MetadataModel, actor: Actor, object_name: str) -> ObjectPermission:
    """The actor's permissions on an object: administrators may do everything."""
    if actor.is_admin:
        return _ALL
    role = role_of(model, actor.role)
    if role is None:
        return _NONE
    return role.objects.get(object_name, _NONE)


def field_access(model: MetadataModel, actor: Actor, object_name: str, field: str) -> FieldAccess:
    """hidden, read or edit: the role's field setting, capped by its object permission."""
    permission = object_permission(model, actor, object_name)
    if not (permission.read or permission.view_all):
        return "hidden"
    if actor.is_admin:
        access: FieldAccess = "edit"
    else:
        role = role_of(model, actor.role)
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
    model: MetadataModel, actor: Actor, object_name: str, verb: str
) -> ObjectPermission:
    """The actor's permission on an object, refusing (403) when it lacks `verb` there."""
    permission = object_permission(model, actor, object_name)
    if not _allows(permission, verb):
        raise PermissionDenied(f"you may not {verb} {object_name} records")
    return permission


def _allows(permission: ObjectPermission, verb: str) -> bool:
    return {
        "read": permission.read or permission.view_all or permission.modify_all,
        "create": permission.create or permission.modify_all,
        "edit": permission.edit or permission.modify_all,
        "delete": permission.delete or permission.modify_all,
    }[verb]


def _role_receives(model: MetadataModel, rule: SharingRule, role: str | None) -> bool:
    if role is None:
        return False
    target = rule.share_with
    return role == target.role or (
        target.include_subordinates and role in subordinate_roles(model, target.role)
    )


#: The name of the acting user's id in every access filter (see `user_param`).
ACCESS_USER = "access_user"


def user_param(user_id: uuid.UUID | None) -> sa.BindParameter[uuid.UUID]:
    """The acting user's id as access filters carry it: one named parameter, so that a
    filter kept for a whole role is bound to the user at hand by `user_binding`.
    None makes a placeholder that fails loudly if it is ever executed unbound."""
    return sa.bindparam(ACCESS_USER, user_id, type_=sa.Uuid(), required=user_id is None)


def user_binding(actor: Actor) -> dict[str, uuid.UUID]:
    """The execution parameters that bind placeholder users (`user_param(None)`) to the actor."""
    return {ACCESS_USER: actor.user_id}


def record_filter(
    ct: CompiledTenant, actor: Actor, co: CompiledObject, action: Action
) -> sa.ColumnElement[bool] | None:
    """The SQL condition a record must meet for `actor` to `action` it (None: every record).

    Ownership, the role hierarchy (records owned by users in subordinate roles),
    criteria-based sharing rules and manual shares, on top of the object's default;
    a master-detail child's access is its master's. Object-level permission is checked
    first (403 when missing).
    """
    require_object(ct.model, actor, co.name, action)
    return _access(ct, actor, co, action, user_param(actor.user_id), ())


def lookup_filter(ct: CompiledTenant, actor: Actor, *, bound: bool = True) -> TargetFilter:
    """What a lookup may reach for `actor`: live target records they may read.

    Given to formula's SQL compiler for `where`, `fields` and list-view filters, so that
    a hop to a record the caller cannot see reads as an empty lookup. With `bound=False`
    the conditions carry a placeholder user (`user_param(None)`): fit to keep per role,
    and executed with `user_binding(actor)`.
    """
    user = user_param(actor.user_id if bound else None)

    def reachable(object_name: str) -> sa.ColumnElement[bool]:
        target = ct.object(object_name)
        live = target.table.c.deleted_at.is_(None)
        access = _access(ct, actor, target, "read", user, ())
        return live if access is None else sa.and_(live, access)

    return reachable


def reachable_ids(
    ct: CompiledTenant, actor: Actor, co: CompiledObject, action: Action
) -> sa.Select[tuple[uuid.UUID]]:
    """The ids of the live records of `co` the actor may `action` (none without the object
    permission, never a 403): what a lookup may name, and a detail's master."""
    return _live_ids(ct, actor, co, action, user_param(actor.user_id), ())


def _access(
    ct: CompiledTenant,
    actor: Actor,
    co: CompiledObject,
    action: Action,
    user: sa.BindParameter[uuid.UUID],
    seen: tuple[str, ...],
) -> sa.ColumnElement[bool] | None:
    """`record_filter` without the 403: no object permission means no record."""
    if actor.is_admin:
        return None
    permission = object_permission(ct.model, actor, co.name)
    if not _allows(permission, action):
        return sa.false()
    if permission.modify_all or (action == "read" and permission.view_all):
        return None
    masters = [link for link in co.references.values() if link.type == "master_detail"]
    if masters:
        # A detail's access is its master's: the child's owner, default and shares do not count.
        seen = (*seen, co.name)
        return sa.and_(
            *[
                co.table.c[link.api_name].in_(
                    _live_ids(ct, actor, ct.object(link.target), action, user, seen)
                )
                for link in masters
            ]
        )
    if co.obj.sharing == "public_read_write" or (
        action == "read" and co.obj.sharing == "public_read"
    ):
        return None
    role = actor.role
    shared = ct.views.get_or_build(
        ("record_filter", co.name, action, role), lambda: _role_clauses(ct, co, action, role)
    )
    t = co.table
    share = sa.select(shares.c.record_id).where(
        shares.c.object == co.name,
        sa.or_(shares.c.user_id == user, shares.c.role == role)
        if role
        else shares.c.user_id == user,
    )
    if action == "edit":
        share = share.where(shares.c.access == "edit")
    return sa.or_(t.c.owner_id == user, t.c.id.in_(share), *shared)


def _live_ids(
    ct: CompiledTenant,
    actor: Actor,
    co: CompiledObject,
    action: Action,
    user: sa.BindParameter[uuid.UUID],
    seen: tuple[str, ...],
) -> sa.Select[tuple[uuid.UUID]]:
    """The ids of live records of `co` the actor may `action`, never correlated to the
    query around it (which may select from the same table)."""
    t = co.table
    query = sa.select(t.c.id).where(t.c.deleted_at.is_(None)).correlate(None)
    if co.name in seen:  # masters in a cycle grant nothing
        return query.where(sa.false())
    access = _access(ct, actor, co, action, user, seen)
    return query if access is None else query.where(access)


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
        # Deliberately no target filter: the criteria define access, so they run with system
        # rights, and a lookup in them (`account.tier > 5`) sees every live or deleted target.
        clauses.append(formula.compile_filter(rule.criteria, co.obj, model, ct.table_for))
    return clauses


def object_readable(ct: CompiledTenant, actor: Actor, co: CompiledObject) -> bool:
    """Whether the actor may read any record of the object at all."""
    permission = object_permission(ct.model, actor, co.name)
    return permission.read or permission.view_all or permission.modify_all


def readable(ct: CompiledTenant, actor: Actor, co: CompiledObject) -> list[str]:
    """The fields of `co` the actor may see, in definition order."""
    if actor.is_admin:
        return list(co.fields)
    if not object_readable(ct, actor, co):
        return []
    return ct.views.get_or_build(
        ("readable", co.name, actor.role),
        lambda: [n for n in co.fields if field_access(ct.model, actor, co.name, n) != "hidden"],
    )


def path_readable(ct: CompiledTenant, actor: Actor, co: CompiledObject, path: str) -> bool:
    """Whether every hop of a dotted field path is a field the actor may read."""
    current = co
    parts = path.split(".")
    for i, part in enumerate(parts):
        if part in SYSTEM_FIELDS:
            return i == len(parts) - 1
        if part not in readable(ct, actor, current):
            return False
        if i < len(parts) - 1:
            target = linked(ct, current, part)
            if target is None:
                return False
            current = target
    return True


def linked(ct: CompiledTenant, co: CompiledObject, name: str) -> CompiledObject | None:
    """The object the lookup or master-detail field `name` of `co` points to (None: no such
    field)."""
    link = co.references.get(name)
    target = link_target(link) if link is not None else None
    return None if target is None else ct.object(target)


def visible_definition(
    ct: CompiledTenant, actor: Actor, obj: ObjectDef, *, writable: bool = False
) -> ObjectDef | None:
    """`obj` as the actor may know it: None when unreadable, else without hidden fields
    (and, with `writable`, only the fields the actor may edit)."""
    co = ct.object(obj.api_name)
    if not object_readable(ct, actor, co):
        return None
    if actor.is_admin:
        return obj
    wanted = {"edit"} if writable else {"read", "edit"}
    fields = [
        f for f in obj.fields if field_access(ct.model, actor, obj.api_name, f.api_name) in wanted
    ]
    return obj.model_copy(update={"fields": fields})
