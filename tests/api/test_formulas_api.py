"""The expression language in the runtime: formula and roll-up fields, defaults, rules, filters."""

from __future__ import annotations

from tests.conftest import TenantClient

ACCOUNT = {
    "api_name": "account",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {
            "api_name": "industry",
            "type": "picklist",
            "values": [{"value": "tech"}, {"value": "retail"}],
        },
        {
            "api_name": "deal_count",
            "type": "rollup",
            "child_object": "opportunity",
            "child_field": "account",
            "aggregate": "count",
        },
        {
            "api_name": "won_total",
            "type": "rollup",
            "child_object": "opportunity",
            "child_field": "account",
            "aggregate": "sum",
            "field": "amount",
            "filter": "stage == 'won'",
        },
    ],
}
OPPORTUNITY = {
    "api_name": "opportunity",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "account", "type": "master_detail", "target": "account"},
        {"api_name": "amount", "type": "currency"},
        {
            "api_name": "probability",
            "type": "percent",
            "default_expression": "IF(amount > 1000, 50, 10)",
        },
        {
            "api_name": "stage",
            "type": "picklist",
            "values": [{"value": "new"}, {"value": "won"}],
            "default": "new",
        },
        {"api_name": "close_date", "type": "date"},
        {
            "api_name": "expected",
            "type": "formula",
            "returns": "currency",
            "expression": "amount * probability / 100",
        },
        {
            "api_name": "label",
            "type": "formula",
            "returns": "text",
            "expression": "UPPER(account.name) + ': ' + name",
        },
    ],
    "validation_rules": [
        {
            "api_name": "won_needs_date",
            "condition": "stage == 'won' and ISBLANK(close_date)",
            "message": {"en": "A won deal needs a close date"},
            "field": "close_date",
        },
        {
            "api_name": "no_shrinking",
            "condition": "NOT(ISNEW()) and amount < PRIORVALUE(amount)",
            "message": "The amount cannot go down",
            "field": "amount",
        },
    ],
}


async def test_formulas_rollups_defaults_and_rules(tenant: TenantClient) -> None:
    await tenant.define(ACCOUNT, OPPORTUNITY)
    acme = await tenant.create("account", {"name": "Acme", "industry": "tech"})
    big = await tenant.create("opportunity", {"name": "Big", "account": acme["id"], "amount": 5000})
    assert big["probability"] == "50.00"  # the default expression
    assert big["expected"] == "2500.00"
    assert big["label"] == "ACME: Big"
    small = await tenant.create(
        "opportunity", {"name": "Small", "account": acme["id"], "amount": 100}
    )
    assert small["probability"] == "10.00"
    refused = await tenant.patch(
        f"/api/v1/data/opportunity/{big['id']}", json={"stage": "won", "amount": 10}
    )
    assert refused.status_code == 422
    assert {e["code"] for e in refused.json()["errors"]} == {"won_needs_date", "no_shrinking"}
    ok = await tenant.patch(
        f"/api/v1/data/opportunity/{big['id']}", json={"stage": "won", "close_date": "2027-01-31"}
    )
    assert ok.status_code == 200, ok.text
    account = (await tenant.get(f"/api/v1/data/account/{acme['id']}")).json()
    assert account["deal_count"] == 2 and account["won_total"] == "5000.00"
    listed = await tenant.get(
        "/api/v1/data/opportunity",
        params={"where": "expected > 100", "order_by": "-expected", "fields": "name,expected"},
    )
    assert [r["name"] for r in listed.json()["records"]] == ["Big"]
    by_rollup = await tenant.get(
        "/api/v1/data/account", params={"where": "won_total >= 5000 and deal_count == 2"}
    )
    assert [r["name"] for r in by_rollup.json()["records"]] == ["Acme"]
    assert (await tenant.delete(f"/api/v1/data/opportunity/{small['id']}")).status_code == 204
    assert (await tenant.get(f"/api/v1/data/account/{acme['id']}")).json()["deal_count"] == 1
    assert (await tenant.post(f"/api/v1/data/opportunity/{small['id']}/restore")).status_code == 200
    assert (await tenant.get(f"/api/v1/data/account/{acme['id']}")).json()["deal_count"] == 2


async def test_bad_formulas_are_refused_at_save_time(tenant: TenantClient) -> None:
    await tenant.define(ACCOUNT, OPPORTUNITY)
    for expression in (
        "amount * nope",
        "9**9**9",
        "amount.__class__",
        "(lambda: 1)()",
        "LEN(amount)",
    ):
        field = {
            "api_name": "bad",
            "type": "formula",
            "returns": "number",
            "expression": expression,
        }
        response = await tenant.post("/api/v1/metadata/objects/opportunity/fields", json=field)
        assert response.status_code == 422, expression
        error = response.json()["errors"][0]
        assert error["field"] == "objects/opportunity/fields/bad/expression"
        assert "line 1, column" in error["message"]
    cycle = dict(OPPORTUNITY)
    cycle["fields"] = [
        *OPPORTUNITY["fields"],
        {"api_name": "a", "type": "formula", "returns": "number", "expression": "b + 1"},
        {"api_name": "b", "type": "formula", "returns": "number", "expression": "a + 1"},
    ]
    response = await tenant.put("/api/v1/metadata/objects/opportunity", json=cycle)
    assert response.status_code == 422
    assert "cycle" in response.text
