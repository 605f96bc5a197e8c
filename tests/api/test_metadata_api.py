"""The metadata API: objects, fields, plans, versions, the schema, and who may use it."""

from __future__ import annotations

import jsonschema

from tests.conftest import ACCOUNT, TenantClient


async def test_object_and_field_lifecycle(tenant: TenantClient) -> None:
    created = await tenant.post("/api/v1/metadata/objects", json=ACCOUNT)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    assert [op["op"] for op in created.json()["plan"]["ops"]] == ["create_object"]
    again = await tenant.post("/api/v1/metadata/objects", json=ACCOUNT)
    assert again.status_code == 409
    field = {"api_name": "employees", "type": "number", "precision": 9, "min": 0}
    added = await tenant.post("/api/v1/metadata/objects/account/fields", json=field)
    assert added.status_code == 201, added.text
    record = await tenant.create("account", {"name": "A", "employees": 12})
    assert record["employees"] == "12"
    widened = await tenant.patch(
        "/api/v1/metadata/objects/account/fields/name", json={"max_length": 200}
    )
    assert widened.status_code == 200, widened.text
    assert widened.json()["plan"]["destructive"] is False
    narrowed = await tenant.patch(
        "/api/v1/metadata/objects/account/fields/name", json={"max_length": 10}
    )
    assert narrowed.status_code == 409
    assert narrowed.json()["errors"][0]["code"] == "destructive"
    await tenant.post(
        "/api/v1/metadata/objects/account/fields", json={"api_name": "note", "type": "text"}
    )
    retyped = await tenant.patch(
        "/api/v1/metadata/objects/account/fields/note", json={"type": "number"}
    )
    assert retyped.status_code == 422
    assert retyped.json()["errors"][0]["code"] == "type-change"
    leftover = await tenant.patch(
        "/api/v1/metadata/objects/account/fields/employees", json={"type": "boolean"}
    )
    assert leftover.status_code == 422  # number properties do not fit a boolean
    assert {e["code"] for e in leftover.json()["errors"]} == {"extra_forbidden"}
    dropped = await tenant.delete("/api/v1/metadata/objects/account/fields/employees")
    assert dropped.status_code == 409
    dropped = await tenant.delete(
        "/api/v1/metadata/objects/account/fields/employees", params={"confirm": "true"}
    )
    assert dropped.status_code == 200
    assert "employees" not in (await tenant.get(f"/api/v1/data/account/{record['id']}")).json()
    fields = (await tenant.get("/api/v1/metadata/objects/account/fields")).json()["fields"]
    assert "employees" not in [f["api_name"] for f in fields]
    versions = (await tenant.get("/api/v1/metadata/versions")).json()["versions"]
    assert [v["version"] for v in versions] == [5, 4, 3, 2, 1]
    assert versions[0]["plan"]["ops"][0]["op"] == "drop_field"


async def test_plan_changes_nothing(tenant: TenantClient) -> None:
    plan = await tenant.post("/api/v1/metadata/plan", json={"objects": [ACCOUNT]})
    assert plan.status_code == 200, plan.text
    assert plan.json()["summary"].startswith("+ object account")
    assert (await tenant.get("/api/v1/metadata/objects")).json()["objects"] == []
    assert (await tenant.get("/api/v1/data/account")).status_code == 404


async def test_invalid_metadata_lists_every_problem(tenant: TenantClient) -> None:
    bad = {
        "api_name": "Bad Name",
        "fields": [
            {"api_name": "select", "type": "text"},
            {"api_name": "id", "type": "text"},
            {"api_name": "x", "type": "nope"},
            {"api_name": "link", "type": "lookup", "target": "ghost"},
        ],
    }
    response = await tenant.post("/api/v1/metadata/objects", json=bad)
    assert response.status_code == 422
    fields = [e["field"] for e in response.json()["errors"]]
    assert "api_name" in fields
    assert any(f.startswith("fields/0") for f in fields)
    assert any(f.startswith("fields/1") for f in fields)
    assert any(f.startswith("fields/2") for f in fields)
    dangling = await tenant.post(
        "/api/v1/metadata/objects",
        json={
            "api_name": "thing",
            "fields": [{"api_name": "link", "type": "lookup", "target": "ghost"}],
        },
    )
    assert dangling.status_code == 422
    assert dangling.json()["errors"][0] == {
        "field": "objects/thing/fields/link/target",
        "code": "unknown-object",
        "message": "target object 'ghost' does not exist",
    }
    assert (await tenant.get("/api/v1/metadata/versions")).json()["versions"] == []


async def test_published_schema_validates_the_example_model(tenant: TenantClient) -> None:
    schema = (await tenant.get("/api/v1/metadata/schema")).json()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors({"objects": [ACCOUNT]})) == []
    assert list(
        validator.iter_errors(
            {"objects": [{"api_name": "x", "fields": [{"api_name": "y", "type": "nope"}]}]}
        )
    )


async def test_openapi_follows_the_metadata(tenant: TenantClient) -> None:
    await tenant.define(ACCOUNT)
    spec = (await tenant.get("/api/v1/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/data/account/{id}" in spec["paths"]
    create = spec["components"]["schemas"]["Account_Create"]
    assert create["required"] == ["name"]
    assert create["properties"]["industry"]["enum"] == ["tech", "retail", None]
    assert "/api/v1/data/{object_name}" not in spec["paths"]
    await tenant.post(
        "/api/v1/metadata/objects/account/fields", json={"api_name": "vip", "type": "boolean"}
    )
    spec = (await tenant.get("/api/v1/openapi.json")).json()
    assert spec["components"]["schemas"]["Account"]["properties"]["vip"]["type"] == [
        "boolean",
        "null",
    ]
    zh = (await tenant.get("/api/v1/openapi.json", headers={"Accept-Language": "zh-CN"})).json()
    assert zh["components"]["schemas"]["Account"]["title"] == "客户"
    docs = await tenant.get("/api/v1/docs")
    assert docs.status_code == 200 and "/api/v1/openapi.json" in docs.text


async def test_non_admins_cannot_change_metadata(tenant: TenantClient) -> None:
    clerk = await tenant.add_user("clerk@example.com")
    response = await clerk.post("/api/v1/metadata/objects", json=ACCOUNT)
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert (await clerk.get("/api/v1/metadata/versions")).status_code == 403
