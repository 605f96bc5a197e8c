"""One meaning in Python, SQLite and PostgreSQL: nulls, lookups, roll-ups, filters, rules."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from metacrm.errors import FormulaError
from metacrm.formula import check, compile_filter, evaluate, field_sql, to_sql
from tests.formula.support import DB, MODEL, RECORD, obj, py_value

D = Decimal
NULLS: dict[str, Any] = {}


@pytest.mark.parametrize(
    ("expression", "record", "expected"),
    [
        ("amount + 1", NULLS, None),
        ("amount / 0", RECORD, None),
        ("MOD(amount, 0)", RECORD, None),
        ("amount > 1", NULLS, None),
        ("amount == None", NULLS, True),
        ("amount != None", RECORD, True),
        ("ISBLANK(name)", {"name": ""}, True),
        ("ISNULL(name)", {"name": ""}, False),
        ("ISBLANK(tags)", NULLS, True),
        ("name + 'x'", NULLS, "x"),
        ("CONCAT(name, 'x', notes)", NULLS, "x"),
        ("LEN(name)", NULLS, None),
        ("IF(amount > 1, 'a', 'b')", NULLS, "b"),
        ("amount > 1 and is_private", {"amount": D(0)}, False),
        ("amount > 1 and is_private", {"amount": D(5)}, None),
        ("amount > 1 or is_private", {"amount": D(5)}, True),
        ("not is_private", NULLS, None),
        ("stage in ('won', 'lost')", NULLS, None),
        ("stage not in ('won', 'lost')", RECORD, False),
        ("ISPICKVAL(stage, 'won')", NULLS, False),
        ("INCLUDES(tags, 'eu')", NULLS, False),
        ("INCLUDES(tags, 'eu')", RECORD, True),
        ("INCLUDES(tags, 'us')", RECORD, False),
        ("NULLVALUE(amount, 7)", NULLS, D(7)),
        ("BLANKVALUE(name, 'n')", {"name": ""}, "n"),
        ("CASE(stage, 'won', 1, 'lost', 2, 0)", NULLS, D(0)),
        ("MIN(amount, 1)", NULLS, None),
        ("ROUND(-2.5, 0)", NULLS, D(-3)),
        ("ROUND(amount * 1.005, 2)", RECORD, D("1256.75")),
        ("TEXT(amount)", RECORD, "1250.50"),
        ("TEXT(close_date)", RECORD, "2024-03-15"),
        ("TEXT(closed_at)", RECORD, "2024-03-15 10:30:05Z"),
        ("TEXT(is_private)", RECORD, "false"),
        ("close_date + 20", RECORD, dt.date(2024, 4, 4)),
        ("close_date - 1.9", RECORD, dt.date(2024, 3, 14)),
        ("close_date - DATE(2024, 1, 1)", RECORD, D(74)),
        ("closed_at + 1", RECORD, dt.datetime(2024, 3, 16, 10, 30, 5, tzinfo=dt.UTC)),
        ("closed_at + 0.25", RECORD, dt.datetime(2024, 3, 15, 16, 30, 5, tzinfo=dt.UTC)),
        ("closed_at > DATETIMEVALUE('2024-03-15 10:30:04')", RECORD, True),
        ("DATEVALUE(closed_at) == close_date", RECORD, True),
        ("ADDMONTHS(DATE(2023, 3, 31), -1)", NULLS, dt.date(2023, 2, 28)),
        ("ADDMONTHS(close_date, 13)", RECORD, dt.date(2025, 4, 15)),
        ("DATE(2023, quantity, 31)", RECORD, dt.date(2023, 3, 31)),
        ("DATE(2023, quantity - 1, 31)", RECORD, None),
        ("DATE(2023, quantity + 20, 1)", RECORD, None),
        ("VALUE(name)", RECORD, None),
        ("VALUE('  -12.50 ')", NULLS, D("-12.5")),
        ("UPPER('straße é')", NULLS, "STRAßE é"),
        ("name < 'Z'", {"name": "a"}, False),
        ("name < 'b'", {"name": "B"}, True),
        ("RIGHT('abc', 5) + LEFT('abc', -1) + MID('abc', 0, 2)", NULLS, "abcab"),
        ("SUBSTITUTE(name, '', 'x')", {"name": "ab"}, "ab"),
        ("ENDS(name, 'abc')", {"name": "bc"}, False),
        ("ENDS(name, '')", {"name": "bc"}, True),
        ("REGEX(name, 'a.c')", {"name": "a\nc"}, True),
        ("REGEX(name, '[a-z]+')", {"name": "abc\n"}, False),
        ("TRUNC(-2.5) + FLOOR(-2.5) + CEILING(-2.5)", NULLS, D(-7)),
        ("SQRT(-1)", NULLS, None),
        ("expected_revenue", RECORD, D("500.20")),
        ("doubled", RECORD, D("1000.4")),
        ("amount * probability / 100 * 2", RECORD, D("1000.4")),
    ],
)
def test_same_value_everywhere(db: DB, expression: str, record: dict, expected: Any) -> None:
    assert py_value(expression, record) == expected
    got = db.value(expression, record)
    if isinstance(expected, Decimal) and got is not None:
        assert abs(got - expected) < D("1e-9")
    else:
        assert got == expected


def test_lookup_paths_and_rollups(db: DB) -> None:
    account_obj = obj("account")
    with db.engine.begin() as conn:
        db.clear(conn)
        parent = db.insert(conn, "account", name="Parent", industry="bank", region="eu")
        account = db.insert(conn, "account", name="acme", industry="tech", parent=parent)
        other = db.insert(conn, "account", name="other", industry="retail")
        for amount, stage, deleted in [
            (100, "open", None),
            (250.5, "won", None),
            (1000, "open", dt.datetime(2024, 1, 2)),
        ]:
            db.insert(
                conn,
                "opportunity",
                name="o",
                amount=D(amount),
                probability=D(50),
                stage=stage,
                account=account,
                deleted_at=deleted,
            )
        opp = db.insert(conn, "opportunity", name="x", account=account, amount=D(1))
        lonely = db.insert(conn, "opportunity", name="y")

        def sql(expression: str, row: Any, name: str = "opportunity") -> Any:
            checked = check(expression, MODEL.object(name), MODEL, context="formula")
            return db.select(conn, to_sql(checked, db.table_for), row, name)

        assert sql("account.industry", opp) == "tech"
        assert sql("account.parent.industry", opp) == "bank"
        assert sql("account.parent.label", opp) == "PARENT/eu"
        assert sql("account.parent.industry", lonely) is None
        assert sql("account.total_amount", opp) == D("351.50")
        assert sql("account.open_count", opp) == 1
        assert sql("total_amount", other, "account") == 0
        assert sql("open_count", other, "account") == 0
        assert sql("max_expected", account, "account") == D("125.25")
        assert sql("max_expected", other, "account") is None
        assert sql("account.parent.total_amount", opp) == 0

        table = db.tables["opportunity"]
        where = compile_filter(
            "account.industry == 'tech' and amount > 50", obj(), MODEL, db.table_for
        )
        names = conn.execute(
            sa.select(table.c.amount).where(where, table.c.deleted_at.is_(None))
        ).scalars()
        assert sorted(names) == [D("100.00"), D("250.50")]
        accounts = db.tables["account"]
        field = account_obj.field("total_amount")
        rows = conn.execute(
            sa.select(accounts.c.name, field_sql(account_obj, field, MODEL, db.table_for)).order_by(
                accounts.c.name
            )
        ).all()
        assert rows == [("Parent", D(0)), ("acme", D("351.50")), ("other", D(0))]
        doubled = field_sql(obj(), obj().field("doubled"), MODEL, db.table_for)
        assert db.select(conn, doubled, opp, "opportunity") is None
        assert field_sql(obj(), obj().field("amount"), MODEL, db.table_for) is table.c.amount

    values = {"account.industry": "tech", "account.parent.industry": "bank"}
    assert py_value("account.industry + '/' + account.parent.industry", values) == "tech/bank"
    assert py_value("account.total_amount", {"account.total_amount": None}) == 0


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("stage == 'won' and amount > 1000", ["b"]),
        ("name in ('a', 'c')", ["a", "c"]),
        ("close_date == None", ["c"]),
        ("ISBLANK(close_date)", ["c"]),
        ("not (amount > 1000)", ["a"]),
        ("INCLUDES(tags, 'vip')", ["a", "b"]),
        ("CONTAINS(notes, '%')", ["a"]),
        ("BEGINS(name, '_')", []),
        ("YEAR(close_date) == 2024 and MONTH(close_date) >= 2", ["b"]),
        ("closed_at >= DATETIMEVALUE('2024-02-01 00:00:00')", ["b"]),
        ("is_private", ["b"]),
        ("is_private == False", ["a"]),
    ],
)
def test_compile_filter(db: DB, where: str, expected: list[str]) -> None:
    table = db.tables["opportunity"]
    rows = [
        {
            "name": "a",
            "amount": D(10),
            "stage": "won",
            "tags": ["vip"],
            "notes": "50%",
            "close_date": dt.date(2024, 1, 5),
            "closed_at": dt.datetime(2024, 1, 5, 9, tzinfo=dt.UTC),
            "is_private": False,
        },
        {
            "name": "b",
            "amount": D(5000),
            "stage": "won",
            "tags": ["eu", "vip"],
            "close_date": dt.date(2024, 2, 5),
            "closed_at": dt.datetime(2024, 2, 5, 9, tzinfo=dt.UTC),
            "is_private": True,
        },
        {"name": "c", "amount": D(2000), "stage": "open"},
    ]
    with db.engine.begin() as conn:
        db.clear(conn)
        for row in rows:
            db.insert(conn, "opportunity", **row)
        condition = compile_filter(where, obj(), MODEL, db.table_for)
        got = (
            conn.execute(sa.select(table.c.name).where(condition).order_by(table.c.name))
            .scalars()
            .all()
        )
    assert got == expected
    python = [r["name"] for r in rows if py_value(where, r, context="filter") is True]
    assert python == expected


def test_filter_binds_literals_and_only_resolved_columns(sqlite_db: DB) -> None:
    condition = compile_filter(
        'name == "x\'; drop table account; --"', obj(), MODEL, sqlite_db.table_for
    )
    text = str(condition.compile(compile_kwargs={}))
    assert "drop" not in text and ":param_1" in text
    with pytest.raises(FormulaError) as info:
        compile_filter("amount", obj(), MODEL, sqlite_db.table_for)
    assert info.value.errors[0].field == "where"
    with pytest.raises(FormulaError, match="unknown field"):
        compile_filter("nosuch == 1", obj(), MODEL, sqlite_db.table_for)


def test_validation_context(db: DB) -> None:
    rule = obj().validation_rules[0].condition
    checked = check(rule, obj(), MODEL, context="validation")
    prior = {"stage": "won"}
    assert evaluate(checked, {"stage": "lost"}, prior=prior) is True
    assert evaluate(checked, {"stage": "won"}, prior=prior) is False
    assert evaluate(checked, {"stage": "lost"}, is_new=True) is False
    assert db.value(rule, {"stage": "lost"}, context="validation", prior=prior) is True
    assert db.value(rule, {"stage": "won"}, context="validation", prior=prior) is False
    assert db.value(rule, {"stage": "lost"}, context="validation") is False
    assert db.value("ISNEW()", {}, context="validation") is True
    assert py_value("ISNEW()", {}, context="validation", is_new=True) is True
    assert py_value("PRIORVALUE(amount) == 2", {"amount": D(2)}, context="validation") is True
    assert (
        py_value("ISCHANGED(amount)", {"amount": D(2)}, context="validation", prior={"amount": 2})
        is False
    )


def test_now_and_today_use_the_clock() -> None:
    now = dt.datetime(2024, 5, 6, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))
    assert py_value("TODAY()", {}, now=now) == dt.date(2024, 5, 7)
    assert py_value("NOW()", {}, now=now) == now
    assert py_value("TODAY() - DATE(2024, 5, 1)", {}, now=now) == 6


def test_runtime_limits() -> None:
    with pytest.raises(FormulaError, match="longer than"):
        py_value(
            "SUBSTITUTE(SUBSTITUTE(notes, 'a', REPT('a', 100)), 'a', REPT('a', 100))",
            {"notes": "a" * 20},
        )
    with pytest.raises(FormulaError, match="out of range"):
        py_value("((amount ** 64) ** 64) ** 64", {"amount": D(10) ** 30})


def test_closure_is_cached() -> None:
    checked = check("amount * 2", obj(), MODEL, context="formula")
    assert evaluate(checked, {"amount": 2}) == 4
    closure = checked.cache["closure"]
    assert evaluate(checked, {"amount": 2.5}) == D("5.0")
    assert checked.cache["closure"] is closure
