"""REGEX runs on RE2 in Python and SQLite with Python's meaning, and agrees with PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from metacrm.errors import FormulaError
from metacrm.formula import check, regex
from metacrm.formula.functions import NUMBER_PATTERN, check_regex, full_pattern
from tests.formula.support import DB, MODEL, obj, py_value

LONGEST = 1_000_000  # the longest text a long_text field allows


@pytest.fixture(scope="module")
def re2_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DB]:
    """SQLite with the REGEXP function the platform registers on its connections."""
    path: Path = tmp_path_factory.mktemp("regex") / "r.db"
    engine = sa.create_engine(f"sqlite:///{path}")

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("regexp", 2, regex.sqlite_regexp, deterministic=True)

    yield DB(engine)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request: pytest.FixtureRequest) -> DB:
    return request.getfixturevalue("re2_sqlite" if request.param == "sqlite" else "pg_db")


def expression(pattern: str) -> str:
    return "REGEX(notes, " + repr(pattern) + ")"


# Patterns and texts on which Python, SQLite and PostgreSQL give one answer.
EVERYWHERE = [
    (r"[A-Z]{2}-\d+", "AB-123", True),
    (r"[A-Z]{2}-\d+", "AB-12x", False),
    ("a.c", "a\nc", True),
    ("[a-z]+", "abc\n", False),
    ("abc$", "abc\n", False),
    ("abc$", "abc", True),
    ("^abc", "abc", True),
    ("abc", "xabcx", False),
    ("(ab|cd)(ef){2,3}", "cdefef", True),
    ("(ab|cd)(ef){2,3}", "abef", False),
    (r"\w+@\w+\.com", "me@x.com", True),
    (r"[^\W_]+", "ab_c", False),
    (r"\s*x\s*", " x\t", True),
    ("colou?r", "color", True),
    ("colou?r", "colouur", False),
    ("[]a]+", "]a]", True),
    (r"[a\-z]+", "-az", True),
    (r"\.\*\(\)\[\]\{\}\|\^\$\\/", ".*()[]{}|^$\\/", True),
    ("a{3}", "aaa", True),
    ("a{3}", "aaaa", False),
    ("a{2,}", "a", False),
    ("x?y*z+", "zz", True),
    (r"[0-9]+(\.[0-9])?", "12.5", True),
    ("(a)(b)?", "a", True),
    ("a|b|", "", True),
    ("é+中", "éé中", True),
    ("[^a]", "\n", True),
    ("AbC", "abc", False),
    ("[a-z]*[a-z]*[a-z]*x", "a" * 4096, False),
    ("[a-z]*[a-z]*[a-z]*x", "a" * 4096 + "x", True),
]

# Python's \d \s \w are Unicode classes (and stay so); PostgreSQL's follow its locale.
UNICODE = [
    (r"\d+", "٣٤", True),
    (r"\w+", "é_1中", True),
    (r"\s", "\u00a0", True),
    (r"\s", "\u2003", True),
    (r"\W", "中", False),
    (r"[^\d]", "٣", False),
    (r"\S+", "a\u3000", False),
    (r"[\s\d]+", " ٣\u2028", True),
    (r"[^\W\d_]+", "héllo", True),
    (r"\D\S\W", "a!?", True),
]


@pytest.mark.parametrize(("pattern", "text", "expected"), EVERYWHERE)
def test_same_answer_in_python_sqlite_and_postgresql(
    any_db: DB, pattern: str, text: str, expected: bool
) -> None:
    assert check_regex(pattern) is None
    if len(text) < 100:  # Python's `re` takes about 10 s on the 4,096 "a"s
        # Today's meaning is Python's `re`: RE2 keeps it.
        assert (re.search(full_pattern(pattern), text) is not None) is expected
    assert py_value(expression(pattern), {"notes": text}) is expected
    assert any_db.value(expression(pattern), {"notes": text}) is expected


@pytest.mark.parametrize(("pattern", "text", "expected"), UNICODE)
def test_unicode_classes_keep_pythons_meaning(
    re2_sqlite: DB, pattern: str, text: str, expected: bool
) -> None:
    assert (re.search(full_pattern(pattern), text) is not None) is expected
    assert py_value(expression(pattern), {"notes": text}) is expected
    assert re2_sqlite.value(expression(pattern), {"notes": text}) is expected


def test_nulls_stay_null(any_db: DB) -> None:
    assert py_value(expression("a*"), {"notes": None}) is None
    assert any_db.value(expression("a*"), {"notes": None}) is None
    assert regex.sqlite_regexp(None, "a") is None
    assert regex.sqlite_regexp("a", None) is None
    assert regex.sqlite_regexp("a", "a") == 1
    assert regex.sqlite_regexp("b", "a") == 0


def test_value_and_isnumber_keep_their_pattern(re2_sqlite: DB) -> None:
    # NUMBER_PATTERN ends in `$`: Python's end, or before a final newline.
    for text in ["12\n", " 12 ", "12\n\n", "1.5", ".5", "x", "", "+-1"]:
        python = re.search(NUMBER_PATTERN, text) is not None
        assert regex.search(NUMBER_PATTERN, text) is python, text
        assert py_value("ISNUMBER(notes)", {"notes": text}) is python
        assert re2_sqlite.value("ISNUMBER(notes)", {"notes": text}) is python


@pytest.mark.parametrize(
    "pattern", ["[a-z]*[a-z]*[a-z]*x", ".*.*.*[0-9]", r"\w*\s*\w*!", "a*a*a*b", "(ab)*a*c"]
)
def test_slow_shapes_answer_on_the_longest_text(any_db: DB, pattern: str) -> None:
    # Hang guard only (no timing asserted): Python's backtracking `re` took tens of seconds
    # on 4,096 characters with three repetitions; RE2 reads each character once (and
    # PostgreSQL's engine runs these shapes without backtracking too).
    assert check_regex(pattern) is None
    text = "a" * LONGEST
    assert py_value(expression(pattern), {"notes": text}) is False
    assert any_db.value(expression(pattern), {"notes": text}) is False


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(a)\1", r"backreferences such as \1 are not supported"),
        (r"\\\1", r"backreferences such as \1"),
        ("(?=a)a", "lookaround such as (?= is not supported"),
        ("(?!a)b", "lookaround"),
        ("b(?<=b)", "lookaround"),
        ("b(?<!a)", "lookaround"),
        ("(?>a)", "cannot use (? groups"),
        ("(?i)a", "cannot use (? groups"),
        ("a*+", "possessive repetition"),
        ("a{,3}", "write {0,n} rather than {,n}"),
        (r"\w{999}", "too large for the matcher"),
        ("(a+)+", "cannot repeat a group that contains a repetition"),
        ("a?a?a?a?aaaa", "at most 3 variable repetitions"),
    ],
)
def test_refused_constructs_name_regex_and_the_construct(pattern: str, message: str) -> None:
    with pytest.raises(FormulaError) as info:
        check(expression(pattern), obj(), MODEL, context="filter")
    assert "REGEX" in info.value.detail
    assert message in info.value.detail, info.value.detail


def test_escaped_backslash_before_a_digit_is_no_backreference() -> None:
    assert check_regex(r"\\1") is None
    assert regex.search(full_pattern(r"\\1"), "\\1")


def test_patterns_are_compiled_once() -> None:
    regex.compiled.cache_clear()
    for _ in range(3):
        regex.search(full_pattern("[a-c]+x"), "abcx")
    info = regex.compiled.cache_info()
    assert (info.misses, info.hits) == (1, 2)
    assert info.maxsize == regex.CACHE_SIZE


ATOMS = ["a", "b", ".", "[ab]", "[^a]", r"\d", r"\w", r"\s", r"\W", r"\S", "(a|b)", "(ab)", "é"]
QUANTIFIERS = ["", "", "*", "+", "?", "{2}", "{1,2}", "*?"]
pieces = st.tuples(st.sampled_from(ATOMS), st.sampled_from(QUANTIFIERS)).map("".join)
branches = st.lists(pieces, min_size=0, max_size=4).map("".join)
patterns = st.lists(branches, min_size=1, max_size=2).map("|".join)
texts = st.text(alphabet="ab1 _\né٣\u00a0!", max_size=8)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(pattern=patterns, text=texts)
def test_re2_agrees_with_python_re(pattern: str, text: str) -> None:
    if check_regex(pattern) is not None:
        return
    full = full_pattern(pattern)
    assert regex.search(full, text) is (re.search(full, text) is not None), regex.to_re2(full)
