"""What a user may do: object and field permissions from roles, and record access in SQL."""

from __future__ import annotations

from typing import Literal

from metacrm.metadata.model import MetadataModel
from metacrm.metadata.security import ObjectPermission, Role

FieldAccess = Literal["hidden", "read", "edit"]
_ALL = ObjectPermission(create=True, read=True, edit=True, delete=True, view_all=True, modify_all=True)
_NONE = ObjectPermission()


def role_of(model: MetadataModel, name: str | None) -> Role | None:
    if name is None:
        return None
    return next((r for r in model.roles if r.api_name == name), None)


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
