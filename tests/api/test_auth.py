"""Login and tokens: vague failures, expiry, tampering, tenant isolation."""

from __future__ import annotations

import datetime as dt

import jwt

from tests.conftest import ACCOUNT, ADMIN_PASSWORD, TenantClient, new_tenant


async def test_login_failures_do_not_say_which_part_was_wrong(tenant: TenantClient, client) -> None:
    admin = f"admin@{tenant.tenant}.test"
    attempts = [
        {"tenant": tenant.tenant, "username": admin, "password": "wrong password"},
        {"tenant": tenant.tenant, "username": "nobody@x.test", "password": ADMIN_PASSWORD},
        {"tenant": "no_such_tenant", "username": admin, "password": ADMIN_PASSWORD},
        {"tenant": "Robert'); DROP TABLE users;--", "username": admin, "password": ADMIN_PASSWORD},
    ]
    details = set()
    for form in attempts:
        response = await client.post("/api/v1/auth/token", data=form)
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        details.add(response.json()["detail"])
    assert len(details) == 1
    missing = await client.post("/api/v1/auth/token", data={"username": admin})
    assert missing.status_code == 422


async def test_tokens_are_checked(tenant: TenantClient, client) -> None:
    assert (await client.get("/api/v1/data/account")).status_code == 401
    for header in ("Bearer", "Bearer nonsense", "Basic abc", f"Bearer {tenant.token}x"):
        response = await client.get("/api/v1/auth/me", headers={"Authorization": header})
        assert response.status_code == 401, header
    state = client._transport.app.state.metacrm
    claims = jwt.decode(tenant.token, state.signing_key, algorithms=["HS256"])
    claims["exp"] = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    expired = jwt.encode(claims, state.signing_key, algorithm="HS256")
    response = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    forged = jwt.encode(
        claims | {"exp": dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)},
        "a-guessed-key-that-is-long-enough-000",
        algorithm="HS256",
    )
    assert (
        await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {forged}"})
    ).status_code == 401


async def test_tenants_are_isolated(tenant: TenantClient, client) -> None:
    other = await new_tenant(client)
    await tenant.define(ACCOUNT)
    await other.define(ACCOUNT)
    secret = await tenant.create("account", {"name": "Secret"})
    assert (await other.get(f"/api/v1/data/account/{secret['id']}")).status_code == 404
    assert (await other.get("/api/v1/data/account")).json()["records"] == []
    assert (
        await other.patch(f"/api/v1/data/account/{secret['id']}", json={"name": "x"})
    ).status_code == 404
    assert (await other.delete(f"/api/v1/data/account/{secret['id']}")).status_code == 404
    assert (await tenant.get(f"/api/v1/data/account/{secret['id']}")).json()["name"] == "Secret"


async def test_platform_api_needs_its_token(client) -> None:
    body = {"name": "intruder", "admin_email": "a@b.test", "admin_password": ADMIN_PASSWORD}
    assert (await client.post("/api/v1/platform/tenants", json=body)).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token"}
    assert (
        await client.post("/api/v1/platform/tenants", json=body, headers=wrong)
    ).status_code == 401
