"""A user's metadata describe names no field hidden from them, not even in a condition."""

from __future__ import annotations

from tests.conftest import TenantClient

DEAL = {
    "api_name": "deal",
    "fields": [
        {"api_name": "name", "type": "text"},
        {"api_name": "amount", "type": "currency"},
        {"api_name": "margin", "type": "percent"},
        {"api_name": "risk", "type": "formula", "returns": "number", "expression": "margin * 2"},
        {"api_name": "bonus", "type": "number", "default_expression": "IF(margin > 10, 1, 0)"},
        {"api_name": "size", "type": "number", "default_expression": "2"},
    ],
    "validation_rules": [
        {"api_name": "margin_cap", "condition": "margin > 50", "message": "too much"},
        {"api_name": "about_margin", "condition": "amount < 0", "message": "x", "field": "margin"},
        {"api_name": "positive", "condition": "amount < 0", "message": "no", "field": "amount"},
    ],
    "field_rules": [
        {"api_name": "lock", "when": "margin > 10", "fields": ["amount"], "effect": "read_only"},
        {
            "api_name": "needed",
            "when": "amount > 5",
            "fields": ["name", "margin"],
            "effect": "required",
        },
    ],
}
REP = {
    "api_name": "rep",
    "objects": {"deal": {"create": True, "read": True, "edit": True}},
    "fields": {"deal": {"margin": "hidden"}},
}


async def test_describe_leaves_out_what_names_a_hidden_field(tenant: TenantClient) -> None:
    document = {"objects": [DEAL], "roles": [REP]}
    assert (await tenant.post("/api/v1/metadata/apply", json=document)).status_code == 200
    rep = await tenant.add_user("rep@x.test", role="rep")
    described = await rep.get("/api/v1/metadata/objects/deal")
    assert described.status_code == 200
    assert "margin" not in described.text
    shown = described.json()
    assert [r["api_name"] for r in shown["validation_rules"]] == ["positive"]
    assert shown["field_rules"] == [
        {"api_name": "needed", "when": "amount > 5", "fields": ["name"], "effect": "required"}
    ]
    fields = {f["api_name"]: f for f in shown["fields"]}
    assert "expression" not in fields["risk"] and "default_expression" not in fields["bonus"]
    assert fields["size"]["default_expression"] == "2"
    listed = await rep.get("/api/v1/metadata/objects/deal/fields")
    assert "margin" not in listed.text
    assert "margin" not in (await rep.get("/api/v1/metadata/objects/deal/fields/risk")).text
    # Administrators see the whole definition.
    full = (await tenant.get("/api/v1/metadata/objects/deal")).json()
    assert len(full["validation_rules"]) == 3 and len(full["field_rules"]) == 2
