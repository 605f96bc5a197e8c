"""A field a layout marks read-only cannot be changed through the API by that layout's users."""

from __future__ import annotations

from tests.conftest import TenantClient

TICKET = {
    "api_name": "ticket",
    "fields": [
        {"api_name": "subject", "type": "text", "required": True},
        {
            "api_name": "priority",
            "type": "picklist",
            "values": [{"value": "low"}, {"value": "high"}],
            "default": "low",
        },
    ],
}
FULL = {"create": True, "read": True, "edit": True}


async def test_layout_read_only_is_enforced(tenant: TenantClient) -> None:
    layout = {
        "api_name": "agent_ticket",
        "object": "ticket",
        "roles": ["agent"],
        "sections": [
            {
                "fields": [
                    {"field": "subject", "required": True},
                    {"field": "priority", "read_only": True},
                ]
            }
        ],
    }
    response = await tenant.post(
        "/api/v1/metadata/apply",
        json={
            "objects": [TICKET],
            "roles": [{"api_name": "agent", "objects": {"ticket": FULL}}],
            "layouts": [layout],
        },
    )
    assert response.status_code == 200, response.text
    agent = await tenant.add_user("agent@x.test", role="agent")
    case = await agent.create("ticket", {"subject": "printer"})  # the default is fine
    assert case["priority"] == "low"
    refused = await agent.patch(f"/api/v1/data/ticket/{case['id']}", json={"priority": "high"})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["code"] == "read-only"
    assert (
        await agent.post("/api/v1/data/ticket", json={"subject": "x", "priority": "high"})
    ).status_code == 422
    assert (
        await tenant.patch(f"/api/v1/data/ticket/{case['id']}", json={"priority": "high"})
    ).status_code == 200
    form = (await agent.get("/api/v1/ui/ticket/form")).json()
    assert form["schema"]["properties"]["priority"].get("readOnly") is True
