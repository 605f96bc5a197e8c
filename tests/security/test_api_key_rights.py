"""API keys: idempotency scoped per key, manage_api_keys enforced, unknown permissions refused."""

from __future__ import annotations

from tests.conftest import ACCOUNT, TenantClient


def as_key(client: TenantClient, key: str) -> TenantClient:
    return TenantClient(client.http, client.tenant, key)


async def _key(client: TenantClient, name: str, scope: str = "read_write") -> str:
    response = await client.post("/api/v1/api-keys", json={"name": name, "scope": scope})
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


async def test_idempotency_keys_are_scoped_per_api_key(tenant: TenantClient) -> None:
    await tenant.define(ACCOUNT)
    sync, other = (
        as_key(tenant, await _key(tenant, "sync")),
        as_key(tenant, await _key(tenant, "o")),
    )
    retry = {"Idempotency-Key": "order-1"}
    first = await sync.post("/api/v1/data/account", json={"name": "Acme"}, headers=retry)
    assert first.status_code == 201, first.text
    again = await sync.post("/api/v1/data/account", json={"name": "Acme"}, headers=retry)
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    reused = await sync.post("/api/v1/data/account", json={"name": "Other"}, headers=retry)
    assert reused.status_code == 422
    assert reused.json()["errors"][0]["code"] == "idempotency-key-reused"
    # Another key, and the key's own user, have keys of their own.
    by_other = await other.post("/api/v1/data/account", json={"name": "Acme"}, headers=retry)
    by_user = await tenant.post("/api/v1/data/account", json={"name": "Acme"}, headers=retry)
    assert by_other.status_code == by_user.status_code == 201
    ids = {first.json()["id"], by_other.json()["id"], by_user.json()["id"]}
    assert len(ids) == 3
    listed = (await tenant.get("/api/v1/data/account", params={"limit": 50})).json()["records"]
    assert len(listed) == 3


async def test_managing_api_keys_needs_manage_api_keys(tenant: TenantClient) -> None:
    roles = [
        {"api_name": "rep", "objects": {"account": {"read": True}}},
        {"api_name": "integrator", "permissions": ["manage_api_keys"]},
    ]
    await tenant.define(ACCOUNT)
    assert (await tenant.post("/api/v1/metadata/apply", json={"roles": roles})).status_code == 200
    rep = await tenant.add_user("rep@x.test", role="rep")
    integrator = await tenant.add_user("integrator@x.test", role="integrator")
    refused = await rep.post("/api/v1/api-keys", json={"name": "mine", "scope": "read"})
    assert refused.status_code == 403 and "manage_api_keys" in refused.json()["detail"]
    created = await integrator.post("/api/v1/api-keys", json={"name": "etl", "scope": "read"})
    assert created.status_code == 201
    admin_key = (await tenant.post("/api/v1/api-keys", json={"name": "admin's"})).json()["id"]
    # Without the permission, not even one's own key; with it, one's own keys only.
    assert (await rep.delete(f"/api/v1/api-keys/{created.json()['id']}")).status_code == 403
    assert (await integrator.delete(f"/api/v1/api-keys/{admin_key}")).status_code == 404
    assert (await integrator.delete(f"/api/v1/api-keys/{created.json()['id']}")).status_code == 204
    assert (await tenant.delete(f"/api/v1/api-keys/{admin_key}")).status_code == 204
    assert (await rep.get("/api/v1/api-keys")).json()["api_keys"] == []


async def test_an_unknown_platform_permission_is_refused(tenant: TenantClient) -> None:
    role = {"api_name": "exporter", "permissions": ["view_audit", "export_everything"]}
    for response in (
        await tenant.post("/api/v1/metadata/roles", json=role),
        await tenant.post("/api/v1/metadata/apply", json={"roles": [role]}),
    ):
        assert response.status_code == 422, response.text
        [error] = [e for e in response.json()["errors"] if e["code"] == "unknown-permission"]
        assert error["field"].endswith("permissions")
        assert "export_everything" in error["message"] and "export_data" in error["message"]
    assert (await tenant.get("/api/v1/metadata/roles")).json()["roles"] == []


async def test_an_api_key_cannot_manage_api_keys(tenant: TenantClient) -> None:
    """A key minting keys would leave a working key behind when it is revoked."""
    key = as_key(tenant, await _key(tenant, "etl"))
    minted = await key.post("/api/v1/api-keys", json={"name": "child", "scope": "read_write"})
    assert minted.status_code == 403, minted.text
    own = (await tenant.get("/api/v1/api-keys")).json()["api_keys"]
    assert [k["name"] for k in own] == ["etl"]
    assert (await key.delete(f"/api/v1/api-keys/{own[0]['id']}")).status_code == 403
