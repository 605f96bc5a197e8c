"""Cells to field values per type, and lookups by natural key, on both databases."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event

from metacrm.errors import BadRequest
from metacrm.metadata.model import FieldDef, ObjectDef
from metacrm.metadata.store import current_version
from metacrm.metadata.values import coerce
from metacrm.platform.db import Database
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledTenant
from metacrm.runtime.data.convert import CellProblem, LookupResolver, convert_cell
from metacrm.runtime.data.sources import Cell
from tests.conftest import TenantClient

FIELDS = ObjectDef.model_validate(
    {
        "api_name": "thing",
        "fields": [
            {"api_name": "name", "type": "text"},
            {"api_name": "count", "type": "number", "precision": 18, "scale": 4},
            {"api_name": "price", "type": "currency"},
            {"api_name": "share", "type": "percent"},
            {"api_name": "flag", "type": "boolean"},
            {"api_name": "day", "type": "date"},
            {"api_name": "moment", "type": "datetime"},
            {"api_name": "email", "type": "email"},
            {"api_name": "phone", "type": "phone"},
            {"api_name": "site", "type": "url"},
            {
                "api_name": "stage",
                "type": "picklist",
                "label": {"en": "Stage", "zh-CN": "阶段"},
                "values": [
                    {"value": "new", "label": {"en": "New", "zh-CN": "新建"}},
                    {"value": "won", "label": {"en": "Closed Won", "zh-CN": "赢单"}},
                    {"value": "old", "label": "Old", "active": False},
                ],
            },
            {
                "api_name": "tags",
                "type": "multi_picklist",
                "values": [
                    {"value": "vip", "label": {"en": "VIP", "zh-CN": "重要客户"}},
                    {"value": "partner", "label": {"en": "Partner", "zh-CN": "合作伙伴"}},
                    {"value": "a_b", "label": "A, B"},
                ],
            },
            {"api_name": "parent", "type": "lookup", "target": "thing"},
            {"api_name": "extra", "type": "json"},
            {"api_name": "total", "type": "formula", "returns": "number", "expression": "count"},
        ],
    }
)


def field(name: str) -> FieldDef:
    return FIELDS.field(name)


def convert(name: str, cell: Cell, **options: Any) -> Any:
    return convert_cell(field(name), cell, **options)


def problem(name: str, cell: Cell, **options: Any) -> CellProblem:
    with pytest.raises(CellProblem) as caught:
        convert(name, cell, **options)
    return caught.value


def test_blank_cells_are_none() -> None:
    for name in ("name", "count", "flag", "day", "stage", "tags", "parent", "extra"):
        assert convert(name, None) is None
        assert convert(name, "  ") is None


def test_text_is_trimmed_and_shown_as_in_a_sheet() -> None:
    assert convert("name", "  Acme  Ltd ") == "Acme  Ltd"
    assert convert("name", 42.0) == "42"
    assert convert("name", 1.5) == "1.5"
    assert convert("name", True) == "TRUE"
    assert convert("name", dt.date(2024, 3, 1)) == "2024-03-01"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("1234.5", "1234.5"),
        ("1,234.50", "1234.50"),
        ("1,234,567", "1234567"),
        ("  -12 ", "-12"),
        ("+7", "7"),
        ("(1,234)", "-1234"),
        ("¥1,234.5", "1234.5"),
        ("￥ 88", "88"),
        ("$-5", "-5"),
        ("-$5", "-5"),
        ("RMB 100", "100"),
        ("100元", "100"),
        ("１２３．５", "123.5"),
        ("1.5e3", "1500"),
        (".5", "0.5"),
        ("15%", "0.15"),
        (1234, "1234"),
        (0.1, "0.1"),
        (Decimal("2.50"), "2.50"),
    ],
)
def test_numbers(cell: Cell, expected: str) -> None:
    assert convert("count", cell) == expected


def test_percent_and_bad_numbers() -> None:
    assert convert("share", "15%") == "15"
    assert convert("share", "15.5 %") == "15.5"
    assert convert("share", 12) == "12"
    assert convert("price", "12%") == "0.12"
    for bad in ("12abc", "1,23", "1.234,5", "--1", "-$-1", "%", "¥", "1,2345", "nan", "inf"):
        found = problem("count", bad)
        assert found.code == "invalid-number"
        assert repr(bad) in found.message
    assert problem("count", True).code == "invalid-number"
    assert problem("count", dt.date(2024, 1, 1)).code == "invalid-number"


@settings(max_examples=200, deadline=None)
@given(
    st.decimals(min_value=-(10**12), max_value=10**12, places=2, allow_nan=False),
    st.sampled_from(["", "¥", "$", "￥"]),
    st.booleans(),
)
def test_formatted_numbers_round_trip(number: Decimal, symbol: str, parens: bool) -> None:
    """A number written with thousands separators and a currency sign reads back exactly."""
    text = f"{symbol}{abs(number):,.2f}"
    if number < 0:
        text = f"({text})" if parens else f"-{text}"
    converted = convert("price", text)
    assert Decimal(converted) == number
    assert coerce(field("price"), converted) == number


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (True, True),
        (0, False),
        ("true", True),
        ("FALSE", False),
        ("Yes", True),
        ("n", False),
        ("1", True),
        ("0", False),
        ("是", True),
        ("否", False),
        ("真", True),
        ("假", False),
        ("对", True),
        ("错", False),
        ("✓", True),
        ("ＹＥＳ", True),
    ],
)
def test_booleans(cell: Cell, expected: bool) -> None:
    assert convert("flag", cell) is expected


def test_bad_booleans() -> None:
    found = problem("flag", "maybe")
    assert found.code == "invalid-boolean"
    assert "是/否" in found.message
    assert problem("flag", 2).code == "invalid-boolean"


@pytest.mark.parametrize(
    "cell",
    [
        "2024-03-01",
        "2024/3/1",
        "2024.3.1",
        "20240301",
        20240301,
        "2024年3月1日",
        "２０２４年３月１日",
        "2024-03-01 00:00:00",
        "1 Mar 2024",
        "Mar 1, 2024",
        dt.date(2024, 3, 1),
        dt.datetime(2024, 3, 1),
    ],
)
def test_dates(cell: Cell) -> None:
    assert convert("day", cell) == "2024-03-01"


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=dt.date(1000, 1, 1)), st.sampled_from(["ymd", "dmy", "mdy"]))
def test_written_dates_round_trip(day: dt.date, order: str) -> None:
    """Every way of writing a date reads back as that date, in the order chosen."""
    y, m, d = day.year, day.month, day.day
    written = [f"{y}-{m:02}-{d:02}", f"{y}/{m}/{d}", f"{y}.{m}.{d}", f"{y}{m:02}{d:02}",
               f"{y}年{m}月{d}日", day.strftime("%d %b %Y")]  # fmt: skip
    if order == "dmy":
        written.append(f"{d:02}/{m:02}/{y}")
    elif order == "mdy":
        written.append(f"{m}/{d}/{y}")
    for text in written:
        converted = convert("day", text, date_order=order)
        assert converted == day.isoformat(), text
        assert coerce(field("day"), converted) == day


def test_date_order_and_bad_dates() -> None:
    assert convert("day", "01/03/2024", date_order="dmy") == "2024-03-01"
    assert convert("day", "03/01/2024", date_order="mdy") == "2024-03-01"
    assert convert("day", "31/03/2024") == "2024-03-31"  # only one reading
    assert convert("day", "03/31/2024") == "2024-03-31"
    ambiguous = problem("day", "01/03/2024")
    assert ambiguous.code == "ambiguous-date"
    assert "dmy" in ambiguous.message
    for bad in ("2024-02-30", "yesterday", "2024-13-01", "13/13/2024"):
        assert problem("day", bad).code == "invalid-date"
    assert problem("day", dt.datetime(2024, 3, 1, 9, 30)).code == "invalid-date"
    assert problem("day", "2024-03-01 09:30").code == "invalid-date"
    assert problem("day", 1.5).code == "invalid-date"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("2024-03-01 09:30", "2024-03-01T09:30:00+00:00"),
        ("2024/3/1 9:30:15", "2024-03-01T09:30:15+00:00"),
        ("2024-03-01T09:30:00Z", "2024-03-01T09:30:00+00:00"),
        ("2024-03-01T09:30:00+08:00", "2024-03-01T09:30:00+08:00"),
        ("2024-03-01 09:30:00.25 -0500", "2024-03-01T09:30:00.250000-05:00"),
        ("2024-03-01 9:30 PM", "2024-03-01T21:30:00+00:00"),
        ("2024年3月1日 12:05 am", "2024-03-01T00:05:00+00:00"),
        ("2024-03-01", "2024-03-01T00:00:00+00:00"),
        (dt.datetime(2024, 3, 1, 9, 30), "2024-03-01T09:30:00+00:00"),
        (dt.date(2024, 3, 1), "2024-03-01T00:00:00+00:00"),
    ],
)
def test_datetimes(cell: Cell, expected: str) -> None:
    converted = convert("moment", cell)
    assert converted == expected
    coerce(field("moment"), converted)  # the write path takes it


def test_a_datetime_without_a_zone_is_read_in_the_imports_time_zone() -> None:
    shanghai = zoneinfo.ZoneInfo("Asia/Shanghai")
    converted = convert_cell(field("moment"), "2024-03-01 09:30", zone=shanghai)
    assert converted == "2024-03-01T09:30:00+08:00"
    assert coerce(field("moment"), converted) == dt.datetime(2024, 3, 1, 1, 30, tzinfo=dt.UTC)
    # A written offset wins over the import's zone.
    assert convert_cell(field("moment"), "2024-03-01T09:30Z", zone=shanghai).endswith("+00:00")


def test_bad_datetimes() -> None:
    assert problem("moment", "2024-03-01 25:00").code == "invalid-datetime"
    assert problem("moment", "2024-03-01 13:00 pm").code == "invalid-datetime"
    assert problem("moment", "2024-03-01 noon").code == "invalid-datetime"


def test_email_phone_and_url() -> None:
    assert convert("email", " ａｌｉ＠ｅｘａｍｐｌｅ．ｃｎ ") == "ali@example.cn"
    assert convert("phone", "＋８６ １３８-0013-8000") == "+86 138-0013-8000"
    assert convert("phone", 13800138000) == "13800138000"
    assert convert("phone", 13800138000.0) == "13800138000"
    assert convert("site", "www.example.com") == "https://www.example.com"
    assert convert("site", " http://x.cn/a ") == "http://x.cn/a"


def test_picklists_by_value_or_label() -> None:
    assert convert("stage", "won") == "won"
    assert convert("stage", "WON") == "won"
    assert convert("stage", "closed won") == "won"
    assert convert("stage", "赢单") == "won"
    assert convert("stage", "ｎｅｗ") == "new"
    assert convert("stage", "Old") == "old"  # inactive: the write path says so
    unknown = problem("stage", "lost")
    assert unknown.code == "unknown-choice"
    assert "'lost'" in unknown.message
    assert "won (Closed Won)" in unknown.message
    assert "old" not in unknown.message


def test_choices_are_read_per_field() -> None:
    """Two versions of a picklist do not share what they accept."""
    before = ObjectDef.model_validate(
        {
            "api_name": "x",
            "fields": [{"api_name": "s", "type": "picklist", "values": [{"value": "a"}]}],
        }
    ).field("s")
    after = ObjectDef.model_validate(
        {
            "api_name": "x",
            "fields": [{"api_name": "s", "type": "picklist", "values": [{"value": "b"}]}],
        }
    ).field("s")
    assert convert_cell(before, "A") == "a"
    assert convert_cell(after, "B") == "b"
    with pytest.raises(CellProblem):
        convert_cell(after, "a")


def test_multi_picklists() -> None:
    assert convert("tags", "vip;partner") == ["vip", "partner"]
    assert convert("tags", "重要客户、合作伙伴") == ["vip", "partner"]
    assert convert("tags", "VIP, partner, vip") == ["vip", "partner"]
    assert convert("tags", "合作伙伴；VIP") == ["partner", "vip"]
    assert convert("tags", "A, B") == ["a_b"]  # a label that holds a separator
    assert problem("tags", "vip;nope").code == "unknown-choice"


def test_lookup_ids_json_and_computed_fields() -> None:
    record_id = uuid.uuid4()
    assert convert("parent", f" {record_id} ") == str(record_id)
    found = problem("parent", "Acme")
    assert found.code == "invalid-id"
    assert convert("extra", '{"a": [1, 2.5]}') == {"a": [1, 2.5]}
    assert convert("extra", 3.0) == 3
    assert problem("extra", "{nope").code == "invalid-json"
    assert problem("total", "1").code == "read-only"


# ------------------------------------------------------------------ lookups

ACCOUNT = {
    "api_name": "account",
    "label": {"en": "Account", "zh-CN": "客户"},
    "sharing": "private",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "code", "type": "text", "external_id": True, "unique": True},
        {"api_name": "number", "type": "number", "unique": True},
        {"api_name": "city", "type": "text"},
        {"api_name": "secret", "type": "text"},
        {"api_name": "since", "type": "date"},
    ],
}
ROLES = [
    {
        "api_name": "rep",
        "objects": {"account": {"create": True, "read": True, "edit": True}},
        "fields": {"account": {"secret": "hidden"}},
    },
    {
        "api_name": "blind",
        "objects": {"account": {"read": True, "view_all": True}},
        "fields": {"account": {"name": "hidden"}},
    },
]


@asynccontextmanager
async def resolving(app: Any, tenant: TenantClient) -> AsyncIterator[tuple[Any, CompiledTenant]]:
    state = app.state.metacrm
    storage = Database.storage_name(tenant.tenant)
    async with state.db.tenant(storage, writes=False) as conn:
        yield conn, await state.cache.compiled(conn, storage, await current_version(conn))


async def test_lookup_resolver(app: Any, tenant: TenantClient) -> None:
    response = await tenant.post(
        "/api/v1/metadata/apply", json={"objects": [ACCOUNT], "roles": ROLES}
    )
    assert response.status_code == 200, response.text
    rep = await tenant.add_user("rep@x.test", role="rep")
    acme = await tenant.create("account", {"name": "Acme Ltd", "code": "A-1", "number": 7})
    await tenant.create("account", {"name": "Twin", "code": "T-1"})
    await tenant.create("account", {"name": "twin ", "code": "T-2"})
    gone = await tenant.create("account", {"name": "Gone Co", "code": "G-1"})
    assert (await tenant.delete(f"/api/v1/data/account/{gone['id']}")).status_code == 204
    mine = await rep.create("account", {"name": "Rep Co", "code": "R-1"})
    numbered = await tenant.create("account", {"name": " Spaced  Out ", "code": "1001"})
    admin = Actor(uuid.uuid4(), is_admin=True)
    rep_actor = Actor(uuid.UUID(str(rep.user_id)), role="rep")

    async with resolving(app, tenant) as (conn, ct):
        account = ct.object("account")
        resolver = LookupResolver(conn, ct, account, admin)
        found = await resolver.resolve(
            ["acme ltd", "  ACME LTD ", "Twin", "Gone Co", "Nobody", acme["id"], None, ""]
        )
        assert found["acme ltd"] == uuid.UUID(acme["id"])
        assert found["ACME LTD"] == uuid.UUID(acme["id"])
        assert (await resolver.resolve(["spaced  out"]))["spaced  out"] == uuid.UUID(numbered["id"])
        assert found[acme["id"]] == uuid.UUID(acme["id"])
        twin = found["Twin"]
        assert isinstance(twin, CellProblem) and twin.code == "ambiguous-lookup"
        assert "2 Account records" in twin.message
        for missing in ("Gone Co", "Nobody"):
            problem = found[missing]
            assert isinstance(problem, CellProblem) and problem.code == "lookup-not-found"
        assert set(found) == {"acme ltd", "ACME LTD", "Twin", "Gone Co", "Nobody", acme["id"]}

        by_code = LookupResolver(conn, ct, account, admin, key="code")
        found = await by_code.resolve(["t-2", "A-1", "Acme Ltd", 1001.0])
        assert found["A-1"] == uuid.UUID(acme["id"])
        assert found["1001.0"] == uuid.UUID(numbered["id"])  # as Excel gives a number
        assert isinstance(found["t-2"], uuid.UUID)
        assert isinstance(found["Acme Ltd"], CellProblem)

        by_number = LookupResolver(conn, ct, account, admin, key="number")
        found = await by_number.resolve([7, 7.0, "7.00", "x"])
        assert found["7"] == found["7.0"] == found["7.00"] == uuid.UUID(acme["id"])
        assert isinstance(found["x"], CellProblem)

        # A rep sees their own records only (the object is private).
        as_rep = LookupResolver(conn, ct, account, rep_actor)
        found = await as_rep.resolve(["Rep Co", "Acme Ltd", acme["id"]])
        assert found["Rep Co"] == uuid.UUID(mine["id"])
        assert isinstance(found["Acme Ltd"], CellProblem)
        assert isinstance(found[acme["id"]], CellProblem)

        for key in ("nope", "since"):
            with pytest.raises(BadRequest):
                LookupResolver(conn, ct, account, admin, key=key)
        with pytest.raises(BadRequest):
            LookupResolver(conn, ct, account, rep_actor, key="secret")

        # A name field the actor cannot see is not matched on; ids still are.
        blind = Actor(uuid.UUID(str(rep.user_id)), role="blind")
        found = await LookupResolver(conn, ct, account, blind).resolve(["Rep Co", mine["id"]])
        assert found[mine["id"]] == uuid.UUID(mine["id"])
        assert isinstance(found["Rep Co"], CellProblem)


async def test_lookup_resolver_caches_and_batches(app: Any, tenant: TenantClient) -> None:
    await tenant.define(ACCOUNT)
    created = [await tenant.create("account", {"name": f"Co {i}"}) for i in range(3)]
    admin = Actor(uuid.uuid4(), is_admin=True)
    async with resolving(app, tenant) as (conn, ct):
        resolver = LookupResolver(conn, ct, ct.object("account"), admin)
        names = [f"Co {i}" for i in range(3)] + [f"Missing {i}" for i in range(1200)]
        found = await resolver.resolve(names)
        assert [found[f"Co {i}"] for i in range(3)] == [uuid.UUID(c["id"]) for c in created]
        assert sum(isinstance(v, CellProblem) for v in found.values()) == 1200

        queries: list[str] = []

        def count(*args: Any) -> None:
            queries.append(str(args[2]))

        sync_engine = conn.sync_engine
        event.listen(sync_engine, "before_cursor_execute", count)
        try:
            again = await resolver.resolve(["Co 1", "Missing 5"])
            assert queries == []  # both answers come from the cache
            await resolver.resolve(["Co 2", "New 1", "New 2"])
        finally:
            event.remove(sync_engine, "before_cursor_execute", count)
        assert again == {"Co 1": found["Co 1"], "Missing 5": found["Missing 5"]}
        assert len(queries) == 1  # the two new names, in one query
