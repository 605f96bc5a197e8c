"""Hostile HTTP input on both databases: always a clear 4xx problem, never a 500, nothing written."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import TenantClient

PROBLEM = "application/problem+json"
JSON = {"Content-Type": "application/json"}
MAX_BODY = 1_048_576  # Settings.max_body_bytes default

EVERY_TYPE = {
    "api_name": "everything",
    "fields": [
        {"api_name": "t", "type": "text", "max_length": 20},
        {"api_name": "lt", "type": "long_text"},
        {"api_name": "n", "type": "number", "precision": 10, "scale": 2},
        {"api_name": "c", "type": "currency"},
        {"api_name": "p", "type": "percent"},
        {"api_name": "b", "type": "boolean"},
        {"api_name": "d", "type": "date"},
        {"api_name": "dt", "type": "datetime"},
        {"api_name": "e", "type": "email"},
        {"api_name": "ph", "type": "phone"},
        {"api_name": "u", "type": "url"},
        {"api_name": "pl", "type": "picklist", "values": [{"value": "a"}, {"value": "b"}]},
        {"api_name": "mp", "type": "multi_picklist", "values": [{"value": "a"}, {"value": "b"}]},
        {"api_name": "lk", "type": "lookup", "target": "account"},
        {"api_name": "j", "type": "json"},
        {"api_name": "an", "type": "auto_number", "format": "E-{000}"},
        {"api_name": "f", "type": "formula", "returns": "number", "expression": "n * 2"},
    ],
}

#: For each writable field: values of the wrong type or shape.
WRONG_VALUES: dict[str, list[Any]] = {
    "t": [1, True, [], {}, 1.5, "x" * 21],
    "lt": [1, False, ["a"], {"a": 1}],
    "n": ["abc", True, [], {}, "1e5", "", " ", "0x10", "1_000", "１２", "NaN", "Infinity", 10**9],
    "c": ["12,50", False, [1], {"v": 1}, "--1"],
    "p": ["50%", True, [], "1e400"],
    "b": ["true", 1, 0, "yes", "", [], {}],
    "d": ["2026-02-30", "2026/01/01", 20260101, True, "2026-01-01T00:00:00", "", "+12026-01-01"],
    "dt": ["yesterday", 1700000000, "2026-13-01T00:00:00Z", True, "2026-01-01T25:00:00", "x" * 41],
    "e": ["not-an-email", 1, "a@", "@b.c", "a@b@c.d", True],
    "ph": ["abc", 123, "12", True, "+1 (555) 555-5555; DROP"],
    "u": ["ftp://x.y", "javascript:alert(1)", "http://", 1, "http://a b.c"],
    "pl": ["c", 1, ["a"], True, "A", " a"],
    "mp": ["a", [1], ["c"], ["a", "a"], {"a": 1}, [["a"]]],
    "lk": ["not-a-uuid", 1, True, ["x"], "00000000-0000-7000-8000-000000000000", "x" * 37],
    "an": ["E-999"],
    "f": [1],
}


def assert_problem(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    """A 4xx problem+json response with the RFC 9457 members and no traceback."""
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == PROBLEM, response.headers
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body)
    assert body["status"] == response.status_code
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body


async def versions(t: TenantClient) -> list[int]:
    response = await t.get("/api/v1/metadata/versions")
    assert response.status_code == 200, response.text
    return [v["version"] for v in response.json()["versions"]]


async def records(t: TenantClient, name: str) -> list[dict[str, Any]]:
    response = await t.get(f"/api/v1/data/{name}", params={"limit": 200})
    assert response.status_code == 200, response.text
    return response.json()["records"]


@pytest.fixture
async def shop(crm: TenantClient) -> TenantClient:
    await crm.define(EVERY_TYPE)
    return crm


def _nested(depth: int) -> bytes:
    return b'{"name": ' + b"[" * depth + b"]" * depth + b"}"


def _deep_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


BAD_BODIES: list[tuple[str, bytes, tuple[int, ...]]] = [
    ("truncated", b'{"name": ', (400,)),
    ("trailing garbage", b'{"name": "x"} x', (400,)),
    ("single quotes", b"{'name': 'x'}", (400,)),
    ("trailing comma", b'{"name": "x",}', (400,)),
    ("invalid utf-8", b'{"name": "\xff\xfe"}', (400,)),
    ("overlong utf-8", b'{"name": "\xc0\xaf"}', (400,)),
    ("utf-8 encoded surrogate", b'{"name": "\xed\xa0\x80"}', (400,)),
    ("utf-16", '{"name": "x"}'.encode("utf-16"), (400,)),
    ("nested 10,000 deep", _nested(10_000), (400,)),
    ("objects nested 10,000 deep", _deep_object(10_000), (400,)),
    ("5,000-digit integer", b'{"name": "x", "revenue": ' + b"9" * 5000 + b"}", (400, 422)),
    ("huge exponent", b'{"name": "x", "revenue": 1e999999999}', (400, 422)),
    ("tiny exponent", b'{"name": "x", "revenue": -1e-999999999, "code": 5}', (400, 422)),
    ("NaN", b'{"name": "x", "revenue": NaN}', (400,)),
    ("Infinity", b'{"name": "x", "revenue": Infinity}', (400,)),
    ("-Infinity", b'{"name": "x", "revenue": -Infinity}', (400,)),
    ("empty", b"", (400,)),
    ("whitespace", b"  \n\t ", (400,)),
    ("null", b"null", (422,)),
    ("array", b'[{"name": "x"}]', (422,)),
    ("string", b'"name"', (422,)),
    ("number", b"42", (422,)),
    ("duplicate keys, last invalid", b'{"name": "x", "name": 5}', (422,)),
    ("NUL escape", b'{"name": "a\\u0000b"}', (422,)),
    ("lone high surrogate", b'{"name": "a\\ud800b"}', (422,)),
    ("lone low surrogate", b'{"name": "\\udfff"}', (422,)),
    ("NUL in a key", b'{"name": "x", "a\\u0000": 1}', (422,)),
    ("surrogate in a key", b'{"name": "x", "\\ud800": 1}', (422,)),
    ("BOM", b'\xef\xbb\xbf{"name": "x"}', (400,)),
]


def assert_case(case: str, response: httpx.Response, *statuses: int) -> dict[str, Any]:
    try:
        return assert_problem(response, *statuses)
    except AssertionError as error:
        raise AssertionError(f"{case}: {error}") from None


async def test_bad_record_bodies_are_refused(crm: TenantClient) -> None:
    account = await crm.create("account", {"name": "Keep", "code": "K"})
    for case, body, statuses in BAD_BODIES:
        create = await crm.post("/api/v1/data/account", content=body, headers=JSON)
        assert_case(case, create, *statuses)
        url = f"/api/v1/data/account/{account['id']}"
        assert_case(case, await crm.patch(url, content=body, headers=JSON), *statuses)
        assert_case(
            case,
            await crm.post("/api/v1/data/account/batch", content=body, headers=JSON),
            *statuses,
        )
    rows = await records(crm, "account")
    assert [(r["name"], r["version"], r["revenue"]) for r in rows] == [("Keep", 1, None)]


async def test_bad_metadata_bodies_are_refused(tenant: TenantClient) -> None:
    await tenant.define({"api_name": "thing", "fields": [{"api_name": "name", "type": "text"}]})
    before = await versions(tenant)
    definition = (await tenant.get("/api/v1/metadata/objects/thing")).json()
    for case, body, statuses in BAD_BODIES:
        for method, url in (
            ("POST", "/api/v1/metadata/apply"),
            ("POST", "/api/v1/metadata/objects"),
            ("POST", "/api/v1/metadata/plan"),
            ("PUT", "/api/v1/metadata/objects/thing"),
            ("POST", "/api/v1/metadata/objects/thing/fields"),
            ("PATCH", "/api/v1/metadata/objects/thing/fields/name"),
        ):
            response = await tenant.request(method, url, content=body, headers=JSON)
            assert_case(f"{case} {method} {url}", response, *statuses, 422)
    assert await versions(tenant) == before
    listed = (await tenant.get("/api/v1/metadata/objects")).json()["objects"]
    assert [o["api_name"] for o in listed] == ["thing"]
    assert (await tenant.get("/api/v1/metadata/objects/thing")).json() == definition


async def test_long_numbers_round_to_the_field(crm: TenantClient) -> None:
    """A 5,000-digit fraction is a real number: it is rounded to the field's scale."""
    body = b'{"name": "x", "revenue": 0.' + b"1" * 5000 + b"5}"
    response = await crm.post("/api/v1/data/account", content=body, headers=JSON)
    assert response.status_code == 201, response.text
    assert response.json()["revenue"] == "0.11"
    for number in (b"1" * 17, b"-" + b"9" * 5000, b"1e17", b"1E+17"):
        body = b'{"name": "y", "revenue": ' + number + b"}"
        response = await crm.post("/api/v1/data/account", content=body, headers=JSON)
        assert_case(number[:20].decode(), response, 400, 422)
    assert [r["name"] for r in await records(crm, "account")] == ["x"]


