"""User administration: a directory for colleagues, and nobody grants more than they hold."""

from __future__ import annotations

from typing import Any

from tests.conftest import ACCOUNT, ADMIN_PASSWORD, TenantClient

ROLES = [
    {
        "api_name": "people",
        "permissions": ["manage_users"],
        "objects": {"account": {"read": True, "edit": True}},
    },
    {"api_name": "reader", "objects": {"account": {"read": True}}},
    {"api_name": "modeller", "permissions": ["manage_metadata"]},
    {"api_name": "keyholder", "permissions": ["manage_api_keys"]},
    {"api_name": "boss", "objects": {"account": {"read": True, "modify_all": True}}},
    {
        "api_name": "no_revenue",
        "objects": {"account": {"read": True}},
        "fields": {"account": {"revenue": "hidden"}},
    },
    {
        "api_name": "people_narrow",
        "permissions": ["manage_users"],
        "objects": {"account": {"read": True}},
        "fields": {"account": {"revenue": "hidden"}},
    },
]


async def _setup(tenant: TenantClient) -> dict[str, TenantClient]:
    await tenant.define(ACCOUNT)
    assert (await tenant.post("/api/v1/metadata/apply", json={"roles": ROLES})).status_code == 200
    return {name: await tenant.add_user(f"{name}@x.test", role=name) for name in ("people",)}


def _new(email: str, **extra: Any) -> dict[str, Any]:
    return {"email": email, "password": ADMIN_PASSWORD} | extra


async def test_colleagues_see_a_directory_not_accounts(tenant: TenantClient) -> None:
    users = await _setup(tenant)
    reader = await tenant.add_user("reader@x.test", role="reader")
    holder = await tenant.add_user("holder@x.test", role="keyholder")
    key = await holder.post("/api/v1/api-keys", json={"name": "bi", "scope": "read"})
    admin_key = (await tenant.post("/api/v1/api-keys", json={"name": "bi", "scope": "read"})).json()
    for caller in (reader, holder, TenantClient(tenant.http, tenant.tenant, key.json()["key"])):
        response = await caller.get("/api/v1/users")
        assert response.status_code == 200, response.text
        listed = response.json()["users"]
        assert len(listed) == 4
        assert all(set(u) == {"id", "full_name", "is_active"} for u in listed)
        assert "@" not in str(listed)
    full = (await users["people"].get("/api/v1/users")).json()["users"]
    assert {"reader@x.test", "people@x.test"} <= {u["email"] for u in full}
    assert {"role", "is_admin", "manager_id"} <= set(full[0])
    as_admin_key = TenantClient(tenant.http, tenant.tenant, admin_key["key"])
    assert "email" in (await as_admin_key.get("/api/v1/users")).json()["users"][0]


async def test_nobody_grants_more_than_they_hold(tenant: TenantClient) -> None:
    people = (await _setup(tenant))["people"]
    admin_id = (await tenant.get("/api/v1/auth/me")).json()["user_id"]
    # Roles beyond the grantor's own: a platform permission, modify_all, a hidden field.
    for role in ("modeller", "boss"):
        refused = await people.post("/api/v1/users", json=_new(f"{role}2@x.test", role=role))
        assert refused.status_code == 403, role
    assert (
        await people.post("/api/v1/users", json=_new("admin2@x.test", is_admin=True))
    ).status_code == 403
    created = await people.post("/api/v1/users", json=_new("r2@x.test", role="reader"))
    assert created.status_code == 201, created.text
    same = await people.post("/api/v1/users", json=_new("p2@x.test", role="people"))
    assert same.status_code == 201
    uid = created.json()["id"]
    assert (
        await people.patch(f"/api/v1/users/{uid}", json={"role": "modeller"})
    ).status_code == 403
    assert (
        await people.patch(f"/api/v1/users/{uid}", json={"role": "no_revenue"})
    ).status_code == 200
    # Administrators, and users holding more than the grantor, are out of reach.
    for change in ({"is_active": False}, {"role": "reader"}, {"full_name": "x"}):
        assert (await people.patch(f"/api/v1/users/{admin_id}", json=change)).status_code == 403
    modeller = await tenant.add_user("modeller@x.test", role="modeller")
    assert (
        await people.patch(f"/api/v1/users/{modeller.user_id}", json={"is_active": False})
    ).status_code == 403
    assert (await modeller.get("/api/v1/auth/me")).status_code == 200
    # A grantor who cannot see a field cannot hand out a role that sees it.
    narrow = await tenant.add_user("narrow@x.test", role="people_narrow")
    refused = await narrow.post("/api/v1/users", json=_new("r3@x.test", role="reader"))
    assert refused.status_code == 403 and "account.revenue" in refused.json()["detail"]
    assert (
        await narrow.post("/api/v1/users", json=_new("r4@x.test", role="no_revenue"))
    ).status_code == 201
    # Administrators grant anything.
    assert (
        await tenant.patch(f"/api/v1/users/{uid}", json={"role": "modeller"})
    ).status_code == 200
