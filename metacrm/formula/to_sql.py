"""Compile a checked expression to a SQLAlchemy Core expression for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa

from metacrm.errors import FormulaError
from metacrm.formula.checker import CheckedExpr, check, check_field
from metacrm.formula.dialect import as_real, both, lit, typed
from metacrm.formula.functions import REGISTRY, add_days, days_between
from metacrm.formula.types import BOOL, Node
from metacrm.metadata.model import (
    FieldDef,
    FormulaField,
    MetadataModel,
    ObjectDef,
    RollupField,
    link_target,
)

TableFor = Callable[[str], sa.Table]
#: The condition a record of an object (on table_for(object), not an alias) must meet to be
#: reached through a lookup; None: every record may be reached.
TargetFilter = Callable[[str], "sa.ColumnElement[bool] | None"]


@dataclass(frozen=True)
class Ctx:
    """Where a tree is compiled: the row's table (or alias), how to find others, prior values,
    and which lookup hops must pass `target_filter` (None: all of them)."""

    table: Any
    table_for: TableFor
    prior: Mapping[str, Any] | None = None
    target_filter: TargetFilter | None = None
    filtered_hops: int | None = None


def compile_node(node: Node, ctx: Ctx) -> Any:
    return _COMPILERS[node.kind](node, ctx)


def _reachable(ctx: Ctx, alias: Any, target: str, index: int) -> Any:
    """The condition on `alias` (hop number `index`, of object `target`) its record must meet
    to be reached, or None: a hop the caller wrote passes the target filter; hops inside a
    formula field or a roll-up are that field's value, the same for every reader."""
    if ctx.target_filter is None or (ctx.filtered_hops is not None and index >= ctx.filtered_hops):
        return None
    condition = ctx.target_filter(target)
    if condition is None:
        return None
    table = ctx.table_for(target)
    # Never correlated: the query around it may select from the same table (self-lookups).
    return alias.c.id.in_(sa.select(table.c.id).where(condition).correlate(None))


def _path(ctx: Ctx, hops: tuple[tuple[str, str], ...]) -> tuple[Any, list[Any], Any]:
    """(from clause, its conditions, last alias) joining the lookup targets: the first
    condition correlates the path to ctx's row, the others keep out unreachable targets.

    Targets are aliased, so self-lookups (account.parent) work.
    """
    aliases = [ctx.table_for(target).alias() for _, target in hops]
    joined: Any = aliases[0]
    for index in range(1, len(hops)):
        previous, current = aliases[index - 1], aliases[index]
        joined = joined.join(current, current.c.id == previous.c[hops[index][0]])
    conditions = [aliases[0].c.id == ctx.table.c[hops[0][0]]]
    for index, (alias, (_, target)) in enumerate(zip(aliases, hops, strict=True)):
        reachable = _reachable(ctx, alias, target, index)
        if reachable is not None:
            conditions.append(reachable)
    return joined, conditions, aliases[-1]


def _column(ctx: Ctx, hops: tuple[tuple[str, str], ...], name: str) -> Any:
    """The value of column `name` of the record reached through `hops` from ctx's row
    (null when a hop is empty or unreachable): one scalar subquery, correlated to ctx's row."""
    if not hops:
        return ctx.table.c[name]
    joined, conditions, last = _path(ctx, hops)
    return sa.select(last.c[name]).select_from(joined).where(*conditions).scalar_subquery()


def _field(node: Node, ctx: Ctx) -> Any:
    return _column(ctx, node.extra["hops"], node.value)


def _rollup(node: Node, ctx: Ctx) -> Any:
    hops = node.extra["hops"]
    child = ctx.table_for(node.extra["child"]).alias()
    froms: list[Any] = [child]
    path_conditions: list[Any] = []
    if not hops:
        owner_id = ctx.table.c.id
    elif len(hops) == 1 and _unfiltered(ctx):
        owner_id = ctx.table.c[hops[0][0]]
    elif _unfiltered(ctx):
        joined, path_conditions, last = _path(ctx, hops[:-1])
        froms.append(joined)
        owner_id = last.c[hops[-1][0]]
    else:  # join the owner itself, so that an unreachable owner has no children
        joined, path_conditions, last = _path(ctx, hops)
        froms.append(joined)
        owner_id = last.c.id
    inner = Ctx(child, ctx.table_for)
    args = list(node.args)
    value = compile_node(args.pop(0), inner) if node.extra["has_value"] else None
    conditions = [
        *path_conditions,
        child.c[node.extra["link"]] == owner_id,
        child.c.deleted_at.is_(None),
    ]
    if node.extra["has_filter"]:
        conditions.append(compile_node(args.pop(0), inner))
    aggregate = node.value
    if aggregate == "count":
        agg: Any = sa.func.count()
    elif aggregate == "sum":
        agg = sa.func.coalesce(sa.func.sum(value), 0)
    else:
        agg = getattr(sa.func, aggregate)(value)
    query = sa.select(agg).select_from(*froms).where(*conditions)
    return typed(query.scalar_subquery(), node.type)


