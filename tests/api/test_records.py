"""The generated record endpoints on both databases: CRUD, lists, cursors, ETags, batch."""

from __future__ import annotations

import asyncio

from tests.conftest import TenantClient


async def test_create_get_patch_delete_restore(crm: TenantClient) -> None:
    account = await crm.create("account", {"name": "Acme", "industry": "tech", "revenue": "1234.5"})
    assert account["revenue"] == "1234.50"
    assert account["active"] is True  # the default
    assert account["version"] == 1
    response = await crm.get(f"/api/v1/data/account/{account['id']}")
    assert response.status_code == 200
    assert response.headers["etag"] == '"1"'
    response = await crm.patch(
        f"/api/v1/data/account/{account['id']}",
        json={"name": "Acme Inc"},
        headers={"If-Match": '"1"'},
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "Acme Inc" and response.json()["version"] == 2
    stale = await crm.patch(
        f"/api/v1/data/account/{account['id']}", json={"name": "Old"}, headers={"If-Match": '"1"'}
    )
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"
    assert (await crm.get(f"/api/v1/data/account/{account['id']}")).json()["name"] == "Acme Inc"
    deleted = await crm.delete(f"/api/v1/data/account/{account['id']}")
    assert deleted.status_code == 204
    assert (await crm.get(f"/api/v1/data/account/{account['id']}")).status_code == 404
    bin_ = (await crm.get("/api/v1/data/account/recycle-bin")).json()["records"]
    assert [r["id"] for r in bin_] == [account["id"]]
    restored = await crm.post(f"/api/v1/data/account/{account['id']}/restore")
    assert restored.status_code == 200
    assert (await crm.get(f"/api/v1/data/account/{account['id']}")).status_code == 200


async def test_validation_names_every_failing_field(crm: TenantClient) -> None:
    response = await crm.post(
        "/api/v1/data/account",
        json={
            "industry": "old",
            "revenue": -1,
            "bogus": 1,
            "id": "x",
            "active": "yes",
            "code": "x" * 21,
        },
    )
    assert response.status_code == 422
    body = response.json()
    codes = {(e["field"], e["code"]) for e in body["errors"]}
    assert ("industry", "picklist-value") in codes
    assert ("bogus", "unknown-field") in codes
    assert ("id", "read-only") in codes
    assert ("active", "type") in codes
    assert ("code", "max-length") in codes
    assert ("revenue", "min") in codes
    assert (await crm.get("/api/v1/data/account")).json()["records"] == []
    missing = await crm.post("/api/v1/data/account", json={})
    assert {(e["field"], e["code"]) for e in missing.json()["errors"]} == {("name", "required")}


async def test_unique_and_lookup_rules(crm: TenantClient) -> None:
    await crm.create("account", {"name": "A", "code": "C1"})
    duplicate = await crm.post("/api/v1/data/account", json={"name": "B", "code": "C1"})
    assert duplicate.status_code == 422
    assert duplicate.json()["errors"] == [
        {"field": "code", "code": "unique", "message": "another account record has this code"}
    ]
    dangling = await crm.post(
        "/api/v1/data/opportunity",
        json={"name": "O", "account": "00000000-0000-7000-8000-000000000000"},
    )
    assert dangling.status_code == 422
    assert dangling.json()["errors"][0]["code"] == "lookup-target"


async def test_list_where_order_fields_and_cursor(crm: TenantClient) -> None:
    account = await crm.create("account", {"name": "Acme"})
    for i in range(7):
        await crm.create(
            "opportunity",
            {"name": f"o{i}", "account": account["id"], "amount": i * 100 if i != 3 else None},
        )
    response = await crm.get(
        "/api/v1/data/opportunity",
        params={"order_by": "-amount,name", "fields": "name,amount,account.name", "limit": 3},
    )
    assert response.status_code == 200, response.text
    pages = [response.json()]
    while pages[-1]["next_cursor"]:
        nxt = await crm.get(
            "/api/v1/data/opportunity",
            params={
                "order_by": "-amount,name",
                "fields": "name,amount,account.name",
                "limit": 3,
                "cursor": pages[-1]["next_cursor"],
            },
        )
        assert nxt.status_code == 200, nxt.text
        pages.append(nxt.json())
    names = [r["name"] for p in pages for r in p["records"]]
    assert names == ["o3", "o6", "o5", "o4", "o2", "o1", "o0"]  # NULL first when descending
    assert pages[0]["records"][1] == {
        "id": pages[0]["records"][1]["id"],
        "name": "o6",
        "amount": "600.00",
        "account.name": "Acme",
    }
    filtered = await crm.get(
        "/api/v1/data/opportunity",
        params={"where": "amount >= 400 and name != 'o5'", "order_by": "name"},
    )
    assert filtered.status_code == 200, filtered.text
    assert [r["name"] for r in filtered.json()["records"]] == ["o4", "o6"]


async def test_bad_list_parameters_are_problems(crm: TenantClient) -> None:
    for params in (
        {"order_by": "nope"},
        {"fields": "name,nope"},
        {"fields": "account.nope"},
        {"limit": 100000},
        {"limit": 0},
        {"cursor": "tampered"},
        {"where": "name == "},
        {"where": "__import__('os')"},
        {"where": "1; DROP TABLE account"},
        {"order_by": "name; DROP TABLE account"},
    ):
        response = await crm.get("/api/v1/data/opportunity", params=params)
        assert response.status_code in (400, 422), (params, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert (await crm.get("/api/v1/data/nope")).status_code == 404


async def test_idempotency_key_creates_once(crm: TenantClient) -> None:
    headers = {"Idempotency-Key": "k-1"}
    first = await crm.post("/api/v1/data/account", json={"name": "Once"}, headers=headers)
    again = await crm.post("/api/v1/data/account", json={"name": "Once"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = await crm.post("/api/v1/data/account", json={"name": "Other"}, headers=headers)
    assert other.status_code == 422
    concurrent = await asyncio.gather(
        *[
            crm.post(
                "/api/v1/data/account", json={"name": "Race"}, headers={"Idempotency-Key": "k-2"}
            )
            for _ in range(5)
        ]
    )
    assert {r.status_code for r in concurrent} == {201}
    assert len({r.json()["id"] for r in concurrent}) == 1
    names = [r["name"] for r in (await crm.get("/api/v1/data/account")).json()["records"]]
    assert sorted(names) == ["Once", "Race"]


async def test_batch_upsert_is_all_or_none(crm: TenantClient) -> None:
    await crm.create("account", {"name": "Old", "code": "A1"})
    response = await crm.post(
        "/api/v1/data/account/batch",
        json={
            "upsert_on": "code",
            "records": [{"code": "A1", "name": "Renamed"}, {"code": "A2", "name": "New"}],
        },
    )
    assert response.status_code == 200, response.text
    assert [r["created"] for r in response.json()["results"]] == [False, True]
    bad = await crm.post(
        "/api/v1/data/account/batch",
        json={"upsert_on": "code", "records": [{"code": "A3", "name": "Fine"}, {"code": "A4"}]},
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "records/1/name"
    records = (await crm.get("/api/v1/data/account", params={"order_by": "code"})).json()["records"]
    assert [(r["code"], r["name"]) for r in records] == [("A1", "Renamed"), ("A2", "New")]


async def test_master_detail_cascades_and_lookup_restricts(crm: TenantClient) -> None:
    account = await crm.create("account", {"name": "Acme"})
    opp = await crm.create("opportunity", {"name": "Deal", "account": account["id"]})
    line = await crm.create("line", {"opportunity": opp["id"], "quantity": 2})
    blocked = await crm.delete(f"/api/v1/data/account/{account['id']}")
    assert blocked.status_code == 409
    assert (await crm.delete(f"/api/v1/data/opportunity/{opp['id']}")).status_code == 204
    assert (await crm.get(f"/api/v1/data/line/{line['id']}")).status_code == 404
    assert (await crm.post(f"/api/v1/data/opportunity/{opp['id']}/restore")).status_code == 200
    assert (await crm.get(f"/api/v1/data/line/{line['id']}")).status_code == 200
    assert (await crm.delete(f"/api/v1/data/opportunity/{opp['id']}")).status_code == 204
    assert (await crm.delete(f"/api/v1/data/account/{account['id']}")).status_code == 204
