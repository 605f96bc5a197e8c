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


async def test_documents_naming_a_hidden_field_are_not_shown(tenant: TenantClient) -> None:
    """Layouts, list views, stage rules and approval flows follow the same rule: a
    non-administrator sees only documents of objects they read that name no hidden field,
    in a field list or an expression; the others answer like unknown documents."""
    stage = {"value": "open", "next": ["won"]}
    document = {
        "objects": [
            DEAL
            | {
                "fields": [
                    *DEAL["fields"],
                    {
                        "api_name": "status",
                        "type": "picklist",
                        "values": [{"value": "open"}, {"value": "won"}],
                    },
                ]
            }
        ],
        "roles": [REP],
        "list_views": [
            {"api_name": "plain", "object": "deal", "columns": ["name", "amount"]},
            {"api_name": "by_margin", "object": "deal", "columns": ["name"], "sort": "-margin"},
            {"api_name": "risky", "object": "deal", "columns": ["name"], "filter": "margin > 5"},
        ],
        "stage_rules": [
            {
                "api_name": "path",
                "object": "deal",
                "field": "status",
                "stages": [
                    stage | {"entry_condition": "margin < 90"},
                    {"value": "won", "next": []},
                ],
            }
        ],
    }
    assert (await tenant.post("/api/v1/metadata/apply", json=document)).status_code == 200
    rep = await tenant.add_user("rep@x.test", role="rep")
    views = await rep.get("/api/v1/metadata/list-views")
    assert views.status_code == 200, views.text
    assert [v["api_name"] for v in views.json()["list-views"]] == ["plain"]
    assert "margin" not in views.text
    assert (await rep.get("/api/v1/metadata/list-views/plain")).status_code == 200
    for hidden in ("by_margin", "risky"):
        assert (await rep.get(f"/api/v1/metadata/list-views/{hidden}")).status_code == 404
    assert (await rep.get("/api/v1/metadata/stage-rules/path")).status_code == 404
    assert (await rep.get("/api/v1/metadata/stage-rules")).json()["stage-rules"] == []
    # Metadata administrators see every document.
    admin_views = (await tenant.get("/api/v1/metadata/list-views")).json()["list-views"]
    assert {v["api_name"] for v in admin_views} >= {"plain", "by_margin", "risky"}
    assert (await tenant.get("/api/v1/metadata/stage-rules/path")).status_code == 200
