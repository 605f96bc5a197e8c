"""Users: administrators manage them; password changes and deactivation revoke tokens."""

from __future__ import annotations

from tests.conftest import ADMIN_PASSWORD, TenantClient, login


async def test_admin_manages_users_and_roles(tenant: TenantClient) -> None:
    await tenant.post("/api/v1/metadata/roles", json={"api_name": "rep"})
    boss = await tenant.add_user("boss@example.com", role="rep")
    rep = await tenant.add_user("rep@example.com", role="rep", manager_id=boss.user_id)
    me = (await rep.get("/api/v1/auth/me")).json()
    assert me["role"] == "rep" and me["manager_id"] == boss.user_id and me["is_admin"] is False
    assert (
        await rep.post("/api/v1/users", json={"email": "x@y.z", "password": ADMIN_PASSWORD})
    ).status_code == 403
    loop = await tenant.patch(f"/api/v1/users/{boss.user_id}", json={"manager_id": rep.user_id})
    assert loop.status_code == 422 and loop.json()["errors"][0]["code"] == "cycle"
    ghost = await tenant.patch(f"/api/v1/users/{rep.user_id}", json={"role": "ghost"})
    assert ghost.status_code == 422 and ghost.json()["errors"][0]["code"] == "unknown-role"
    taken = await tenant.post(
        "/api/v1/users", json={"email": "REP@example.com", "password": ADMIN_PASSWORD}
    )
    assert taken.status_code == 422
    emails = [u["email"] for u in (await tenant.get("/api/v1/users")).json()["users"]]
    assert "rep@example.com" in emails and "boss@example.com" in emails


async def test_password_change_and_deactivation_revoke_tokens(tenant: TenantClient) -> None:
    rep = await tenant.add_user("rep@example.com")
    assert (await rep.get("/api/v1/auth/me")).status_code == 200
    wrong = await rep.post(
        f"/api/v1/users/{rep.user_id}/password",
        json={"current_password": "nope", "new_password": "a much better one"},
    )
    assert wrong.status_code == 401
    short = await rep.post(
        f"/api/v1/users/{rep.user_id}/password",
        json={"current_password": ADMIN_PASSWORD, "new_password": "short"},
    )
    assert short.status_code == 422
    changed = await rep.post(
        f"/api/v1/users/{rep.user_id}/password",
        json={"current_password": ADMIN_PASSWORD, "new_password": "a much better one"},
    )
    assert changed.status_code == 204
    assert (await rep.get("/api/v1/auth/me")).status_code == 401
    rep.token = await login(rep.http, rep.tenant, "rep@example.com", "a much better one")
    assert (await rep.get("/api/v1/auth/me")).status_code == 200
    assert (
        await tenant.patch(f"/api/v1/users/{rep.user_id}", json={"is_active": False})
    ).status_code == 200
    assert (await rep.get("/api/v1/auth/me")).status_code == 401
    refused = await rep.http.post(
        "/api/v1/auth/token",
        data={"tenant": rep.tenant, "username": "rep@example.com", "password": "a much better one"},
    )
    assert refused.status_code == 401


async def test_password_rules(tenant: TenantClient) -> None:
    for password, code in (
        ("short", "password-length"),
        ("aaaaaaaaaaaaaa", "password-weak"),
        ("Password123", "password-common"),
        ("i-am-samuel-ok", "password-login"),
    ):
        response = await tenant.post(
            "/api/v1/users", json={"email": "samuel@x.test", "password": password}
        )
        assert response.status_code == 422, password
        assert response.json()["errors"] == [
            {"field": "password", "code": code, "message": response.json()["errors"][0]["message"]}
        ]
    assert (
        await tenant.post(
            "/api/v1/users", json={"email": "samuel@x.test", "password": "a sound passphrase"}
        )
    ).status_code == 201


async def test_platform_permissions_are_separate_from_data_permissions(
    tenant: TenantClient,
) -> None:
    roles = [
        {"api_name": "modeller", "permissions": ["manage_metadata"]},
        {"api_name": "people", "permissions": ["manage_users"]},
    ]
    assert (await tenant.post("/api/v1/metadata/apply", json={"roles": roles})).status_code == 200
    modeller = await tenant.add_user("modeller@x.test", role="modeller")
    people = await tenant.add_user("people@x.test", role="people")
    obj = {"api_name": "gadget", "fields": [{"api_name": "name", "type": "text"}]}
    assert (await modeller.post("/api/v1/metadata/objects", json=obj)).status_code == 201
    assert (
        await people.post("/api/v1/metadata/objects", json=obj | {"api_name": "other"})
    ).status_code == 403
    # Metadata rights are no data rights: the modeller's role grants no access to gadgets.
    assert (await modeller.get("/api/v1/data/gadget")).status_code == 403
    created = await people.post(
        "/api/v1/users", json={"email": "new@x.test", "password": "a sound passphrase"}
    )
    assert created.status_code == 201
    assert (
        await modeller.post(
            "/api/v1/users", json={"email": "n2@x.test", "password": "a sound passphrase"}
        )
    ).status_code == 403
    escalate = await people.patch(f"/api/v1/users/{people.user_id}", json={"is_admin": True})
    assert escalate.status_code == 403
