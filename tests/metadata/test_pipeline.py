"""The metadata check pipeline through the API: every problem at once, what a change breaks,
permissions a role loses, and warnings about approvals a stage may not get."""

from __future__ import annotations

from typing import Any

from tests.conftest import TenantClient

DEAL = {
    "api_name": "deal",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "amount", "type": "currency"},
        {"api_name": "discount", "type": "percent"},
        {
            "api_name": "stage",
            "type": "picklist",
            "values": [{"value": "open"}, {"value": "won"}, {"value": "lost"}],
        },
    ],
}
FLOW = {
    "api_name": "deal_desk",
    "object": "deal",
    "steps": [{"api_name": "desk", "approvers": [{"kind": "manager"}]}],
}
PATH = {
    "api_name": "deal_path",
    "object": "deal",
    "field": "stage",
    "stages": [{"value": "open"}, {"value": "won", "closed": True}, {"value": "lost"}],
}


def problems(response: Any) -> set[tuple[str, str]]:
    assert response.status_code == 422, response.text
    return {(e["field"], e["code"]) for e in response.json()["errors"]}


async def test_unknown_approver_role_hides_no_stage_condition(tenant: TenantClient) -> None:
    await tenant.define(DEAL)
    flow = FLOW | {
        "steps": [{"api_name": "desk", "approvers": [{"kind": "role", "role": "ghost"}]}]
    }
    path = PATH | {
        "stages": [
            {"value": "open"},
            {"value": "won", "closed": True, "entry_condition": "amount > 'a lot'"},
            {"value": "lost"},
        ]
    }
    document = {"approval_flows": [flow], "stage_rules": [path]}
    for url in ("/api/v1/metadata/plan", "/api/v1/metadata/apply"):
        found = problems(await tenant.post(url, json=document))
        assert ("approval_flows/deal_desk/steps/desk/approvers/0/role", "unknown-role") in found
        assert ("stage_rules/deal_path/stages/won/entry_condition", "formula") in found


async def test_duplicate_field_hides_no_rule_condition(tenant: TenantClient) -> None:
    deal = DEAL | {
        "fields": [*DEAL["fields"], {"api_name": "amount", "type": "number"}],
        "validation_rules": [
            {
                "api_name": "sane_discount",
                "condition": "discount > 50 and missing_field",
                "message": "too much",
            }
        ],
    }
    for url in ("/api/v1/metadata/plan", "/api/v1/metadata/apply"):
        found = problems(await tenant.post(url, json={"objects": [deal]}))
        assert ("objects/deal/fields/amount", "duplicate") in found
        assert ("objects/deal/validation_rules/sane_discount/condition", "formula") in found


FORECAST = DEAL | {
    "fields": [
        *DEAL["fields"],
        {
            "api_name": "net",
            "type": "formula",
            "returns": "currency",
            "expression": "amount * (1 - discount / 100)",
        },
    ]
}
LAYOUT = {
    "api_name": "deal_form",
    "object": "deal",
    "sections": [{"fields": [{"field": "name"}, {"field": "discount"}, {"field": "net"}]}],
}


async def test_removing_a_used_field_lists_what_breaks(tenant: TenantClient) -> None:
    r = await tenant.post(
        "/api/v1/metadata/apply", json={"objects": [FORECAST], "layouts": [LAYOUT]}
    )
    assert r.status_code == 200, r.text
    without = FORECAST | {"fields": [f for f in FORECAST["fields"] if f["api_name"] != "discount"]}
    r = await tenant.post("/api/v1/metadata/impact", json={"objects": [without]})
    assert r.status_code == 200, r.text
    impact = {(i["kind"], i["dependent"], i["broken"]) for i in r.json()["impact"]}
    assert ("formula", "objects/deal/fields/net/expression", True) in impact
    assert ("layout", "layouts/deal_form", False) in impact  # it adapts: shown without
    assert "layout_loses_fields" in {op["op"] for op in r.json()["ops"]}
    r = await tenant.delete(
        "/api/v1/metadata/objects/deal/fields/discount", params={"confirm": "true"}
    )
    found = problems(r)
    assert found == {("objects/deal/fields/net/expression", "breaks-dependent")}
    assert "deal.discount" in r.json()["errors"][0]["message"]
    fields = (await tenant.get("/api/v1/metadata/objects/deal/fields")).json()["fields"]
    assert "discount" in {f["api_name"] for f in fields}


ROLE = {
    "api_name": "rep",
    "objects": {"deal": {"create": True, "read": True, "edit": True}},
    "fields": {"deal": {"amount": "edit"}},
    "permissions": ["view_audit"],
}


async def test_a_role_losing_permissions_is_a_destructive_step(tenant: TenantClient) -> None:
    await tenant.define(DEAL)
    assert (await tenant.post("/api/v1/metadata/roles", json=ROLE)).status_code == 201
    smaller = ROLE | {
        "objects": {"deal": {"read": True}},
        "fields": {"deal": {"amount": "read"}},
        "permissions": [],
    }
    r = await tenant.post("/api/v1/metadata/plan", json={"roles": [smaller]})
    assert r.status_code == 200, r.text
    assert r.json()["destructive"] is True
    assert set(r.json()["ops"][0]["risks"]) == {
        "role rep loses create on deal",
        "role rep loses edit on deal",
        "role rep loses edit access to deal.amount (now read)",
        "role rep loses the platform permission view_audit",
    }
    r = await tenant.put("/api/v1/metadata/roles/rep", json=smaller)
    assert r.status_code == 409, r.text
    assert {(e["field"], e["code"]) for e in r.json()["errors"]} == {("roles/rep", "destructive")}
    assert (await tenant.get("/api/v1/metadata/roles/rep")).json()["objects"]["deal"]["edit"]
    r = await tenant.put("/api/v1/metadata/roles/rep", params={"confirm": "true"}, json=smaller)
    assert r.status_code == 200, r.text
    # Granting more, or removing a role that granted nothing, needs no confirmation.
    r = await tenant.put("/api/v1/metadata/roles/rep", json=ROLE)
    assert r.status_code == 200 and not r.json()["plan"]["destructive"], r.text
    r = await tenant.delete("/api/v1/metadata/roles/rep")
    assert r.status_code == 409, r.text


async def test_stage_requiring_a_conditional_approval_warns(tenant: TenantClient) -> None:
    await tenant.define(DEAL)
    flow = FLOW | {"entry_condition": "discount > 10"}
    path = PATH | {
        "stages": [
            {"value": "open"},
            {"value": "won", "closed": True, "requires_approval": "deal_desk"},
            {"value": "lost"},
        ]
    }
    document = {"approval_flows": [flow], "stage_rules": [path]}
    warning = ("stage_rules/deal_path/stages/won/requires_approval", "approval-may-not-apply")
    r = await tenant.post("/api/v1/metadata/plan", json=document)
    assert r.status_code == 200, r.text
    assert {(w["field"], w["code"]) for w in r.json()["warnings"]} == {warning}
    r = await tenant.post("/api/v1/metadata/apply", json=document)
    assert r.status_code == 200, r.text
    assert {(w["field"], w["code"]) for w in r.json()["plan"]["warnings"]} == {warning}
    # A flow without an entry condition accepts every record: nothing to warn about.
    r = await tenant.post("/api/v1/metadata/plan", json={"approval_flows": [FLOW]})
    assert r.status_code == 200 and "warnings" not in r.json(), r.text
