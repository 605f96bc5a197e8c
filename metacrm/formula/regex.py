"""REGEX matching in linear time: Python `re` syntax, read by Python's parser, run by RE2."""

from __future__ import annotations

import functools
import importlib
import re
from typing import Any

import re2

# Python's own parser of `re` syntax (a private module without type stubs): reading patterns
# with it keeps every accepted pattern's meaning exactly Python's, whatever engine runs it.
_parser: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")

#: Compiled patterns kept per process (patterns are at most a few hundred characters).
CACHE_SIZE = 256
_ALLOWED_FLAGS = re.DOTALL | re.UNICODE
_LAST = 0x10FFFF
_SURROGATES = (0xD800, 0xDFFF)


_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # refusals are answered to the user, not logged by RE2


class RegexError(ValueError):
    """A pattern RE2 cannot run with Python's meaning (the message names the construct)."""


def _ranges(matches: re.Pattern[str]) -> list[tuple[int, int]]:
    """The code point ranges (surrogates left out) whose characters `matches` accepts."""
    every = "".join(chr(c) for c in range(_LAST + 1) if not _SURROGATES[0] <= c <= _SURROGATES[1])
    found: list[tuple[int, int]] = []
    for run in matches.finditer(every):
        for lo, hi in _split(ord(run.group()[0]), ord(run.group()[-1])):
            found.append((lo, hi))
    return found


def _split(lo: int, hi: int) -> list[tuple[int, int]]:
    if lo < _SURROGATES[0] <= hi:
        return [(lo, _SURROGATES[0] - 1), (_SURROGATES[1] + 1, hi)]
    return [(lo, hi)]


