"""Presentation metadata: record layouts and list views of an object."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from metacrm.metadata.base import ApiName, Expression, Label, Strict

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

Widget = Literal[
    "text_area", "radio", "currency", "lookup_search", "checkbox", "select", "date", "rich_text"
]


class FieldPlacement(Strict):
    """A field on a layout, with layout-level overrides."""

    field: ApiName
    required: bool = False
    read_only: bool = False
    hidden: bool = False
    help_text: Label | None = None
    widget: Widget | None = None


class Section(Strict):
    title: Label | None = None
    columns: Annotated[int, Field(ge=1, le=4)] = 2
    fields: list[FieldPlacement] = []


class RelatedList(Strict):
    """Child records shown under a record: `object` pointing here through `field`."""

    object: ApiName
    field: ApiName
    label: Label | None = None
    columns: list[ApiName] = []
    sort: Annotated[str, StringConstraints(max_length=500)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 10


class LayoutCondition(Strict):
    """Pick this layout for records whose picklist `field` holds one of `values`."""

    field: ApiName
    values: list[str]


class Layout(Strict):
    """How a record of `object` looks to the roles it is assigned to."""

    api_name: ApiName
    object: ApiName
    label: Label | None = None
    roles: list[ApiName] = []
    when: LayoutCondition | None = None
    sections: list[Section] = []
    related_lists: list[RelatedList] = []
    compact: list[ApiName] = []


class Visibility(Strict):
    """Who sees a list view: its owner only, the listed roles, or everyone."""

    kind: Literal["owner", "roles", "everyone"] = "everyone"
    roles: list[ApiName] = []
    #: The user id of the owner, for kind "owner".
    owner: Annotated[str, StringConstraints(pattern=UUID_PATTERN)] | None = None


class ListView(Strict):
    """A saved list of `object`: columns, filter, sort, limit, and who sees it."""

    api_name: ApiName
    object: ApiName
    label: Label | None = None
    columns: list[ApiName] = []
    filter: Expression | None = None
    sort: Annotated[str, StringConstraints(max_length=500)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50
    visibility: Visibility = Visibility()
    kanban_field: ApiName | None = None
