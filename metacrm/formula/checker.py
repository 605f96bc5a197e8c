"""Type-check a syntax tree against the metadata into the typed tree both compilers use."""

from __future__ import annotations

import ast
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from metacrm.errors import FormulaError
from metacrm.formula.functions import REGISTRY, ArgumentTypeError, Function, check_regex, unify
from metacrm.formula.parser import Source, parse
from metacrm.formula.types import (
    BOOL,
    CONTEXTS,
    FIELD_KINDS,
    ID,
    MAX_EXPONENT,
    MAX_LIST,
    MAX_LITERAL_TEXT,
    MAX_NUMBER_DIGITS,
    MAX_PATH,
    MAX_REPT,
    NULL,
    SYSTEM_KINDS,
    TEXT,
    Node,
    T,
    num,
)
from metacrm.metadata.model import FieldDef, MetadataModel, ObjectDef, choice_values

BOOLEAN_CONTEXTS = ("validation", "filter", "rollup_filter")
DEFAULT_SCALE = 2  #: decimals of a numeric formula field without `scale`


@dataclass(eq=False)
class CheckedExpr:
    """A parsed, type-checked expression, ready for `evaluate` and `to_sql`."""

    expression: str
    object: str
    context: str
    node: Node
    paths: frozenset[str]
    fields: frozenset[str]
    cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def type(self) -> str:
        return self.node.type.kind

    @property
    def scale(self) -> int:
        return self.node.type.scale


_FORBIDDEN = {
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.NamedExpr: "assignment (:=) is not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.Subscript: "indexing and slicing are not allowed",
    ast.IfExp: "'a if c else b' is not supported: use IF(c, a, b)",
    ast.Dict: "dictionaries are not allowed",
    ast.Set: "sets are not allowed; use a list like ('a', 'b') after 'in'",
    ast.Starred: "'*' is not allowed",
    ast.Await: "'await' is not allowed",
    ast.Yield: "'yield' is not allowed",
    ast.YieldFrom: "'yield' is not allowed",
    ast.Slice: "indexing and slicing are not allowed",
}
_ARITH = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_ARITH_REFUSED = {
    ast.FloorDiv: "'//' is not supported: use FLOOR(a / b)",
    ast.Mod: "'%' is not supported: use MOD(a, b)",
    ast.MatMult: "'@' is not supported",
}
_CMP = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_INT_BOUNDS = {
    "ROUND": (0, 18),
    "TRUNC": (0, 18),
    "POWER": (0, MAX_EXPONENT),
    "REPT": (0, MAX_REPT),
}


