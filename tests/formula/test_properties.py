"""Property-based: random records and well-typed expressions agree in Python, SQLite and PG."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metacrm.formula import check, evaluate, to_sql
from tests.formula.support import DB, MODEL, obj, postgres_url

pytestmark = pytest.mark.slow

quarters = st.integers(-4000, 4000).map(lambda n: Decimal(n) / 4)
small_ints = st.integers(-20, 40).map(Decimal)
words = st.text(alphabet="aAb é%_-", max_size=6)
dates = st.dates(dt.date(1990, 1, 1), dt.date(2040, 12, 31))
datetimes = st.datetimes(dt.datetime(1990, 1, 1), dt.datetime(2040, 1, 1)).map(
    lambda d: d.replace(microsecond=0, tzinfo=dt.UTC)
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


records = st.fixed_dictionaries(
    {
        "name": maybe(words),
        "notes": maybe(words),
        "amount": maybe(quarters),
        "quantity": maybe(small_ints),
        "stage": maybe(st.sampled_from(["open", "won", "lost"])),
        "tags": maybe(st.lists(st.sampled_from(["vip", "eu", "us"]), min_size=1, unique=True)),
        "close_date": maybe(dates),
        "closed_at": maybe(datetimes),
        "is_private": maybe(st.booleans()),
    }
)


def text_lit(s: str) -> str:
    return '"' + s + '"'


def expressions() -> dict[str, st.SearchStrategy[str]]:
    num_leaf = st.one_of(
        st.sampled_from(["amount", "quantity"]),
        quarters.map(lambda d: f"({d})"),
    )
    text_leaf = st.one_of(st.sampled_from(["name", "notes", "stage"]), words.map(text_lit))
    date_leaf = st.one_of(
        st.just("close_date"), dates.map(lambda d: f"DATE({d.year}, {d.month}, {d.day})")
    )
    bool_leaf = st.sampled_from(["is_private", "True", "INCLUDES(tags, 'vip')", "ISBLANK(tags)"])

    def num_ext(n: Any, t: Any, b: Any, d: Any) -> Any:
        return st.one_of(
            st.tuples(n, st.sampled_from("+-*"), n).map(lambda x: f"({x[0]} {x[1]} {x[2]})"),
            n.map(lambda x: f"ABS({x})"),
            n.map(lambda x: f"ROUND({x}, 1)"),
            n.map(lambda x: f"FLOOR({x})"),
            n.map(lambda x: f"CEILING({x})"),
            st.tuples(b, n, n).map(lambda x: f"IF({x[0]}, {x[1]}, {x[2]})"),
            st.tuples(n, n).map(lambda x: f"NULLVALUE({x[0]}, {x[1]})"),
            st.tuples(n, n).map(lambda x: f"MIN({x[0]}, {x[1]})"),
            st.tuples(n, n).map(lambda x: f"MOD({x[0]}, {x[1]})"),
            t.map(lambda x: f"LEN({x})"),
            t.map(lambda x: f"FIND('a', {x})"),
            st.tuples(d, d).map(lambda x: f"DATEDIFF({x[0]}, {x[1]})"),
            d.map(lambda x: f"WEEKDAY({x})"),
            d.map(lambda x: f"MONTH({x}) + DAY({x}) + YEAR({x})"),
        )

    def text_ext(n: Any, t: Any, b: Any, d: Any) -> Any:
        return st.one_of(
            st.tuples(t, t).map(lambda x: f"({x[0]} + {x[1]})"),
            t.map(lambda x: f"UPPER({x})"),
            t.map(lambda x: f"LOWER({x})"),
            t.map(lambda x: f"TRIM({x})"),
            st.tuples(t, n).map(lambda x: f"LEFT({x[0]}, {x[1]})"),
            st.tuples(t, n).map(lambda x: f"RIGHT({x[0]}, {x[1]})"),
            st.tuples(t, n, n).map(lambda x: f"MID({x[0]}, {x[1]}, {x[2]})"),
            t.map(lambda x: f"SUBSTITUTE({x}, 'a', '%_')"),
            st.tuples(b, t, t).map(lambda x: f"IF({x[0]}, {x[1]}, {x[2]})"),
            st.tuples(t, t).map(lambda x: f"BLANKVALUE({x[0]}, {x[1]})"),
            st.sampled_from(["TEXT(amount)", "TEXT(quantity)", "TEXT(is_private)"]),
            d.map(lambda x: f"TEXT({x})"),
        )

    def bool_ext(n: Any, t: Any, b: Any, d: Any) -> Any:
        ops = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
        return st.one_of(
            st.tuples(n, ops, n).map(lambda x: f"({x[0]} {x[1]} {x[2]})"),
            st.tuples(t, ops, t).map(lambda x: f"({x[0]} {x[1]} {x[2]})"),
            st.tuples(d, ops, d).map(lambda x: f"({x[0]} {x[1]} {x[2]})"),
            st.tuples(b, st.sampled_from(["and", "or"]), b).map(
                lambda x: f"({x[0]} {x[1]} {x[2]})"
            ),
            b.map(lambda x: f"(not {x})"),
            t.map(lambda x: f"ISBLANK({x})"),
            n.map(lambda x: f"({x} == None)"),
            st.tuples(t, t).map(lambda x: f"CONTAINS({x[0]}, {x[1]})"),
            st.tuples(t, t).map(lambda x: f"BEGINS({x[0]}, {x[1]})"),
            st.tuples(t, t).map(lambda x: f"ENDS({x[0]}, {x[1]})"),
            st.just("stage in ('won', 'lost')"),
            st.just("closed_at < DATETIMEVALUE('2015-06-01 12:00:00')"),
        )

    def date_ext(n: Any, t: Any, b: Any, d: Any) -> Any:
        return st.one_of(
            st.tuples(d, st.integers(-400, 400)).map(lambda x: f"({x[0]} + {x[1]})"),
            st.tuples(d, st.integers(-30, 30)).map(lambda x: f"ADDMONTHS({x[0]}, {x[1]})"),
            d.map(lambda x: f"EOMONTH({x})"),
            st.tuples(b, d, d).map(lambda x: f"IF({x[0]}, {x[1]}, {x[2]})"),
            st.just("DATEVALUE(closed_at)"),
        )

    def level(n: Any, t: Any, b: Any, d: Any) -> tuple[Any, Any, Any, Any]:
        return (
            st.one_of(n, num_ext(n, t, b, d)),
            st.one_of(t, text_ext(n, t, b, d)),
            st.one_of(b, bool_ext(n, t, b, d)),
            st.one_of(d, date_ext(n, t, b, d)),
        )

    n, t, b, d = num_leaf, text_leaf, bool_leaf, date_leaf
    n, t, b, d = level(n, t, b, d)
    n, t, b, d = level(n, t, b, d)
    n2, t2, b2, d2 = level(n, t, b, d)
    return {"number": n2, "text": t2, "boolean": b2, "date": d2}


EXPRESSIONS = expressions()


@pytest.fixture(scope="module")
def backends(sqlite_db: DB, request: pytest.FixtureRequest) -> list[DB]:
    found = [sqlite_db]
    if postgres_url():
        found.append(request.getfixturevalue("pg_db"))
    return found


def agree(python: Any, sql: Any, db: DB) -> bool:
    if isinstance(python, Decimal) and isinstance(sql, Decimal):
        return abs(python - sql) <= Decimal("1e-6") * max(1, abs(python))
    return python == sql


def run(backends: list[DB], expression: str, record: dict[str, Any]) -> None:
    checked = check(expression, obj(), MODEL, context="formula")
    python = evaluate(checked, record)
    for db in backends:
        with db.engine.begin() as conn:
            db.clear(conn)
            row_id = db.insert(conn, "opportunity", **record)
            got = db.select(conn, to_sql(checked, db.table_for), row_id, "opportunity")
        assert agree(python, got, db), f"{db.name}: {expression} -> {got!r}, Python {python!r}"


SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("kind", ["number", "text", "boolean", "date"])
@SETTINGS
@given(data=st.data(), record=records)
def test_python_sqlite_and_postgres_agree(
    backends: list[DB], kind: str, data: st.DataObject, record: dict[str, Any]
) -> None:
    expression = data.draw(EXPRESSIONS[kind])
    run(backends, expression, record)
