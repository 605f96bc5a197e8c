"""Save-time checks with positions, plans listing layouts that lose a field, list views,
and every layout of the example pack rendered as valid documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from metacrm.checks.layouts import layout_problems, list_view_problems
from metacrm.metadata.packs import contents_model, read_folder
from metacrm.runtime.layouts import layouts_of
from metacrm.runtime.permissions import object_permission
from metacrm.ui_schema.forms import form_document
from metacrm.ui_schema.lists import list_document
from metacrm.ui_schema.selection import list_views_of
from tests.conftest import ACCOUNT, TenantClient
from tests.ui_schema.jsonforms import ui_schema_errors
from tests.ui_schema.support import DEAL, LAYOUTS, LIST_VIEWS, ROLES

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def _setup(tenant: TenantClient) -> None:
    response = await tenant.post(
        "/api/v1/metadata/apply",
        json={
            "objects": [ACCOUNT, DEAL],
            "roles": ROLES,
            "layouts": LAYOUTS,
            "list_views": LIST_VIEWS,
        },
    )
    assert response.status_code == 200, response.text


def _errors(response: Any) -> set[tuple[str, str]]:
    assert response.status_code == 422, response.text
    return {(e["field"], e["code"]) for e in response.json()["errors"]}


async def test_layout_problems_are_refused_with_positions(tenant: TenantClient) -> None:
    await _setup(tenant)
    bad = {
        "api_name": "bad",
        "object": "deal",
        "when": {"field": "kind", "values": ["partner", "nope"]},
        "sections": [
            {"fields": [{"field": "stage"}, {"field": "ghost"}, {"field": "stage"}]},
        ],
        "related_lists": [{"object": "account", "field": "name"}],
        "compact": ["ghost2"],
    }
    response = await tenant.post("/api/v1/metadata/layouts", json=bad)
    assert _errors(response) == {
        ("layouts/bad/sections/0/fields/1/field", "unknown-field"),
        ("layouts/bad/sections/0/fields/2/field", "duplicate"),
        ("layouts/bad/sections", "missing-required"),  # deal.name
        ("layouts/bad/when/values/1", "unknown-value"),
        ("layouts/bad/related_lists/0/field", "not-a-link"),
        ("layouts/bad/compact/ghost2", "unknown-field"),
    }
    hides = {
        "api_name": "hides",
        "object": "deal",
        "sections": [{"fields": [{"field": "name", "hidden": True}]}],
    }
    assert _errors(await tenant.post("/api/v1/metadata/layouts", json=hides)) == {
        ("layouts/hides/sections/0/fields/0/hidden", "hides-required")
    }
    view = {
        "api_name": "v",
        "object": "deal",
        "columns": ["name", "ghost"],
        "kanban_field": "amount",
        "sort": "-nope",
    }
    assert _errors(await tenant.post("/api/v1/metadata/list-views", json=view)) == {
        ("list_views/v/columns/ghost", "unknown-field"),
        ("list_views/v/kanban_field", "wrong-type"),
        ("list_views/v/sort", "unknown-field"),
    }
    rule = {
        "api_name": "r",
        "when": "stage == 'won'",
        "fields": ["ghost", "total"],
        "effect": "required",
    }
    deal = DEAL | {"field_rules": [rule]}
    response = await tenant.post("/api/v1/metadata/apply", json={"objects": [deal]})
    assert _errors(response) == {
        ("objects/deal/field_rules/r/fields/0", "unknown-field"),
        ("objects/deal/field_rules/r/fields/1", "computed"),
    }


async def test_adding_and_removing_fields(tenant: TenantClient) -> None:
    await _setup(tenant)
    # Adding a field, even a required one, leaves the layouts valid; the form adds it.
    extra = {"api_name": "region", "type": "text", "required": True, "default": "emea"}
    must = {"api_name": "code", "type": "text", "required": True}
    for field in (extra, must):
        added = await tenant.post("/api/v1/metadata/objects/deal/fields", json=field)
        assert added.status_code == 201, added.text
    form = (await tenant.get("/api/v1/ui/deal/form", params={"layout": "deal_sales"})).json()
    assert "code" in form["schema"]["required"]
    assert form["uischema"]["elements"][-1]["elements"][0]["scope"] == "#/properties/code"
    # Removing a field a layout uses shows up in the plan as a layout step.
    deal = (await tenant.get("/api/v1/metadata/objects/deal")).json()
    deal["fields"] = [f for f in deal["fields"] if f["api_name"] not in ("amount", "total")]
    deal["field_rules"] = [
        r for r in deal["field_rules"] if "amount" not in r["when"] and "amount" not in r["fields"]
    ]
    plan = (await tenant.post("/api/v1/metadata/plan", json={"objects": [deal]})).json()
    steps = {op["description"] for op in plan["ops"]}
    assert "~ layouts deal_sales: no longer shows deal.amount, deal.total (removed)" in steps
    assert "~ list-views open_deals: no longer shows deal.amount, deal.total (removed)" in steps
    assert "~ layouts deal_partner: no longer shows deal.amount (removed)" in steps
    applied = await tenant.post(
        "/api/v1/metadata/apply", json={"objects": [deal]}, params={"confirm": "true"}
    )
    assert applied.status_code == 200, applied.text
    form = (await tenant.get("/api/v1/ui/deal/form", params={"layout": "deal_sales"})).json()
    assert "amount" not in form["schema"]["properties"]
    listing = (await tenant.get("/api/v1/ui/deal/list", params={"view": "open_deals"})).json()
    assert [c["field"] for c in listing["columns"]] == ["name", "stage", "secret"]
    assert listing["query"]["order_by"] == "name"
    # Changing the layout while it keeps the stale reference is refused, with its position.
    layout = (await tenant.get("/api/v1/metadata/layouts/deal_sales")).json()
    layout["label"] = "Renamed"
    response = await tenant.put("/api/v1/metadata/layouts/deal_sales", json=layout)
    assert ("layouts/deal_sales/sections/0/fields/4/field", "unknown-field") in _errors(response)


async def test_list_documents(tenant: TenantClient) -> None:
    await _setup(tenant)
    sales = await tenant.add_user("s@x.test", role="sales")
    viewer = await tenant.add_user("v@x.test", role="viewer")
    listing = (
        await tenant.get(
            "/api/v1/ui/deal/list",
            params={"view": "open_deals"},
            headers={"Accept-Language": "zh-CN"},
        )
    ).json()
    assert listing["view"] == {"api_name": "open_deals", "label": "进行中", "generated": False}
    assert listing["columns"][1] == {"field": "stage", "label": "阶段", "type": "picklist"}
    assert listing["columns"][4] == {
        "field": "total",
        "label": "total",
        "type": "formula",
        "returns": "currency",
    }
    assert listing["sort"] == [
        {"field": "amount", "descending": True},
        {"field": "name", "descending": False},
    ]
    assert listing["kanban"]["field"] == "stage"
    assert [lane["value"] for lane in listing["kanban"]["lanes"]] == ["new", "won", "lost"]
    assert listing["kanban"]["lanes"][1]["color"] == "#00aa00"
    assert listing["query"] == {
        "fields": "name,stage,amount,secret,total",
        "limit": 25,
        "where": "stage == 'new'",
        "order_by": "-amount,name",
    }
    Draft202012Validator.check_schema(listing["row_schema"])
    # The list's query runs as is against the data API.
    await tenant.create("deal", {"name": "n", "amount": 5})
    rows = await tenant.get("/api/v1/data/deal", params=listing["query"])
    assert rows.status_code == 200, rows.text
    for row in rows.json()["records"]:
        Draft202012Validator(listing["row_schema"]).validate(row)
    # Visibility: roles only; a filter on a hidden field is not served to that role.
    first = (await viewer.get("/api/v1/ui/deal/list")).json()
    assert first["view"]["api_name"] == "open_deals"
    assert (
        await viewer.get("/api/v1/ui/deal/list", params={"view": "secret_deals"})
    ).status_code == 404
    assert (
        await viewer.get("/api/v1/ui/deal/list", params={"view": "viewer_only"})
    ).status_code == 200
    assert (
        await sales.get("/api/v1/ui/deal/list", params={"view": "secret_deals"})
    ).status_code == 403
    # Objects without list views get a generated one.
    account = (await tenant.get("/api/v1/ui/account/list")).json()
    assert account["view"]["generated"] is True
    assert [c["field"] for c in account["columns"]][:2] == ["name", "code"]
    assert account["query"]["order_by"] == "-created_at"


def test_every_example_layout_renders_for_every_role() -> None:
    for pack in sorted(p for p in EXAMPLES.iterdir() if (p / "pack.json").is_file()):
        files = read_folder(pack)
        contents = _contents(files)
        model, _ = contents_model(contents)
        actors = [type("A", (), {"is_admin": True, "role": None})()] + [
            type("A", (), {"is_admin": False, "role": r.api_name})() for r in model.roles
        ]
        for obj in model.objects:
            for layout in layouts_of(model, obj):
                if layout in model.layouts:
                    assert layout_problems(layout, model) == [], (pack.name, layout.api_name)
                for actor in actors:
                    permission = object_permission(model, actor, obj.api_name)
                    if not (permission.read or permission.view_all):
                        continue
                    form = form_document(model, obj, layout, actor, ["zh-CN", "en"])
                    Draft202012Validator.check_schema(form["schema"])
                    assert ui_schema_errors(form["uischema"], form["schema"]) == []
            for view in list_views_of(model, obj):
                if view in model.list_views:
                    assert list_view_problems(view, model) == [], (pack.name, view.api_name)
                list_document(model, obj, view, actors[0], ["en"])


def _contents(files: dict[str, str]) -> dict[str, Any]:
    import json

    contents: dict[str, Any] = {"objects": []}
    for path, body in files.items():
        if path.startswith("objects/"):
            contents["objects"].append(json.loads(body))
        elif "/" not in path and path != "pack.json":
            contents[path.removesuffix(".json")] = json.loads(body)
    return contents
