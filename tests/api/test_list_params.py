"""Query parameters on both databases: unknown ones are a 400 naming them; `count=true` totals."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.conftest import TenantClient

ACCOUNT = {
    "api_name": "account",
    "sharing": "private",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "tier", "type": "number"},
        {
            "api_name": "kind",
            "type": "picklist",
            "values": [{"value": "partner"}, {"value": "customer"}],
        },
    ],
}
FULL = {"create": True, "read": True, "edit": True, "delete": True}
ROLES = [{"api_name": "rep", "objects": {"account": FULL}}]


@pytest.fixture
async def reps(tenant: TenantClient) -> tuple[TenantClient, TenantClient, TenantClient]:
    applied = await tenant.post(
        "/api/v1/metadata/apply", json={"objects": [ACCOUNT], "roles": ROLES}
    )
    assert applied.status_code == 200, applied.text
    alice = await tenant.add_user("alice@x.test", role="rep")
    bob = await tenant.add_user("bob@x.test", role="rep")
    for i in range(5):
        await alice.create("account", {"name": f"A{i}", "tier": i})
    for i in range(3):
        await bob.create("account", {"name": f"B{i}", "tier": i})
    return tenant, alice, bob


def unknown(response: Any) -> list[str]:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].endswith("bad-request")
    assert {e["code"] for e in body["errors"]} == {"unknown-parameter"}
    return [e["field"] for e in body["errors"]]


async def test_unknown_query_parameters_are_named(
    reps: tuple[TenantClient, TenantClient, TenantClient],
) -> None:
    admin, alice, _bob = reps
    listed = await alice.get("/api/v1/data/account", params={"group_by": "tier", "limt": "1"})
    assert unknown(listed) == ["group_by", "limt"]
    # Every /api/v1 route, generated or fixed, checks what it is given.
    for url in (
        "/api/v1/data/account/recycle-bin",
        "/api/v1/metadata/objects",
        "/api/v1/metadata/objects/account",
        "/api/v1/approvals",
        "/api/v1/users",
        "/api/v1/openapi.json",
        "/api/v1/ui/account/list",
    ):
        assert unknown(await admin.get(url, params={"bogus": "1"})) == ["bogus"], url
    record = await alice.create("account", {"name": "x"})
    got = await alice.get(f"/api/v1/data/account/{record['id']}", params={"fields": "name"})
    assert unknown(got) == ["fields"]
    patched = await alice.patch(
        f"/api/v1/data/account/{record['id']}", params={"dry_run": "true"}, json={"tier": 1}
    )
    assert unknown(patched) == ["dry_run"]
    assert (await alice.get(f"/api/v1/data/account/{record['id']}")).json()["tier"] is None
    # Declared parameters still work, and an unknown one wins over a bad known one.
    ok = await alice.get("/api/v1/data/account", params={"limit": "2", "order_by": "name"})
    assert ok.status_code == 200
    assert unknown(await alice.get("/api/v1/data/account", params={"limit": "x", "y": "1"})) == [
        "y"
    ]
    # The form declares that it reads picklist values (any field's) to choose a layout.
    form = await alice.get("/api/v1/ui/account/form", params={"kind": "partner"})
    assert form.status_code == 200, form.text


async def test_count_totals_what_the_caller_may_see(
    reps: tuple[TenantClient, TenantClient, TenantClient],
) -> None:
    admin, alice, bob = reps

    async def page(client: TenantClient, url: str = "/api/v1/data/account", **params: str) -> Any:
        response = await client.get(url, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    assert "total" not in await page(alice)
    assert "total" not in await page(alice, count="false")
    first = await page(alice, count="true", limit="2", order_by="name")
    assert first["total"] == 5 and len(first["records"]) == 2
    second = await page(
        alice, count="true", limit="2", order_by="name", cursor=first["next_cursor"]
    )
    assert second["total"] == 5  # the whole list, whatever the page
    assert (await page(alice, count="true", where="tier >= 3"))["total"] == 2
    assert (await page(bob, count="true"))["total"] == 3
    assert (await page(bob, count="true", where="name == 'A1'"))["total"] == 0
    assert (await page(admin, count="true"))["total"] == 8
    # The recycle bin counts the same way.
    records = (await page(alice, order_by="name"))["records"]
    for record in records[:2]:
        assert (await alice.delete(f"/api/v1/data/account/{record['id']}")).status_code == 204
    bin_url = "/api/v1/data/account/recycle-bin"
    assert (await page(alice, bin_url, count="true"))["total"] == 2
    assert (await page(bob, bin_url, count="true"))["total"] == 0
    assert (await page(alice, count="true"))["total"] == 3
    bad = await alice.get("/api/v1/data/account", params={"count": "maybe"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "count"


async def test_the_live_document_describes_count(
    reps: tuple[TenantClient, TenantClient, TenantClient],
) -> None:
    admin = reps[0]
    spec = (await admin.get("/api/v1/openapi.json")).json()
    for path in ("/api/v1/data/account", "/api/v1/data/account/recycle-bin"):
        parameters = {p["name"]: p for p in spec["paths"][path]["get"]["parameters"]}
        assert parameters["count"]["schema"]["type"] == "boolean"
    page = spec["paths"]["/api/v1/data/account"]["get"]["responses"]["200"]
    assert "total" in page["content"]["application/json"]["schema"]["properties"]


async def test_a_cursor_carries_no_text_of_its_query(tenant: TenantClient) -> None:
    """The cursor ties itself to its query by a digest: the `where` text (which may name
    values) never travels back inside it. The ownership fuzz once decoded one and found a
    value the caller had written into its own filter."""
    await tenant.define(ACCOUNT)
    for name in ("a", "b", "c"):
        await tenant.create("account", {"name": name})
    where = "name == 'MARKER-0123456789' or not ISBLANK(name)"
    first = await tenant.get("/api/v1/data/account", params={"where": where, "limit": 1})
    cursor = first.json()["next_cursor"]
    assert cursor is not None
    decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    assert b"MARKER" not in decoded and b"ISBLANK" not in decoded
    params = {"where": where, "limit": 1, "cursor": cursor}
    second = await tenant.get("/api/v1/data/account", params=params)
    assert second.status_code == 200 and len(second.json()["records"]) == 1
    other = await tenant.get("/api/v1/data/account", params=params | {"where": "True"})
    assert other.status_code == 422 and other.json()["errors"][0]["code"] == "bad-cursor"
