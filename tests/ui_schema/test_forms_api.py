"""Forms and lists through /api/v1/ui on both databases: selection, permissions, labels,
the JSON Schema agreeing with the API, and field rules enforced on every write."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from metacrm.metadata.layouts import Layout
from metacrm.metadata.model import MetadataModel
from metacrm.runtime.permissions import field_access
from tests.conftest import ACCOUNT, TenantClient, new_tenant
from tests.ui_schema.jsonforms import controls, scopes, ui_schema_errors
from tests.ui_schema.support import (
    DEAL,
    LAYOUTS,
    LIST_VIEWS,
    PATH_RULE,
    ROLES,
    schema_accepts,
)


async def _apply(tenant: TenantClient, document: dict[str, Any], **params: Any) -> Any:
    return await tenant.post("/api/v1/metadata/apply", json=document, params=params)


@pytest.fixture
async def deals(tenant: TenantClient) -> TenantClient:
    response = await _apply(tenant, {"objects": [ACCOUNT, DEAL], "roles": ROLES})
    assert response.status_code == 200, response.text
    response = await _apply(tenant, {"layouts": LAYOUTS, "list_views": LIST_VIEWS})
    assert response.status_code == 200, response.text
    return tenant


async def _form(client: TenantClient, obj: str = "deal", **params: Any) -> dict[str, Any]:
    headers = params.pop("headers", None)
    response = await client.get(f"/api/v1/ui/{obj}/form", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _model(client: TenantClient) -> MetadataModel:
    objects = (await client.get("/api/v1/metadata/objects/deal")).json()
    roles = (await client.get("/api/v1/metadata/roles")).json()["roles"]
    return MetadataModel.model_validate(
        {"objects": [ACCOUNT, objects], "roles": roles, "layouts": LAYOUTS}
    )


def _check_structure(form: dict[str, Any]) -> None:
    Draft202012Validator.check_schema(form["schema"])
    assert form["schema"]["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert ui_schema_errors(form["uischema"], form["schema"]) == []
    assert sorted(s.rsplit("/", 1)[-1] for s in scopes(form["uischema"])) == sorted(
        form["schema"]["properties"]
    )


async def test_layout_chosen_by_role_and_picklist(deals: TenantClient) -> None:
    sales = await deals.add_user("s@x.test", role="sales")
    assert (await _form(sales))["layout"]["api_name"] == "deal_sales"
    admin_default = await _form(deals)
    assert admin_default["layout"] == {"api_name": "default", "label": "Deal", "generated": True}
    assert (await _form(deals, kind="partner"))["layout"]["api_name"] == "deal_partner"
    assert (await _form(deals, kind="direct"))["layout"]["api_name"] == "default"
    # The condition layout is for every role, and more specific than the role's layout.
    assert (await _form(sales, kind="partner"))["layout"]["api_name"] == "deal_partner"
    named = await _form(deals, layout="deal_sales")
    assert named["layout"]["api_name"] == "deal_sales"
    viewer = await deals.add_user("v@x.test", role="viewer")
    assert (await _form(viewer, layout="deal_sales"))["layout"]["api_name"] == "deal_sales"
    nobody = await deals.add_user("n@x.test")
    refused = await nobody.get("/api/v1/ui/deal/form")
    assert refused.status_code == 403
    assert (await sales.get("/api/v1/ui/deal/form", params={"layout": "nope"})).status_code == 404
    assert (await sales.get("/api/v1/ui/ghost/form")).status_code == 404


async def test_every_form_is_valid_json_forms(deals: TenantClient) -> None:
    sales = await deals.add_user("s@x.test", role="sales")
    viewer = await deals.add_user("v@x.test", role="viewer")
    for client, params in itertools.product(
        (deals, sales, viewer), ({}, {"kind": "partner"}, {"layout": "deal_sales"})
    ):
        form = await _form(client, **params)
        _check_structure(form)
    for obj in ("account",):
        _check_structure(await _form(deals, obj))
    form = await _form(sales)
    main, more = form["uischema"]["elements"]
    assert main["type"] == "Group" and main["label"] == "Main"
    assert {row["type"] for row in main["elements"]} == {"HorizontalLayout"}
    assert all(len(row["elements"]) <= 2 for row in main["elements"])
    assert more["elements"][0]["options"] == {"multi": True}
    assert form["schema"]["properties"]["notes"]["description"] == "Anything"
    account = next(c for c in controls(more) if c["scope"].endswith("/account"))
    assert account["options"]["x-lookup"] == {"object": "account"}
    assert account["options"]["x-widget"] == "lookup_search"


async def test_per_role_output_follows_permissions(deals: TenantClient) -> None:
    sales = await deals.add_user("s@x.test", role="sales")
    viewer = await deals.add_user("v@x.test", role="viewer")
    model = await _model(deals)
    deal = model.object("deal")
    layout = Layout.model_validate(LAYOUTS[0])
    placed = [p for s in layout.sections for p in s.fields]
    for client, role in ((sales, "sales"), (viewer, "viewer")):
        actor = type("A", (), {"role": role, "is_admin": False})()
        form = await _form(client, layout="deal_sales")
        access = {p.field: field_access(model, actor, "deal", p.field) for p in placed}
        shown = {name for name, a in access.items() if a != "hidden"}
        assert set(form["schema"]["properties"]) == shown
        assert {s.rsplit("/", 1)[-1] for s in scopes(form["uischema"])} == shown
        read_only = {
            p.field
            for p in placed
            if p.field in shown
            and (access[p.field] == "read" or p.read_only or deal.field(p.field).computed)
        }
        props = form["schema"]["properties"]
        assert {n for n, s in props.items() if s.get("readOnly")} == read_only
        for control in controls(form["uischema"]):
            name = control["scope"].rsplit("/", 1)[-1]
            assert control.get("options", {}).get("readonly", False) == (name in read_only)
        assert "secret" not in str(form)  # not in schema, UI schema, compact or rules
        listing = (await client.get("/api/v1/ui/deal/list", params={"view": "open_deals"})).json()
        assert [c["field"] for c in listing["columns"]] == ["name", "stage", "amount", "total"]
        assert "secret" not in listing["row_schema"]["properties"]
    sales_form = await _form(sales, layout="deal_sales")
    assert sales_form["schema"]["properties"]["discount"]["readOnly"] is True
    assert "notes" in sales_form["schema"]["properties"]
    viewer_form = await _form(viewer, layout="deal_sales")
    assert "notes" not in viewer_form["schema"]["properties"]
    # A viewer may read but not edit: every field is read-only.
    assert all(s.get("readOnly") for s in viewer_form["schema"]["properties"].values())
    admin = await _form(deals, layout="deal_sales")
    assert "secret" in admin["schema"]["properties"]
    assert [c["field"] for c in admin["compact"]] == ["name", "stage", "secret"]
    assert [c["field"] for c in sales_form["compact"]] == ["name", "stage"]


async def test_labels_follow_accept_language_then_tenant_default(
    deals: TenantClient, client: Any
) -> None:
    zh = await _form(deals, layout="deal_sales", headers={"Accept-Language": "fr;q=0.9, zh-CN"})
    assert zh["label"] == "交易" and zh["language"] == "zh-CN"
    assert zh["uischema"]["elements"][0]["label"] == "主要"
    assert zh["schema"]["properties"]["stage"]["title"] == "阶段"
    partner = await _form(deals, kind="partner", headers={"Accept-Language": "zh"})
    kind = partner["schema"]["properties"]["kind"]["oneOf"]
    assert {"const": "partner", "title": "渠道"} in kind
    en = await _form(deals, layout="deal_sales", headers={"Accept-Language": "en-GB"})
    assert en["label"] == "Deal"
    zh_tenant = await new_tenant(client, default_language="zh-CN")
    assert (await _apply(zh_tenant, {"objects": [ACCOUNT, DEAL]})).status_code == 200
    assert (await _form(zh_tenant))["label"] == "交易"
    listing = (await zh_tenant.get("/api/v1/ui/deal/list")).json()
    assert listing["language"] == "zh-CN"


def _records() -> list[dict[str, Any]]:
    """Records that hit every rule from both sides, plus random mixes."""
    choices: dict[str, list[Any]] = {
        "name": ["Deal", "", None, "x" * 41, 5],
        "kind": ["direct", "partner", None, "other"],
        "partner": [None, "", "Acme"],
        "stage": ["new", "won", "lost", None, "gone", "bogus"],
        "amount": [None, 10, 999.99, 1000, -1, 10**10, "12.5", "abc"],
        "close_date": [None, "2027-01-31", "2027-02-30", "31/01/2027"],
        "loss_reason": [None, "price", "timing", "nope"],
        "tags": [None, [], ["a"], ["a", "b"], ["a", "a"], ["z"]],
        "vip": [None, True, False, "yes"],
        "email": [None, "a@b.example", "not-an-email"],
        "site": [None, "https://acme.example/x", "ftp://acme.example", "acme"],
        "phone": [None, "+1 415 555 0100", "call me"],
        "signed_at": [None, "2027-01-31T09:30:00Z", "2027-01-31 09:30", "yesterday"],
        "discount": [None, 12.5, 1000],
        "total": [None, 5],
        "number": [None, "D-1"],
    }
    base = {"name": "Deal", "kind": "direct", "stage": "new"}
    records = [dict(base)]
    for name, values in choices.items():
        records += [base | {name: value} for value in values]
    rng = random.Random(6)
    for _ in range(70):
        record = {"name": "Deal"}
        for name in rng.sample(sorted(choices), 6):
            if name in ("total", "number") or (name == "amount" and rng.random() < 0.8):
                values = [v for v in choices[name] if v is None or isinstance(v, int | float)]
            else:
                values = choices[name]
            value = rng.choice(values)
            if value is not None or rng.random() < 0.5:
                record[name] = value
        records.append(record)
    # Rule combinations written on purpose.
    records += [
        {"name": "W", "stage": "won"},
        {"name": "W", "stage": "won", "close_date": "2027-01-01"},
        {"name": "L", "stage": "lost", "amount": 5},
        {"name": "L", "stage": "lost"},
        {"name": "P", "kind": "partner", "partner": "Acme", "loss_reason": "timing"},
        {"name": "P", "kind": "partner", "partner": "Acme", "loss_reason": "price", "tags": ["b"]},
        {"name": "P", "kind": "partner", "partner": "Acme", "vip": True, "loss_reason": "timing"},
        {"name": "P", "kind": "partner", "loss_reason": "price"},
        {"name": "B", "amount": 5000},
        {"name": "B", "amount": 5000, "loss_reason": "price"},
        {"name": "B", "amount": 5000, "partner": "Acme", "kind": "partner"},
    ]
    return records


async def test_json_schema_agrees_with_the_api(deals: TenantClient) -> None:
    forms: dict[Any, dict[str, Any]] = {}
    mismatches = []
    accepted = refused = 0
    for record in _records():
        kind = record.get("kind")
        key = kind if kind in ("direct", "partner") else None
        if key not in forms:
            forms[key] = (await _form(deals, **({"kind": key} if key else {})))["schema"]
        schema = forms[key]
        if any(n not in schema["properties"] for n in record):
            continue  # a field this form does not offer
        response = await deals.post("/api/v1/data/deal", json=record)
        assert response.status_code in (201, 422), response.text
        api = response.status_code == 201
        accepted, refused = accepted + api, refused + (not api)
        if api != schema_accepts(schema, record):
            mismatches.append((record, response.status_code, response.text[:300]))
    assert mismatches == []
    assert accepted >= 20 and refused >= 40


async def test_field_rules_enforced_on_every_write(deals: TenantClient) -> None:
    async def errors(response: Any) -> set[tuple[str, str]]:
        assert response.status_code == 422, response.text
        return {(e["field"], e["code"]) for e in response.json()["errors"]}

    post = "/api/v1/data/deal"
    won = await deals.post(post, json={"name": "A", "stage": "won"})
    assert await errors(won) == {("close_date", "required")}
    deal = await deals.create(
        "deal", {"name": "A", "amount": 10, "kind": "partner", "partner": "P"}
    )
    url = f"{post}/{deal['id']}"
    # Moving to won needs a close date; then the amount is locked.
    assert await errors(await deals.patch(url, json={"stage": "won"})) == {
        ("close_date", "required")
    }
    response = await deals.patch(url, json={"stage": "won", "close_date": "2027-01-01"})
    assert response.status_code == 200, response.text
    assert await errors(await deals.patch(url, json={"amount": 11})) == {("amount", "read-only")}
    same = await deals.patch(url, json={"amount": "10.00", "partner": "X"})
    assert same.status_code == 200, same.text
    # Hidden while direct: cannot be set (clearing it is fine).
    assert await errors(await deals.patch(url, json={"kind": "direct", "partner": "Y"})) == {
        ("partner", "hidden")
    }
    assert (await deals.patch(url, json={"kind": "direct", "partner": None})).status_code == 200
    # Allowed values while partner and not vip, checked on the record as it will be.
    await deals.patch(url, json={"kind": "partner", "partner": "Z", "loss_reason": "timing"})
    changed = await deals.patch(url, json={"vip": False})
    assert await errors(changed) == {("loss_reason", "not-allowed")}
    assert (await deals.patch(url, json={"vip": True})).status_code == 200
    # The batch path runs the same hook, with record positions.
    batch = await deals.post(
        f"{post}/batch", json={"records": [{"name": "ok"}, {"name": "W", "stage": "won"}]}
    )
    assert await errors(batch) == {("records/1/close_date", "required")}
    # Layout-level required: the partner layout requires `partner` for partner deals.
    response = await deals.post(post, json={"name": "P", "kind": "partner"})
    assert await errors(response) == {("partner", "required")}


async def test_rule_over_a_lookup_path(deals: TenantClient) -> None:
    deal = (await deals.get("/api/v1/metadata/objects/deal")).json()
    deal["field_rules"].append(PATH_RULE)
    assert (await _apply(deals, {"objects": [deal]})).status_code == 200
    big = await deals.create("account", {"name": "Big"})
    small = await deals.create("account", {"name": "Small"})
    refused = await deals.post("/api/v1/data/deal", json={"name": "D", "account": big["id"]})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "discount"
    ok = await deals.post("/api/v1/data/deal", json={"name": "D", "account": small["id"]})
    assert ok.status_code == 201, ok.text
    listed = {r["api_name"]: r for r in (await _form(deals))["field_rules"]}
    assert listed["big_account_discount"]["condition"] is None  # the API still enforces it
    assert listed["close_required"]["condition"] == {
        "required": ["stage"],
        "properties": {"stage": {"not": {"type": "null"}, "const": "won"}},
    }


async def test_rules_in_ui_schema(deals: TenantClient) -> None:
    form = await _form(deals)
    by_name = {c["scope"].rsplit("/", 1)[-1]: c for c in controls(form["uischema"])}
    assert by_name["partner"]["rule"]["effect"] == "HIDE"
    assert by_name["amount"]["rule"] == {
        "effect": "DISABLE",
        "condition": {
            "scope": "#",
            "schema": {
                "required": ["stage"],
                "properties": {"stage": {"not": {"type": "null"}, "enum": ["won", "lost"]}},
            },
        },
    }
    assert "rule" not in by_name["name"]
