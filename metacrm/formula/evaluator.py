"""Compile a checked expression to a Python closure and evaluate it on a record's values."""

from __future__ import annotations

import datetime as dt
import decimal
import operator
import uuid
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from metacrm.errors import FormulaError
from metacrm.formula.checker import CheckedExpr
from metacrm.formula.functions import REGISTRY, add_days_py, quantum, text_ok
from metacrm.formula.types import Node

#: Decimal arithmetic of the language: 40 significant digits; overflow is an error.
CONTEXT = decimal.Context(
    prec=40,
    rounding=ROUND_HALF_UP,
    Emax=999_999,
    Emin=-999_999,
    traps=[decimal.InvalidOperation, decimal.Overflow, decimal.DivisionByZero],
)


class Env:
    """What one evaluation sees: the values, the prior values, is_new and the clock."""

    __slots__ = ("_now", "is_new", "prior", "values")

    def __init__(
        self,
        values: Mapping[str, Any],
        prior: Mapping[str, Any] | None,
        is_new: bool,
        now: dt.datetime | None,
    ) -> None:
        self.values, self.prior, self.is_new, self._now = values, prior, is_new, now

    @property
    def now(self) -> dt.datetime:
        if self._now is None:
            self._now = dt.datetime.now(dt.UTC)
        elif self._now.tzinfo is None:
            self._now = self._now.replace(tzinfo=dt.UTC)
        return self._now


Closure = Callable[[Env], Any]


def normalizer(kind: str) -> Callable[[Any], Any]:
    """Turn a loaded value into the language's Python type for `kind`."""
    if kind in ("number", "currency", "percent"):

        def number(v: Any) -> Any:
            if v is None or type(v) is Decimal:
                return v
            if isinstance(v, float):
                return Decimal(repr(v))
            return Decimal(v)

        return number
    if kind == "datetime":
        return lambda v: v.replace(tzinfo=dt.UTC) if v is not None and v.tzinfo is None else v
    if kind == "id":
        return lambda v: uuid.UUID(v) if isinstance(v, str) else v
    if kind == "multi_picklist":
        return lambda v: [x for x in v.split(";") if x] if isinstance(v, str) else (v or None)
    return lambda v: v


def compile_node(node: Node) -> Closure:
    """The closure computing `node` from an Env."""
    return _COMPILERS[node.kind](node)


def _lit(node: Node) -> Closure:
    value = node.value
    return lambda env: value


def _field(node: Node) -> Closure:
    key = ".".join([h[0] for h in node.extra["hops"]] + [node.value])
    norm = normalizer(node.type.kind)
    return lambda env: norm(env.values.get(key))


def _rollup(node: Node) -> Closure:
    key = node.extra["key"]
    norm = normalizer(node.type.kind)
    empty = Decimal(0) if node.value in ("count", "sum") else None
    return lambda env: (lambda v: empty if v is None else v)(norm(env.values.get(key)))


def _round(node: Node) -> Closure:
    inner = compile_node(node.args[0])
    if node.type.numeric:
        q = quantum(node.type.scale)
        return lambda env: (lambda v: None if v is None else v.quantize(q, ROUND_HALF_UP))(
            inner(env)
        )
    return inner


def _arith(node: Node) -> Closure:
    a, b = (compile_node(n) for n in node.args)
    op, left_t, right_t = node.value, node.args[0].type, node.args[1].type

    if op == "**":
        exponent = int(node.args[1].value)
        return lambda env: (lambda x: None if x is None else x**exponent)(a(env))
    if left_t.kind in ("date", "datetime") and right_t.numeric:
        sign = 1 if op == "+" else -1
        whole = left_t.kind == "date"
        return lambda env: _strict2(a(env), b(env), lambda x, y: add_days_py(x, sign * y, whole))
    if left_t.kind in ("date", "datetime") and op == "-":
        return lambda env: _strict2(a(env), b(env), _days_between)
    fn = {
        "+": operator.add,
        "-": operator.sub,
        "*": operator.mul,
        "/": lambda x, y: None if y == 0 else x / y,
    }[op]
    return lambda env: _strict2(a(env), b(env), fn)


def _strict2(x: Any, y: Any, fn: Callable[[Any, Any], Any]) -> Any:
    if x is None or y is None:
        return None
    return fn(x, y)