async def test_wrong_types_for_every_field_type(shop: TenantClient) -> None:
    before = await records(shop, "everything")
    seen = set()
    for name, values in WRONG_VALUES.items():
        for value in values:
            response = await shop.post("/api/v1/data/everything", json={name: value})
            body = assert_problem(response, 422)
            fields = {e["field"] for e in body["errors"]}
            assert fields == {name}, (name, value, body)
            seen.add(name)
    assert seen == {f["api_name"] for f in EVERY_TYPE["fields"]} - {"j"}  # any JSON is JSON
    assert await records(shop, "everything") == before == []


async def test_wrong_types_on_patch_change_nothing(shop: TenantClient) -> None:
    good = await shop.create("everything", {"t": "ok", "n": "1.5", "mp": ["b", "a"]})
    assert good["mp"] == ["a", "b"] and good["an"] == "E-001"
    assert Decimal(good["f"]) == 3
    for name, values in WRONG_VALUES.items():
        for value in values:
            response = await shop.patch(f"/api/v1/data/everything/{good['id']}", json={name: value})
            assert_problem(response, 422)
    after = (await shop.get(f"/api/v1/data/everything/{good['id']}")).json()
    assert after == good


async def test_unknown_and_system_fields_are_refused(crm: TenantClient) -> None:
    body = {
        "name": "x",
        "nope": 1,
        "Name": "y",
        "name; DROP TABLE account": 1,
        "id": "00000000-0000-7000-8000-000000000000",
        "version": 99,
        "deleted_at": None,
        "created_at": "2020-01-01T00:00:00Z",
        "x" * 10_000: 1,
        "\u202eevil": 1,
    }
    response = await crm.post("/api/v1/data/account", json=body)
    errors = assert_problem(response, 422)["errors"]
    codes = {e["code"] for e in errors}
    assert codes == {"unknown-field", "read-only"}
    assert all(len(e["field"]) <= 70 for e in errors)
    assert await records(crm, "account") == []


