"""Applies a Plan's operations as DDL, with alembic's Operations, on one connection."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy.engine import Connection

from metacrm.errors import FieldError, MetadataInvalid
from metacrm.metadata.model import MetadataModel, ObjectDef
from metacrm.metadata.names import check_identifier
from metacrm.metadata.plan import AddField, AlterField, CreateObject, DropField, DropObject, Plan
from metacrm.runtime.columns import (
    build_table,
    column_type,
    field_column,
    field_index,
    index_name,
    wants_index,
)
from metacrm.runtime.tenant_tables import sequences
from metacrm.types import NAMING_CONVENTION

#: Rebuild a PostgreSQL table before its column slots (dropped ones count) near 1,600.
PG_COLUMN_SLOTS_REBUILD_AT = 1500


class _Applier:
    """Runs each op of a plan; tracks objects as they change so later ops see them."""

    def __init__(self, conn: Connection, old: MetadataModel) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        self.op = Operations(MigrationContext.configure(conn))
        # alembic's DDL ignores schema_translate_map: name the tenant's schema explicitly.
        self.schema = conn.get_execution_options().get("schema_translate_map", {}).get(None)
        self.objects: dict[str, ObjectDef] = {o.api_name: o for o in old.objects}

    # A throwaway Table bound to a fresh MetaData, for building index and update DDL.
    def table(self, obj: ObjectDef) -> sa.Table:
        return build_table(obj, sa.MetaData(naming_convention=NAMING_CONVENTION))

    def apply(self, plan: Plan) -> None:
        for step in plan.ops:
            handler = getattr(self, f"_{step.kind}", None)
            if handler is not None:
                handler(step)

    def _create_object(self, step: CreateObject) -> None:
        self.table(step.object).create(self.conn)  # with its indexes
        for field in step.object.fields:
            self._start_sequence(step.object.api_name, field)
        self.objects[step.object.api_name] = step.object

    def _start_sequence(self, obj: str, field: Any) -> None:
        if field.type == "auto_number":
            self.conn.execute(
                sequences.insert().values(object=obj, field=field.api_name, next_value=field.start)
            )

    def _drop_object(self, step: DropObject) -> None:
        name = check_identifier(step.object.api_name)
        self.op.drop_table(name, schema=self.schema)
        self.conn.execute(sequences.delete().where(sequences.c.object == name))
        del self.objects[name]

    def _update_object(self, step: Any) -> None:
        # The object's own properties only: its fields change through their own ops.
        current = self.objects[step.new.api_name]
        self.objects[step.new.api_name] = step.new.model_copy(update={"fields": current.fields})

    def _add_field(self, step: AddField) -> None:
        obj = self.objects[step.object]
        new_obj = obj.model_copy(update={"fields": [*obj.fields, step.field]})
        column = field_column(step.field)
        if column is not None:
            if (
                self.dialect == "postgresql"
                and self._pg_column_slots(obj.api_name) >= PG_COLUMN_SLOTS_REBUILD_AT
            ):
                self._rebuild_pg_table(obj)
            # Nullable and without a server default: a catalog-only change, no table rewrite.
            self.op.add_column(check_identifier(obj.api_name), column, schema=self.schema)
            index = field_index(self.table(new_obj), step.field)
            if index is not None:
                index.create(self.conn)
            self._start_sequence(obj.api_name, step.field)
        self.objects[obj.api_name] = new_obj

    def _drop_field(self, step: DropField) -> None:
        obj = self.objects[step.object]
        new_obj = obj.model_copy(
            update={"fields": [f for f in obj.fields if f.api_name != step.field.api_name]}
        )
        if column_type(step.field) is not None:
            table = check_identifier(obj.api_name)
            if wants_index(step.field):
                self.op.drop_index(
                    index_name(table, step.field.api_name), table_name=table, schema=self.schema
                )
            self.op.drop_column(table, check_identifier(step.field.api_name), schema=self.schema)
            if step.field.type == "auto_number":
                self.conn.execute(
                    sequences.delete().where(
                        (sequences.c.object == table) & (sequences.c.field == step.field.api_name)
                    )
                )
        self.objects[obj.api_name] = new_obj

    def _alter_field(self, step: AlterField) -> None:
        obj = self.objects[step.object]
        fields = [step.new if f.api_name == step.new.api_name else f for f in obj.fields]
        new_obj = obj.model_copy(update={"fields": fields})
        table_name = check_identifier(obj.api_name)
        old_table, new_table = self.table(obj), self.table(new_obj)
        column = new_table.c[step.new.api_name]
        self._check_data_fits(old_table, step)
        self._clear_removed_values(old_table, step)
        if wants_index(step.old) and wants_index(step.old) != wants_index(step.new):
            self.op.drop_index(
                index_name(table_name, step.old.api_name), table_name=table_name, schema=self.schema
            )
        # SQLite neither enforces VARCHAR lengths nor has NUMERIC: only PostgreSQL alters.
        old_type, new_type = column_type(step.old), column_type(step.new)
        if self.dialect == "postgresql" and _type_sql(old_type, self.conn) != _type_sql(
            new_type, self.conn
        ):
            self.op.alter_column(
                table_name, column.name, type_=new_type, existing_nullable=True, schema=self.schema
            )
        index = field_index(new_table, step.new)
        if index is not None and wants_index(step.old) != wants_index(step.new):
            index.create(self.conn)
        self.objects[obj.api_name] = new_obj

    def _check_data_fits(self, table: sa.Table, step: AlterField) -> None:
        """Refuse, before any DDL, a narrowing that existing values do not fit."""
        column = table.c[step.old.api_name]
        too_big = None
        # The length the new column enforces: max_length, or VARCHAR(100) of a picklist.
        new_len = getattr(column_type(step.new), "length", None)
        if (
            new_len is not None
            and column_type(step.old) is not None
            and step.old.type not in ("number", "currency", "percent")
        ):
            too_big = sa.func.length(column) > new_len
        elif step.new.type in ("number", "currency", "percent"):
            limit = 10 ** (step.new.precision - step.new.scale)
            too_big = sa.func.abs(column) >= limit
        if too_big is None:
            return
        count = self.conn.execute(sa.select(sa.func.count()).where(too_big)).scalar_one()
        if count:
            raise MetadataInvalid(
                f"{count} records of {step.object} hold {step.new.api_name} values that do not fit",
                [
                    FieldError(
                        f"objects/{step.object}/fields/{step.new.api_name}",
                        "data-does-not-fit",
                        f"{count} existing values do not fit the new definition; change them first",
                    )
                ],
            )

    def _clear_removed_values(self, table: sa.Table, step: AlterField) -> None:
        removed = step.removed_values
        if not removed:
            return
        column = table.c[step.old.api_name]
        if step.old.type == "picklist":
            self.conn.execute(table.update().where(column.in_(removed)).values({column.name: None}))
            return
        raw: sa.ColumnElement[str] = sa.literal_column(check_identifier(column.name))
        for value in removed:
            self.conn.execute(
                sa.update(table)
                .where(raw.like(f"%;{_escape_like(value)};%", escape="\\"))
                .values({column.name: sa.func.replace(raw, f";{value};", ";")})
            )
        self.conn.execute(sa.update(table).where(raw == ";").values({column.name: None}))

    # ------------------------------------------------------------ PostgreSQL column slots

    def _pg_column_slots(self, table: str) -> int:
        """Column slots used, dropped columns included (they count toward 1,600)."""
        return self.conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_attribute"
                " WHERE attrelid = to_regclass(:name) AND attnum > 0"
            ),
            {"name": _qualified(self.conn, table)},
        ).scalar_one()

    def _rebuild_pg_table(self, obj: ObjectDef) -> None:
        """Copy a table whose dropped columns used up its slots into a fresh one."""
        name = check_identifier(obj.api_name)
        fresh = f"{name[:50]}__rebuild"
        self.op.rename_table(name, fresh, schema=self.schema)
        table = self.table(obj)
        source, target = _qualified(self.conn, fresh), _qualified(self.conn, name)
        # The old names must be free for the new table. Read them from the catalog: names
        # past 63 bytes were shortened when created (pk_<63-character table> is one).
        quote = self.conn.dialect.identifier_preparer.quote
        constraints: sa.ScalarResult[str] = self.conn.execute(
            sa.text(
                "SELECT conname FROM pg_constraint"
                " WHERE conrelid = to_regclass(:name) AND contype IN ('p', 'u')"
            ),
            {"name": source},
        ).scalars()
        for constraint in list(constraints):
            self.conn.exec_driver_sql(f"ALTER TABLE {source} DROP CONSTRAINT {quote(constraint)}")
        indexes: sa.ScalarResult[str] = self.conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE i.indrelid = to_regclass(:name)"
            ),
            {"name": source},
        ).scalars()
        prefix = f"{quote(self.schema)}." if self.schema else ""
        for index in list(indexes):
            self.conn.exec_driver_sql(f"DROP INDEX {prefix}{quote(index)}")
        table.create(self.conn)  # with its indexes, which the copy fills
        columns = ", ".join(f'"{c.name}"' for c in table.columns)
        self.conn.exec_driver_sql(
            f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {source}"
        )
        self.op.drop_table(fresh, schema=self.schema)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _type_sql(type_: Any, conn: Connection) -> str:
    return type_.compile(dialect=conn.dialect) if type_ is not None else ""


def _qualified(conn: Connection, table: str) -> str:
    """A quoted, schema-qualified name for raw SQL (schema_translate_map skips text)."""
    schema = conn.get_execution_options().get("schema_translate_map", {}).get(None)
    name = f'"{check_identifier(table)}"'
    return f'"{schema}".{name}' if schema else name


def apply_plan(conn: Connection, plan: Plan, old: MetadataModel) -> None:
    """Run `plan` (a diff from `old`) on `conn`, inside the caller's transaction."""
    _Applier(conn, old).apply(plan)
