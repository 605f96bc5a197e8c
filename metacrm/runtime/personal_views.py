"""A user's own saved list views: stored per user, checked like metadata list views."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm import formula
from metacrm.checks.layouts import list_view_problems
from metacrm.errors import FieldError, FormulaError, NotFound, RecordInvalid
from metacrm.metadata.layouts import ListView
from metacrm.metadata.names import SYSTEM_FIELDS
from metacrm.metadata.schema import errors_of, text_problems
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.permissions import field_access, require_object
from metacrm.runtime.records import utcnow
from metacrm.runtime.tenant_tables import personal_list_views

#: The api_name prefix of personal views, so they never clash with the tenant's own.
PREFIX = "my_"
#: How many personal views one user may keep per object.
MAX_PER_OBJECT = 50
_FIELDS = ("label", "columns", "filter", "sort", "limit")


def view_name(view_id: uuid.UUID) -> str:
    """The api_name a personal view is chosen by (`?view=`)."""
    return PREFIX + view_id.hex


def _view_id(name: str) -> uuid.UUID | None:
    if not name.startswith(PREFIX):
        return None
    try:
        return uuid.UUID(hex=name[len(PREFIX) :])
    except ValueError:
        return None


def _as_view(row: Any) -> ListView:
    return ListView.model_validate(row.definition)


async def views_of(
    conn: AsyncConnection, ct: CompiledTenant, actor: Actor, co: CompiledObject
) -> list[ListView]:
    """The actor's own list views of `co`, oldest first (those the metadata no longer fits
    are left out rather than failing the page)."""
    rows = await conn.execute(
        sa.select(personal_list_views.c.definition)
        .where(
            personal_list_views.c.user_id == actor.user_id,
            personal_list_views.c.object == co.name,
        )
        .order_by(personal_list_views.c.created_at, personal_list_views.c.id)
    )
    out = []
    for row in rows:
        try:
            view = _as_view(row)
        except ValidationError:
            continue
        if not list_view_problems(view, ct.model):
            out.append(view)
    return out


async def find(
    conn: AsyncConnection, ct: CompiledTenant, actor: Actor, co: CompiledObject, name: str
) -> ListView | None:
    """The actor's personal view named `name` (None: not a personal view of theirs)."""
    view_id = _view_id(name)
    if view_id is None:
        return None
    row = (
        await conn.execute(
            sa.select(personal_list_views.c.definition).where(
                personal_list_views.c.id == view_id,
                personal_list_views.c.user_id == actor.user_id,
                personal_list_views.c.object == co.name,
            )
        )
    ).first()
    if row is None:
        return None
    try:
        view = _as_view(row)
    except ValidationError:
        return None
    return None if list_view_problems(view, ct.model) else view


def _checked(ct: CompiledTenant, actor: Actor, co: CompiledObject, data: Any) -> ListView:
    """`data` as a list view of `co` owned by the actor, or RecordInvalid naming each problem."""
    if not isinstance(data, dict):
        raise RecordInvalid(
            "a list view is a JSON object", [FieldError("", "type", "send a JSON object")]
        )
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        errors = [
            FieldError(k[:64], "unknown", "not a property of a personal view") for k in unknown
        ]
        raise RecordInvalid("the list view has unknown properties", errors)
    bad_text = text_problems(data)
    if bad_text:
        raise RecordInvalid("the list view holds text no database keeps", bad_text)
    if not data.get("label"):
        raise RecordInvalid(
            "a list view needs a name", [FieldError("label", "required", "name it")]
        )
    view_id = uuid.uuid4()
    document = {
        **{k: v for k, v in data.items() if v not in (None, "", [])},
        "api_name": view_name(view_id),
        "object": co.name,
        "visibility": {"kind": "owner", "owner": str(actor.user_id)},
    }
    try:
        view = ListView.model_validate(document)
    except ValidationError as error:
        raise RecordInvalid("the list view is invalid", errors_of(error)) from None
    problems = [
        FieldError(p.field.split("/", 2)[-1], p.code, p.message)
        for p in list_view_problems(view, ct.model)
    ]

    def hidden(name: str) -> bool:
        if name in SYSTEM_FIELDS:
            return False
        return field_access(ct.model, actor, co.name, name) == "hidden"

    shown = [*view.columns, *(k.strip().lstrip("+-") for k in (view.sort or "").split(","))]
    problems += [
        FieldError("columns", "unknown-field", f"{name!r} is not a field of {co.name!r}")
        for name in shown
        if name and co.obj.has_field(name) and hidden(name)
    ]
    if view.filter:
        try:
            checked = formula.check(view.filter, co.obj, ct.model, context="filter", field="filter")
        except FormulaError as error:
            problems += error.errors
        else:
            if any(hidden(p.split(".")[0]) for p in checked.paths):
                problems.append(
                    FieldError("filter", "unknown-field", "the filter names an unknown field")
                )
    if problems:
        raise RecordInvalid("the list view is invalid", problems)
    return view


async def save(
    conn: AsyncConnection, ct: CompiledTenant, actor: Actor, co: CompiledObject, data: Any
) -> ListView:
    """Keep a new personal view of `co` for the actor: `{"label", "columns", "filter",
    "sort", "limit"}`; no metadata version is made."""
    require_object(ct.model, actor, co.name, "read")
    view = _checked(ct, actor, co, data)
    count = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(personal_list_views)
        .where(
            personal_list_views.c.user_id == actor.user_id,
            personal_list_views.c.object == co.name,
        )
    )
    if (count or 0) >= MAX_PER_OBJECT:
        raise RecordInvalid(
            "too many personal views",
            [FieldError("label", "too-many", f"keep at most {MAX_PER_OBJECT} views per object")],
        )
    view_id = _view_id(view.api_name)
    assert view_id is not None
    label = view.label if isinstance(view.label, str) else str(data.get("label"))[:255]
    await conn.execute(
        personal_list_views.insert().values(
            id=view_id,
            user_id=actor.user_id,
            object=co.name,
            label=label,
            definition=view.model_dump(mode="json", exclude_defaults=True),
            created_at=utcnow(),
        )
    )
    return view


async def remove(
    conn: AsyncConnection, ct: CompiledTenant, actor: Actor, co: CompiledObject, name: str
) -> None:
    """Forget one of the actor's personal views (NotFound for anyone else's)."""
    view_id = _view_id(name)
    result = (
        await conn.execute(
            personal_list_views.delete().where(
                personal_list_views.c.id == view_id,
                personal_list_views.c.user_id == actor.user_id,
                personal_list_views.c.object == co.name,
            )
        )
        if view_id is not None
        else None
    )
    if result is None or result.rowcount != 1:
        raise NotFound(f"you have no list view named {name[:64]!r} on {co.name}")


def document(view: ListView) -> dict[str, Any]:
    """A personal view as the API shows it."""
    return view.model_dump(mode="json", exclude_defaults=True)
