"""The permission matrix, on both databases: every read path and write path, per role."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.conftest import TenantClient

ACCOUNT = {
    "api_name": "account",
    "sharing": "private",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "code", "type": "text", "external_id": True},
    ],
}
DEAL = {
    "api_name": "deal",
    "sharing": "private",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "account", "type": "lookup", "target": "account"},
        {"api_name": "amount", "type": "currency"},
        {"api_name": "margin", "type": "percent"},
        {"api_name": "stage", "type": "picklist", "values": [{"value": "new"}, {"value": "won"}]},
        {"api_name": "secret_score", "type": "number"},
        {"api_name": "code", "type": "text", "external_id": True},
    ],
}
NOTE = {
    "api_name": "note",
    "sharing": "public_read",
    "fields": [{"api_name": "body", "type": "text"}],
}
FULL = {"create": True, "read": True, "edit": True, "delete": True}
ROLES = [
    {"api_name": "director", "objects": {"deal": FULL, "account": FULL, "note": FULL}},
    {
        "api_name": "rep",
        "reports_to": "director",
        "objects": {"deal": FULL, "account": FULL, "note": FULL},
        "fields": {"deal": {"secret_score": "hidden", "margin": "read"}},
    },
    {"api_name": "analyst", "objects": {"deal": {"read": True}, "note": {"read": True}}},
    {"api_name": "outsider", "objects": {}},
]
SHARING = [
    {
        "api_name": "big_deals",
        "object": "deal",
        "criteria": "amount > 100000",
        "share_with": {"role": "analyst"},
        "access": "read",
    },
    {
        "api_name": "won_deals",
        "object": "deal",
        "criteria": "stage == 'won'",
        "share_with": {"role": "rep"},
        "access": "read",
    },
]


@dataclass
class World:
    admin: TenantClient
    director: TenantClient
    alice: TenantClient  # rep
    bob: TenantClient  # rep
    analyst: TenantClient
    outsider: TenantClient
    alice_deal: dict
    alice_big: dict
    bob_deal: dict
    alice_account: dict


@pytest.fixture
async def world(tenant: TenantClient) -> World:
    response = await tenant.post(
        "/api/v1/metadata/apply",
        json={"objects": [ACCOUNT, DEAL, NOTE], "roles": ROLES, "sharing_rules": SHARING},
    )
    assert response.status_code == 200, response.text
    director = await tenant.add_user("director@x.test", role="director")
    alice = await tenant.add_user("alice@x.test", role="rep", manager_id=director.user_id)
    bob = await tenant.add_user("bob@x.test", role="rep", manager_id=director.user_id)
    analyst = await tenant.add_user("analyst@x.test", role="analyst")
    outsider = await tenant.add_user("outsider@x.test", role="outsider")
    alice_account = await alice.create("account", {"name": "Alice Co", "code": "AC"})
    alice_deal = await alice.create(
        "deal", {"name": "A small", "account": alice_account["id"], "amount": 500, "code": "D1"}
    )
    alice_big = await alice.create("deal", {"name": "A big", "amount": 250000, "code": "D2"})
    bob_deal = await bob.create("deal", {"name": "B small", "amount": 700, "code": "D3"})
    return World(
        tenant,
        director,
        alice,
        bob,
        analyst,
        outsider,
        alice_deal,
        alice_big,
        bob_deal,
        alice_account,
    )


async def names(client: TenantClient, object_name: str = "deal", **params: str) -> list[str]:
    response = await client.get(
        f"/api/v1/data/{object_name}", params={"order_by": "name", **params}
    )
    assert response.status_code == 200, response.text
    return [r["name"] for r in response.json()["records"]]


async def test_lists_show_exactly_what_each_role_may_see(world: World) -> None:
    assert await names(world.admin) == ["A big", "A small", "B small"]
    assert await names(world.alice) == ["A big", "A small"]
    assert await names(world.bob) == ["B small"]
    assert await names(world.director) == ["A big", "A small", "B small"]  # role hierarchy
    assert await names(world.analyst) == ["A big"]  # sharing rule: amount > 100000
    assert (await world.outsider.get("/api/v1/data/deal")).status_code == 403


async def test_a_hidden_record_is_not_found_on_any_path(world: World) -> None:
    bob, target = world.bob, world.alice_deal["id"]
    assert (await bob.get(f"/api/v1/data/deal/{target}")).status_code == 404
    assert (await bob.patch(f"/api/v1/data/deal/{target}", json={"name": "x"})).status_code == 404
    assert (await bob.delete(f"/api/v1/data/deal/{target}")).status_code == 404
    assert (
        await bob.post(f"/api/v1/data/deal/{target}/owner", json={"owner_id": bob.user_id})
    ).status_code == 404
    assert (
        await bob.post(f"/api/v1/data/deal/{target}/shares", json={"user_id": bob.user_id})
    ).status_code == 404
    for where in (f"id == '{target}'", "name == 'A small'", "amount == 500"):
        assert await names(bob, where=where) == []
    # A lookup to a record you cannot see is refused like a missing one; expansions stay empty.
    refused = await bob.post(
        "/api/v1/data/deal", json={"name": "x", "account": world.alice_account["id"]}
    )
    assert refused.status_code == 422 and refused.json()["errors"][0]["code"] == "lookup-target"
    await world.alice.post(
        f"/api/v1/data/deal/{world.alice_deal['id']}/shares", json={"user_id": bob.user_id}
    )
    shared = await bob.get(
        "/api/v1/data/deal", params={"fields": "name,account.name", "where": "name == 'A small'"}
    )
    assert shared.json()["records"][0]["account.name"] is None  # bob still may not see the account
    # Upserting someone else's record by its external id cannot touch it.
    upsert = await bob.post(
        "/api/v1/data/deal/batch",
        json={"upsert_on": "code", "records": [{"code": "D2", "name": "stolen"}]},
    )
    assert upsert.status_code == 422
    assert (await world.alice.get(f"/api/v1/data/deal/{world.alice_big['id']}")).json()[
        "name"
    ] == "A big"


async def test_manual_shares_and_hierarchy_give_exactly_their_access(world: World) -> None:
    alice, bob = world.alice, world.bob
    deal = world.alice_deal["id"]
    share = await alice.post(
        f"/api/v1/data/deal/{deal}/shares", json={"user_id": bob.user_id, "access": "read"}
    )
    assert share.status_code == 201, share.text
    assert (await bob.get(f"/api/v1/data/deal/{deal}")).status_code == 200
    assert (await bob.patch(f"/api/v1/data/deal/{deal}", json={"name": "x"})).status_code == 403
    assert (
        await bob.post(f"/api/v1/data/deal/{deal}/shares", json={"user_id": bob.user_id})
    ).status_code == 403
    edit = await alice.post(
        f"/api/v1/data/deal/{deal}/shares", json={"role": "rep", "access": "edit"}
    )
    assert edit.status_code == 201
    assert (
        await bob.patch(f"/api/v1/data/deal/{deal}", json={"name": "by bob"})
    ).status_code == 200
    # A share never grants more than the role's object permissions: analysts only read deals.
    await alice.post(f"/api/v1/data/deal/{deal}/shares", json={"role": "analyst", "access": "edit"})
    assert (
        await world.analyst.patch(f"/api/v1/data/deal/{deal}", json={"name": "x"})
    ).status_code == 403
    await alice.delete(f"/api/v1/data/deal/{deal}/shares/{edit.json()['id']}")
    removed = await alice.delete(f"/api/v1/data/deal/{deal}/shares/{share.json()['id']}")
    assert removed.status_code == 204
    assert (await bob.get(f"/api/v1/data/deal/{deal}")).status_code == 404
    # The manager edits a subordinate's record; a peer cannot.
    assert (
        await world.director.patch(
            f"/api/v1/data/deal/{world.bob_deal['id']}", json={"name": "B small"}
        )
    ).status_code == 200
    # A won deal is shared with every rep, read only.
    await bob.patch(f"/api/v1/data/deal/{world.bob_deal['id']}", json={"stage": "won"})
    assert "B small" in await names(alice)
    assert (
        await alice.patch(f"/api/v1/data/deal/{world.bob_deal['id']}", json={"name": "x"})
    ).status_code == 403


async def test_ownership_transfer(world: World) -> None:
    deal = world.alice_deal["id"]
    assert (await world.bob.get(f"/api/v1/data/deal/{deal}")).status_code == 404
    moved = await world.alice.post(
        f"/api/v1/data/deal/{deal}/owner", json={"owner_id": world.bob.user_id}
    )
    assert moved.status_code == 200 and moved.json()["owner_id"] == world.bob.user_id
    assert (await world.bob.get(f"/api/v1/data/deal/{deal}")).status_code == 200
    assert (await world.alice.get(f"/api/v1/data/deal/{deal}")).status_code == 404
    bad = await world.bob.post(f"/api/v1/data/deal/{deal}/owner", json={"owner_id": "nobody"})
    assert bad.status_code == 422
    # Owners are not mass-assignable except by administrators.
    refused = await world.bob.post(
        "/api/v1/data/deal", json={"name": "x", "owner_id": world.alice.user_id}
    )
    assert refused.status_code == 422 and refused.json()["errors"][0] == {
        "field": "owner_id",
        "code": "read-only",
        "message": "owner_id cannot be written",
    }
    given = await world.admin.post(
        "/api/v1/data/deal", json={"name": "gift", "owner_id": world.bob.user_id}
    )
    assert given.status_code == 201 and given.json()["owner_id"] == world.bob.user_id


async def test_field_permissions_on_every_path(world: World) -> None:
    alice, deal = world.alice, world.alice_deal["id"]
    record = (await alice.get(f"/api/v1/data/deal/{deal}")).json()
    assert "secret_score" not in record and "margin" in record
    listed = (await alice.get("/api/v1/data/deal")).json()["records"][0]
    assert "secret_score" not in listed
    for params in (
        {"where": "secret_score > 0"},
        {"where": "amount > 1 and ISBLANK(secret_score)"},
        {"order_by": "secret_score"},
        {"fields": "name,secret_score"},
    ):
        hidden = await alice.get("/api/v1/data/deal", params=params)
        unknown_params = {k: v.replace("secret_score", "nonexistent1") for k, v in params.items()}
        unknown = await alice.get("/api/v1/data/deal", params=unknown_params)
        assert hidden.status_code == unknown.status_code == 422, params
        # Exactly the answer an unknown field gets: no side channel.
        assert hidden.text.replace("secret_score", "X") == unknown.text.replace("nonexistent1", "X")
    hidden = await alice.patch(f"/api/v1/data/deal/{deal}", json={"secret_score": 1})
    assert hidden.status_code == 422 and hidden.json()["errors"][0]["code"] == "unknown-field"
    read_only = await alice.patch(f"/api/v1/data/deal/{deal}", json={"margin": 1})
    assert read_only.status_code == 422 and read_only.json()["errors"][0]["code"] == "read-only"
    created = await alice.post("/api/v1/data/deal", json={"name": "n", "secret_score": 3})
    assert created.status_code == 422
    spec = (await alice.get("/api/v1/openapi.json")).json()["components"]["schemas"]
    assert (
        "secret_score" not in spec["Deal"]["properties"] and "margin" in spec["Deal"]["properties"]
    )
    assert "margin" not in spec["Deal_Update"]["properties"]
    assert "Account" in spec
    described = (await alice.get("/api/v1/metadata/objects/deal")).json()
    assert "secret_score" not in [f["api_name"] for f in described["fields"]]
    assert (await alice.get("/api/v1/metadata/objects/deal/fields/secret_score")).status_code == 404
    assert (await alice.get("/api/v1/metadata/roles")).status_code == 403
    admin_spec = (await world.admin.get("/api/v1/openapi.json")).json()["components"]["schemas"]
    assert "secret_score" in admin_spec["Deal"]["properties"]
    outsider = (await world.outsider.get("/api/v1/openapi.json")).json()
    assert "Deal" not in outsider["components"]["schemas"]
    assert (await world.outsider.get("/api/v1/metadata/objects/deal")).status_code == 404
    assert [
        o["api_name"]
        for o in (await world.outsider.get("/api/v1/metadata/objects")).json()["objects"]
    ] == []


async def test_public_read_objects_are_read_only_for_others(world: World) -> None:
    note = await world.alice.create("note", {"body": "hello"})
    assert (await world.bob.get(f"/api/v1/data/note/{note['id']}")).status_code == 200
    assert (
        await world.bob.patch(f"/api/v1/data/note/{note['id']}", json={"body": "x"})
    ).status_code == 403
    assert (await world.bob.delete(f"/api/v1/data/note/{note['id']}")).status_code == 403
    assert (await world.analyst.post("/api/v1/data/note", json={"body": "x"})).status_code == 403


async def test_cursors_cannot_be_forged_to_widen_a_list(world: World) -> None:
    first = await world.bob.get("/api/v1/data/deal", params={"limit": 1, "order_by": "name"})
    assert first.json()["next_cursor"] is None
    admin_page = await world.admin.get("/api/v1/data/deal", params={"limit": 1, "order_by": "name"})
    cursor = admin_page.json()["next_cursor"]
    stolen = await world.bob.get(
        "/api/v1/data/deal", params={"limit": 1, "order_by": "name", "cursor": cursor}
    )
    assert (stolen.status_code == 200 and stolen.json()["records"] == []) or [
        r["name"] for r in stolen.json()["records"]
    ] == ["B small"]
    forged = cursor[:-4] + ("AAAA" if not cursor.endswith("AAAA") else "BBBB")
    assert (
        await world.bob.get(
            "/api/v1/data/deal", params={"cursor": forged, "limit": 1, "order_by": "name"}
        )
    ).status_code == 422


async def test_aggregates_and_process_views_respect_record_access(tenant: TenantClient) -> None:
    deal = {**DEAL, "fields": [*DEAL["fields"][:4], DEAL["fields"][4]]}
    stage_rule = {
        "api_name": "deal_path",
        "object": "deal",
        "field": "stage",
        "stages": [{"value": "new", "next": ["won"]}, {"value": "won", "closed": True}],
    }
    response = await tenant.post(
        "/api/v1/metadata/apply",
        json={
            "objects": [ACCOUNT, deal],
            "roles": [{"api_name": "rep", "objects": {"deal": FULL, "account": FULL}}],
            "stage_rules": [stage_rule],
        },
    )
    assert response.status_code == 200, response.text
    alice = await tenant.add_user("alice@x.test", role="rep")
    bob = await tenant.add_user("bob@x.test", role="rep")
    mine = await alice.create("deal", {"name": "a", "amount": 100, "stage": "new"})
    await bob.create("deal", {"name": "b", "amount": 5000, "stage": "new"})
    funnel = (await alice.get("/api/v1/analytics/funnel/deal_path")).json()
    assert funnel["total"] == 1 and funnel["stages"][0]["amount"] == "100.00"
    admin_funnel = (await tenant.get("/api/v1/analytics/funnel/deal_path")).json()
    assert admin_funnel["total"] == 2
    assert (await bob.get(f"/api/v1/data/deal/{mine['id']}/stage-history")).status_code == 404
    assert (await alice.get(f"/api/v1/data/deal/{mine['id']}/stage-history")).status_code == 200
    assert (await bob.get(f"/api/v1/data/deal/{mine['id']}/history")).status_code == 404
    assert (await bob.get(f"/api/v1/data/deal/{mine['id']}/approvals")).status_code == 404
