"""Security metadata: roles (with object and field permissions) and sharing rules."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from metacrm.metadata.base import ApiName, Expression, Label, Strict

FieldAccess = Literal["hidden", "read", "edit"]
#: Platform permissions a role can hold, separate from data permissions. Each is enforced.
PLATFORM_PERMISSIONS = (
    "manage_metadata",
    "manage_users",
    "view_audit",
    "manage_api_keys",
    #: Webhook subscriptions, the job queue and the automation run history.
    "manage_automation",
    #: File imports into objects (each row still needs the object's create/edit access).
    "import_data",
    #: Exports of lists to CSV and Excel (only the records and fields the user can read).
    "export_data",
)


class ObjectPermission(Strict):
    """What a role may do with the records of one object."""

    create: bool = False
    read: bool = False
    edit: bool = False
    delete: bool = False
    view_all: bool = False
    modify_all: bool = False


class Role(Strict):
    """A role: where it sits in the hierarchy and what its holders may do."""

    api_name: ApiName
    label: Label | None = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    reports_to: ApiName | None = None
    #: Object api_name -> permissions. Objects not listed: no access.
    objects: dict[ApiName, ObjectPermission] = {}
    #: Object api_name -> field api_name -> access. Fields not listed: edit (if the object is editable).
    fields: dict[ApiName, dict[ApiName, FieldAccess]] = {}
    permissions: list[Literal[PLATFORM_PERMISSIONS]] = []  # type: ignore[valid-type]

    @field_validator("permissions", mode="before")
    @classmethod
    def _known_permissions(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value  # the type check says what is wrong
        unknown = [p for p in value if isinstance(p, str) and p not in PLATFORM_PERMISSIONS]
        if unknown:
            raise PydanticCustomError(
                "unknown-permission",
                "{unknown} is not a platform permission; use one of {known}",
                {
                    "unknown": ", ".join(repr(p[:64]) for p in unknown),
                    "known": ", ".join(PLATFORM_PERMISSIONS),
                },
            )
        return value


class ShareTarget(Strict):
    role: ApiName
    include_subordinates: bool = False


class SharingRule(Strict):
    """Records of `object` matching `criteria` are shared with a role, to read or edit."""

    api_name: ApiName
    object: ApiName
    label: Label | None = None
    criteria: Expression
    share_with: ShareTarget
    access: Literal["read", "edit"] = "read"
    active: bool = True


__all__ = ["ObjectPermission", "Role", "ShareTarget", "SharingRule"]