def _days_between(later: Any, earlier: Any) -> Decimal:
    delta = later - earlier
    if isinstance(later, dt.datetime):
        micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
        return Decimal(micros) / Decimal(86_400_000_000)
    return Decimal(delta.days)


def _concat(node: Node) -> Closure:
    a, b = (compile_node(n) for n in node.args)
    return lambda env: text_ok((a(env) or "") + (b(env) or ""))


_CMP = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _cmp(node: Node) -> Closure:
    a, b = (compile_node(n) for n in node.args)
    return lambda env: _strict2(a(env), b(env), _CMP[node.value])


def _isnull(node: Node) -> Closure:
    a = compile_node(node.args[0])
    if node.value:
        return lambda env: a(env) is not None
    return lambda env: a(env) is None


def _in(node: Node) -> Closure:
    a = compile_node(node.args[0])
    values, negate = node.value, node.extra["negate"]
    return lambda env: (lambda v: None if v is None else (v in values) != negate)(a(env))


def _and(node: Node) -> Closure:
    parts = [compile_node(n) for n in node.args]

    def run(env: Env) -> bool | None:
        result: bool | None = True
        for part in parts:
            value = part(env)
            if value is False:
                return False
            if value is None:
                result = None
        return result

    return run


def _or(node: Node) -> Closure:
    parts = [compile_node(n) for n in node.args]

    def run(env: Env) -> bool | None:
        result: bool | None = False
        for part in parts:
            value = part(env)
            if value is True:
                return True
            if value is None:
                result = None
        return result

    return run


def _not(node: Node) -> Closure:
    a = compile_node(node.args[0])
    return lambda env: (lambda v: None if v is None else not v)(a(env))


def _neg(node: Node) -> Closure:
    a = compile_node(node.args[0])
    return lambda env: (lambda v: None if v is None else -v)(a(env))


def _call(node: Node) -> Closure:
    fn = REGISTRY[node.value]
    args = [compile_node(n) for n in node.args]
    assert fn.py is not None
    impl = fn.py(node.args) if fn.py_nodes else fn.py
    if fn.lazy:
        return lambda env: impl(*[(lambda c=c: c(env)) for c in args])
    if fn.strict:

        def strict(env: Env) -> Any:
            values = [c(env) for c in args]
            if None in values:
                return None
            return impl(*values)

        return strict
    return lambda env: impl(*[c(env) for c in args])


def _prior(node: Node) -> Closure:
    current = compile_node(node.args[0])
    norm = normalizer(node.type.kind)
    name = node.value

    def run(env: Env) -> Any:
        if env.is_new or env.prior is None:
            return current(env)
        return norm(env.prior.get(name))

    return run


def _ischanged(node: Node) -> Closure:
    current = compile_node(node.args[0])
    norm = normalizer(node.args[0].type.kind)
    name = node.value

    def run(env: Env) -> bool:
        if env.is_new or env.prior is None:
            return False
        return bool(current(env) != norm(env.prior.get(name)))

    return run


_COMPILERS: dict[str, Callable[[Node], Closure]] = {
    "lit": _lit,
    "field": _field,
    "rollup": _rollup,
    "round": _round,
    "arith": _arith,
    "concat": _concat,
    "cmp": _cmp,
    "isnull": _isnull,
    "in": _in,
    "and": _and,
    "or": _or,
    "not": _not,
    "neg": _neg,
    "call": _call,
    "prior": _prior,
    "ischanged": _ischanged,
    "isnew": lambda node: lambda env: env.is_new,
    "today": lambda node: lambda env: env.now.astimezone(dt.UTC).date(),
    "now": lambda node: lambda env: env.now,
}


def closure(checked: CheckedExpr) -> Closure:
    """The compiled closure of `checked`, built once and cached on it."""
    compiled = checked.cache.get("closure")
    if compiled is None:
        compiled = checked.cache["closure"] = compile_node(checked.node)
    return compiled


def evaluate(
    checked: CheckedExpr,
    values: Mapping[str, Any],
    *,
    prior: Mapping[str, Any] | None = None,
    is_new: bool = False,
    now: dt.datetime | None = None,
) -> Any:
    """The value of `checked` for a record; `values` maps (dotted) paths to values."""
    run = closure(checked)
    try:
        with decimal.localcontext(CONTEXT):
            return run(Env(values, prior, is_new, now))
    except (decimal.InvalidOperation, decimal.Overflow, decimal.DivisionByZero):
        raise FormulaError("a number is out of range") from None
