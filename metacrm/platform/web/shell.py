"""The frame around every page: who is signed in, the navigation they may see, the language."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm import i18n
from metacrm.platform.web.texts import word
from metacrm.runtime.actor import Actor
from metacrm.runtime.automation.notify import unread_count
from metacrm.runtime.compiler import CompiledTenant
from metacrm.runtime.packs import installed_packs
from metacrm.runtime.permissions import has_platform_permission, object_permission
from metacrm.runtime.process.submissions import waiting_count
from metacrm.runtime.tenant_tables import users
from metacrm.ui_schema.labels import text


@dataclass(frozen=True)
class NavObject:
    name: str
    label: str


@dataclass(frozen=True)
class NavGroup:
    """An app in the navigation: a pack's objects, or the tenant's own ("custom")."""

    label: str
    objects: tuple[NavObject, ...]


@dataclass(frozen=True)
class Shell:
    """What the base template draws around a page."""

    language: i18n.Language
    user_name: str
    is_admin: bool
    can_design: bool
    nav: tuple[NavGroup, ...]
    csrf: str
    #: Approvals waiting for the user (or their delegators): the navigation's badge.
    waiting_approvals: int = 0
    #: The user's unread notifications: the bell's count.
    unread_notifications: int = 0
    #: Whether the user may watch automation (manage_automation): the monitor's link.
    can_automate: bool = False
    #: Whether the user may import data (import_data): the imports' link.
    can_import: bool = False

    def object_label(self, name: str) -> str:
        for group in self.nav:
            for item in group.objects:
                if item.name == name:
                    return item.label
        return name


def object_label(ct: CompiledTenant, name: str, language: str, *, plural: bool = False) -> str:
    """An object's label (plural for lists) in `language`, falling back to English."""
    obj = ct.model.object(name)
    languages = [language, "en"]
    if plural and obj.plural_label is not None:
        return text(obj.plural_label, languages, name)
    return text(obj.label, languages, name.replace("_", " ").capitalize())


def readable_objects(ct: CompiledTenant, actor: Actor) -> list[str]:
    """The objects whose records the actor may read, in metadata order."""
    out = []
    for obj in ct.model.objects:
        permission = object_permission(ct.model, actor, obj.api_name)
        if permission.read or permission.view_all:
            out.append(obj.api_name)
    return out


async def _pack_of_objects(conn: AsyncConnection) -> list[tuple[str, str, list[str]]]:
    """(pack name, its label in each language as JSON, its objects) for installed packs."""
    out = []
    for pack in (await installed_packs(conn)).values():
        names = [o["api_name"] for o in (pack.contents or {}).get("objects", [])]
        out.append((pack.name, pack.label, names))
    return out


def colleague_name(full_name: str | None, email: str) -> str:
    """What every colleague sees of a user, as in the API's directory (GET /api/v1/users):
    the name, never the e-mail address (a user named by their address shows its local part)."""
    name = full_name or email
    return name.split("@")[0] if name == email else name


async def build_shell(
    conn: AsyncConnection, ct: CompiledTenant, actor: Actor, *, csrf: str
) -> Shell:
    """The shell of a page for `actor`: navigation filtered by their permissions."""
    language = actor.language
    packs = await ct.views.get_or_load(("web:packs",), lambda: _pack_of_objects(conn))
    readable = readable_objects(ct, actor)
    placed: set[str] = set()
    groups = []
    for _name, label, names in packs:
        items = tuple(
            NavObject(n, object_label(ct, n, language, plural=True)) for n in names if n in readable
        )
        placed.update(names)
        if items:
            groups.append(NavGroup(text(label, [language, "en"], _name), items))
    rest = tuple(
        NavObject(n, object_label(ct, n, language, plural=True))
        for n in readable
        if n not in placed
    )
    if rest:
        groups.append(NavGroup(word("custom_objects", language), rest))
    name = await conn.scalar(sa.select(users.c.full_name).where(users.c.id == actor.user_id))
    return Shell(
        language=language,
        user_name=name or "",
        is_admin=actor.is_admin,
        can_design=has_platform_permission(ct.model, actor, "manage_metadata"),
        nav=tuple(groups),
        csrf=csrf,
        waiting_approvals=await waiting_count(conn, actor.user_id),
        unread_notifications=await unread_count(conn, actor.user_id),
        can_automate=has_platform_permission(ct.model, actor, "manage_automation"),
        can_import=has_platform_permission(ct.model, actor, "import_data"),
    )
