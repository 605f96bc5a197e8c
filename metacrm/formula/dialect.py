"""SQL building blocks whose text differs between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from metacrm.formula.types import T
from metacrm.types import ExactDecimal, UTCDateTime

#: A computed number: REAL on SQLite, NUMERIC on PostgreSQL; always read as Decimal.
FormulaNumber = ExactDecimal


class FormulaBoolean(TypeDecorator[bool]):
    """A computed boolean: SQLite gives 0/1 for comparisons; read back as bool."""

    impl = sa.Boolean
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> bool | None:
        return None if value is None else bool(value)


def sql_type(t: T) -> sa.types.TypeEngine[Any]:
    """The SQLAlchemy type that binds and reads values of type `t`."""
    if t.numeric:
        return FormulaNumber()
    types: dict[str, sa.types.TypeEngine[Any]] = {
        "boolean": FormulaBoolean(),
        "date": sa.Date(),
        "datetime": UTCDateTime(),
        "id": sa.Uuid(),
    }
    return types.get(t.kind, sa.Text())


class switch(FunctionElement[Any]):
    """One of two expressions: the first on SQLite, the second on PostgreSQL."""

    name = "switch"
    inherit_cache = True

    def __init__(self, *clauses: Any, type_: Any = None) -> None:
        super().__init__(*clauses)
        self.type = sa.types.to_instance(type_)


@compiles(switch)
def _compile_switch(element: switch, compiler: Any, **kw: Any) -> str:
    sqlite_expr, pg_expr = list(element.clauses)
    chosen = pg_expr if compiler.dialect.name == "postgresql" else sqlite_expr
    return "(" + str(compiler.process(chosen, **kw)) + ")"


def both(sqlite_expr: Any, pg_expr: Any, t: T) -> sa.ColumnElement[Any]:
    """`sqlite_expr` on SQLite, `pg_expr` on PostgreSQL, typed as `t`."""
    return switch(sqlite_expr, pg_expr, type_=sql_type(t))


def typed(expr: Any, t: T) -> sa.ColumnElement[Any]:
    """`expr` read back as type `t` (grouped, so operators around it keep their meaning)."""
    if t.kind == "boolean" and isinstance(getattr(expr, "type", None), sa.Boolean):
        return expr  # type: ignore[no-any-return]
    if isinstance(expr, sa.ClauseElement):
        expr = expr.self_group()
    return sa.type_coerce(expr, sql_type(t))


def lit(value: Any, t: T) -> sa.ColumnElement[Any]:
    """A bound parameter (never inlined text) of type `t`."""
    if value is None:
        return sa.null()
    if t.kind == "boolean":
        return sa.true() if value else sa.false()
    return sa.literal(value, sql_type(t))


def as_int(expr: Any) -> sa.ColumnElement[Any]:
    """Truncate a number toward zero to an integer, the same on both databases."""
    return switch(
        sa.cast(expr, sa.Integer), sa.cast(sa.func.trunc(expr), sa.Integer), type_=sa.Integer()
    )


def as_real(expr: Any) -> sa.ColumnElement[Any]:
    """A number ready for true division: REAL on SQLite, NUMERIC on PostgreSQL."""
    return switch(sa.cast(expr, sa.Float), sa.cast(expr, sa.Numeric), type_=FormulaNumber())


def greatest(a: Any, b: Any, t: T) -> sa.ColumnElement[Any]:
    return both(sa.func.max(a, b), sa.func.greatest(a, b), t)


def least(a: Any, b: Any, t: T) -> sa.ColumnElement[Any]:
    return both(sa.func.min(a, b), sa.func.least(a, b), t)
