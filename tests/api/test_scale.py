"""Scale on both databases: an object with 500 fields, and a tenant with 200 objects."""

from __future__ import annotations

from typing import Any

from metacrm.metadata.model import FIELD_TYPES
from tests.conftest import TenantClient

# Every type with a column of its own (master-detail needs a parent; formula and roll-up
# have no column).
STORED_TYPES = tuple(t for t in FIELD_TYPES if t not in ("master_detail", "formula", "rollup"))


def wide_field(i: int) -> dict[str, Any]:
    kind = STORED_TYPES[i % len(STORED_TYPES)]
    field: dict[str, Any] = {"api_name": f"f{i:03d}_{kind}", "type": kind, "label": f"Field {i}"}
    if kind in ("picklist", "multi_picklist"):
        field["values"] = [{"value": "red"}, {"value": "green"}, {"value": "蓝"}]
    if kind == "lookup":
        field["target"] = "parent"
    if kind == "auto_number":
        field["format"] = f"N{i}-{{0000}}"
    if kind == "number":
        field |= {"precision": 12, "scale": 3}
    if i % 50 == 7 and kind in ("text", "number", "email", "date"):
        field["indexed"] = True
    return field


def value_for(field: dict[str, Any], i: int, parent_id: str) -> tuple[Any, Any]:
    """(value sent, value read back) for a field of the wide object."""
    match field["type"]:
        case "text":
            return f"text {i} ✓", f"text {i} ✓"
        case "long_text":
            return "long " * 50, "long " * 50
        case "number":
            return f"{i}.125", f"{i}.125"
        case "currency":
            return i * 10 + 0.5, f"{i * 10}.50"
        case "percent":
            return 12.5, "12.50"
        case "boolean":
            return i % 2 == 0, i % 2 == 0
        case "date":
            return "2026-02-28", "2026-02-28"
        case "datetime":
            return "2026-02-28T10:30:00+02:00", "2026-02-28T08:30:00Z"
        case "email":
            return f"user{i}@example.com", f"user{i}@example.com"
        case "phone":
            return "+86 10 1234 5678", "+86 10 1234 5678"
        case "url":
            return f"https://example.com/{i}", f"https://example.com/{i}"
        case "picklist":
            return "蓝", "蓝"
        case "multi_picklist":
            return ["蓝", "red"], ["red", "蓝"]
        case "lookup":
            return parent_id, parent_id
        case "json":
            return {"i": i, "list": [1, "two", None]}, {"i": i, "list": [1, "two", None]}
    raise AssertionError(field)


def schema_of(document: dict[str, Any], name: str, kind: str) -> dict[str, Any]:
    """The component schema an object's create (`post`) or list (`get`) operation names."""
    operation = document["paths"][f"/api/v1/data/{name}"][kind]
    if kind == "post":
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    else:
        page = operation["responses"]["200"]["content"]["application/json"]["schema"]
        ref = page["properties"]["records"]["items"]["$ref"]
    return document["components"]["schemas"][ref.rsplit("/", 1)[1]]


WIDE = {
    "api_name": "wide",
    "label": {"en": "Wide", "zh-CN": "宽"},
    "fields": [
        {"api_name": "master", "type": "master_detail", "target": "parent"},
        *[wide_field(i) for i in range(499)],
    ],
}
PARENT = {"api_name": "parent", "fields": [{"api_name": "name", "type": "text"}]}


def test_the_wide_object_covers_every_stored_type() -> None:
    assert len(WIDE["fields"]) == 500
    kinds = {f["type"] for f in WIDE["fields"]}
    assert kinds == {*STORED_TYPES, "master_detail"}


