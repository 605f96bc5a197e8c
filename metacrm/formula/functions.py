"""The function registry: name, signature, types, Python and SQL implementations, docs."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa

from metacrm.formula import regex
from metacrm.formula.dialect import as_int, as_real, both, greatest
from metacrm.formula.types import (
    BOOL,
    DATE,
    DATETIME,
    MAX_EXPONENT,
    MAX_REGEX,
    MAX_REGEX_REPEATS,
    MAX_REPT,
    MAX_TEXT,
    NULL,
    TEXT,
    Node,
    T,
    num,
)

ALL_CONTEXTS = frozenset({"formula", "default", "validation", "filter", "rollup_filter"})
D = Decimal
SQL = Any  # a SQLAlchemy column expression

#: How parameters are typed: number, text, boolean, date, datetime, temporal (date or
#: datetime), any, picklist, multi_picklist, int (an integer literal), textlit (a text
#: literal), field (a stored field of the record). "?" marks optional, "*" repeats.


class ArgumentTypeError(TypeError):
    """A type rule refused its arguments; the checker adds the position."""


@dataclass(frozen=True)
class Function:
    """One function of the language and both of its implementations."""

    name: str
    category: str
    params: tuple[str, ...]
    returns: T | Callable[[list[Node]], T]
    doc: str
    example: str
    result: Any
    py: Callable[..., Any] | None = None
    sql: Callable[[list[SQL], list[Node]], SQL] | None = None
    contexts: frozenset[str] = ALL_CONTEXTS
    strict: bool = True  #: null in any argument gives null (in Python; SQL is strict natively)
    lazy: bool = False  #: Python impl receives argument thunks
    py_nodes: bool = False  #: Python impl is a factory taking the argument nodes
    fold: bool = False  #: with literal arguments, computed once at check time

    @property
    def signature(self) -> str:
        names = [p.split(":")[0].replace("*", "").replace("?", "") for p in self.params]
        shown = []
        for raw, name in zip(self.params, names, strict=True):
            text = name + ("..." if raw.startswith("*") else "")
            shown.append(f"[{text}]" if raw.endswith("?") else text)
        return f"{self.name}({', '.join(shown)})"


REGISTRY: dict[str, Function] = {}


def register(name: str, category: str, params: str, returns: Any, doc: str, example: str,
             result: Any, **kw: Any) -> None:  # fmt: skip
    REGISTRY[name] = Function(
        name, category, tuple(p for p in params.split(",") if p), returns, doc, example,
        result, **kw
    )  # fmt: skip


# ------------------------------------------------------------------ type rules


def unify(types: list[T], what: str) -> T:
    """The common type of `types` (IF branches, CASE results, MIN arguments...)."""
    kinds = {t.kind for t in types if t.kind != "null"}
    if not kinds:
        return NULL
    scale = max(t.scale for t in types)
    if len(kinds) == 1:
        return T(kinds.pop(), scale)
    if kinds <= {"number", "currency", "percent"}:
        return num(scale)
    if kinds <= {"text", "picklist"}:
        return TEXT
    raise ArgumentTypeError(f"{what} mix types: {', '.join(sorted(kinds))}")


def same(
    start: int = 0, step: int = 1, last: bool = False, what: str = "the arguments"
) -> Callable[[list[Node]], T]:
    def rule(nodes: list[Node]) -> T:
        picked = nodes[start::step]
        if last and len(nodes) % 2 == 0:
            picked = [*picked, nodes[-1]]
        return unify([n.type for n in picked], what)

    return rule


def first_scale(nodes: list[Node]) -> T:
    return num(nodes[0].type.scale)


def arg_int(nodes: list[Node], index: int, default: int = 0) -> int:
    return int(nodes[index].value) if len(nodes) > index else default


# ------------------------------------------------------------------ Python helpers


def quantum(scale: int) -> Decimal:
    return D(1).scaleb(-scale)


def text_ok(value: str) -> str:
    if len(value) > MAX_TEXT:
        from metacrm.errors import FormulaError

        raise FormulaError(f"a text value would be longer than {MAX_TEXT} characters")
    return value


def to_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).date()
    day: dt.date = value
    return day


def utc(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC)


_LOWER = "abcdefghijklmnopqrstuvwxyz"
_UPPER = _LOWER.upper()
_TO_UPPER = str.maketrans(_LOWER, _UPPER)
_TO_LOWER = str.maketrans(_UPPER, _LOWER)
NUMBER_PATTERN = r"^ *[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+) *$"
_NUMBER_RE = re.compile(NUMBER_PATTERN)


def py_value(text: str) -> Decimal | None:
    if len(text) > 100 or not _NUMBER_RE.match(text):
        return None
    return D(text.strip(" "))


def py_date(y: Decimal, m: Decimal, d: Decimal) -> dt.date | None:
    try:
        return dt.date(int(y), int(m), int(d))
    except (ValueError, OverflowError):
        return None


def py_datevalue(value: Any) -> dt.date | None:
    if isinstance(value, str):
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return None
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return to_date(value)


def py_datetimevalue(value: Any) -> dt.datetime | None:
    if isinstance(value, str):
        match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})Z?", value)
        if not match:
            return None
        try:
            return dt.datetime.fromisoformat(f"{match[1]}T{match[2]}").replace(tzinfo=dt.UTC)
        except ValueError:
            return None
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)


def py_addmonths(value: dt.date, months: Decimal) -> dt.date | None:
    total = value.year * 12 + value.month - 1 + int(months)
    year, month = divmod(total, 12)
    if not 1 <= year <= 9999:
        return None
    last = _month_end(year, month + 1)
    return dt.date(year, month + 1, min(value.day, last))


def _month_end(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (dt.date(year, month + 1, 1) - dt.timedelta(days=1)).day


def add_days_py(value: Any, days: Decimal, whole: bool = True) -> Any:
    """date/datetime + days: whole days (truncated) for dates and ADDDAYS, else exact."""
    try:
        if whole or not isinstance(value, dt.datetime):
            return value + dt.timedelta(days=int(days))
        micros = (days * 86_400_000_000).to_integral_value(ROUND_HALF_UP)
        return value + dt.timedelta(microseconds=int(micros))
    except OverflowError:
        return None


def py_text_factory(nodes: list[Node]) -> Callable[[Any], str | None]:
    t = nodes[0].type

    def text(value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dt.datetime):
            return utc(value).strftime("%Y-%m-%d %H:%M:%S") + "Z"
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, Decimal):
            return f"{value.quantize(quantum(t.scale), ROUND_HALF_UP):f}"
        return str(value)

    return text


def py_and(*thunks: Callable[[], Any]) -> bool | None:
    result: bool | None = True
    for thunk in thunks:
        value = thunk()
        if value is False:
            return False
        if value is None:
            result = None
    return result


def py_or(*thunks: Callable[[], Any]) -> bool | None:
    result: bool | None = False
    for thunk in thunks:
        value = thunk()
        if value is True:
            return True
        if value is None:
            result = None
    return result


def py_if(
    cond: Callable[[], Any], then: Callable[[], Any], other: Callable[[], Any] = lambda: None
) -> Any:
    return then() if cond() is True else other()


def py_case(*thunks: Callable[[], Any]) -> Any:
    subject = thunks[0]()
    pairs = thunks[1:]
    for i in range(0, len(pairs) - 1, 2):
        if subject is not None and subject == pairs[i]():
            return pairs[i + 1]()
    return pairs[-1]() if len(pairs) % 2 else None


def blank(value: Any) -> bool:
    return value is None or value == "" or value == []


# ------------------------------------------------------------------ SQL helpers


def sql_blank(a: SQL, node: Node) -> SQL:
    if node.type.textual:
        return sa.or_(a.is_(None), a == "")
    return a.is_(None)


def sql_if(a: list[SQL], n: list[Node]) -> SQL:
    return sa.case((a[0], a[1]), else_=a[2] if len(a) > 2 else sa.null())


def sql_case(a: list[SQL], n: list[Node]) -> SQL:
    subject, pairs = a[0], a[1:]
    whens = [(subject == pairs[i], pairs[i + 1]) for i in range(0, len(pairs) - 1, 2)]
    return sa.case(*whens, else_=pairs[-1] if len(pairs) % 2 else sa.null())


def sql_strict(a: list[SQL], expr: SQL) -> SQL:
    """NULL when any of `a` is NULL, else `expr` (for PostgreSQL's null-skipping LEAST)."""
    return sa.case((sa.or_(*[x.is_(None) for x in a]), sa.null()), else_=expr)


def sql_text(a: list[SQL], n: list[Node]) -> SQL:
    t, x = n[0].type, a[0]
    if t.kind == "boolean":
        return sa.case((x.is_(None), sa.null()), (x, "true"), else_="false")
    if t.kind == "date":
        return both(x, sa.func.to_char(x, "YYYY-MM-DD"), TEXT)
    if t.kind == "datetime":
        return both(
            sa.func.strftime("%Y-%m-%d %H:%M:%S", x) + "Z",
            sa.func.to_char(sa.func.timezone("UTC", x), "YYYY-MM-DD HH24:MI:SS") + "Z",
            TEXT,
        )
    if t.numeric:
        return both(
            sa.func.printf(f"%.{t.scale}f", x),
            sa.cast(sa.func.round(sa.cast(x, sa.Numeric), t.scale), sa.Text),
            TEXT,
        )
    if t.kind == "id":
        return sa.cast(x, sa.Text)
    return x


def sql_value(a: list[SQL], n: list[Node]) -> SQL:
    x = a[0]
    return sa.case(
        (sa.and_(sa.func.length(x) <= 100, x.regexp_match(NUMBER_PATTERN)), as_real(sa.func.trim(x))),
        else_=sa.null(),
    )  # fmt: skip


def sql_date_part(sqlite_fmt: str, pg_field: str) -> Callable[[list[SQL], list[Node]], SQL]:
    def part(a: list[SQL], n: list[Node]) -> SQL:
        x = a[0]
        pg_x = sa.func.timezone("UTC", x) if n[0].type.kind == "datetime" else x
        return both(
            sa.cast(sa.func.strftime(sqlite_fmt, x), sa.Integer),
            sa.cast(sa.func.floor(sa.extract(pg_field, pg_x)), sa.Integer),
            num(),
        )

    return part


def sql_as_date(x: SQL, t: T) -> SQL:
    if t.kind == "datetime":
        return both(sa.func.date(x), sa.cast(sa.func.timezone("UTC", x), sa.Date), DATE)
    return x


def sql_datevalue(a: list[SQL], n: list[Node]) -> SQL:
    return sql_as_date(a[0], n[0].type)


def sql_datetimevalue(a: list[SQL], n: list[Node]) -> SQL:
    if n[0].type.kind == "datetime":
        return a[0]
    return both(
        a[0] + " 00:00:00.000000",
        sa.func.timezone("UTC", sa.cast(a[0], sa.DateTime)),
        DATETIME,
    )


def sql_date(a: list[SQL], n: list[Node]) -> SQL:
    y, m, d = (as_int(x) for x in a)
    text = sa.func.printf("%04d-%02d-%02d", y, m, d)
    sqlite = sa.case(
        (sa.and_(y.between(1, 9999), sa.func.date(sa.func.julianday(text)) == text), text),
        else_=sa.null(),
    )
    first = sa.func.make_date(y, m, 1)
    days = sa.extract("day", first + sa.text("interval '1 month'") - sa.text("interval '1 day'"))
    pg = sa.case(
        (
            sa.and_(y.between(1, 9999), m.between(1, 12)),
            sa.case((d.between(1, days), sa.func.make_date(y, m, d)), else_=sa.null()),
        ),
        else_=sa.null(),
    )
    return both(sqlite, pg, DATE)


def sql_addmonths(a: list[SQL], n: list[Node]) -> SQL:
    x, months = a[0], as_int(a[1])
    start = sa.func.date(x, "start of month", sa.func.printf("%+d months", months))
    last = sa.cast(sa.func.strftime("%d", sa.func.date(start, "+1 month", "-1 day")), sa.Integer)
    day = sa.func.min(sa.cast(sa.func.strftime("%d", x), sa.Integer), last)
    sqlite = sa.func.date(start, sa.func.printf("%+d days", day - 1))
    pg = sa.cast(x + sa.func.make_interval(0, months), sa.Date)
    return both(sqlite, pg, DATE)


def sql_adddays(a: list[SQL], n: list[Node]) -> SQL:
    return add_days(a[0], n[0].type, a[1], whole=True)


def add_days(x: SQL, t: T, days: SQL, *, whole: bool) -> SQL:
    """date/datetime + days (whole days for dates; fractions allowed for datetimes)."""
    if t.kind == "date":
        k = as_int(days)
        return both(sa.func.date(sa.func.julianday(x) + k), x + k, DATE)
    if whole:
        days = as_int(days)
    sqlite = sa.func.strftime("%Y-%m-%d %H:%M:%f", sa.func.julianday(x) + days) + "000"
    pg = x + sa.func.make_interval(0, 0, 0, 0, 0, 0, sa.cast(days, sa.Numeric) * 86400)
    return both(sqlite, pg, DATETIME)


def days_between(a: SQL, b: SQL, t: T) -> SQL:
    """b - a in days: whole days for dates, fractional for datetimes."""
    if t.kind == "date":
        return both(
            sa.cast(sa.func.round(sa.func.julianday(b) - sa.func.julianday(a)), sa.Integer),
            b - a,
            num(),
        )
    return both(
        sa.func.julianday(b) - sa.func.julianday(a),
        sa.extract("epoch", b - a) / 86400,
        num(6),
    )


def sql_datediff(a: list[SQL], n: list[Node]) -> SQL:
    return days_between(sql_as_date(a[0], n[0].type), sql_as_date(a[1], n[1].type), DATE)


def sql_eomonth(a: list[SQL], n: list[Node]) -> SQL:
    x = sql_as_date(a[0], n[0].type)
    return both(
        sa.func.date(x, "start of month", "+1 month", "-1 day"),
        sa.cast(
            sa.func.date_trunc("month", x)
            + sa.text("interval '1 month'")
            - sa.text("interval '1 day'"),
            sa.Date,
        ),
        DATE,
    )


def check_regex(pattern: str) -> str | None:
    """Why `pattern` is refused by REGEX, or None: a small, safe subset of regular syntax."""
    if len(pattern) > MAX_REGEX:
        return f"a REGEX pattern is limited to {MAX_REGEX} characters"
    if re.search(r"(?<!\\)(?:\\\\)*\\[1-9]", pattern):
        return (
            r"REGEX patterns allow only \d \D \s \S \w \W and escaped punctuation: "
            r"backreferences such as \1 are not supported"
        )
    if re.search(r"(?<!\\)(?:\\\\)*\\[^dDsSwW.\\^$*+?()\[\]{}|/-]", pattern):
        return r"REGEX patterns allow only \d \D \s \S \w \W and escaped punctuation"
    if re.search(r"\(\?<?[=!]", pattern):
        return "REGEX patterns cannot use (? groups: lookaround such as (?= is not supported"
    if "(?" in pattern:
        return "REGEX patterns cannot use (? groups"
    if re.search(r"\{\s*\d{4,}", pattern):
        return "REGEX repetition counts are limited to 999"
    # No quantified group that itself contains a quantifier or an alternative, and few
    # variable repetitions in all: PostgreSQL's backtracking engine would take exponential
    # time on `(a|a)*` or `a?a?a?...aaa` (SQLite and Python run RE2: metacrm.formula.regex).
    depth_quant: list[bool] = []
    in_class = escaped = False
    repeats = len(re.findall(r"(?<!\\)\{\s*\d+\s*,", pattern))
    for index, char in enumerate(pattern):
        if escaped:
            escaped = False
            continue
        if char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth_quant.append(False)
        elif char == ")":
            if not depth_quant:
                return "REGEX pattern has an unmatched ')'"
            inner = depth_quant.pop()
            follow = pattern[index + 1 : index + 2]
            if inner and follow and follow in "*+?{":
                return (
                    "REGEX patterns cannot repeat a group that contains a repetition "
                    "or an alternative (|)"
                )
            if depth_quant:
                depth_quant[-1] = depth_quant[-1] or inner or bool(follow and follow in "*+?{")
        elif char == "{" and re.match(r"\{,\d*\}", pattern[index:]):
            # Python reads {,n} as {0,n}, PostgreSQL as the literal text.
            return "REGEX repetitions need a lower bound: write {0,n} rather than {,n}"
        elif char in "*+?{|" and depth_quant:
            depth_quant[-1] = True
        if char in "*+?" and not in_class:
            repeats += 1
    if repeats > MAX_REGEX_REPEATS:
        return f"a REGEX pattern may hold at most {MAX_REGEX_REPEATS} variable repetitions"
    try:
        re.compile(pattern)
        regex.compiled(full_pattern(pattern))  # RE2 runs it: see metacrm.formula.regex
    except re.error as exc:
        return f"invalid REGEX pattern: {exc}"
    except regex.RegexError as exc:
        return str(exc)
    return None


def full_pattern(pattern: str) -> str:
    return r"(?s)\A(?:" + pattern + r")\Z"


# ------------------------------------------------------------------ the registry
# fmt: off

# logic
register("IF", "logic", "condition:boolean,then:any,otherwise:any?", same(1, what="IF branches"),
         "`then` when `condition` is true, else `otherwise` (null when omitted); a null "
         "condition counts as false.", 'IF(2 > 1, "yes", "no")', "yes",
         py=py_if, sql=sql_if, lazy=True, strict=False)
register("CASE", "logic", "value:any,*match_then_default:any", same(2, 2, last=True, what="CASE results"),
         "Compare `value` with each `match` in turn and give the paired result; the last, "
         "unpaired argument is the default (null when absent).",
         'CASE(2, 1, "one", 2, "two", "many")', "two",
         py=py_case, sql=sql_case, lazy=True, strict=False)
register("AND", "logic", "boolean,*boolean", BOOL,
         "True when every argument is true; false when any is false; else null.",
         "AND(1 < 2, 2 < 3)", True,
         py=py_and, sql=lambda a, n: sa.and_(*a), lazy=True, strict=False)
register("OR", "logic", "boolean,*boolean", BOOL,
         "True when any argument is true; false when all are false; else null.",
         "OR(1 > 2, 2 < 3)", True,
         py=py_or, sql=lambda a, n: sa.or_(*a), lazy=True, strict=False)
register("NOT", "logic", "boolean", BOOL, "The negation; null stays null.", "NOT(1 > 2)", True,
         py=lambda x: not x, sql=lambda a, n: sa.not_(a[0]))
register("ISBLANK", "logic", "value", BOOL,
         "True when the value is null, or empty text, or an empty multi-picklist.",
         'ISBLANK("")', True, py=blank, sql=lambda a, n: sql_blank(a[0], n[0]), strict=False)
register("ISNULL", "logic", "value", BOOL, "True when the value is null (empty text is not).",
         'ISNULL("")', False, py=lambda x: x is None, sql=lambda a, n: a[0].is_(None),
         strict=False)
register("BLANKVALUE", "logic", "value:value,substitute:any", same(what="BLANKVALUE arguments"),
         "`value` unless it is blank (see ISBLANK), else `substitute`.",
         'BLANKVALUE("", "n/a")', "n/a",
         py=lambda x, y: y if blank(x) else x,
         sql=lambda a, n: sa.case((sql_blank(a[0], n[0]), a[1]), else_=a[0]), strict=False)
register("NULLVALUE", "logic", "value:value,substitute:any", same(what="NULLVALUE arguments"),
         "`value` unless it is null, else `substitute`.", "NULLVALUE(None, 0)", D(0),
         py=lambda x, y: y if x is None else x, sql=lambda a, n: sa.func.coalesce(*a),
         strict=False)
register("COALESCE", "logic", "any,*any", same(what="COALESCE arguments"),
         "The first argument that is not null.", "COALESCE(None, None, 3)", D(3),
         py=lambda *xs: next((x for x in xs if x is not None), None),
         sql=lambda a, n: sa.func.coalesce(*a), strict=False)

# math
register("ROUND", "math", "number,digits:int?", lambda n: num(arg_int(n, 1)),
         "Round half away from zero to `digits` decimals (an integer literal 0 to 18).",
         "ROUND(2.675, 2)", D("2.68"),
         py=lambda x, k=D(0): x.quantize(quantum(int(k)), ROUND_HALF_UP),
         sql=lambda a, n: both(sa.func.round(a[0], arg_int(n, 1)),
                               sa.func.round(sa.cast(a[0], sa.Numeric), arg_int(n, 1)), num()))
register("FLOOR", "math", "number", num(), "The largest integer not above the number.",
         "FLOOR(-2.5)", D(-3), py=lambda x: x.to_integral_value(ROUND_FLOOR),
         # SQLAlchemy replaces SQLite's floor() by Python's math.floor, which fails on NULL.
         sql=lambda a, n: both(-sa.func.ceil(-a[0]), sa.func.floor(a[0]), num()))
register("CEILING", "math", "number", num(), "The smallest integer not below the number.",
         "CEILING(2.1)", D(3), py=lambda x: x.to_integral_value(ROUND_CEILING),
         sql=lambda a, n: both(sa.func.ceil(a[0]), sa.func.ceil(a[0]), num()))
register("TRUNC", "math", "number,digits:int?", lambda n: num(arg_int(n, 1)),
         "Cut the number toward zero to `digits` decimals (an integer literal 0 to 18).",
         "TRUNC(-2.678, 1)", D("-2.6"),
         py=lambda x, k=D(0): x.quantize(quantum(int(k)), ROUND_DOWN),
         sql=lambda a, n: both(
             sa.func.trunc(a[0] * 10 ** arg_int(n, 1)) / 10 ** arg_int(n, 1),
             sa.func.trunc(sa.cast(a[0], sa.Numeric), arg_int(n, 1)), num()))
register("ABS", "math", "number", first_scale, "The absolute value.", "ABS(-4.5)", D("4.5"),
         py=abs, sql=lambda a, n: sa.func.abs(a[0]))
register("SIGN", "math", "number", num(), "-1, 0 or 1 by the sign of the number.",
         "SIGN(-4.5)", D(-1), py=lambda x: D((x > 0) - (x < 0)),
         sql=lambda a, n: sa.func.sign(a[0]))
register("MIN", "math", "any,*any", same(what="MIN arguments"),
         "The smallest argument (numbers, text, dates); null when any is null.",
         "MIN(3, 1, 2)", D(1), py=min,
         sql=lambda a, n: both(sa.func.min(*a), sql_strict(a, sa.func.least(*a)), n[0].type))
register("MAX", "math", "any,*any", same(what="MAX arguments"),
         "The largest argument (numbers, text, dates); null when any is null.",
         "MAX(3, 1, 2)", D(3), py=max,
         sql=lambda a, n: both(sa.func.max(*a), sql_strict(a, sa.func.greatest(*a)), n[0].type))
register("MOD", "math", "number,divisor:number", same(what="MOD arguments"),
         "The remainder of dividing, with the sign of the dividend; null when dividing by 0.",
         "MOD(-7, 3)", D(-1), py=lambda x, y: None if y == 0 else x % y,
         sql=lambda a, n: sa.func.mod(a[0], sa.func.nullif(a[1], 0)))
register("POWER", "math", "number,exponent:int", lambda n: num(n[0].type.scale * arg_int(n, 1)),
         f"The number raised to an integer literal exponent from 0 to {MAX_EXPONENT}.",
         "POWER(1.5, 2)", D("2.25"), py=lambda x, k: x ** int(k),
         sql=lambda a, n: both(sa.func.pow(a[0], arg_int(n, 1)),
                               sa.func.power(sa.cast(a[0], sa.Numeric), arg_int(n, 1)), num()))
register("SQRT", "math", "number", num(8), "The square root; null for negative numbers.",
         "SQRT(16)", D(4), py=lambda x: x.sqrt() if x >= 0 else None,
         sql=lambda a, n: sa.case((a[0] >= 0, sa.func.sqrt(as_real(a[0]))), else_=sa.null()))
register("EXP", "math", "number", num(8), "e raised to the number (the number at most 100).",
         "EXP(0)", D(1), py=lambda x: x.exp() if x <= 100 else None,
         sql=lambda a, n: sa.case((a[0] <= 100, sa.func.exp(as_real(a[0]))), else_=sa.null()))
register("LN", "math", "number", num(8), "The natural logarithm; null unless positive.",
         "LN(1)", D(0), py=lambda x: x.ln() if x > 0 else None,
         sql=lambda a, n: sa.case((a[0] > 0, sa.func.ln(as_real(a[0]))), else_=sa.null()))
register("LOG", "math", "number", num(8), "The base-10 logarithm; null unless positive.",
         "LOG(1000)", D(3), py=lambda x: x.log10() if x > 0 else None,
         sql=lambda a, n: sa.case((a[0] > 0, sa.func.log(as_real(a[0]))), else_=sa.null()))

# text
register("LEN", "text", "text", num(), "The number of characters.", 'LEN("héllo")', D(5),
         py=lambda s: D(len(s)), sql=lambda a, n: sa.func.length(a[0]))
register("LEFT", "text", "text,count:number", TEXT, "The first `count` characters.",
         'LEFT("Hello", 2)', "He", py=lambda s, k: s[: max(int(k), 0)],
         sql=lambda a, n: sa.func.substr(a[0], 1, greatest(as_int(a[1]), 0, num())))
register("RIGHT", "text", "text,count:number", TEXT, "The last `count` characters.",
         'RIGHT("Hello", 3)', "llo", py=lambda s, k: s[-int(k):] if int(k) > 0 else "",
         sql=lambda a, n: both(
             sa.case((as_int(a[1]) <= 0, ""), else_=sa.func.substr(a[0], -as_int(a[1]))),
             sa.func.right(a[0], greatest(as_int(a[1]), 0, num())), TEXT))
register("MID", "text", "text,start:number,count:number", TEXT,
         "`count` characters from position `start` (the first character is 1).",
         'MID("Hello", 2, 3)', "ell",
         py=lambda s, i, k: s[max(int(i), 1) - 1: max(int(i), 1) - 1 + max(int(k), 0)],
         sql=lambda a, n: sa.func.substr(a[0], greatest(as_int(a[1]), 1, num()),
                                         greatest(as_int(a[2]), 0, num())))
register("UPPER", "text", "text", TEXT, "Upper-case (ASCII letters only, on every database).",
         'UPPER("abc")', "ABC", py=lambda s: s.translate(_TO_UPPER),
         sql=lambda a, n: both(sa.func.upper(a[0]), sa.func.translate(a[0], _LOWER, _UPPER),
                               TEXT))
register("LOWER", "text", "text", TEXT, "Lower-case (ASCII letters only, on every database).",
         'LOWER("ABC")', "abc", py=lambda s: s.translate(_TO_LOWER),
         sql=lambda a, n: both(sa.func.lower(a[0]), sa.func.translate(a[0], _UPPER, _LOWER),
                               TEXT))
register("TRIM", "text", "text", TEXT, "Without leading and trailing spaces.",
         'TRIM("  a b  ")', "a b", py=lambda s: s.strip(" "), sql=lambda a, n: sa.func.trim(a[0]))
register("LTRIM", "text", "text", TEXT, "Without leading spaces.", 'LTRIM("  a ")', "a ",
         py=lambda s: s.lstrip(" "), sql=lambda a, n: sa.func.ltrim(a[0]))
register("RTRIM", "text", "text", TEXT, "Without trailing spaces.", 'RTRIM(" a  ")', " a",
         py=lambda s: s.rstrip(" "), sql=lambda a, n: sa.func.rtrim(a[0]))
register("CONTAINS", "text", "text,part:text", BOOL, "True when `part` occurs in the text "
         "(case-sensitive).", 'CONTAINS("Hello", "ell")', True, py=lambda s, p: p in s,
         sql=lambda a, n: both(sa.func.instr(a[0], a[1]) > 0, sa.func.strpos(a[0], a[1]) > 0,
                               BOOL))
register("BEGINS", "text", "text,prefix:text", BOOL, "True when the text starts with `prefix`.",
         'BEGINS("Hello", "He")', True, py=lambda s, p: s.startswith(p),
         sql=lambda a, n: sa.func.substr(a[0], 1, sa.func.length(a[1])) == a[1])
register("ENDS", "text", "text,suffix:text", BOOL, "True when the text ends with `suffix`.",
         'ENDS("Hello", "lo")', True, py=lambda s, p: s.endswith(p),
         sql=lambda a, n: sa.and_(
             sa.func.length(a[1]) <= sa.func.length(a[0]),
             sa.func.substr(a[0], sa.func.length(a[0]) - sa.func.length(a[1]) + 1) == a[1]))
register("FIND", "text", "part:text,text", num(),
         "Position of the first `part` in the text (1-based), 0 when absent.",
         'FIND("l", "Hello")', D(3), py=lambda p, s: D(s.find(p) + 1),
         sql=lambda a, n: both(sa.func.instr(a[1], a[0]), sa.func.strpos(a[1], a[0]), num()))
register("SUBSTITUTE", "text", "text,old:text,new:text", TEXT, "Every `old` replaced by `new`.",
         'SUBSTITUTE("a-b-c", "-", "+")', "a+b+c",
         py=lambda s, o, r: text_ok(s.replace(o, r)) if o else s,
         sql=lambda a, n: sa.func.replace(*a))
register("TEXT", "text", "any", TEXT,
         "The value as text: numbers with their scale, dates as YYYY-MM-DD, datetimes as "
         "YYYY-MM-DD HH:MM:SSZ (UTC), booleans as true/false.", "TEXT(2.50)", "2.50",
         py=py_text_factory, py_nodes=True, sql=sql_text)
register("VALUE", "text", "text", num(8),
         "The number written in the text (digits, optional sign and point); null when it is not"
         " a number.", 'VALUE(" 12.5 ")', D("12.5"), py=py_value, sql=sql_value)
register("ISNUMBER", "text", "text", BOOL, "True when VALUE would find a number.",
         'ISNUMBER("1e5")', False, py=lambda s: py_value(s) is not None,
         sql=lambda a, n: sa.and_(sa.func.length(a[0]) <= 100,
                                  a[0].regexp_match(NUMBER_PATTERN)))
register("CONCAT", "text", "text,*text", TEXT, "The texts joined; null counts as empty text.",
         'CONCAT("a", None, "b")', "ab",
         py=lambda *xs: text_ok("".join(x for x in xs if x is not None)), strict=False,
         sql=lambda a, n: sa.func.coalesce(a[0], "").concat(
             sa.func.coalesce(a[1], "")) if len(a) == 2 else _concat(a))
register("REGEX", "text", "text,pattern:textlit", BOOL,
         f"True when the whole text matches the pattern literal (at most {MAX_REGEX} "
         r"characters; classes, \d \s \w, groups and repetition, but no nested repetition, "
         "backreferences, lookaround or {,n}); SQLite and Python match in time linear in the "
         "text (RE2).", r'REGEX("AB-123", "[A-Z]{2}-\\d+")', True,
         py=lambda s, p: regex.search(full_pattern(p), s),
         sql=lambda a, n: a[0].regexp_match(full_pattern(n[1].value)))
register("REPT", "text", "text,times:int", TEXT,
         f"The text repeated an integer literal number of times (0 to {MAX_REPT}).",
         'REPT("ab", 3)', "ababab", py=lambda s, k: text_ok(s * int(k)),
         sql=lambda a, n: both(
             sa.func.replace(sa.func.hex(sa.func.zeroblob(arg_int(n, 1))), "00", a[0]),
             sa.func.repeat(a[0], arg_int(n, 1)), TEXT))

# dates
register("TODAY", "date", "", DATE, "The current date (UTC).", "TODAY() > DATE(2020, 1, 1)",
         None, sql=lambda a, n: both(sa.func.date("now"),
                                     sa.cast(sa.func.timezone("UTC", sa.func.now()), sa.Date),
                                     DATE))
register("NOW", "date", "", DATETIME, "The current date and time (UTC).",
         "NOW() > DATETIMEVALUE(\"2020-01-01 00:00:00\")", None,
         sql=lambda a, n: both(sa.func.strftime("%Y-%m-%d %H:%M:%f", "now") + "000",
                               sa.func.now(), DATETIME))
register("DATE", "date", "year:number,month:number,day:number", DATE,
         "The date of the year, month and day numbers; null when there is no such date.",
         "DATE(2024, 2, 29)", dt.date(2024, 2, 29), py=py_date, sql=sql_date, fold=True)
register("DATEVALUE", "date", "value:datetime_or_textlit", DATE,
         "The (UTC) date of a datetime, or of a 'YYYY-MM-DD' text literal.",
         'DATEVALUE("2024-03-15")', dt.date(2024, 3, 15), py=py_datevalue, sql=sql_datevalue,
         fold=True)
register("DATETIMEVALUE", "date", "value:date_or_textlit", DATETIME,
         "Midnight UTC of a date, or a 'YYYY-MM-DD HH:MM:SS' (UTC) text literal.",
         'DATETIMEVALUE("2024-03-15 10:30:00")', dt.datetime(2024, 3, 15, 10, 30, tzinfo=dt.UTC),
         py=py_datetimevalue, sql=sql_datetimevalue, fold=True)
register("YEAR", "date", "temporal", num(), "The year of a date (or datetime, in UTC).",
         "YEAR(DATE(2024, 3, 15))", D(2024), py=lambda x: D(to_date(x).year),
         sql=sql_date_part("%Y", "year"))
register("MONTH", "date", "temporal", num(), "The month, 1 to 12.",
         "MONTH(DATE(2024, 3, 15))", D(3), py=lambda x: D(to_date(x).month),
         sql=sql_date_part("%m", "month"))
register("DAY", "date", "temporal", num(), "The day of the month, 1 to 31.",
         "DAY(DATE(2024, 3, 15))", D(15), py=lambda x: D(to_date(x).day),
         sql=sql_date_part("%d", "day"))
register("HOUR", "date", "datetime", num(), "The hour (UTC), 0 to 23.",
         'HOUR(DATETIMEVALUE("2024-03-15 10:30:05"))', D(10), py=lambda x: D(utc(x).hour),
         sql=sql_date_part("%H", "hour"))
register("MINUTE", "date", "datetime", num(), "The minute, 0 to 59.",
         'MINUTE(DATETIMEVALUE("2024-03-15 10:30:05"))', D(30), py=lambda x: D(utc(x).minute),
         sql=sql_date_part("%M", "minute"))
register("SECOND", "date", "datetime", num(), "The whole second, 0 to 59.",
         'SECOND(DATETIMEVALUE("2024-03-15 10:30:05"))', D(5), py=lambda x: D(utc(x).second),
         sql=sql_date_part("%S", "second"))
register("WEEKDAY", "date", "temporal", num(), "The day of the week: 1 Sunday to 7 Saturday.",
         "WEEKDAY(DATE(2024, 3, 15))", D(6),
         py=lambda x: D(to_date(x).isoweekday() % 7 + 1),
         sql=lambda a, n: sql_date_part("%w", "dow")(a, n) + 1)
register("DAYOFYEAR", "date", "temporal", num(), "The day of the year, 1 to 366.",
         "DAYOFYEAR(DATE(2024, 2, 1))", D(32), py=lambda x: D(to_date(x).timetuple().tm_yday),
         sql=sql_date_part("%j", "doy"))
register("ADDMONTHS", "date", "date,months:number", DATE,
         "The date `months` (truncated to an integer) later; the day is clamped to the end of "
         "a shorter month.", "ADDMONTHS(DATE(2024, 1, 31), 1)", dt.date(2024, 2, 29),
         py=py_addmonths, sql=sql_addmonths)
register("ADDDAYS", "date", "temporal,days:number", lambda n: n[0].type,
         "The date or datetime `days` (truncated to an integer) later.",
         "ADDDAYS(DATE(2024, 2, 28), 2)", dt.date(2024, 3, 1), py=add_days_py, sql=sql_adddays)
register("DATEDIFF", "date", "start:temporal,end:temporal", num(),
         "Whole days from `start` to `end` (dates, or datetimes taken as UTC dates).",
         "DATEDIFF(DATE(2024, 1, 1), DATE(2024, 3, 1))", D(60),
         py=lambda a, b: D((to_date(b) - to_date(a)).days), sql=sql_datediff)
register("EOMONTH", "date", "temporal", DATE, "The last day of the date's month.",
         "EOMONTH(DATE(2024, 2, 10))", dt.date(2024, 2, 29),
         py=lambda x: (lambda d: d.replace(day=_month_end(d.year, d.month)))(to_date(x)),
         sql=sql_eomonth)

# picklists
register("ISPICKVAL", "picklist", "picklist,value:textlit", BOOL,
         "True when the picklist has the value (false when it is empty).",
         'ISPICKVAL(stage, "won")', True, py=lambda x, v: x == v, strict=False,
         sql=lambda a, n: sa.func.coalesce(a[0] == a[1], sa.false()))
register("INCLUDES", "picklist", "multi_picklist,value:textlit", BOOL,
         "True when the multi-picklist includes the value (false when it is empty).",
         'INCLUDES(tags, "vip")', True, py=lambda xs, v: bool(xs) and v in xs, strict=False,
         sql=lambda a, n: sa.func.coalesce(
             both(sa.func.instr(a[0], ";" + n[1].value + ";") > 0,
                  sa.func.strpos(a[0], ";" + n[1].value + ";") > 0, BOOL), sa.false()))

# validation rules only
_VALIDATION = frozenset({"validation"})
register("ISNEW", "validation", "", BOOL, "True when the record is being created.",
         "ISNEW()", False, contexts=_VALIDATION)
register("ISCHANGED", "validation", "field", BOOL,
         "True when the field's value differs from its value before this update (false on "
         "create).", "ISCHANGED(stage)", True, contexts=_VALIDATION, strict=False)
register("PRIORVALUE", "validation", "field", lambda n: n[0].type,
         "The field's value before this update (its new value on create).",
         "PRIORVALUE(stage) == \"open\"", True, contexts=_VALIDATION, strict=False)
# fmt: on


def _concat(a: list[SQL]) -> SQL:
    out: SQL = sa.func.coalesce(a[0], "")
    for x in a[1:]:
        out = out.concat(sa.func.coalesce(x, ""))
    return out
