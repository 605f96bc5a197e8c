"""Exports of lists to CSV and Excel through GET /api/v1/data/{object}/export, on both
databases: record and field access as in the list API, typed Excel cells, lookup names,
labels in zh-CN, the export_data permission, the audit entry, the CSV formula guard."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from openpyxl import load_workbook

from metacrm.errors import QueryInvalid
from metacrm.runtime.data import export
from metacrm.runtime.data.csv_guard import FORMULA_STARTS, guard, unguard
from metacrm.runtime.data.export import (
    PAGE,
    Cell,
    ExportColumn,
    ExportPlan,
    csv_chunks,
)
from tests.conftest import TenantClient
from tests.web.test_hostile import HOSTILE, LEAKS

ACCOUNT = {
    "api_name": "account",
    "label": {"en": "Account", "zh-CN": "客户"},
    "sharing": "public_read",
    "fields": [
        {"api_name": "name", "type": "text", "label": {"en": "Name", "zh-CN": "名称"}},
        {"api_name": "revenue", "type": "currency", "label": {"en": "Revenue", "zh-CN": "收入"}},
        {"api_name": "active", "type": "boolean"},
        {"api_name": "founded", "type": "date"},
        {"api_name": "seen_at", "type": "datetime"},
        {
            "api_name": "tags",
            "type": "multi_picklist",
            "values": [{"value": "vip"}, {"value": "new"}, {"value": "cn"}],
        },
        {"api_name": "meta", "type": "json"},
        {"api_name": "notes", "type": "long_text"},
    ],
}
DEAL = {
    "api_name": "deal",
    "sharing": "private",
    "fields": [
        {"api_name": "name", "type": "text", "label": {"en": "Name", "zh-CN": "名称"}},
        {
            "api_name": "account",
            "type": "lookup",
            "target": "account",
            "label": {"en": "Account", "zh-CN": "客户"},
        },
        {"api_name": "amount", "type": "currency", "label": {"en": "Amount", "zh-CN": "金额"}},
        {"api_name": "secret", "type": "text"},
        {
            "api_name": "stage",
            "type": "picklist",
            "values": [{"value": "new"}, {"value": "won"}],
            "default": "new",
        },
    ],
}
REP = {
    "api_name": "rep",
    "permissions": ["export_data"],
    "objects": {
        "deal": {"create": True, "read": True, "edit": True},
        "account": {"read": True},
    },
    "fields": {"deal": {"secret": "hidden"}},
}
CLERK = {"api_name": "clerk", "objects": {"deal": {"create": True, "read": True, "edit": True}}}
VIEWS = [
    {
        "api_name": "big_deals",
        "object": "deal",
        "columns": ["name", "amount", "account", "secret"],
        "filter": "amount >= 100",
        "sort": "-amount",
    }
]
ATTACHMENT = re.compile(r'^attachment; filename="deal-\d{8}-\d{6}\.(csv|xlsx)"$')


async def _setup(tenant: TenantClient) -> dict[str, Any]:
    document = {"objects": [ACCOUNT, DEAL], "roles": [REP, CLERK], "list_views": VIEWS}
    applied = await tenant.post("/api/v1/metadata/apply", json=document)
    assert applied.status_code == 200, applied.text
    acme = await tenant.create(
        "account",
        {
            "name": "Acme 中国",
            "revenue": "1234.50",
            "active": True,
            "founded": "2001-02-03",
            "seen_at": "2024-05-06T07:08:09Z",
            "tags": ["vip", "cn"],
            "meta": {"tier": 1, "名": "甲"},
            "notes": 'line one\nline two, with "quotes"',
        },
    )
    rep = await tenant.add_user("rep@x.test", role="rep")
    clerk = await tenant.add_user("clerk@x.test", role="clerk")
    mine = [
        await rep.create("deal", {"name": f"Rep deal {i}", "amount": 50 * i, "account": acme["id"]})
        for i in range(1, 4)
    ]
    theirs = await tenant.create("deal", {"name": "Admin deal", "amount": 999, "secret": "S3CRET"})
    await tenant.patch(f"/api/v1/data/deal/{mine[0]['id']}", json={"secret": "rep-hidden"})
    return {"acme": acme, "rep": rep, "clerk": clerk, "mine": mine, "theirs": theirs}


def _csv(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.content.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs for Chinese
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))


async def test_rep_exports_what_the_list_api_shows_them(tenant: TenantClient) -> None:
    s = await _setup(tenant)
    rep: TenantClient = s["rep"]
    response = await rep.get("/api/v1/data/deal/export")
    assert response.headers["content-type"].startswith("text/csv")
    assert ATTACHMENT.match(response.headers["content-disposition"])
    rows = _csv(response)
    header = rows[0]
    assert header[:6] == ["id", "name", "account", "account.name", "amount", "stage"]
    assert "secret" not in header and "owner_id" in header and "created_at" in header
    assert "rep-hidden" not in response.text and "S3CRET" not in response.text
    listed = (await rep.get("/api/v1/data/deal", params={"limit": 200})).json()["records"]
    assert {r[0] for r in rows[1:]} == {r["id"] for r in listed} == {d["id"] for d in s["mine"]}
    by_id = {r["id"]: r for r in listed}
    for row in rows[1:]:
        record = by_id[row[0]]
        assert row[1] == record["name"] and row[4] == record["amount"]
        assert row[2] == s["acme"]["id"] and row[3] == "Acme 中国"
    # The administrator sees every deal, the hidden field too.
    everything = _csv(await tenant.get("/api/v1/data/deal/export"))
    assert len(everything) == 5 and "secret" in everything[0]


async def test_hidden_fields_are_refused_like_the_list_api(tenant: TenantClient) -> None:
    s = await _setup(tenant)
    rep: TenantClient = s["rep"]
    for params in (
        {"where": 'secret == "S3CRET"'},
        {"fields": "name,secret"},
        {"order_by": "-secret"},
        {"fields": "name,account.nope"},
        {"where": "name =="},
    ):
        listed = await rep.get("/api/v1/data/deal", params=params)
        exported = await rep.get("/api/v1/data/deal/export", params=params)
        assert listed.status_code in (400, 403, 422), listed.text
        assert exported.status_code == listed.status_code, (params, exported.text)
        assert exported.headers["content-type"] == "application/problem+json"
        assert exported.json()["errors"] == listed.json()["errors"]
        assert "S3CRET" not in exported.text


async def test_export_needs_the_export_data_permission(tenant: TenantClient) -> None:
    s = await _setup(tenant)
    clerk: TenantClient = s["clerk"]
    assert (await clerk.get("/api/v1/data/deal")).status_code == 200  # may list, not export
    for params in ({}, {"format": "xlsx"}, {"view": "big_deals"}, {"view": "no_such_view"}):
        refused = await clerk.get("/api/v1/data/deal/export", params=params)
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "export_data" in refused.json()["detail"]
    entries = (await tenant.get("/api/v1/audit", params={"action": "export"})).json()["entries"]
    assert entries == []


async def test_bad_parameters_are_problems_before_any_byte(tenant: TenantClient) -> None:
    s = await _setup(tenant)
    rep: TenantClient = s["rep"]
    unknown = await rep.get("/api/v1/data/deal/export", params={"colour": "red"})
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["field"] == "colour"
    for params in ({"format": "pdf"}, {"headers": "names"}, {"limit": "0"}):
        bad = await rep.get("/api/v1/data/deal/export", params=params)
        assert bad.status_code == 422, bad.text
        assert bad.headers["content-type"] == "application/problem+json"
    missing = await rep.get("/api/v1/data/nothing/export")
    assert missing.status_code == 404
    no_view = await rep.get("/api/v1/data/deal/export", params={"view": "no_such_view"})
    assert no_view.status_code == 404


async def test_xlsx_has_typed_cells_and_a_bold_frozen_header(tenant: TenantClient) -> None:
    await _setup(tenant)
    response = await tenant.get("/api/v1/data/account/export", params={"format": "xlsx"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    book = load_workbook(io.BytesIO(response.content))
    sheet = book.active
    assert sheet is not None and sheet.freeze_panes == "A2"
    rows = list(sheet.iter_rows())
    assert all(c.font.b for c in rows[0])
    header = [c.value for c in rows[0]]
    row = dict(zip(header, [c.value for c in rows[1]], strict=True))
    assert row["name"] == "Acme 中国"
    assert isinstance(row["revenue"], int | float | Decimal) and Decimal(
        str(row["revenue"])
    ) == Decimal("1234.5")
    assert row["active"] is True
    assert row["founded"] == dt.datetime(2001, 2, 3)  # Excel keeps dates as datetimes
    assert row["seen_at"] == dt.datetime(2024, 5, 6, 7, 8, 9)  # in UTC
    assert row["tags"] == "vip;cn"
    assert json.loads(row["meta"]) == {"tier": 1, "名": "甲"}
    assert row["notes"] == 'line one\nline two, with "quotes"'
    assert row["version"] == 1 and isinstance(row["created_at"], dt.datetime)


async def test_csv_values_read_back_as_written(tenant: TenantClient) -> None:
    s = await _setup(tenant)
    rows = _csv(await tenant.get("/api/v1/data/account/export"))
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["id"] == s["acme"]["id"]
    assert row["revenue"] == "1234.50" and row["active"] == "true"
    assert row["founded"] == "2001-02-03" and row["seen_at"] == "2024-05-06T07:08:09Z"
    assert row["tags"] == "vip;cn" and json.loads(row["meta"]) == {"tier": 1, "名": "甲"}
    assert row["notes"] == 'line one\nline two, with "quotes"'  # RFC 4180 quoting


async def test_lookup_names_beside_ids_unless_fields_are_named(tenant: TenantClient) -> None:
    s = await _setup(tenant)
    rep: TenantClient = s["rep"]
    named = _csv(await rep.get("/api/v1/data/deal/export", params={"fields": "name,account"}))
    assert named[0] == ["id", "name", "account"]
    asked = _csv(
        await rep.get(
            "/api/v1/data/deal/export", params={"fields": "account.name,name", "order_by": "name"}
        )
    )
    assert asked[0] == ["id", "account.name", "name"]
    assert [r[1:] for r in asked[1:]] == [["Acme 中国", f"Rep deal {i}"] for i in range(1, 4)]


async def test_a_list_view_gives_filter_sort_and_readable_columns(tenant: TenantClient) -> None:
    s = await _setup(tenant)
    rep: TenantClient = s["rep"]
    rows = _csv(await rep.get("/api/v1/data/deal/export", params={"view": "big_deals"}))
    # The view's hidden column is left out, as the list page leaves it out.
    assert rows[0] == ["id", "name", "amount", "account", "account.name"]
    assert [r[1] for r in rows[1:]] == ["Rep deal 3", "Rep deal 2"]  # amount >= 100, largest first
    reordered = _csv(
        await rep.get(
            "/api/v1/data/deal/export",
            params={"view": "big_deals", "order_by": "amount", "where": "amount < 150"},
        )
    )
    assert [r[1] for r in reordered[1:]] == ["Rep deal 2"]


async def test_labels_in_the_users_language(tenant: TenantClient) -> None:
    s = await _setup(tenant)
    rep: TenantClient = s["rep"]
    response = await rep.get(
        "/api/v1/data/deal/export",
        params={"headers": "labels", "fields": "name,account,account.name,amount"},
        headers={"Accept-Language": "zh-CN"},
    )
    assert _csv(response)[0] == ["ID", "名称", "客户", "客户名称", "金额"]
    english = await rep.get(
        "/api/v1/data/deal/export", params={"headers": "labels", "format": "xlsx"}
    )
    sheet = load_workbook(io.BytesIO(english.content)).active
    assert sheet is not None
    header = [c.value for c in next(sheet.iter_rows())]
    assert header[:5] == ["ID", "Name", "Account", "Account Name", "Amount"]


async def test_each_export_is_audited_with_its_row_count(tenant: TenantClient) -> None:
    s = await _setup(tenant)
    rep: TenantClient = s["rep"]
    response = await rep.get(
        "/api/v1/data/deal/export", params={"format": "xlsx", "where": "amount > 60", "limit": "1"}
    )
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None and sheet.max_row == 2  # the header and the one row asked for
    entries = (await tenant.get("/api/v1/audit", params={"action": "export"})).json()["entries"]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["object"] == "deal" and entry["user_id"] == rep.user_id
    detail = entry["detail"]
    assert detail["rows"] == 1 and detail["format"] == "xlsx" and detail["headers"] == "api"
    assert detail["where"] == "amount > 60" and detail["limit"] == 1
    assert detail["fields"][:2] == ["id", "name"] and "error" not in detail


async def test_formula_starts_are_guarded_in_csv(tenant: TenantClient) -> None:
    await _setup(tenant)
    hostile = [
        '=HYPERLINK("http://evil.test","x")',
        "+1 415 555 0100",
        "-2+3",
        "@SUM(A1)",
        "\tTAB",
        "'quoted",
        "plain 'text",
    ]
    for i, name in enumerate(hostile):
        await tenant.create("deal", {"name": name, "amount": -5 - i})
    rows = _csv(
        await tenant.get(
            "/api/v1/data/deal/export", params={"fields": "name,amount", "where": "amount < 0"}
        )
    )
    names = {r[1]: r[2] for r in rows[1:]}
    assert set(names) == {guard(n) for n in hostile}
    for written in names:
        assert not written.startswith(FORMULA_STARTS) or written == "+1 415 555 0100"
    assert {unguard(n) for n in names} == set(hostile)  # what the import takes back
    assert "plain 'text" in names and "''quoted" in names
    assert "+1 415 555 0100" in names  # a phone number calls nothing: left as written
    assert "'-2+3" in names and '\'=HYPERLINK("http://evil.test","x")' in names
    assert sorted(names.values()) == sorted(f"{-5 - i}.00" for i in range(len(hostile)))


async def test_csv_is_sent_a_page_at_a_time() -> None:
    plan = ExportPlan("item", (ExportColumn("id", "text", "ID"),), None, None, None, None)

    async def rows() -> AsyncIterator[list[Cell]]:
        for i in range(PAGE * 2 + 1):
            yield [f"row {i}"]

    chunks = [chunk async for chunk in csv_chunks(plan, rows())]
    assert len(chunks) == 4  # the header, two full pages, the rest
    assert b"".join(chunks).count(b"\r\n") == PAGE * 2 + 2


def test_guard_and_unguard_are_inverse() -> None:
    for text in ["", "'", "''", "=1", "'=1", "a", "'a", "-", "@", "\r\n", "1'", "+86 1", "'+8"]:
        assert unguard(guard(text)) == text
    assert unguard("'abc") == "'abc"  # an apostrophe the export did not add stays


@pytest.mark.slow
async def test_admin_export_streams_every_row(tenant: TenantClient) -> None:
    await tenant.define({"api_name": "item", "fields": [{"api_name": "n", "type": "number"}]})
    total = 2_500
    for start in range(0, total, 200):
        chunk = [{"n": i} for i in range(start, min(start + 200, total))]
        done = await tenant.post("/api/v1/data/item/batch", json={"records": chunk})
        assert done.status_code == 200, done.text
    # 2,500 rows come in five keyset pages: a page lost or repeated shows in the numbers.
    rows = _csv(await tenant.get("/api/v1/data/item/export", params={"order_by": "-n"}))
    numbers = [int(r[1]) for r in rows[1:]]
    assert numbers == list(range(total - 1, -1, -1))
    xlsx = await tenant.get("/api/v1/data/item/export", params={"format": "xlsx"})
    sheet = load_workbook(io.BytesIO(xlsx.content), read_only=True).active
    assert sheet is not None and sum(1 for _ in sheet.iter_rows(min_row=2)) == total
    entries = (await tenant.get("/api/v1/audit", params={"action": "export"})).json()["entries"]
    assert sorted(e["detail"]["rows"] for e in entries) == [total, total]


async def test_an_export_failing_midway_is_audited_with_the_rows_sent(
    tenant: TenantClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _setup(tenant)
    monkeypatch.setattr(export, "PAGE", 1)  # a page, and a chunk, per row
    shaped = export.export_cells
    calls = []

    def failing(plan: ExportPlan, record: dict[str, Any]) -> list[Cell]:
        calls.append(record["id"])
        if len(calls) == 3:
            raise QueryInvalid("the list changed under the export", [])
        return shaped(plan, record)

    monkeypatch.setattr(export, "export_cells", failing)
    response = await tenant.get("/api/v1/data/deal/export", params={"order_by": "name"})
    assert response.status_code == 200  # the header was sent before the failure
    assert response.text.count("\r\n") == 3  # the header and two rows, then it stopped
    entries = (await tenant.get("/api/v1/audit", params={"action": "export"})).json()["entries"]
    assert [(e["detail"]["rows"], e["detail"]["error"]) for e in entries] == [
        (2, "the list changed under the export")
    ]


async def test_a_read_only_api_key_exports_and_is_audited(tenant: TenantClient) -> None:
    await _setup(tenant)
    created = await tenant.post("/api/v1/api-keys", json={"name": "bi", "scope": "read"})
    assert created.status_code == 201, created.text
    key = TenantClient(tenant.http, tenant.tenant, created.json()["key"])
    rows = _csv(await key.get("/api/v1/data/deal/export", params={"fields": "name"}))
    assert len(rows) == 5
    entries = (await tenant.get("/api/v1/audit", params={"action": "export"})).json()["entries"]
    assert len(entries) == 1 and entries[0]["api_key_id"] == created.json()["id"]
    assert entries[0]["detail"]["rows"] == 4


async def test_hostile_parameters_get_problems_never_a_500(tenant: TenantClient) -> None:
    s = await _setup(tenant)
    rep: TenantClient = s["rep"]
    names = ("format", "view", "where", "fields", "order_by", "headers", "limit")
    for value in HOSTILE:
        for name in names:
            answer = await rep.get("/api/v1/data/deal/export", params={name: value})
            assert answer.status_code < 500, (name, value, answer.text[:300])
            if answer.status_code != 200:
                assert answer.headers["content-type"] == "application/problem+json"
            assert not any(leak in answer.text for leak in LEAKS), (name, value)
            assert "S3CRET" not in answer.text and "rep-hidden" not in answer.text
    assert (await rep.get("/api/v1/data/%00/export")).status_code in (400, 404)
