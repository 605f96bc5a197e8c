from __future__ import annotations

from tests.conftest import TenantClient


async def test_install_crm_core(tenant: TenantClient) -> None:
    r = await tenant.post("/api/v1/packs/install", params={"example": "crm-core"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["applied"], body
    print(body["seeded"])
    r = await tenant.get("/api/v1/packs")
    assert r.json()["packs"][0]["name"] == "crm-core"
