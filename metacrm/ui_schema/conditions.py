"""Conditions of the expression language as JSON Schema, for the simple shapes that fit.

A field rule's `when` is evaluated by the API with the formula engine (three-valued
logic: a comparison with a null is null, and a rule applies only when `when` is true).
The renderer side gets the same condition as a JSON Schema that a record satisfies
exactly when `when` is true, so that JSON Forms' SchemaBasedCondition and `if`/`then`
can carry it. Shapes translated: comparisons of a field with a literal (`==`, `!=`,
`<`, `<=`, `>`, `>=`, `in`, `not in`, `is None`, `== None`), `ISBLANK(f)`,
`ISNULL(f)`, `NOT(...)`, a boolean field alone, and `and` / `or` / `not` of those.
Anything else (lookup paths, arithmetic, functions) returns None: the rule is still
enforced by the API and listed, with its expression, in the form document.
"""

from __future__ import annotations

import ast
from typing import Any

from metacrm.metadata.model import ObjectDef

_NUMERIC = ("number", "currency", "percent")
_TEXTUAL = ("text", "long_text", "email", "phone", "url", "picklist")
_BLANK: list[Any] = [None, "", []]


class _Unfit(Exception):
    """The expression has a shape JSON Schema cannot carry faithfully."""


def condition_schema(expression: str, obj: ObjectDef) -> dict[str, Any] | None:
    """A JSON Schema matched by the records for which `expression` is true, or None."""
    try:
        tree = ast.parse("(" + expression + "\n)", mode="eval").body
        return _Translator(obj).when(tree, True)
    except (_Unfit, SyntaxError, RecursionError):
        return None


def _present(name: str, value: dict[str, Any]) -> dict[str, Any]:
    """`name` holds a non-null value matching `value` (which may itself be a `not`)."""
    not_null: dict[str, Any] = {"not": {"type": "null"}}
    schema = {"allOf": [not_null, value]} if "not" in value else not_null | value
    return {"required": [name], "properties": {name: schema}}


def _is_null(name: str) -> dict[str, Any]:
    return {"properties": {name: {"type": "null"}}}


def _not_null(name: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


class _Translator:
    def __init__(self, obj: ObjectDef) -> None:
        self.obj = obj

    def when(self, node: ast.expr, truth: bool) -> dict[str, Any]:
        """The schema of records for which `node` evaluates to `truth` (never null)."""
        if isinstance(node, ast.BoolOp):
            parts = [self.when(v, truth) for v in node.values]
            conjunction = isinstance(node.op, ast.And) == truth
            return {"allOf": parts} if conjunction else {"anyOf": parts}
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return self.when(node.operand, not truth)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return self._call(node, truth)
        if isinstance(node, ast.Name):
            field = self._field(node)
            if field.type != "boolean":
                raise _Unfit
            return _present(node.id, {"const": truth})
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            return {} if node.value == truth else {"not": {}}
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            return self._compare(node.left, node.ops[0], node.comparators[0], truth)
        raise _Unfit

    def _field(self, node: ast.expr):
        if not isinstance(node, ast.Name) or not self.obj.has_field(node.id):
            raise _Unfit
        field = self.obj.field(node.id)
        if field.computed:
            raise _Unfit  # computed values are not part of what a form submits
        return field

    def _call(self, node: ast.Call, truth: bool) -> dict[str, Any]:
        name = node.func.id.upper()  # type: ignore[attr-defined]
        if node.keywords or len(node.args) != 1:
            raise _Unfit
        if name == "NOT":
            return self.when(node.args[0], not truth)
        field = self._field(node.args[0])
        if name == "ISNULL":
            return _is_null(field.api_name) if truth else _not_null(field.api_name)
        if name == "ISBLANK":
            blank = {"properties": {field.api_name: {"enum": _BLANK}}}
            if truth:
                return blank
            return _present(field.api_name, {"not": {"enum": _BLANK}})
        raise _Unfit

    def _literal(self, field, node: ast.expr) -> Any:
        if not isinstance(node, ast.Constant):
            if (
                isinstance(node, ast.UnaryOp)
                and isinstance(node.op, ast.USub)
                and isinstance(node.operand, ast.Constant)
            ):
                value = node.operand.value
                if isinstance(value, int | float) and not isinstance(value, bool):
                    return -value
            raise _Unfit
        value = node.value
        if field.type in _TEXTUAL and isinstance(value, str):
            return value
        if field.type == "boolean" and isinstance(value, bool):
            return value
        if (
            field.type in _NUMERIC
            and isinstance(value, int | float)
            and not isinstance(value, bool)
        ):
            return value
        raise _Unfit

    def _compare(
        self, left: ast.expr, op: ast.cmpop, right: ast.expr, truth: bool
    ) -> dict[str, Any]:
        if isinstance(left, ast.Constant) and isinstance(right, ast.Name):
            flipped = {ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE}
            op = flipped.get(type(op), type(op))()
            left, right = right, left
        field = self._field(left)
        name = field.api_name
        if isinstance(right, ast.Constant) and right.value is None:
            if not isinstance(op, ast.Is | ast.IsNot | ast.Eq | ast.NotEq):
                raise _Unfit
            null_wanted = isinstance(op, ast.Is | ast.Eq) == truth
            return _is_null(name) if null_wanted else _not_null(name)
        if isinstance(op, ast.In | ast.NotIn):
            if not isinstance(right, ast.Tuple | ast.List):
                raise _Unfit
            values = [self._literal(field, item) for item in right.elts]
            inside = isinstance(op, ast.In) == truth
            return _present(name, {"enum": values} if inside else {"not": {"enum": values}})
        value = self._literal(field, right)
        if isinstance(op, ast.Eq | ast.NotEq):
            if field.type in _NUMERIC:
                raise _Unfit  # numbers may come as text: "5" == 5 for the API only
            equal = isinstance(op, ast.Eq) == truth
            return _present(name, {"const": value} if equal else {"not": {"const": value}})
        if field.type not in _NUMERIC:
            raise _Unfit
        bounds = {
            ast.Gt: ("exclusiveMinimum", "maximum"),
            ast.GtE: ("minimum", "exclusiveMaximum"),
            ast.Lt: ("exclusiveMaximum", "minimum"),
            ast.LtE: ("maximum", "exclusiveMinimum"),
        }
        if type(op) not in bounds:
            raise _Unfit
        keyword = bounds[type(op)][0 if truth else 1]
        return _present(name, {"type": "number", keyword: value})