class Checker:
    """Walks one expression; inlines formula fields; collects paths and fields."""

    def __init__(
        self,
        source: Source,
        obj: ObjectDef,
        model: MetadataModel,
        context: str,
        *,
        hops: tuple[tuple[str, str], ...] = (),
        stack: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.source, self.obj, self.model, self.context = source, obj, model, context
        self.hops = hops  # (lookup field, target object) crossed to reach `obj`
        self.stack = stack  # formula/rollup fields being inlined, for cycle detection
        self.paths: set[str] = set()
        self.fields: set[str] = set()

    def error(self, message: str, node: ast.AST | None) -> FormulaError:
        return self.source.error(message, node)

    def run(self) -> Node:
        return self.visit(parse(self.source))

    def visit(self, node: ast.AST) -> Node:
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            message = _FORBIDDEN.get(type(node), f"{type(node).__name__} is not allowed")
            raise self.error(message, node)
        out: Node = method(node)
        out.line, out.column = self.source.position(node)
        return out

    # ---------------------------------------------------------------- leaves

    def visit_Constant(self, node: ast.Constant) -> Node:
        value = node.value
        if value is None:
            return Node("lit", NULL, value=None)
        if isinstance(value, bool):
            return Node("lit", BOOL, value=value)
        if isinstance(value, int | float):
            return self._number(node)
        if isinstance(value, str):
            if len(value) > MAX_LITERAL_TEXT:
                raise self.error(
                    f"text literals are limited to {MAX_LITERAL_TEXT} characters", node
                )
            return Node("lit", TEXT, value=value)
        raise self.error(f"{type(value).__name__} literals are not allowed", node)

    def _number(self, node: ast.Constant) -> Node:
        value = node.value
        if isinstance(value, int) and value.bit_length() > 110:
            raise self.error(f"number literals are limited to {MAX_NUMBER_DIGITS} digits", node)
        try:
            number = (
                Decimal(value)
                if isinstance(value, int)
                else Decimal(self.source.segment(node).replace("_", ""))
            )
        except InvalidOperation:
            raise self.error("invalid number literal", node) from None
        if (
            not number.is_finite()
            or len(number.as_tuple().digits) > MAX_NUMBER_DIGITS
            or abs(int(number.as_tuple().exponent)) > MAX_NUMBER_DIGITS
        ):
            raise self.error(f"number literals are limited to {MAX_NUMBER_DIGITS} digits", node)
        exponent = number.as_tuple().exponent
        assert isinstance(exponent, int)
        return Node("lit", num(max(0, -exponent)), value=number)

    def visit_Name(self, node: ast.Name) -> Node:
        if node.id.upper() in REGISTRY:
            raise self.error(f"{node.id} is a function: call it as {node.id.upper()}()", node)
        return self.reference([node.id], node)

    def visit_Attribute(self, node: ast.Attribute) -> Node:
        names: list[str] = []
        current: ast.AST = node
        while isinstance(current, ast.Attribute):
            names.append(current.attr)
            current = current.value
        if not isinstance(current, ast.Name):
            raise self.error("only field paths like account.industry may use '.'", node)
        names.append(current.id)
        return self.reference(list(reversed(names)), node)

    # ---------------------------------------------------------------- fields

    def reference(self, names: list[str], node: ast.AST) -> Node:
        for name in names:
            if name.startswith("_"):
                raise self.error(f"names starting with '_' are not allowed: {name!r}", node)
        if len(names) - 1 > MAX_PATH:
            raise self.error(f"a field path may cross at most {MAX_PATH} lookups", node)
        obj, hops = self.obj, list(self.hops)
        for name in names[:-1]:
            fdef = self._field(obj, name, node)
            if fdef.type not in ("lookup", "master_detail"):
                raise self.error(
                    f"{name!r} is not a lookup field, so {'.'.join(names)!r} is not a field path",
                    node,
                )
            try:
                obj = self.model.object(fdef.target)
            except KeyError:
                raise self.error(
                    f"lookup {name!r} targets unknown object {fdef.target!r}", node
                ) from None
            hops.append((name, obj.api_name))
        if not self.hops:
            self.fields.add(names[0])
        name = names[-1]
        key = ".".join([h[0] for h in hops] + [name])
        if name in SYSTEM_KINDS and not obj.has_field(name):
            self.paths.add(key)
            return Node("field", T(SYSTEM_KINDS[name]), value=name, extra={"hops": tuple(hops)})
        fdef = self._field(obj, name, node)
        if fdef.type in FIELD_KINDS:
            self.paths.add(key)
            scale = getattr(fdef, "scale", 0)
            return Node(
                "field", T(FIELD_KINDS[fdef.type], scale), value=name, extra={"hops": tuple(hops)}
            )
        if fdef.type == "formula":
            return self._inline_formula(obj, fdef, tuple(hops), key, node)
        if fdef.type == "rollup":
            return self._rollup(obj, fdef, tuple(hops), key, node)
        raise self.error(f"{fdef.type} fields like {name!r} cannot be used in expressions", node)

    def _field(self, obj: ObjectDef, name: str, node: ast.AST) -> FieldDef:
        try:
            return obj.field(name)
        except KeyError:
            raise self.error(f"unknown field {name!r} on object {obj.api_name!r}", node) from None

    def _enter(self, obj: ObjectDef, fdef: FieldDef, node: ast.AST) -> tuple[tuple[str, str], ...]:
        key = (obj.api_name, fdef.api_name)
        if key in self.stack:
            cycle = [*self.stack[self.stack.index(key) :], key]
            raise self.error(
                "fields reference each other in a cycle: "
                + " -> ".join(f"{o}.{f}" for o, f in cycle),
                node,
            )
        return (*self.stack, key)

    def _sub(self, text: str, obj: ObjectDef, context: str, hops: Any, stack: Any) -> Checker:
        return Checker(
            Source(text, self.source.field), obj, self.model, context, hops=hops, stack=stack
        )

    def _nested(self, sub: Checker, what: str, node: ast.AST) -> Node:
        try:
            inner = sub.run()
        except FormulaError as exc:
            detail = exc.detail
            if "cycle" in detail:
                detail = detail.split(" (line")[0]
                raise self.error(detail, node) from None
            raise self.error(f"{what} is invalid: {detail}", node) from None
        self.paths |= sub.paths
        if not self.hops and not sub.hops:
            self.fields |= sub.fields
        return inner

    def _inline_formula(
        self, obj: ObjectDef, fdef: Any, hops: Any, key: str, node: ast.AST
    ) -> Node:
        stack = self._enter(obj, fdef, node)
        sub = self._sub(fdef.expression, obj, "formula", hops, stack)
        inner = self._nested(sub, f"formula field {obj.api_name}.{fdef.api_name}", node)
        problem = returns_problem(inner.type, fdef.returns)
        if problem:
            raise self.error(f"formula field {obj.api_name}.{fdef.api_name}: {problem}", node)
        scale = formula_scale(fdef)
        return Node("round", T(fdef.returns, scale), args=[inner], extra={"field": key})

    def _rollup(self, obj: ObjectDef, fdef: Any, hops: Any, key: str, node: ast.AST) -> Node:
        if self.context in ("default", "rollup_filter"):
            raise self.error(f"roll-up fields cannot be used in a {self.context} expression", node)
        stack = self._enter(obj, fdef, node)
        problem, child, link = rollup_problem(obj, fdef, self.model)
        if problem:
            raise self.error(f"roll-up {obj.api_name}.{fdef.api_name}: {problem}", node)
        value = None
        if fdef.aggregate != "count":
            sub = self._sub(fdef.field, child, "rollup_filter", (), stack)
            value = self._nested(sub, f"roll-up {obj.api_name}.{fdef.api_name}", node)
            self.paths.discard(fdef.field)
            if not (value.type.numeric or value.type.kind in ("date", "datetime")) or (
                fdef.aggregate == "sum" and not value.type.numeric
            ):
                raise self.error(
                    f"roll-up {obj.api_name}.{fdef.api_name} cannot {fdef.aggregate} "
                    f"a {value.type} field",
                    node,
                )
        where = None
        if fdef.filter:
            sub = self._sub(fdef.filter, child, "rollup_filter", (), stack)
            saved = set(self.paths)
            where = self._nested(sub, f"filter of roll-up {obj.api_name}.{fdef.api_name}", node)
            self.paths = saved
            if where.type.kind not in ("boolean", "null"):
                raise self.error(f"the filter of roll-up {fdef.api_name} must be a condition", node)
        t = (
            num()
            if value is None
            else (num(value.type.scale) if value.type.numeric else value.type)
        )
        if fdef.aggregate == "sum":
            t = T(value.type.kind, value.type.scale)  # type: ignore[union-attr]
        self.paths.add(key)
        return Node(
            "rollup",
            t,
            args=[n for n in (value, where) if n is not None],
            value=fdef.aggregate,
            extra={
                "hops": hops,
                "child": child.api_name,
                "link": link,
                "has_value": value is not None,
                "has_filter": where is not None,
                "key": key,
            },
        )

    # ---------------------------------------------------------------- operators

    def visit_BoolOp(self, node: ast.BoolOp) -> Node:
        args = [self.visit(v) for v in node.values]
        for arg, raw in zip(args, node.values, strict=True):
            self._expect(arg, "boolean", raw, "'and'/'or' operands")
        return Node("and" if isinstance(node.op, ast.And) else "or", BOOL, args=args)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Node:
        operand = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            self._expect(operand, "boolean", node.operand, "'not'")
            return Node("not", BOOL, args=[operand])
        if isinstance(node.op, ast.USub | ast.UAdd):
            if not (operand.type.numeric or operand.type.kind == "null"):
                raise self.error(f"'-' needs a number, not {operand.type}", node)
            if isinstance(node.op, ast.UAdd):
                return operand
            if operand.kind == "lit":
                value = None if operand.value is None else -operand.value
                return Node("lit", operand.type, value=value)
            return Node("neg", operand.type, args=[operand])
        raise self.error("'~' is not supported", node)

    def visit_BinOp(self, node: ast.BinOp) -> Node:
        if type(node.op) in _ARITH_REFUSED:
            raise self.error(_ARITH_REFUSED[type(node.op)], node)
        if type(node.op) not in _ARITH:
            raise self.error("bitwise operators are not supported", node)
        op = _ARITH[type(node.op)]
        left, right = self.visit(node.left), self.visit(node.right)
        a, b = left.type, right.type
        t: T | None = None
        if op == "**":
            if not a.numeric and a.kind != "null":
                raise self.error(f"'**' needs a number, not {a}", node)
            self._int_literal(right, node.right, 0, MAX_EXPONENT, "the exponent of '**'")
            return Node("arith", num(a.scale * int(right.value)), args=[left, right], value="**")
        if a.kind == "null" or b.kind == "null":
            t = b if a.kind == "null" else a
            if t.kind == "null":
                t = NULL
        elif a.numeric and b.numeric:
            kind = a.kind if a.kind == b.kind and op in "+-" else "number"
            scale = {"+": max(a.scale, b.scale), "-": max(a.scale, b.scale)}.get(
                op, a.scale + b.scale if op == "*" else max(a.scale, b.scale, 6)
            )
            t = num(scale, kind)
        elif op == "+" and a.textual and b.textual:
            return Node("concat", TEXT, args=[left, right])
        elif op in "+-" and a.kind in ("date", "datetime") and b.numeric:
            t = a
        elif op == "+" and a.numeric and b.kind in ("date", "datetime"):
            left, right, t = right, left, b
        elif op == "-" and a.kind == b.kind and a.kind in ("date", "datetime"):
            t = num(0 if a.kind == "date" else 6)
        if t is None:
            raise self.error(f"cannot apply '{op}' to {a} and {b}", node)
        return Node("arith", t, args=[left, right], value=op)

    def visit_Compare(self, node: ast.Compare) -> Node:
        left = self.visit(node.left)
        parts: list[Node] = []
        for op, raw in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                parts.append(self._in(left, raw, isinstance(op, ast.NotIn), node))
                continue
            right = self.visit(raw)
            if (isinstance(op, ast.Is | ast.IsNot) and right.kind != "lit") or (
                isinstance(op, ast.Is | ast.IsNot) and right.value is not None
            ):
                raise self.error("'is' only compares with None", node)
            if isinstance(op, ast.Is | ast.IsNot | ast.Eq | ast.NotEq) and (
                (right.kind == "lit" and right.value is None)
                or (left.kind == "lit" and left.value is None)
            ):
                subject = left if right.kind == "lit" and right.value is None else right
                negate = isinstance(op, ast.IsNot | ast.NotEq)
                parts.append(Node("isnull", BOOL, args=[subject], value=negate))
            else:
                parts.append(self._compare(_CMP[type(op)], left, right, node))
            left = right
        return parts[0] if len(parts) == 1 else Node("and", BOOL, args=parts)

    def _compare(self, op: str, left: Node, right: Node, node: ast.AST) -> Node:
        a, b = left.type, right.type
        if a.kind == "id" and b.kind == "text" and right.kind == "lit":
            right = self._uuid(right, node)
        elif b.kind == "id" and a.kind == "text" and left.kind == "lit":
            left = self._uuid(left, node)
        a, b = left.type, right.type
        if "multi_picklist" in (a.kind, b.kind):
            raise self.error("multi-picklists can only be compared with None; use INCLUDES", node)
        try:
            t = unify([a, b], "compared values")
        except ArgumentTypeError:
            raise self.error(f"cannot compare {a} with {b}", node) from None
        if t.kind == "multi_picklist":
            raise self.error("multi-picklists can only be compared with None; use INCLUDES", node)
        if t.kind in ("boolean", "id") and op not in ("==", "!="):
            raise self.error(f"{t} values can only be compared with == and !=", node)
        return Node("cmp", BOOL, args=[left, right], value=op, extra={"textual": t.textual})

    def _uuid(self, node: Node, where: ast.AST) -> Node:
        try:
            return Node("lit", ID, value=uuid.UUID(node.value))
        except ValueError:
            raise self.error(f"{node.value!r} is not a record id", where) from None

    def _in(self, left: Node, raw: ast.AST, negate: bool, node: ast.AST) -> Node:
        if not isinstance(raw, ast.Tuple | ast.List):
            raise self.error("'in' needs a literal list like ('a', 'b')", raw)
        if not raw.elts:
            raise self.error("'in' needs at least one value", raw)
        if len(raw.elts) > MAX_LIST:
            raise self.error(f"'in' lists are limited to {MAX_LIST} values", raw)
        values = []
        for element in raw.elts:
            item = self.visit(element)
            if item.kind != "lit" or item.value is None:
                raise self.error("'in' lists may hold only literal values", element)
            if left.type.kind == "id" and item.type.kind == "text":
                item = self._uuid(item, element)
            self._compare("==", left, item, element)
            values.append(item.value)
        if left.type.kind == "multi_picklist":
            raise self.error("use INCLUDES to test a multi-picklist", node)
        return Node("in", BOOL, args=[left], value=tuple(values), extra={"negate": negate})

    # ---------------------------------------------------------------- calls

    def visit_Call(self, node: ast.Call) -> Node:
        if not isinstance(node.func, ast.Name):
            raise self.error("only functions of the language can be called", node)
        name = node.func.id.upper()
        fn = REGISTRY.get(name)
        if fn is None or name.startswith("_"):
            raise self.error(f"unknown function {node.func.id!r}", node)
        if node.keywords:
            raise self.error(f"{name} takes no keyword arguments", node)
        for raw in node.args:
            if isinstance(raw, ast.Starred):
                raise self.error("'*' is not allowed", raw)
        if self.context not in fn.contexts:
            allowed = " and ".join(sorted(fn.contexts))
            raise self.error(f"{name} is only allowed in {allowed} expressions", node)
        specs = [_param(p) for p in fn.params]
        required = sum(1 for s in specs if not s[2] and not s[3])
        variadic = any(s[3] for s in specs)
        count = len(node.args)
        if count < required or (not variadic and count > len(specs)):
            expected = f"{required} to {len(specs)}" if required != len(specs) else str(required)
            if variadic:
                expected = f"at least {required}"
            raise self.error(f"{name} takes {expected} arguments, not {count}", node)
        if fn.name in ("ISCHANGED", "PRIORVALUE"):
            return self._validation_call(fn, node)
        args: list[Node] = []
        for index, raw in enumerate(node.args):
            spec = specs[min(index, len(specs) - 1)]
            arg = self.visit(raw)
            self._argument(fn, spec, arg, raw, index)
            args.append(arg)
        if fn.name == "REGEX":
            problem = check_regex(args[1].value)
            if problem:
                raise self.error(problem, node.args[1])
        if fn.name in ("ISPICKVAL", "INCLUDES"):
            self._picklist_value(fn, args, node)
        try:
            t = fn.returns(args) if callable(fn.returns) else fn.returns
        except ArgumentTypeError as exc:
            raise self.error(f"{name}: {exc}", node) from None
        if fn.name in ("TODAY", "NOW", "ISNEW"):
            return Node(fn.name.lower(), t)
        if fn.fold and all(a.kind == "lit" for a in args):
            return self._fold(fn, args, t, node)
        if fn.name in ("DATEVALUE", "DATETIMEVALUE") and args[0].type.kind == "text":
            raise self.error(f'{name} of text needs a literal like "2024-01-31"', node)
        return Node("call", t, args=args, value=fn.name)

    def _argument(
        self, fn: Function, spec: tuple[Any, ...], arg: Node, raw: ast.AST, index: int
    ) -> None:
        pname, cls = spec[0], spec[1]
        if cls == "int":
            low, high = _INT_BOUNDS.get(fn.name, (0, 18))
            self._int_literal(arg, raw, low, high, f"{fn.name} {pname}")
        elif cls == "textlit":
            if arg.kind != "lit" or arg.type.kind != "text":
                raise self.error(f"{fn.name} {pname} must be a text literal", raw)
        elif cls in ("datetime_or_textlit", "date_or_textlit"):
            want = "datetime" if cls.startswith("datetime") else "date"
            if arg.type.kind not in (want, "text", "null"):
                raise self.error(f"{fn.name} needs a {want} or a text literal, not {arg.type}", raw)
        else:
            self._expect(arg, cls, raw, f"{fn.name} argument {index + 1} ({pname})")

    def _expect(self, arg: Node, cls: str, raw: ast.AST, what: str) -> None:
        t = arg.type
        ok = t.kind == "null" or {
            "number": t.numeric,
            "text": t.textual,
            "boolean": t.kind == "boolean",
            "date": t.kind == "date",
            "datetime": t.kind == "datetime",
            "temporal": t.kind in ("date", "datetime"),
            "any": t.kind != "multi_picklist",
            "value": True,
            "picklist": t.kind == "picklist",
            "multi_picklist": t.kind == "multi_picklist",
        }.get(cls, False)
        if cls in ("picklist", "multi_picklist") and t.kind == "null":
            ok = False
        if not ok:
            raise self.error(f"{what} must be {_article(cls)}, not {t}", raw)

    def _int_literal(self, arg: Node, raw: ast.AST, low: int, high: int, what: str) -> None:
        value = arg.value
        if (
            arg.kind != "lit"
            or not arg.type.numeric
            or value is None
            or value != value.to_integral_value()
            or not low <= value <= high
        ):
            raise self.error(f"{what} must be an integer literal from {low} to {high}", raw)

    def _picklist_value(self, fn: Function, args: list[Node], node: ast.Call) -> None:
        subject = args[0]
        if subject.kind != "field":
            return
        hops = subject.extra["hops"]
        obj = self.model.object(hops[-1][1]) if hops else self.obj
        fdef = obj.field(subject.value)
        if args[1].value not in choice_values(fdef):
            raise self.error(
                f"{args[1].value!r} is not a value of picklist {fdef.api_name!r}", node.args[1]
            )

    def _fold(self, fn: Function, args: list[Node], t: T, node: ast.AST) -> Node:
        values = [a.value for a in args]
        if any(v is None for v in values):
            return Node("lit", t, value=None)
        assert fn.py is not None
        result = fn.py(*values)
        if result is None:
            shown = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values)
            raise self.error(f"{fn.name}({shown}) is not a valid {t}", node)
        return Node("lit", t, value=result)

    def _validation_call(self, fn: Function, node: ast.Call) -> Node:
        raw = node.args[0]
        if not isinstance(raw, ast.Name):
            raise self.error(f"{fn.name} needs a field of the record, like {fn.name}(stage)", raw)
        target = self.visit(raw)
        if target.kind != "field" or target.extra["hops"]:
            raise self.error(f"{fn.name} needs a stored field of the record", raw)
        kind = "ischanged" if fn.name == "ISCHANGED" else "prior"
        t = BOOL if kind == "ischanged" else target.type
        return Node(kind, t, args=[target], value=target.value)

    # ---------------------------------------------------------------- forbidden nodes

    def visit_Tuple(self, node: ast.Tuple) -> Node:
        raise self.error("lists are only allowed after 'in'", node)

    visit_List = visit_Tuple