async def test_oversized_bodies_are_refused(crm: TenantClient) -> None:
    big = json.dumps({"name": "x", "pad": "y" * (MAX_BODY + 10)}).encode()
    truthful = await crm.post("/api/v1/data/account", content=big, headers=JSON)
    assert_problem(truthful, 413)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked
        yield b'{"name": "x", "pad": "'
        for _ in range(MAX_BODY // 65536 + 2):
            yield b"y" * 65536
        yield b'"}'

    streamed = await crm.post("/api/v1/data/account", content=chunks(), headers=JSON)
    assert "content-length" not in streamed.request.headers
    assert_problem(streamed, 413)
    lying = await crm.post(
        "/api/v1/data/account", content=big, headers={**JSON, "Content-Length": "20"}
    )
    assert lying.status_code in (400, 413) and lying.headers["content-type"] == PROBLEM
    for declared in ("99999999999999999999", "-1", "abc"):
        response = await crm.post(
            "/api/v1/data/account",
            content=b'{"name": "ok"}',
            headers={**JSON, "Content-Length": declared},
        )
        assert response.status_code < 500, (declared, response.text)
    assert all(r["name"] == "ok" for r in await records(crm, "account"))
    before = await versions(crm)
    huge = {"objects": [{"api_name": "x", "description": "d" * 2000}] * 10_000}
    response = await crm.post("/api/v1/metadata/apply", json=huge)
    assert_problem(response, 413)
    assert await versions(crm) == before


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
        "json",
        "",
    ],
)
async def test_wrong_content_type_is_415(crm: TenantClient, content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    account = await crm.create("account", {"name": "Keep"})
    before = await versions(crm)
    for method, url in (
        ("POST", "/api/v1/data/account"),
        ("PATCH", f"/api/v1/data/account/{account['id']}"),
        ("POST", "/api/v1/metadata/apply"),
        ("POST", "/api/v1/metadata/objects"),
    ):
        response = await crm.request(method, url, content=b'{"name": "x"}', headers=headers)
        assert_problem(response, 415)
    assert [r["name"] for r in await records(crm, "account")] == ["Keep"]
    assert await versions(crm) == before


async def test_json_content_type_variants_are_accepted(crm: TenantClient) -> None:
    for content_type in (
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "application/merge-patch+json",
    ):
        response = await crm.post(
            "/api/v1/data/account",
            content=b'{"name": "ok"}',
            headers={"Content-Type": content_type},
        )
        assert response.status_code == 201, (content_type, response.text)


UNICODE = [
    "😀👩‍👩‍👧‍👦🏳️‍🌈",
    "客户名称 — 株式会社",
    "שלום עולם مرحبا",
    "\u202ereversed\u202c",
    "e\u0301 vs é",
    "\U0010ffff\ufeff\u200b",
    "tab\tnew\nline\r",
    "'; DROP TABLE account; --",
    'quote " back \\ slash',
]


async def test_unicode_round_trips_exactly(crm: TenantClient) -> None:
    await crm.define(
        {
            "api_name": "note",
            "label": {"en": "Note 😀", "zh-CN": "备注", "ar": "ملاحظة"},
            "fields": [
                {"api_name": "name", "type": "text", "max_length": 40, "label": "名前"},
                {"api_name": "body", "type": "long_text"},
                {"api_name": "data", "type": "json"},
                {
                    "api_name": "kind",
                    "type": "picklist",
                    "values": [{"value": "😀"}, {"value": "中"}],
                },
                {
                    "api_name": "tags",
                    "type": "multi_picklist",
                    "values": [{"value": "ع"}, {"value": "b"}],
                },
            ],
        }
    )
    ids = []
    for text in UNICODE:
        record = await crm.create(
            "note",
            {"name": text, "body": text * 3, "data": {text: [text]}, "kind": "😀", "tags": ["ع"]},
        )
        ids.append(record["id"])
        again = (await crm.get(f"/api/v1/data/note/{record['id']}")).json()
        assert again["name"] == text and again["body"] == text * 3
        assert again["data"] == {text: [text]} and again["kind"] == "😀" and again["tags"] == ["ع"]
    # 40 characters, however many bytes: the emoji count as one each.
    emoji = await crm.create("note", {"name": "😀" * 40})
    assert emoji["name"] == "😀" * 40
    assert_problem(await crm.post("/api/v1/data/note", json={"name": "😀" * 41}), 422)
    for text in UNICODE[:3]:
        literal = json.dumps(text, ensure_ascii=False)
        found = await crm.get("/api/v1/data/note", params={"where": f"name == {literal}"})
        assert found.status_code == 200, found.text
        assert [r["name"] for r in found.json()["records"]] == [text]
    obj = (await crm.get("/api/v1/metadata/objects/note")).json()
    assert obj["label"] == {"en": "Note 😀", "zh-CN": "备注", "ar": "ملاحظة"}
    listed = await crm.get("/api/v1/metadata/objects", headers={"Accept-Language": "zh-CN"})
    assert [o["label"] for o in listed.json()["objects"]][-1] == "备注"


NUL_AND_SURROGATES = ["a\x00b", "\x00", "a\ud800", "\udfff", "\ud83d"]


async def test_nul_and_lone_surrogates_refused_alike(crm: TenantClient) -> None:
    """The same 422 codes on both databases, whichever field type would store them."""
    await crm.define(
        {
            "api_name": "note",
            "fields": [
                {"api_name": "name", "type": "text"},
                {"api_name": "body", "type": "long_text"},
                {"api_name": "data", "type": "json"},
                {"api_name": "mail", "type": "email"},
                {"api_name": "site", "type": "url"},
                {"api_name": "kind", "type": "picklist", "values": [{"value": "a"}]},
                {"api_name": "tags", "type": "multi_picklist", "values": [{"value": "a"}]},
                {"api_name": "link", "type": "lookup", "target": "account"},
                {"api_name": "n", "type": "number"},
                {"api_name": "d", "type": "date"},
            ],
        }
    )
    outcomes = []
    for text in NUL_AND_SURROGATES:
        for field, value in (
            ("name", text),
            ("body", text),
            ("data", {"k": text}),
            ("data", {text: 1}),
            ("data", [[text]]),
            ("mail", f"x{text}@example.com"),
            ("site", f"http://example.com/{text}"),
            ("kind", text),
            ("tags", [text]),
            ("link", text),
            ("n", text),
            ("d", text),
        ):
            body = json.dumps({field: value}).encode()  # ensure_ascii: \u escapes
            response = await crm.post("/api/v1/data/note", content=body, headers=JSON)
            problem = assert_problem(response, 422)
            outcomes.append((field, [(e["field"], e["code"]) for e in problem["errors"]]))
    for field, errors in outcomes:
        assert [f for f, _ in errors] == [field], (field, errors)
    codes = {(f, c) for f, errors in outcomes for f, c in errors}
    assert ("name", "nul-byte") in codes and ("name", "invalid-unicode") in codes
    assert ("data", "nul-byte") in codes and ("data", "invalid-unicode") in codes
    assert await records(crm, "note") == []
    # Also in list parameters, and in metadata: a clear refusal, the same everywhere.
    for text in NUL_AND_SURROGATES:
        for params in (
            {"where": f"name == {json.dumps(text)}"},
            {"where": f"name == '{text}'"},
            {"order_by": text},
            {"fields": f"name,{text}"},
        ):
            response = await crm.get("/api/v1/data/note", params=_encodable(params))
            if response.status_code == 200:
                # A raw surrogate can only travel as invalid UTF-8 bytes, which the server
                # decodes to U+FFFD: a harmless, valid filter.
                assert "where" in params and "\x00" not in text, params
                assert response.json()["records"] == []
            else:
                assert_problem(response, 400, 422)
    before = await versions(crm)
    for text in NUL_AND_SURROGATES:
        for document in (
            {"api_name": "x", "label": text},
            {"api_name": "x", "label": {"en": text}},
            {"api_name": "x", "description": text},
            {"api_name": "x", "fields": [{"api_name": "f", "type": "text", "label": text}]},
            {"api_name": "x", "fields": [{"api_name": "f", "type": "text", "default": text}]},
            {"api_name": "x", "fields": [{"api_name": "f", "type": "json", "default": [text]}]},
            {
                "api_name": "x",
                "fields": [
                    {"api_name": "f", "type": "picklist", "values": [{"value": "v", "label": text}]}
                ],
            },
            {
                "api_name": "x",
                "fields": [{"api_name": "f", "type": "picklist", "values": [{"value": text}]}],
            },
            {"api_name": f"x{text}"},
        ):
            body = json.dumps({"objects": [document]}).encode()
            response = await crm.post("/api/v1/metadata/apply", content=body, headers=JSON)
            assert_problem(response, 422)
            response = await crm.post(
                "/api/v1/metadata/objects", content=json.dumps(document), headers=JSON
            )
            assert_problem(response, 422)
    assert await versions(crm) == before


def _encodable(params: dict[str, str]) -> dict[str, str] | str:
    """Query parameters; lone surrogates go as their (invalid) UTF-8 bytes, percent-encoded."""
    try:
        for value in params.values():
            value.encode()
        return params
    except UnicodeEncodeError:
        from urllib.parse import quote_from_bytes

        return "&".join(
            f"{k}={quote_from_bytes(v.encode('utf-8', 'surrogatepass'))}" for k, v in params.items()
        )


SQLISH = [
    "account; DROP TABLE account",
    "account--",
    'account" OR "1"="1',
    "account' OR '1'='1",
    "pg_catalog.pg_user",
    "../account",
    "account%00",
    "ACCOUNT",
]
#: Fine as field names, refused as object (table) names.
TABLE_ONLY = ["mc_sequences", "sqlite_master", "sqlite_sequence", "pg_class"]


async def test_sql_looking_object_and_field_names(crm: TenantClient) -> None:
    await crm.create("account", {"name": "Keep"})
    before = await versions(crm)
    for name in TABLE_ONLY:
        document = {"api_name": name, "fields": [{"api_name": "name", "type": "text"}]}
        assert_problem(await crm.post("/api/v1/metadata/apply", json={"objects": [document]}), 422)
        assert_problem(await crm.post("/api/v1/metadata/objects", json=document), 422)
    for name in [*SQLISH, "select", "a__b", "x" * 64, "Name", "name\n"]:
        for document in (
            {"api_name": name, "fields": [{"api_name": "name", "type": "text"}]},
            {"api_name": "ok", "fields": [{"api_name": name, "type": "text"}]},
            {"api_name": "ok", "fields": [{"api_name": "x", "type": "lookup", "target": name}]},
            {"api_name": "ok", "fields": [{"api_name": "x", "type": "text"}], "name_field": name},
        ):
            response = await crm.post("/api/v1/metadata/apply", json={"objects": [document]})
            assert_problem(response, 422)
            response = await crm.post("/api/v1/metadata/objects", json=document)
            assert_problem(response, 422)
        response = await crm.get("/api/v1/data/" + quote(name, safe=""))
        assert response.status_code in (404, 422), (name, response.text)
        assert response.headers["content-type"] == PROBLEM
    assert await versions(crm) == before
    assert [r["name"] for r in await records(crm, "account")] == ["Keep"]


LIST_PARAMS: list[dict[str, str]] = [
    {"where": "1; DROP TABLE account"},
    {"where": "name == 'x' or 1=1"},
    {"where": "name == '' OR '1'='1'"},
    {"where": "name == 'x'; --"},
    {"where": "__import__('os').system('id')"},
    {"where": "name.__class__"},
    {"where": "(lambda: 1)()"},
    {"where": "[x for x in name]"},
    {"where": "name == 'a' " + "and name == 'a' " * 2000},
    {"where": "(" * 500 + "True" + ")" * 500},
    {"where": "9" * 5000 + " > 1"},
    {"where": "revenue > 1e999999"},
    {"where": "revenue > float('nan')"},
    {"where": "select * from account"},
    {"where": "id in (select id from account)"},
    {"where": "name LIKE '%'"},
    {"order_by": "name; DROP TABLE account"},
    {"order_by": "(SELECT 1)"},
    {"order_by": "name DESC"},
    {"order_by": "1"},
    {"order_by": "-"},
    {"order_by": "--name"},
    {"order_by": "deleted_at"},
    {"order_by": ",".join(["name"] * 6)},
    {"fields": "name, (select 1)"},
    {"fields": "*"},
    {"fields": "name;drop table account"},
    {"fields": "deleted_at"},
    {"fields": "owner_id.name"},
    {"fields": "account.account.name"},
    {"fields": ",".join(f"f{i}" for i in range(300))},
    {"limit": "1; DROP"},
    {"limit": "1e3"},
    {"limit": "-1"},
    {"limit": "9" * 400},
    {"cursor": "' OR 1=1 --"},
    {"cursor": "A" * 3000},
]


async def test_sql_looking_list_parameters(crm: TenantClient) -> None:
    await crm.create("account", {"name": "Keep"})
    for params in LIST_PARAMS:
        response = await crm.get("/api/v1/data/account", params=params)
        assert_case(str(params)[:80], response, 400, 422)
    assert [r["name"] for r in await records(crm, "account")] == ["Keep"]


async def test_hostile_login_forms(client: httpx.AsyncClient, tenant: TenantClient) -> None:
    url = "/api/v1/auth/token"
    form = "application/x-www-form-urlencoded"
    good = {"tenant": tenant.tenant, "username": f"admin@{tenant.tenant}.test"}
    cases: list[tuple[dict[str, str], bytes | dict[str, str]]] = [
        ({"Content-Type": form}, b""),
        ({"Content-Type": form}, b"tenant=\xff&username=\xfe&password=\xfd"),
        ({"Content-Type": form}, b"tenant=%FF&username=a%FEb&password=%ED%A0%80"),
        ({"Content-Type": form}, b"tenant=a%00&username=a%00@b&password=x%00"),
        ({"Content-Type": form}, b"&&&===&"),
        ({"Content-Type": form}, b"tenant=" + b"a" * 100_000),
        ({"Content-Type": form}, b"tenant=x&username=y&password=" + b"p" * 2_000_000),
        ({"Content-Type": "application/json"}, json.dumps(good | {"password": "x"}).encode()),
        ({"Content-Type": "text/plain"}, b"tenant=x"),
        ({"Content-Type": "multipart/form-data; boundary=zz"}, b"--zz\r\nbroken"),
        ({}, good | {"password": "wrong password"}),
        ({}, good | {"password": "x", "grant_type": "client_credentials"}),
        ({}, good | {"tenant": "x'; DROP SCHEMA metacrm CASCADE; --", "password": "x" * 12}),
        ({}, good | {"tenant": "../../etc/passwd", "password": "x" * 12}),
        ({}, good | {"tenant": "UPPER", "password": "x" * 12}),
        ({}, good | {"username": "' OR 1=1 --", "password": "x" * 12}),
        ({}, good | {"username": "😀@😀", "password": "😀" * 12}),
        ({}, {"tenant": tenant.tenant}),
    ]
    for headers, body in cases:
        if isinstance(body, dict):
            response = await client.post(url, data=body, headers=headers)
        else:
            response = await client.post(url, content=body, headers=headers)
        assert_problem(response, 400, 401, 413, 415, 422)
        assert "access_token" not in response.text


BAD_DEFAULTS = [
    {"api_name": "n", "type": "number", "precision": 5, "default": "123456789"},
    {"api_name": "n", "type": "number", "precision": 5, "default": 1e30},
    {"api_name": "n", "type": "number", "min": 0, "default": -1},
    {"api_name": "t", "type": "text", "max_length": 5, "default": "too long"},
    {"api_name": "e", "type": "email", "default": "not-an-email"},
    {"api_name": "u", "type": "url", "default": "ftp://x"},
    {"api_name": "p", "type": "phone", "default": "abc"},
    {"api_name": "n", "type": "number", "default_expression": "'abc'"},
    {"api_name": "t", "type": "text", "max_length": 3, "default_expression": "'abcdef'"},
    {"api_name": "d", "type": "date", "default_expression": "'soon'"},
]


async def test_defaults_that_no_record_could_hold_are_refused(crm: TenantClient) -> None:
    """A default must be a valid value of its field: refused at definition, never a 500."""
    for field in BAD_DEFAULTS:
        before = await versions(crm)
        document = {"api_name": "thing", "fields": [{"api_name": "name", "type": "text"}, field]}
        response = await crm.post("/api/v1/metadata/apply", json={"objects": [document]})
        if response.status_code == 200 and "default_expression" in field:
            # Only a record shows what an expression gives: a clean refusal, then.
            created = await crm.post("/api/v1/data/thing", json={"name": "x"})
            assert_case(str(field), created, 422)
            assert created.json()["errors"][0]["field"] == field["api_name"]
            assert await records(crm, "thing") == []
            deleted = await crm.delete("/api/v1/metadata/objects/thing", params={"confirm": "true"})
            assert deleted.status_code == 200, deleted.text
            continue
        body = assert_case(str(field), response, 422)
        assert body["errors"][0]["field"].endswith(f"fields/{field['api_name']}/default") or (
            "default_expression" in field
        ), body
        assert await versions(crm) == before


async def test_large_bodies_of_tiny_containers_are_answered(crm: TenantClient) -> None:
    """Parsed off the event loop (a thread), still checked for depth, still a clean 4xx."""
    pad = b"[" + b"[]," * 300_000 + b"[]]"
    body = b'{"name": "x", "pad": ' + pad + b"}"
    assert 256 * 1024 < len(body) < MAX_BODY
    response = await crm.post("/api/v1/data/account", content=body, headers=JSON)
    assert assert_problem(response, 422)["errors"][0]["code"] == "unknown-field"
    deep = b'{"name": ' + b"[" * 100 + b"]" * 100 + b', "pad": "' + b"y" * 300_000 + b'"}'
    assert_problem(await crm.post("/api/v1/data/account", content=deep, headers=JSON), 400)
    big_ok = b'{"name": "ok", "industry": null' + b" " * 300_000 + b"}"
    response = await crm.post("/api/v1/data/account", content=big_ok, headers=JSON)
    assert response.status_code == 201, response.text
    assert [r["name"] for r in await records(crm, "account")] == ["ok"]
