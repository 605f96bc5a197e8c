"""Duplicate rules through the API: block, warn (and saving anyway), report, batch, scans,
rules checked on save, read access in group listings, keys rebuilt for a new rule."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

from metacrm.errors import RecordInvalid
from metacrm.metadata.store import current_version
from metacrm.platform.db import Database
from metacrm.runtime import writes
from metacrm.runtime.actor import Actor
from metacrm.runtime.data.duplicates import find_duplicates
from metacrm.runtime.hooks import Intent, Origin
from tests.conftest import Jobs, TenantClient

ACCOUNT = {
    "api_name": "account",
    "label": "Account",
    "sharing": "private",
    "fields": [
        {"api_name": "name", "type": "text", "label": "Name", "required": True},
        {"api_name": "phone", "type": "phone", "label": "Phone"},
        {"api_name": "contact", "type": "text", "label": "Contact"},
        {"api_name": "city", "type": "text", "label": "City"},
    ],
}
ACCOUNTS = "/api/v1/data/account"


def rule(name: str, action: str, *criteria: dict[str, Any]) -> dict[str, Any]:
    return {"api_name": name, "object": "account", "action": action, "criteria": list(criteria)}


async def define(tenant: TenantClient, *rules: dict[str, Any]) -> None:
    body = {"objects": [ACCOUNT], "duplicate_rules": list(rules)}
    response = await tenant.post("/api/v1/metadata/apply", json=body)
    assert response.status_code == 200, response.text


def problems(response: Any) -> list[tuple[str, str]]:
    return [(e["field"], e["code"]) for e in response.json()["errors"]]


async def test_a_block_rule_refuses_a_similar_company_on_create_and_update(
    tenant: TenantClient,
) -> None:
    await define(tenant, rule("same_company", "block", {"field": "name", "method": "company"}))
    first = await tenant.create("account", {"name": "北京字节跳动科技有限公司", "city": "北京"})
    refused = await tenant.post(ACCOUNTS, json={"name": "（北京）字节跳动科技 "})
    assert refused.status_code == 422, refused.text
    assert problems(refused) == [("name", "duplicate")]
    message = refused.json()["errors"][0]["message"]
    assert first["id"] in message and "北京字节跳动科技有限公司" in message
    # Saving anyway does not lift a block.
    again = await tenant.post(
        ACCOUNTS, params={"allow_duplicates": "true"}, json={"name": "北京字节跳动科技"}
    )
    assert again.status_code == 422
    other = await tenant.create("account", {"name": "ACME Co., Ltd."})
    renamed = await tenant.patch(f"{ACCOUNTS}/{other['id']}", json={"name": "北京字节跳动科技"})
    assert renamed.status_code == 422 and problems(renamed) == [("name", "duplicate")]
    # A change of another field is not checked; the record's own name is no duplicate.
    moved = await tenant.patch(f"{ACCOUNTS}/{first['id']}", json={"city": "上海"})
    assert moved.status_code == 200, moved.text
    same = await tenant.patch(
        f"{ACCOUNTS}/{first['id']}", json={"name": "北京字节跳动科技有限公司 "}
    )
    assert same.status_code == 200, same.text
    # A deleted record is no longer a duplicate; restored, it is again.
    assert (await tenant.delete(f"{ACCOUNTS}/{first['id']}")).status_code == 204
    await tenant.create("account", {"name": "北京字节跳动科技"})
    assert (await tenant.post(f"{ACCOUNTS}/{first['id']}/restore")).status_code == 200
    assert (await tenant.post(ACCOUNTS, json={"name": "acme co ltd"})).status_code == 422


async def test_a_warning_is_refused_unless_saved_anyway_and_then_reported(
    tenant: TenantClient,
) -> None:
    await define(
        tenant,
        rule(
            "same_phone",
            "warn",
            {"field": "phone", "method": "phone"},
        ),
    )
    first = await tenant.create("account", {"name": "Acme", "phone": "13800138000"})
    warned = await tenant.post(
        ACCOUNTS, json={"name": "Acme Beijing", "phone": "+86 138-0013-8000"}
    )
    assert warned.status_code == 422
    assert problems(warned) == [("phone", "duplicate-warning")]
    assert "allow_duplicates" in warned.json()["errors"][0]["message"]
    saved = await tenant.post(
        ACCOUNTS,
        params={"allow_duplicates": "true"},
        json={"name": "Acme Beijing", "phone": "+86 138-0013-8000"},
    )
    assert saved.status_code == 201, saved.text
    pairs = (await tenant.get("/api/v1/duplicates/account/pairs")).json()["pairs"]
    assert [(p["record"]["id"], p["other"]["id"], p["rule"]) for p in pairs] == [
        (saved.json()["id"], first["id"], "same_phone")
    ]
    # PATCH takes the same parameter; the batch endpoint too.
    other = await tenant.create("account", {"name": "Other", "phone": "010-1234 5678"})
    url = f"{ACCOUNTS}/{other['id']}"
    assert (await tenant.patch(url, json={"phone": "0086 13800138000"})).status_code == 422
    patched = await tenant.patch(
        url, params={"allow_duplicates": "true"}, json={"phone": "0086 13800138000"}
    )
    assert patched.status_code == 200, patched.text
    records = [
        {"name": "New one", "phone": "+86 10 1234 0000"},
        {"name": "Dup", "phone": "13800138000"},
    ]
    batch = await tenant.post(f"{ACCOUNTS}/batch", json={"records": records})
    assert batch.status_code == 422, batch.text
    assert problems(batch) == [("records/1/phone", "duplicate-warning")]
    listed = await tenant.get(ACCOUNTS, params={"where": "name == 'New one'"})
    assert listed.json()["records"] == []  # nothing of the refused batch was written
    batch = await tenant.post(
        f"{ACCOUNTS}/batch", params={"allow_duplicates": "true"}, json={"records": records}
    )
    assert batch.status_code == 200, batch.text
    spec = (await tenant.get("/api/v1/openapi.json")).json()
    create_params = spec["paths"]["/api/v1/data/account"]["post"]["parameters"]
    assert "allow_duplicates" in [p["name"] for p in create_params]


async def test_a_report_rule_saves_and_records_the_pair(tenant: TenantClient) -> None:
    await define(
        tenant,
        rule(
            "same_contact",
            "report",
            {"field": "contact", "method": "person_name", "threshold": 0.85},
            {"field": "city", "method": "exact"},
        ),
    )
    first = await tenant.create("account", {"name": "A", "contact": "张伟", "city": "Beijing"})
    elsewhere = await tenant.create(
        "account", {"name": "B", "contact": "Zhang Wei", "city": "Shanghai"}
    )
    same = await tenant.create("account", {"name": "C", "contact": "wei ZHANG", "city": " beijing"})
    pairs = (await tenant.get("/api/v1/duplicates/account/pairs")).json()["pairs"]
    assert [(p["record"]["id"], p["other"]["id"]) for p in pairs] == [(same["id"], first["id"])]
    assert elsewhere["id"] not in str(pairs)
    check = await tenant.post(
        "/api/v1/duplicates/account/check",
        json={"values": {"contact": "Zhang Wie", "city": "BEIJING"}},
    )
    assert check.status_code == 200, check.text
    assert {m["id"] for m in check.json()["matches"]} == {first["id"], same["id"]}
    assert all(m["action"] == "report" and 0.85 <= m["score"] <= 1 for m in check.json()["matches"])
    itself = await tenant.post(
        "/api/v1/duplicates/account/check",
        json={"values": {"contact": "张伟", "city": "Beijing"}, "record_id": first["id"]},
    )
    assert [m["id"] for m in itself.json()["matches"]] == [same["id"]]
    bad = await tenant.post("/api/v1/duplicates/account/check", json={"values": 3, "x": 1})
    assert bad.status_code == 422 and set(problems(bad)) == {
        ("values", "type"),
        ("x", "unknown-field"),
    }


async def test_a_rule_on_a_missing_field_or_a_wrong_method_is_refused_with_its_path(
    tenant: TenantClient,
) -> None:
    await tenant.define(ACCOUNT)
    bad = rule(
        "broken",
        "block",
        {"field": "fax", "method": "phone"},
        {"field": "name", "method": "exact", "threshold": 0.5},
        {"field": "phone", "method": "company"},
    )
    response = await tenant.post("/api/v1/metadata/duplicate-rules", json=bad)
    assert response.status_code == 422, response.text
    assert set(problems(response)) >= {
        ("duplicate_rules/broken/criteria/0/field", "unknown-field"),
        ("duplicate_rules/broken/criteria/1/threshold", "unused-threshold"),
        ("duplicate_rules/broken/criteria/2/field", "wrong-type"),
    }
    gone = await tenant.post(
        "/api/v1/metadata/duplicate-rules",
        json=rule("x", "block", {"field": "name"}) | {"object": "lead"},
    )
    assert gone.status_code == 422
    assert ("duplicate_rules/x/object", "unknown-object") in problems(gone)
    out_of_range = rule("y", "block", {"field": "name", "method": "fuzzy", "threshold": 1.5})
    assert (
        await tenant.post("/api/v1/metadata/duplicate-rules", json=out_of_range)
    ).status_code == 422
    fine = rule("z", "warn", {"field": "name", "method": "company", "threshold": 0.8})
    created = await tenant.post("/api/v1/metadata/duplicate-rules", json=fine)
    assert created.status_code == 201, created.text
    listed = await tenant.get("/api/v1/metadata/duplicate-rules")
    assert [r["api_name"] for r in listed.json()["duplicate-rules"]] == ["z"]


def _noise(rng: random.Random) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    han = "东南西北金银铜铁山水木火土风云雷电龙凤麟龟春夏秋冬梅兰竹菊"
    if rng.random() < 0.5:
        return "".join(rng.choice(letters) for _ in range(10)) + " Ltd."
    return "".join(rng.choice(han) for _ in range(8)) + "有限公司"


PLANTED = [
    ["北京字节跳动科技有限公司", "（北京）字节跳动科技", "北京字节跳动科技有限责任公司 "],
    ["ACME Co., Ltd.", "acme co ltd", "ＡＣＭＥ Corporation"],
    ["Globex Industries Inc.", "Globex Industrie LLC"],
    ["深圳市腾讯计算机系统有限公司", "深圳市腾讯计算机系统公司", "深圳市腾讯计算机系统"],
]


async def _load(tenant: TenantClient, names: list[str], **values: Any) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(names), 200):
        records = [{"name": n, **values} for n in names[start : start + 200]]
        response = await tenant.post(f"{ACCOUNTS}/batch", json={"records": records})
        assert response.status_code == 200, response.text
        ids += [r["id"] for r in response.json()["results"]]
    return ids


async def test_a_scan_finds_the_planted_groups_among_noise(
    tenant: TenantClient, jobs: Jobs
) -> None:
    await define(tenant, rule("same_company", "report", {"field": "name", "method": "company"}))
    rng = random.Random(15)
    noise = list({_noise(rng) for _ in range(300)})
    names = noise + [n for group in PLANTED for n in group]
    rng.shuffle(names)
    ids = dict(zip(names, await _load(tenant, names), strict=True))
    started = await tenant.post("/api/v1/duplicates/account/scan")
    assert started.status_code == 202, started.text
    assert await jobs.run(tenant) >= 1
    found: list[set[str]] = []
    after = None
    while True:
        params = {"limit": 2} | ({"after": after} if after else {})
        page = (await tenant.get("/api/v1/duplicates/account/groups", params=params)).json()
        found += [{m["id"] for m in g["members"]} for g in page["groups"]]
        for group in page["groups"]:
            assert all(m["name"] and 0.9 <= m["score"] <= 1 for m in group["members"])
        after = page["next"]
        if after is None:
            break
    assert sorted(map(sorted, found)) == sorted(sorted(ids[n] for n in g) for g in PLANTED)
    # A second scan replaces the first's groups rather than adding to them.
    await tenant.post("/api/v1/duplicates/account/scan")
    await jobs.run(tenant)
    again = (await tenant.get("/api/v1/duplicates/account/groups", params={"limit": 200})).json()
    assert len(again["groups"]) == len(PLANTED)


async def test_group_listings_leave_out_records_the_reader_cannot_read(
    tenant: TenantClient, jobs: Jobs
) -> None:
    await define(tenant, rule("same_company", "report", {"field": "name", "method": "company"}))
    roles = [
        {"api_name": "rep", "objects": {"account": {"read": True, "create": True, "edit": True}}}
    ]
    assert (await tenant.post("/api/v1/metadata/apply", json={"roles": roles})).status_code == 200
    rep = await tenant.add_user("rep@dup.test", role="rep")
    mine = {"owner_id": rep.user_id}
    a1 = await tenant.create("account", {"name": "Initech Ltd."} | mine)
    a2 = await tenant.create("account", {"name": "Initech Limited"} | mine)
    hidden_a = await tenant.create("account", {"name": "Initech Co."})
    b1 = await tenant.create("account", {"name": "Umbrella Corp."} | mine)
    hidden_b = await tenant.create("account", {"name": "Umbrella Corporation"})
    refused = await rep.post("/api/v1/duplicates/account/scan")
    assert refused.status_code == 403
    assert (await tenant.post("/api/v1/duplicates/account/scan")).status_code == 202
    await jobs.run(tenant)
    admin_view = (await tenant.get("/api/v1/duplicates/account/groups")).json()["groups"]
    assert len(admin_view) == 2
    rep_view = (await rep.get("/api/v1/duplicates/account/groups")).json()
    assert [{m["id"] for m in g["members"]} for g in rep_view["groups"]] == [{a1["id"], a2["id"]}]
    text = str(rep_view)
    assert hidden_a["id"] not in text and hidden_b["id"] not in text and b1["id"] not in text
    check = await rep.post(
        "/api/v1/duplicates/account/check", json={"values": {"name": "Umbrella"}}
    )
    assert [m["id"] for m in check.json()["matches"]] == [b1["id"]]
    # A rep without read on the object gets nothing at all.
    roles.append({"api_name": "outsider", "objects": {}})
    assert (await tenant.post("/api/v1/metadata/apply", json={"roles": roles})).status_code == 200
    outsider = await tenant.add_user("out@dup.test", role="outsider")
    assert (await outsider.get("/api/v1/duplicates/account/groups")).status_code == 403


async def test_a_block_message_never_names_a_record_the_writer_cannot_read(
    tenant: TenantClient,
) -> None:
    await define(tenant, rule("same_company", "block", {"field": "name", "method": "company"}))
    roles = [{"api_name": "rep", "objects": {"account": {"read": True, "create": True}}}]
    assert (await tenant.post("/api/v1/metadata/apply", json={"roles": roles})).status_code == 200
    rep = await tenant.add_user("rep2@dup.test", role="rep")
    secret = await tenant.create("account", {"name": "Secret Holdings Ltd."})
    refused = await rep.post(ACCOUNTS, json={"name": "secret holdings"})
    assert refused.status_code == 422 and problems(refused) == [("name", "duplicate")]
    message = refused.json()["errors"][0]["message"]
    assert secret["id"] not in message and "Secret" not in message


async def test_a_rule_added_to_an_object_with_records_rebuilds_its_keys(
    tenant: TenantClient, jobs: Jobs
) -> None:
    await tenant.define(ACCOUNT)
    old = await tenant.create("account", {"name": "Hooli", "phone": "+86 139 0000 0000"})
    await define(tenant, rule("same_phone", "block", {"field": "phone", "method": "phone"}))
    await jobs.run(tenant)
    refused = await tenant.post(ACCOUNTS, json={"name": "Hooli XYZ", "phone": "13900000000"})
    assert refused.status_code == 422 and old["id"] in refused.json()["errors"][0]["message"]
    # Changed to compare names instead: rebuilt again, the phone no longer matters.
    await define(tenant, rule("same_phone", "block", {"field": "name", "method": "company"}))
    await jobs.run(tenant)
    assert (
        await tenant.post(ACCOUNTS, json={"name": "X", "phone": "13900000000"})
    ).status_code == 201
    assert (await tenant.post(ACCOUNTS, json={"name": "hooli ltd"})).status_code == 422
    # Removed: nothing is refused.
    assert (await tenant.delete("/api/v1/metadata/duplicate-rules/same_phone")).status_code == 200
    assert (await tenant.post(ACCOUNTS, json={"name": "hooli ltd"})).status_code == 201


async def test_merge_writes_are_not_checked_and_find_duplicates_answers_directly(
    app: Any, tenant: TenantClient
) -> None:
    await define(tenant, rule("same_company", "block", {"field": "name", "method": "company"}))
    first = await tenant.create("account", {"name": "Vandelay Industries Ltd."})
    admin = (await tenant.get("/api/v1/users")).json()["users"][0]
    state = app.state.metacrm
    storage = Database.storage_name(tenant.tenant)
    async with state.db.tenant(storage) as conn:
        ct = await state.cache.compiled(conn, storage, await current_version(conn))
        co = ct.object("account")
        actor = Actor(user_id=uuid.UUID(admin["id"]), is_admin=True)
        found = await find_duplicates(conn, ct, co, {"name": "vandelay industries"})
        assert [(str(m.record_id), m.rule, m.action) for m in found] == [
            (first["id"], "same_company", "block")
        ]
        assert found[0].score == 1.0
        with pytest.raises(RecordInvalid):
            await writes.create(conn, ct, co, {"name": "Vandelay Industries"}, Intent(actor))
        merged = await writes.create(
            conn, ct, co, {"name": "Vandelay Industries"}, Intent(actor, origin=Origin.MERGE)
        )
        # Filed all the same: the next ordinary write finds both.
        again = await find_duplicates(conn, ct, co, {"name": "VANDELAY INDUSTRIES"})
        assert {str(m.record_id) for m in again} == {first["id"], str(merged["id"])}
        assert await find_duplicates(conn, ct, co, {"name": "Kramerica"}) == []
