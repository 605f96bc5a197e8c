"""API keys, login throttling, the audit log and field history, on both databases."""

from __future__ import annotations

from tests.conftest import ADMIN_PASSWORD, TenantClient, new_tenant

TICKET = {
    "api_name": "ticket",
    "fields": [
        {"api_name": "title", "type": "text", "required": True},
        {
            "api_name": "status",
            "type": "picklist",
            "values": [{"value": "open"}, {"value": "closed"}],
            "track_history": True,
        },
        {"api_name": "notes", "type": "text"},
    ],
}


def as_key(client: TenantClient, key: str) -> TenantClient:
    return TenantClient(client.http, client.tenant, key)


async def test_api_keys_read_or_write_and_revocable(tenant: TenantClient) -> None:
    await tenant.define(TICKET)
    read = await tenant.post("/api/v1/api-keys", json={"name": "bi export", "scope": "read"})
    write = await tenant.post("/api/v1/api-keys", json={"name": "sync", "scope": "read_write"})
    assert read.status_code == write.status_code == 201, read.text
    reader, writer = as_key(tenant, read.json()["key"]), as_key(tenant, write.json()["key"])
    created = await writer.post("/api/v1/data/ticket", json={"title": "by key"})
    assert created.status_code == 201
    assert (await reader.get("/api/v1/data/ticket")).json()["records"][0]["title"] == "by key"
    refused = await reader.post("/api/v1/data/ticket", json={"title": "no"})
    assert refused.status_code == 403
    assert (
        await reader.post("/api/v1/metadata/objects", json={"api_name": "x"})
    ).status_code == 403
    listed = (await tenant.get("/api/v1/api-keys")).json()["api_keys"]
    assert {k["name"] for k in listed} == {"bi export", "sync"}
    assert all("key" not in k and "secret_hash" not in k for k in listed)
    assert any(k["last_used_at"] for k in listed)
    assert (await tenant.delete(f"/api/v1/api-keys/{read.json()['id']}")).status_code == 204
    assert (await reader.get("/api/v1/data/ticket")).status_code == 401
    forged = write.json()["key"][:-3] + "xyz"
    assert (await as_key(tenant, forged).get("/api/v1/data/ticket")).status_code == 401
    other_tenant = write.json()["key"].replace(f".{tenant.tenant}.", ".nosuchtenant.")
    assert (await as_key(tenant, other_tenant).get("/api/v1/data/ticket")).status_code == 401


async def test_keys_of_one_tenant_never_open_another(tenant: TenantClient, client) -> None:
    other = await new_tenant(client)
    await other.define(TICKET)
    key = (await tenant.post("/api/v1/api-keys", json={"name": "k", "scope": "read_write"})).json()[
        "key"
    ]
    # Point the key at the other tenant: its id does not exist there.
    moved = key.replace(f".{tenant.tenant}.", f".{other.tenant}.")
    assert (await as_key(tenant, moved).get("/api/v1/data/ticket")).status_code == 401


async def test_logins_are_throttled_without_saying_who_exists(tenant: TenantClient, client) -> None:
    admin = f"admin@{tenant.tenant}.test"
    statuses = []
    for login in (admin, "ghost@nowhere.test"):
        for _ in range(6):
            response = await client.post(
                "/api/v1/auth/token",
                data={"tenant": tenant.tenant, "username": login, "password": "wrong password"},
            )
            statuses.append((login, response.status_code))
    assert [s for _, s in statuses[:5]] == [401] * 5 and statuses[5][1] == 429
    assert [s for _, s in statuses[6:11]] == [401] * 5 and statuses[11][
        1
    ] == 429  # unknown names alike
    locked = await client.post(
        "/api/v1/auth/token",
        data={"tenant": tenant.tenant, "username": admin, "password": ADMIN_PASSWORD},
    )
    assert locked.status_code == 429  # even the right password waits out the lock
    entries = (await tenant.get("/api/v1/audit", params={"action": "login.failure"})).json()[
        "entries"
    ]
    assert len(entries) == 10 and {e["detail"]["login"] for e in entries} == {
        admin,
        "ghost@nowhere.test",
    }


async def test_audit_log_and_field_history(tenant: TenantClient) -> None:
    await tenant.define(TICKET)
    ticket = await tenant.create("ticket", {"title": "t", "status": "open"})
    await tenant.patch(
        f"/api/v1/data/ticket/{ticket['id']}", json={"status": "closed", "notes": "n"}
    )
    await tenant.patch(f"/api/v1/data/ticket/{ticket['id']}", json={"notes": "n2"})
    await tenant.delete(f"/api/v1/data/ticket/{ticket['id']}")
    await tenant.post(f"/api/v1/data/ticket/{ticket['id']}/restore")
    entries = (await tenant.get("/api/v1/audit", params={"record_id": ticket["id"]})).json()[
        "entries"
    ]
    assert [e["action"] for e in entries] == [
        "record.restore",
        "record.delete",
        "record.update",
        "record.update",
        "record.create",
    ]
    assert entries[3]["detail"] == {"fields": ["notes", "status"]}
    assert entries[0]["ip"] and entries[0]["user_id"]
    applied = (await tenant.get("/api/v1/audit", params={"action": "metadata.apply"})).json()[
        "entries"
    ]
    assert applied[0]["detail"]["plan"][0]["op"] == "create_object"
    history = (await tenant.get(f"/api/v1/data/ticket/{ticket['id']}/history")).json()["history"]
    assert [(h["field"], h["old_value"], h["new_value"]) for h in history] == [
        ("status", "open", "closed")
    ]
    clerk = await tenant.add_user("clerk@x.test")
    assert (await clerk.get("/api/v1/audit")).status_code == 403
    assert (await tenant.get("/api/v1/audit", params={"action": "user.create"})).json()["entries"][
        0
    ]["detail"]["email"] == "clerk@x.test"
