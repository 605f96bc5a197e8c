"""Column types for each field type, and the SQLAlchemy Table of an object."""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa

from metacrm.metadata.model import FieldDef, ObjectDef
from metacrm.metadata.names import check_identifier
from metacrm.types import ExactDecimal, JsonValue, MultiValue, UTCDateTime


def column_type(field: FieldDef) -> sa.types.TypeEngine[Any] | None:
    """The SQL type holding `field`, or None for fields computed at query time."""
    match field.type:
        case "text" | "email" | "phone" | "url":
            return sa.String(field.max_length)
        case "long_text":
            return sa.Text()
        case "number" | "currency" | "percent":
            return ExactDecimal(field.precision, field.scale)
        case "boolean":
            return sa.Boolean()
        case "date":
            return sa.Date()
        case "datetime":
            return UTCDateTime()
        case "picklist":
            return sa.String(100)
        case "multi_picklist":
            return MultiValue()
        case "lookup" | "master_detail":
            return sa.Uuid()
        case "json":
            return JsonValue()
        case "auto_number":
            return sa.String(64)
        case "formula" | "rollup":
            return None
    raise ValueError(f"unknown field type {field.type!r}")


def system_columns() -> list[sa.Column[Any]]:
    """The columns every object table has, in order."""
    return [
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("owner_id", sa.Uuid(), nullable=False, index=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
    ]


def field_column(field: FieldDef) -> sa.Column[Any] | None:
    """The column of a stored field (nullable: `required` is checked by the runtime).

    Columns stay nullable so adding a required field never rewrites or fails on a big
    table; `unique` and `indexed` become separate indexes (see `field_indexes`).
    """
    type_ = column_type(field)
    if type_ is None:
        return None
    return sa.Column(check_identifier(field.api_name), type_, nullable=True)


def wants_index(field: FieldDef) -> str | None:
    """'unique', 'index' or None: the index a field asks for."""
    if getattr(field, "unique", False) or getattr(field, "external_id", False):
        return "unique"
    if field.type == "auto_number":
        return "unique"
    if getattr(field, "indexed", False) or field.type in ("lookup", "master_detail"):
        return "index"
    return None


def index_name(table: str, field: str) -> str:
    """Stable name of a field's index, within PostgreSQL's 63-byte limit."""
    name = f"ix_{table}_{field}"
    if len(name) > 63:
        name = f"ix_{hashlib.sha1(name.encode()).hexdigest()[:20]}_{field[:38]}"
    return name


def field_index(table: sa.Table, field: FieldDef) -> sa.Index | None:
    """The index a field asks for, on `table`; unique indexes skip soft-deleted rows."""
    kind = wants_index(field)
    if kind is None:
        return None
    column = table.c[field.api_name]
    if kind == "unique":
        live = table.c.deleted_at.is_(None)
        return sa.Index(
            index_name(table.name, field.api_name),
            column,
            unique=True,
            postgresql_where=live,
            sqlite_where=live,
        )
    return sa.Index(index_name(table.name, field.api_name), column)


def build_table(obj: ObjectDef, metadata: sa.MetaData) -> sa.Table:
    """The Table of an object: system columns, then one column per stored field."""
    columns = system_columns()
    columns += [c for c in (field_column(f) for f in obj.fields) if c is not None]
    table = sa.Table(check_identifier(obj.api_name), metadata, *columns)
    for field in obj.fields:
        if field.computed and field.type != "auto_number":
            continue
        field_index(table, field)
    return table
