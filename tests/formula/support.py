"""Shared test support: a sample model, records, and real tables on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from metacrm.formula import check, evaluate, to_sql
from metacrm.metadata.model import MetadataModel, ObjectDef
from metacrm.runtime.columns import build_table
from metacrm.types import NAMING_CONVENTION

PICK = [{"value": v} for v in ("open", "won", "lost")]
TAGS = [{"value": v} for v in ("vip", "eu", "us")]
INDUSTRIES = [{"value": v} for v in ("tech", "retail", "bank")]

MODEL = MetadataModel.model_validate(
    {
        "objects": [
            {
                "api_name": "account",
                "fields": [
                    {"api_name": "name", "type": "text"},
                    {"api_name": "industry", "type": "picklist", "values": INDUSTRIES},
                    {"api_name": "region", "type": "text"},
                    {"api_name": "parent", "type": "lookup", "target": "account"},
                    {"api_name": "employees", "type": "number"},
                    {"api_name": "founded", "type": "date"},
                    {
                        "api_name": "label",
                        "type": "formula",
                        "returns": "text",
                        "expression": "UPPER(name) + '/' + BLANKVALUE(region, '-')",
                    },
                    {
                        "api_name": "total_amount",
                        "type": "rollup",
                        "child_object": "opportunity",
                        "child_field": "account",
                        "aggregate": "sum",
                        "field": "amount",
                    },
                    {
                        "api_name": "open_count",
                        "type": "rollup",
                        "child_object": "opportunity",
                        "child_field": "account",
                        "aggregate": "count",
                        "filter": "stage == 'open'",
                    },
                    {
                        "api_name": "max_expected",
                        "type": "rollup",
                        "child_object": "opportunity",
                        "child_field": "account",
                        "aggregate": "max",
                        "field": "expected_revenue",
                    },
                ],
            },
            {
                "api_name": "opportunity",
                "fields": [
                    {"api_name": "name", "type": "text"},
                    {"api_name": "amount", "type": "currency", "precision": 18, "scale": 2},
                    {"api_name": "probability", "type": "percent"},
                    {"api_name": "quantity", "type": "number", "scale": 0},
                    {"api_name": "stage", "type": "picklist", "values": PICK},
                    {"api_name": "tags", "type": "multi_picklist", "values": TAGS},
                    {"api_name": "close_date", "type": "date"},
                    {"api_name": "closed_at", "type": "datetime"},
                    {"api_name": "is_private", "type": "boolean"},
                    {"api_name": "notes", "type": "long_text"},
                    {"api_name": "account", "type": "lookup", "target": "account"},
                    {"api_name": "data", "type": "json"},
                    {
                        "api_name": "expected_revenue",
                        "type": "formula",
                        "returns": "currency",
                        "expression": "amount * probability / 100",
                    },
                    {
                        "api_name": "doubled",
                        "type": "formula",
                        "returns": "currency",
                        "scale": 1,
                        "expression": "expected_revenue * 2",
                    },
                ],
                "validation_rules": [
                    {
                        "api_name": "no_reopen",
                        "condition": "ISCHANGED(stage) and PRIORVALUE(stage) == 'won'",
                        "message": "won deals stay won",
                    }
                ],
            },
        ]
    }
)


def obj(name: str = "opportunity") -> ObjectDef:
    return MODEL.object(name)


class DB:
    """Tables of MODEL in one database, with helpers to insert rows and select expressions."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.name = engine.dialect.name
        self.metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
        self.tables = {o.api_name: build_table(o, self.metadata) for o in MODEL.objects}
        self.metadata.drop_all(engine)
        self.metadata.create_all(engine)

    def table_for(self, name: str) -> sa.Table:
        return self.tables[name]

    def clear(self, conn: sa.Connection) -> None:
        for table in reversed(self.metadata.sorted_tables):
            conn.execute(table.delete())

    def insert(self, conn: sa.Connection, object_name: str, **values: Any) -> uuid.UUID:
        now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        user = uuid.UUID(int=1)
        row = {
            "id": uuid.uuid4(),
            "owner_id": user,
            "created_at": now,
            "created_by": user,
            "updated_at": now,
            "updated_by": user,
            "version": 1,
        }
        row.update(values)
        conn.execute(self.tables[object_name].insert().values(**row))
        return row["id"]

    def select(self, conn: sa.Connection, expr: Any, row_id: uuid.UUID, object_name: str) -> Any:
        table = self.tables[object_name]
        query = sa.select(expr).select_from(table).where(table.c.id == row_id)
        return conn.execute(query).scalar_one()

    def value(
        self, expression: str, record: dict[str, Any], object_name: str = "opportunity", **kw: Any
    ) -> Any:
        """Insert `record` (fresh tables) and select the compiled expression for it."""
        checked = check(
            expression, MODEL.object(object_name), MODEL, context=kw.pop("context", "formula")
        )
        with self.engine.begin() as conn:
            self.clear(conn)
            row_id = self.insert(conn, object_name, **record)
            return self.select(conn, to_sql(checked, self.table_for, **kw), row_id, object_name)


def postgres_url() -> str | None:
    url = os.environ.get("METACRM_TEST_POSTGRES_URL")
    if not url:
        return None
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def py_value(
    expression: str, values: dict[str, Any], object_name: str = "opportunity", **kw: Any
) -> Any:
    context = kw.pop("context", "formula")
    checked = check(expression, MODEL.object(object_name), MODEL, context=context)
    return evaluate(checked, values, **kw)


RECORD = {
    "name": "Acme deal",
    "amount": Decimal("1250.50"),
    "probability": Decimal("40"),
    "quantity": Decimal("3"),
    "stage": "won",
    "tags": ["vip", "eu"],
    "close_date": dt.date(2024, 3, 15),
    "closed_at": dt.datetime(2024, 3, 15, 10, 30, 5, tzinfo=dt.UTC),
    "is_private": False,
    "notes": "  some notes ",
}