def _complement(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    gaps: list[tuple[int, int]] = []
    start = 0
    for lo, hi in ranges:
        if lo > start:
            gaps.extend(_split(start, lo - 1))
        start = hi + 1
    if start <= _LAST:
        gaps.extend(_split(start, _LAST))
    return [gap for gap in gaps if not (gap[0] >= _SURROGATES[0] and gap[1] <= _SURROGATES[1])]


def _char(c: int) -> str:
    return chr(c) if chr(c).isascii() and chr(c).isalnum() else f"\\x{{{c:X}}}"


def _class_text(ranges: list[tuple[int, int]]) -> str:
    return "".join(_char(lo) if lo == hi else f"{_char(lo)}-{_char(hi)}" for lo, hi in ranges)


@functools.cache
def _category(name: str) -> str:
    """The members of Python's \\d \\D \\s \\S \\w \\W (str patterns) as RE2 class text."""
    base = {"DIGIT": r"\d+", "SPACE": r"\s+", "WORD": r"\w+"}
    positive = name.removeprefix("CATEGORY_").removeprefix("NOT_")
    ranges = _ranges(re.compile(base[positive]))  # once per class and process
    return _class_text(_complement(ranges) if "NOT_" in name else ranges)


def _unsupported(op: str) -> str:
    constructs = {
        "GROUPREF": r"backreferences (\1)",
        "GROUPREF_EXISTS": "conditional groups",
        "ASSERT": "lookaround ((?=...) or (?<=...))",
        "ASSERT_NOT": "lookaround ((?!...) or (?<!...))",
        "POSSESSIVE_REPEAT": "possessive repetition (*+ ++ ?+)",
        "ATOMIC_GROUP": "atomic groups ((?>...))",
    }
    return f"REGEX patterns cannot use {constructs.get(op, op.lower().replace('_', ' '))}"


def _emit(items: Any) -> str:
    return "".join(_emit_one(str(op), av) for op, av in items.data)


def _emit_one(op: str, av: Any) -> str:
    if op == "LITERAL":
        return _char(av)
    if op == "NOT_LITERAL":
        return f"[^{_char(av)}]"
    if op == "ANY":  # the caller allowed DOTALL only through `(?s)`, checked below
        return "(?s:.)"
    if op == "IN":
        negate = bool(av) and str(av[0][0]) == "NEGATE"
        parts = []
        for kind, value in av[1:] if negate else av:
            kind = str(kind)
            if kind == "LITERAL":
                parts.append(_char(value))
            elif kind == "RANGE":
                parts.append(f"{_char(value[0])}-{_char(value[1])}")
            elif kind == "CATEGORY":
                parts.append(_category(str(value)))
            else:
                raise RegexError(_unsupported(kind))
        return "[" + ("^" if negate else "") + "".join(parts) + "]"
    if op == "BRANCH":
        return "(?:" + "|".join(_emit(branch) for branch in av[1]) + ")"
    if op == "SUBPATTERN":
        _group, add_flags, del_flags, inner = av
        if add_flags or del_flags:
            raise RegexError("REGEX patterns cannot use (? groups")
        return "(?:" + _emit(inner) + ")"
    if op in ("MAX_REPEAT", "MIN_REPEAT"):
        low, high, inner = av
        if high == _c.MAXREPEAT:
            quantifier = {0: "*", 1: "+"}.get(low, f"{{{low},}}")
        elif low == high:
            quantifier = f"{{{low}}}"
        else:
            quantifier = "?" if (low, high) == (0, 1) else f"{{{low},{high}}}"
        # Whether a whole-text match exists does not depend on greed: both emit alike.
        return "(?:" + _emit(inner) + ")" + quantifier
    if op == "AT":
        where = str(av)
        if where in ("AT_BEGINNING", "AT_BEGINNING_STRING"):
            return r"\A"
        if where in ("AT_END", "AT_END_STRING"):
            # `$` is the end of the text, as on PostgreSQL (Python's `$` may also stand
            # before a final newline; RE2 has no lookahead to say so).
            return r"\z"
        raise RegexError(f"REGEX patterns cannot use the anchor {where.lower()}")
    raise RegexError(_unsupported(op))


@functools.lru_cache(maxsize=CACHE_SIZE)
def to_re2(pattern: str) -> str:
    """`pattern` (Python `re` syntax) rewritten for RE2 with the same meaning.

    Raises `re.error` when Python refuses it and `RegexError` when RE2 cannot run it."""
    parsed = _parser.parse(pattern, 0)
    flags = int(parsed.state.flags)
    if flags & ~_ALLOWED_FLAGS:
        raise RegexError("REGEX patterns cannot set flags")
    items = list(parsed.data)
    end = ""
    if items and str(items[-1][0]) == "AT" and str(items[-1][1]) == "AT_END":
        # A final `$` with nothing after it: Python's end, or before a final newline.
        items.pop()
        end = r"\n?\z"
    parsed.data = items
    text = _emit(parsed) + end
    if not flags & re.DOTALL:
        text = text.replace("(?s:.)", r"[^\n]")
    return text


@functools.lru_cache(maxsize=CACHE_SIZE)
def compiled(pattern: str) -> Any:
    """The RE2 program of `pattern` (Python `re` syntax); raises RegexError when too big."""
    try:
        return re2.compile(to_re2(pattern), _OPTIONS)
    except re2.error:
        raise RegexError(
            "REGEX pattern is too large for the matcher; use smaller repetition counts"
        ) from None


def search(pattern: str, text: str) -> bool:
    """True when `pattern` (Python `re` syntax) matches somewhere in `text`, in linear time."""
    program = compiled(pattern)
    try:
        return program.search(text) is not None
    except UnicodeEncodeError:  # a lone surrogate: no database stores one
        return program.search(text.encode("utf-8", "replace").decode()) is not None


def sqlite_regexp(pattern: str | None, value: Any) -> int | None:
    """SQLite's `regexp(pattern, value)` (what `value REGEXP pattern` calls): 1, 0 or NULL."""
    if pattern is None or value is None:
        return None
    return int(search(pattern, value if isinstance(value, str) else str(value)))
