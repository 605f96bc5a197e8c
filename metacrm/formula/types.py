"""Value types of the expression language, its typed tree (IR) and its limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Where an expression may be used; each context allows a different set of functions.
CONTEXTS = ("formula", "default", "validation", "filter", "rollup_filter")

# ------------------------------------------------------------------ limits
MAX_LENGTH = 4000  #: characters of expression text
MAX_DEPTH = 50  #: nesting depth of the syntax tree
MAX_NODES = 1000  #: syntax tree nodes (bounds evaluation steps: the language has no loops)
MAX_NUMBER_DIGITS = 30  #: digits of a numeric literal
MAX_EXPONENT = 64  #: largest exponent of POWER and **
MAX_LITERAL_TEXT = 1000  #: characters of a text literal
MAX_TEXT = 100_000  #: characters of any text value computed in Python
MAX_LIST = 1000  #: items of an `in (...)` list
MAX_PATH = 5  #: lookups crossed by one field path
MAX_REGEX = 200  #: characters of a REGEX pattern
MAX_REGEX_REPEATS = 3  #: variable repetitions (* + ? {n,} {n,m}) in a REGEX pattern
MAX_REPT = 100  #: largest count of REPT

NUMERIC = frozenset({"number", "currency", "percent"})
TEXTUAL = frozenset({"text", "picklist"})
TEMPORAL = frozenset({"date", "datetime"})

#: Field type -> value type of the language.
FIELD_KINDS = {
    "text": "text",
    "long_text": "text",
    "email": "text",
    "phone": "text",
    "url": "text",
    "auto_number": "text",
    "number": "number",
    "currency": "currency",
    "percent": "percent",
    "boolean": "boolean",
    "date": "date",
    "datetime": "datetime",
    "picklist": "picklist",
    "multi_picklist": "multi_picklist",
    "lookup": "id",
    "master_detail": "id",
}

#: System columns every record has, and their value types.
SYSTEM_KINDS = {
    "id": "id",
    "owner_id": "id",
    "created_by": "id",
    "updated_by": "id",
    "created_at": "datetime",
    "updated_at": "datetime",
}


@dataclass(frozen=True)
class T:
    """A value type; `scale` is the number of decimals a number is shown with."""

    kind: str
    scale: int = 0

    @property
    def numeric(self) -> bool:
        return self.kind in NUMERIC

    @property
    def textual(self) -> bool:
        return self.kind in TEXTUAL

    def __str__(self) -> str:
        return self.kind


NULL = T("null")
TEXT = T("text")
BOOL = T("boolean")
DATE = T("date")
DATETIME = T("datetime")
ID = T("id")


def num(scale: int = 0, kind: str = "number") -> T:
    return T(kind, max(0, min(scale, 18)))


@dataclass(eq=False)
class Node:
    """One node of the typed tree both compilers walk.

    kinds: lit, field (path, name), rollup (path, rollup def, child value node, filter node),
    call (name), arith (op), cmp (op), isnull (negate), in (negate), and, or, not, neg,
    round (scale: an inlined formula field's value), prior (name), ischanged (name), isnew.
    """

    kind: str
    type: T
    args: list[Node] = field(default_factory=list)
    value: Any = None
    line: int = 1
    column: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