def _param(raw: str) -> tuple[str, str, bool, bool]:
    optional, variadic = raw.endswith("?"), raw.startswith("*")
    core = raw.strip("*?")
    name, _, cls = core.partition(":")
    return name, cls or name, optional, variadic


def _article(cls: str) -> str:
    words = {
        "temporal": "a date or datetime",
        "any": "a single value",
        "multi_picklist": "a multi-picklist",
        "picklist": "a picklist field",
    }
    return words.get(cls, ("an " if cls[0] in "aeiou" else "a ") + cls)


# ------------------------------------------------------------------ helpers for callers


def returns_problem(t: T, returns: str) -> str | None:
    """Why a value of type `t` cannot be stored as a `returns` value, or None."""
    if t.kind == "null":
        return None
    if returns in ("number", "currency", "percent"):
        ok = t.numeric
    elif returns == "text":
        ok = t.textual
    else:
        ok = t.kind == returns
    return None if ok else f"the expression gives {t}, but the field holds {returns}"


def formula_scale(fdef: Any) -> int:
    if fdef.returns not in ("number", "currency", "percent"):
        return 0
    return DEFAULT_SCALE if fdef.scale is None else fdef.scale


def rollup_problem(obj: ObjectDef, fdef: Any, model: MetadataModel) -> tuple[str | None, Any, str]:
    """(problem, child object, link field): is the roll-up well formed?"""
    try:
        child = model.object(fdef.child_object)
    except KeyError:
        return f"unknown child object {fdef.child_object!r}", None, ""
    try:
        link = child.field(fdef.child_field)
    except KeyError:
        return f"unknown field {fdef.child_field!r} on {child.api_name!r}", child, ""
    if link.type not in ("lookup", "master_detail") or link.target != obj.api_name:
        return (
            f"{child.api_name}.{link.api_name} is not a lookup to {obj.api_name!r}",
            child,
            "",
        )
    if fdef.field is not None and not child.has_field(fdef.field):
        return f"unknown field {fdef.field!r} on {child.api_name!r}", child, ""
    return None, child, link.api_name