def _unfiltered(ctx: Ctx) -> bool:
    return ctx.target_filter is None or ctx.filtered_hops == 0


def _round(node: Node, ctx: Ctx) -> Any:
    if "field" in node.extra and not _unfiltered(ctx):
        # An inlined formula field: only the hops written before it are the caller's.
        written = node.extra["field"].count(".")
        if ctx.filtered_hops is None or written < ctx.filtered_hops:
            ctx = replace(ctx, filtered_hops=written)
    inner = compile_node(node.args[0], ctx)
    if node.type.numeric and node.args[0].type.kind != "null":
        scale = node.type.scale
        return both(
            sa.func.round(inner, scale), sa.func.round(sa.cast(inner, sa.Numeric), scale), node.type
        )
    return typed(inner, node.type)


def _lit(node: Node, ctx: Ctx) -> Any:
    return lit(node.value, node.type)


def _arith(node: Node, ctx: Ctx) -> Any:
    left, right = node.args
    a, b = compile_node(left, ctx), compile_node(right, ctx)
    op = node.value
    if op == "**":
        return typed(REGISTRY["POWER"].sql([a, b], [left, right]), node.type)  # type: ignore[misc]
    if left.type.kind in ("date", "datetime") and right.type.numeric:
        days = b if op == "+" else -b
        return add_days(a, left.type, days, whole=left.type.kind == "date")
    if left.type.kind in ("date", "datetime") and op == "-":
        return typed(days_between(b, a, left.type), node.type)
    if op == "/":
        return typed(as_real(a) / sa.func.nullif(b, 0), node.type)
    expr = {"+": a + b, "-": a - b, "*": a * b}[op] if node.type.kind != "null" else sa.null()
    return typed(expr, node.type)


def _concat(node: Node, ctx: Ctx) -> Any:
    a, b = (compile_node(n, ctx) for n in node.args)
    return typed(sa.func.coalesce(a, "").concat(sa.func.coalesce(b, "")), node.type)


def _cmp(node: Node, ctx: Ctx) -> Any:
    a, b = (compile_node(n, ctx) for n in node.args)
    op = node.value
    compare: Callable[[Any, Any], Any] = {
        "==": lambda x, y: x == y,
        "!=": lambda x, y: x != y,
        "<": lambda x, y: x < y,
        "<=": lambda x, y: x <= y,
        ">": lambda x, y: x > y,
        ">=": lambda x, y: x >= y,
    }[op]
    if node.extra.get("textual") and op not in ("==", "!="):
        # Code-point order everywhere: PostgreSQL's database collation may differ.
        return both(compare(a, b), compare(sa.collate(a, "C"), sa.collate(b, "C")), BOOL)
    return compare(a, b)


def _isnull(node: Node, ctx: Ctx) -> Any:
    a = compile_node(node.args[0], ctx)
    return a.is_not(None) if node.value else a.is_(None)


def _in(node: Node, ctx: Ctx) -> Any:
    a = compile_node(node.args[0], ctx)
    values = list(node.value)
    return a.not_in(values) if node.extra["negate"] else a.in_(values)


def _call(node: Node, ctx: Ctx) -> Any:
    fn = REGISTRY[node.value]
    args = [compile_node(n, ctx) for n in node.args]
    assert fn.sql is not None
    expr = fn.sql(args, node.args)
    if fn.name in NULL_GUARDED:
        nullable = [a for a, n in zip(args, node.args, strict=True) if n.kind != "lit"]
        if nullable:
            expr = sa.case((sa.or_(*[a.is_(None) for a in nullable]), sa.null()), else_=expr)
    return typed(expr, node.type)


#: Functions whose SQL would turn a NULL argument into a value (printf, greatest, ...):
#: guarded so that, as in Python, a null argument gives null.
NULL_GUARDED = frozenset(
    {"TEXT", "ADDMONTHS", "DATE", "ADDDAYS", "LEFT", "RIGHT", "MID", "REPT", "POWER"}
)


def _prior(node: Node, ctx: Ctx) -> Any:
    if ctx.prior is None:
        return compile_node(node.args[0], ctx)
    return lit(ctx.prior.get(node.value), node.type)


def _ischanged(node: Node, ctx: Ctx) -> Any:
    if ctx.prior is None:
        return sa.false()
    current = compile_node(node.args[0], ctx)
    return current.is_distinct_from(lit(ctx.prior.get(node.value), node.args[0].type))