async def test_object_with_500_fields_end_to_end(tenant: TenantClient) -> None:
    await tenant.define(PARENT, WIDE)
    parent = await tenant.create("parent", {"name": "P"})
    sent, expected = {"master": parent["id"]}, {"master": parent["id"]}
    for i, field in enumerate(WIDE["fields"][1:]):
        if field["type"] == "auto_number":
            expected[field["api_name"]] = field["format"].replace("{0000}", "0001")
            continue
        sent[field["api_name"]], expected[field["api_name"]] = value_for(field, i, parent["id"])
    created = await tenant.create("wide", sent)
    for name, value in expected.items():
        assert created[name] == value, (name, created[name], value)
    got = await tenant.get(f"/api/v1/data/wide/{created['id']}")
    assert got.status_code == 200 and got.json() == created
    for _ in range(3):
        await tenant.create("wide", {"master": parent["id"], "f000_text": "more"})
    listed = await tenant.get(
        "/api/v1/data/wide", params={"order_by": "-f002_number", "where": "f000_text != 'x'"}
    )
    assert listed.status_code == 200, listed.text
    rows = listed.json()["records"]
    assert len(rows) == 4 and rows[-1]["id"] == created["id"]  # NULL sorts first descending
    assert [r["f002_number"] for r in rows] == [None, None, None, "2.125"]
    picked = await tenant.get(
        "/api/v1/data/wide",
        params={"fields": ",".join(f["api_name"] for f in WIDE["fields"][:200]), "limit": 1},
    )
    assert picked.status_code == 200, picked.text
    assert len(picked.json()["records"][0]) == 200 + 1  # and id
    changed = await tenant.patch(
        f"/api/v1/data/wide/{created['id']}", json={"f496_text": None, "f001_long_text": "short"}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["f001_long_text"] == "short" and changed.json()["version"] == 2
    document = (await tenant.get("/api/v1/openapi.json")).json()
    schema = schema_of(document, "wide", "get")
    assert set(schema["properties"]) >= {f["api_name"] for f in WIDE["fields"]}
    create = schema_of(document, "wide", "post")
    assert "f015_auto_number" not in create["properties"]
    assert len(create["properties"]) == 500 - len(range(15, 499, 16))
    assert "/api/v1/data/wide/{id}" in document["paths"] or any(
        p.startswith("/api/v1/data/wide/") for p in document["paths"]
    )


async def test_tenant_with_200_objects(tenant: TenantClient) -> None:
    objects = [
        {
            "api_name": f"obj_{i:03d}",
            "label": {"en": f"Object {i}", "zh-CN": f"对象{i}"},
            "fields": [
                {"api_name": "name", "type": "text", "required": True},
                {"api_name": "amount", "type": "currency"},
                {"api_name": "due", "type": "date"},
                {"api_name": "kind", "type": "picklist", "values": [{"value": "a"}]},
                *(
                    [{"api_name": "up", "type": "lookup", "target": f"obj_{i - 1:03d}"}]
                    if i
                    else []
                ),
            ],
        }
        for i in range(200)
    ]
    response = await tenant.define(*objects)
    plan = response.json()["plan"]
    assert [op["op"] for op in plan["ops"]] == ["create_object"] * 200
    listed = (await tenant.get("/api/v1/metadata/objects")).json()["objects"]
    assert len(listed) == 200
    previous = None
    for i in (0, 1, 99, 198, 199):
        data = {"name": f"r{i}", "amount": "1.5", "kind": "a"}
        if i and previous and previous[0] == i - 1:
            data["up"] = previous[1]
        record = await tenant.create(f"obj_{i:03d}", data)
        previous = (i, record["id"])
        rows = (await tenant.get(f"/api/v1/data/obj_{i:03d}")).json()["records"]
        assert [r["name"] for r in rows] == [f"r{i}"]
    up = await tenant.get("/api/v1/data/obj_199", params={"fields": "name,up.name"})
    assert up.json()["records"][0]["up.name"] == "r198"
    document = (await tenant.get("/api/v1/openapi.json")).json()
    data_paths = {
        p.split("/")[4]
        for p in document["paths"]
        if p.startswith("/api/v1/data/") and not p.startswith("/api/v1/data/{")
    }
    assert data_paths == {o["api_name"] for o in objects}
    created = [schema_of(document, o["api_name"], "post") for o in objects]
    assert all("name" in c["properties"] for c in created)
    assert len({id(c) for c in created}) == 200


async def test_openapi_schema_names_do_not_collide(tenant: TenantClient) -> None:
    fields = [{"api_name": "name", "type": "text"}]
    await tenant.define(
        {"api_name": "item_1", "fields": fields},
        {"api_name": "item1", "fields": [*fields, {"api_name": "extra", "type": "text"}]},
    )
    document = (await tenant.get("/api/v1/openapi.json")).json()
    refs = set()
    for path, item in document["paths"].items():
        if path.startswith("/api/v1/data/item"):
            for operation in item.values():
                if isinstance(operation, dict) and "requestBody" in operation:
                    content = operation["requestBody"]["content"]["application/json"]
                    if "$ref" in content["schema"]:
                        refs.add(content["schema"]["$ref"])
    assert len(refs) == 4  # Create and Update of each
    item1 = schema_of(document, "item1", "post")
    assert "extra" in item1["properties"]
    assert "extra" not in schema_of(document, "item_1", "post")["properties"]
