"""Conditions and field updates of stage rules and approval flows, evaluated on a record."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm import formula
from metacrm.errors import FieldError, RecordInvalid
from metacrm.formula import CheckedExpr
from metacrm.metadata.process import ProcessAction
from metacrm.metadata.values import ValueProblem, coerce
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.validation import load_paths


def blank(value: Any) -> bool:
    return value is None or value == "" or value == []


def checked(ct: CompiledTenant, co: CompiledObject, expression: str, context: str) -> CheckedExpr:
    """The expression, checked when the metadata version was compiled; one that only an
    approval run's own (older) flow definition holds is checked once and kept."""
    found = co.process_expressions.get((context, expression))
    if found is not None:
        return found
    return ct.views.get_or_build(
        ("process", context, co.name, expression),
        lambda: formula.check(expression, co.obj, ct.model, context=context),
    )


async def condition_holds(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    expression: str,
    record: dict[str, Any],
    prior: dict[str, Any] | None = None,
) -> bool:
    """Whether a condition (context "validation") is true for `record`."""
    expr = checked(ct, co, expression, "validation")
    values = await load_paths(conn, ct, co, record, expr.paths)
    prior_values = await load_paths(conn, ct, co, prior, expr.paths) if prior else None
    result = formula.evaluate(expr, values, prior=prior_values, is_new=prior is None)
    return result is True


async def action_values(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    action: ProcessAction,
    record: dict[str, Any],
) -> dict[str, Any]:
    """The field values a `set` action writes, evaluated on `record` and coerced."""
    out: dict[str, Any] = {}
    for name, expression in (action.set or {}).items():
        expr = checked(ct, co, expression, "default")
        values = await load_paths(conn, ct, co, record, expr.paths)
        try:
            out[name] = coerce(co.fields[name], formula.evaluate(expr, values))
        except ValueProblem as problem:
            raise RecordInvalid(
                f"the action setting {co.name}.{name} gave no valid value",
                [FieldError(name, problem.code, problem.message)],
            ) from None
    return out