def check(
    expression: str,
    obj: ObjectDef,
    model: MetadataModel,
    *,
    context: str,
    field: str = "expression",
) -> CheckedExpr:
    """Parse and type-check `expression` on `obj`; FormulaError with its position if invalid."""
    if context not in CONTEXTS:
        raise ValueError(f"unknown context {context!r}; use one of {CONTEXTS}")
    checker = Checker(Source(expression, field), obj, model, context)
    node = checker.run()
    if context in BOOLEAN_CONTEXTS and node.type.kind not in ("boolean", "null"):
        raise FormulaError(
            f"a {context.replace('_', ' ')} must be a condition (true or false), not {node.type}",
            line=node.line,
            column=node.column,
            field=field,
        )
    return CheckedExpr(
        expression, obj.api_name, context, node, frozenset(checker.paths), frozenset(checker.fields)
    )


def check_field(
    obj: ObjectDef, fdef: Any, model: MetadataModel, *, field: str = "expression"
) -> CheckedExpr:
    """A formula field's expression, checked and rounded/typed to its `returns` and scale."""
    checker = Checker(
        Source(fdef.expression, field),
        obj,
        model,
        "formula",
        stack=((obj.api_name, fdef.api_name),),
    )
    inner = checker.run()
    problem = returns_problem(inner.type, fdef.returns)
    if problem:
        raise FormulaError(problem, line=inner.line, column=inner.column, field=field)
    node = Node("round", T(fdef.returns, formula_scale(fdef)), args=[inner])
    return CheckedExpr(
        fdef.expression,
        obj.api_name,
        "formula",
        node,
        frozenset(checker.paths),
        frozenset(checker.fields),
    )