_COMPILERS: dict[str, Callable[[Node, Ctx], Any]] = {
    "lit": _lit,
    "field": _field,
    "rollup": _rollup,
    "round": _round,
    "arith": _arith,
    "concat": _concat,
    "cmp": _cmp,
    "isnull": _isnull,
    "in": _in,
    "and": lambda n, c: sa.and_(*[compile_node(a, c) for a in n.args]),
    "or": lambda n, c: sa.or_(*[compile_node(a, c) for a in n.args]),
    "not": lambda n, c: sa.not_(compile_node(n.args[0], c)),
    "neg": lambda n, c: typed(-compile_node(n.args[0], c), n.type),
    "call": _call,
    "prior": _prior,
    "ischanged": _ischanged,
    "isnew": lambda n, c: sa.true() if c.prior is None else sa.false(),
    "today": lambda n, c: typed(REGISTRY["TODAY"].sql([], []), n.type),  # type: ignore[misc]
    "now": lambda n, c: typed(REGISTRY["NOW"].sql([], []), n.type),  # type: ignore[misc]
}


def to_sql(
    checked: CheckedExpr,
    table_for: TableFor,
    *,
    prior: Mapping[str, Any] | None = None,
    target_filter: TargetFilter | None = None,
) -> sa.ColumnElement[Any]:
    """The SQL of `checked` over the row of table_for(checked.object).

    Select it with `.select_from(table)`: lookups and roll-ups are correlated subqueries.
    `prior` (validation context) gives PRIORVALUE/ISCHANGED their old values as parameters;
    without it the record counts as new. With `target_filter`, every lookup the expression
    itself crosses reaches only targets meeting it; one that does not reads as an empty
    lookup. Formula fields and roll-ups keep their own value, whoever reads it.
    """
    return _compile(checked, Ctx(table_for(checked.object), table_for, prior, target_filter))


def _compile(checked: CheckedExpr, ctx: Ctx) -> sa.ColumnElement[Any]:
    expr = compile_node(checked.node, ctx)
    if checked.node.kind == "lit" and checked.node.type.kind != "boolean":
        return typed(expr, checked.node.type)
    result: sa.ColumnElement[Any] = expr
    return result


def field_sql(
    obj: ObjectDef, field: FieldDef, model: MetadataModel, table_for: TableFor
) -> sa.ColumnElement[Any]:
    """The SQL value of any field: its column, its formula, or its roll-up subquery."""
    table = table_for(obj.api_name)
    if field.type == "formula":
        return to_sql(check_field(obj, field, model), table_for)
    if field.type == "rollup":
        checked = check(field.api_name, obj, model, context="formula")
        return to_sql(checked, table_for)
    return table.c[field.api_name]


def compile_filter(
    expression: str,
    obj: ObjectDef,
    model: MetadataModel,
    table_for: TableFor,
    *,
    target_filter: TargetFilter | None = None,
) -> sa.ColumnElement[Any]:
    """The API's `where=`: a condition on `obj`, compiled to SQL (errors name field 'where').

    `target_filter` keeps the lookups it crosses to the targets the reader may reach.
    """
    checked = check(expression, obj, model, context="filter", field="where")
    if checked.node.type.kind == "null":
        raise FormulaError("a filter must be a condition, not None", field="where")
    return to_sql(checked, table_for, target_filter=target_filter)


def path_sql(
    obj: ObjectDef,
    path: str,
    model: MetadataModel,
    table_for: TableFor,
    *,
    target_filter: TargetFilter | None = None,
) -> sa.ColumnElement[Any]:
    """The value of a field path (`account.name`, a field of any type) of obj's row: one
    scalar subquery through its lookups, null when a hop is empty or fails `target_filter`.
    A formula or roll-up at the end is the target's own value, as its readers see it."""
    *links, name = path.split(".")
    hops: list[tuple[str, str]] = []
    target = obj
    for link in links:
        target_name = link_target(target.field(link))
        if target_name is None:
            raise FormulaError(f"{link!r} is not a lookup field", field="path")
        hops.append((link, target_name))
        target = model.object(target_name)
    if not hops:
        raise FormulaError(f"{path[:64]!r} crosses no lookup", field="path")
    ctx = Ctx(table_for(obj.api_name), table_for, target_filter=target_filter)
    joined, conditions, last = _path(ctx, tuple(hops))
    end = target.field(name) if target.has_field(name) else None
    value: Any
    if isinstance(end, FormulaField):
        value = _compile(check_field(target, end, model), Ctx(last, table_for))
    elif isinstance(end, RollupField):
        value = _compile(check(name, target, model, context="formula"), Ctx(last, table_for))
    else:
        value = last.c[name]
    query = sa.select(value).select_from(joined).where(*conditions)
    subquery: sa.ColumnElement[Any] = query.scalar_subquery()
    return subquery
