"""Compiles a tenant's metadata model, once per version, into tables and query parts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from metacrm import formula
from metacrm.metadata.model import FieldDef, MetadataModel, ObjectDef
from metacrm.metadata.names import SYSTEM_FIELDS
from metacrm.runtime.columns import (
    NAMING_CONVENTION,
    ExactDecimal,
    UTCDateTime,
    build_table,
    column_type,
    index_name,
    wants_index,
)
from metacrm.runtime.views import ViewCache

#: System fields a record shows (deleted_at only in the recycle bin).
SHOWN_SYSTEM_FIELDS = tuple(f for f in SYSTEM_FIELDS if f != "deleted_at")
#: Field types that cannot be sorted on.
UNSORTABLE = ("json", "multi_picklist", "long_text")


@dataclass
class CompiledObject:
    """One object ready to query: its table, fields and the SQL of every field."""

    obj: ObjectDef
    table: sa.Table
    fields: dict[str, FieldDef]
    writable: dict[str, FieldDef]
    references: dict[str, FieldDef]
    auto_numbers: list[FieldDef]
    external_ids: frozenset[str]
    index_fields: dict[str, str]
    #: (child object, link field) pairs of records pointing at this object.
    children: list[tuple[str, FieldDef]] = field(default_factory=list)
    _sql: dict[str, sa.ColumnElement[Any]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.obj.api_name

    def sql(self, name: str) -> sa.ColumnElement[Any]:
        """The SQL value of a field or system field of this object."""
        return self._sql[name]

    def has(self, name: str) -> bool:
        return name in self._sql


@dataclass
class CompiledTenant:
    """A tenant's metadata at one version, compiled; shared by every request."""

    version: int
    model: MetadataModel
    objects: dict[str, CompiledObject]
    #: Views derived from this version (per role, language, query), bounded.
    views: ViewCache = field(default_factory=ViewCache)

    def object(self, name: str) -> CompiledObject:
        return self.objects[name]

    def table_for(self, name: str) -> sa.Table:
        return self.objects[name].table


def _result_type(field: FieldDef, model: MetadataModel) -> sa.types.TypeEngine[Any]:
    """The Python-side type of a computed field's value."""
    if field.type == "formula":
        if field.returns in ("number", "currency", "percent"):
            return ExactDecimal(38, 2 if field.scale is None else field.scale)
        return {
            "text": sa.String(),
            "boolean": sa.Boolean(),
            "date": sa.Date(),
            "datetime": UTCDateTime(),
        }[field.returns]
    if field.aggregate == "count":
        return sa.Integer()
    child = model.object(field.child_object).field(field.field)
    if child.type == "formula":
        return _result_type(child, model)
    return column_type(child) or sa.String()


def compile_tenant(model: MetadataModel, version: int) -> CompiledTenant:
    """Build tables and field SQL for every object of `model`."""
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    objects: dict[str, CompiledObject] = {}
    for obj in model.objects:
        table = build_table(obj, metadata)
        fields = {f.api_name: f for f in obj.fields}
        objects[obj.api_name] = CompiledObject(
            obj=obj,
            table=table,
            fields=fields,
            writable={n: f for n, f in fields.items() if not f.computed},
            references={n: f for n, f in fields.items() if f.type in ("lookup", "master_detail")},
            auto_numbers=[f for f in obj.fields if f.type == "auto_number"],
            external_ids=frozenset(
                n for n, f in fields.items() if getattr(f, "external_id", False)
            ),
            index_fields={
                index_name(obj.api_name, n): n for n, f in fields.items() if wants_index(f)
            },
        )
    tenant = CompiledTenant(version=version, model=model, objects=objects)
    for compiled in objects.values():
        for link in compiled.references.values():
            objects[link.target].children.append((compiled.name, link))
    for compiled in objects.values():
        table = compiled.table
        compiled._sql = {name: table.c[name] for name in SYSTEM_FIELDS}
        for name, definition in compiled.fields.items():
            if definition.type in ("formula", "rollup"):
                expression = formula.field_sql(compiled.obj, definition, model, tenant.table_for)
                # Read results as the field's type: SQLite hands back floats and 0/1.
                compiled._sql[name] = sa.type_coerce(expression, _result_type(definition, model))
            else:
                compiled._sql[name] = table.c[name]
    return tenant
