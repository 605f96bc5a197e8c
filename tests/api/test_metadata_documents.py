"""Documents of the other kinds (roles, layouts, ...) through the generic metadata API."""

from __future__ import annotations

from tests.conftest import ACCOUNT, TenantClient


async def test_role_and_sharing_rule_documents(tenant: TenantClient) -> None:
    await tenant.define(ACCOUNT)
    role = {
        "api_name": "sales_rep",
        "label": "Sales rep",
        "objects": {"account": {"read": True, "create": True}},
    }
    created = await tenant.post("/api/v1/metadata/roles", json=role)
    assert created.status_code == 201, created.text
    assert created.json()["plan"]["ops"][0]["op"] == "put_document"
    assert (await tenant.get("/api/v1/metadata/roles/sales_rep")).json()["objects"]["account"][
        "read"
    ] is True
    manager = {
        "api_name": "sales_manager",
        "objects": {"account": {"read": True, "view_all": True}},
    }
    assert (await tenant.post("/api/v1/metadata/roles", json=manager)).status_code == 201
    rep = role | {"reports_to": "sales_manager"}
    assert (await tenant.put("/api/v1/metadata/roles/sales_rep", json=rep)).status_code == 200
    cycle = manager | {"reports_to": "sales_rep"}
    refused = await tenant.put("/api/v1/metadata/roles/sales_manager", json=cycle)
    assert refused.status_code == 422 and refused.json()["errors"][0]["code"] == "cycle"
    rule = {
        "api_name": "big_accounts",
        "object": "account",
        "criteria": "revenue > 1000000",
        "share_with": {"role": "sales_rep"},
        "access": "read",
    }
    assert (await tenant.post("/api/v1/metadata/sharing-rules", json=rule)).status_code == 201
    bad = rule | {"api_name": "bad", "criteria": "nope > 1", "share_with": {"role": "ghost"}}
    response = await tenant.post("/api/v1/metadata/sharing-rules", json=bad)
    assert response.status_code == 422
    # Both problems at once: the unknown role does not hide the criteria's.
    assert {e["code"] for e in response.json()["errors"]} == {"unknown-role", "formula"}
    listed = (
        await tenant.get("/api/v1/metadata/sharing-rules", params={"object": "account"})
    ).json()
    assert [r["api_name"] for r in listed["sharing-rules"]] == ["big_accounts"]
    assert (await tenant.delete("/api/v1/metadata/sharing-rules/big_accounts")).status_code == 200
    assert (await tenant.get("/api/v1/metadata/sharing-rules/big_accounts")).status_code == 404


async def test_conditions_must_type_check(tenant: TenantClient) -> None:
    await tenant.define(ACCOUNT)
    await tenant.post("/api/v1/metadata/roles", json={"api_name": "rep"})
    rule = {
        "api_name": "r",
        "object": "account",
        "criteria": "nope > 1",
        "share_with": {"role": "rep"},
    }
    response = await tenant.post("/api/v1/metadata/sharing-rules", json=rule)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "sharing_rules/r/criteria"
    rule["criteria"] = "revenue + 1"
    response = await tenant.post("/api/v1/metadata/sharing-rules", json=rule)
    assert response.status_code == 422
    assert "true or false" in response.json()["errors"][0]["message"]
