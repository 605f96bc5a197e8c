"""Schema changes through the API on both databases: confirmation, atomicity, locks, churn."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from metacrm.platform.app import create_app
from metacrm.platform.db import Database, postgres_async_url
from metacrm.platform.settings import Settings
from metacrm.runtime import ddl
from tests.conftest import PG_URL, TenantClient, new_tenant

PROBLEM = "application/problem+json"

DEAL = {
    "api_name": "deal",
    "fields": [
        {"api_name": "name", "type": "text", "max_length": 50},
        {"api_name": "code", "type": "text", "max_length": 20},
        {"api_name": "note", "type": "text"},
        {
            "api_name": "stage",
            "type": "picklist",
            "values": [{"value": "new"}, {"value": "won"}, {"value": "lost"}],
        },
        {
            "api_name": "tags",
            "type": "multi_picklist",
            "values": [{"value": "a"}, {"value": "b_%"}, {"value": "c"}],
        },
        {"api_name": "amount", "type": "number", "precision": 10, "scale": 2},
    ],
}


def with_fields(
    obj: dict[str, Any], *fields: dict[str, Any], drop: tuple[str, ...] = ()
) -> dict[str, Any]:
    kept = [f for f in obj["fields"] if f["api_name"] not in drop]
    names = {f["api_name"] for f in fields}
    return obj | {"fields": [*fields, *(f for f in kept if f["api_name"] not in names)]}


def replaced(obj: dict[str, Any], field: dict[str, Any]) -> dict[str, Any]:
    return obj | {
        "fields": [field if f["api_name"] == field["api_name"] else f for f in obj["fields"]]
    }


async def apply(t: TenantClient, *objects: dict[str, Any], confirm: bool = False) -> httpx.Response:
    return await t.post(
        "/api/v1/metadata/apply",
        params={"confirm": str(confirm).lower()},
        json={"objects": list(objects)},
    )


async def version_count(t: TenantClient) -> int:
    response = await t.get("/api/v1/metadata/versions")
    assert response.status_code == 200, response.text
    return len(response.json()["versions"])


async def definition(t: TenantClient, name: str) -> dict[str, Any]:
    response = await t.get(f"/api/v1/metadata/objects/{name}")
    assert response.status_code == 200, response.text
    return response.json()


def _storage(t: TenantClient) -> str:
    return Database.storage_name(t.tenant)


async def db_columns(app: Any, t: TenantClient, table: str) -> list[str]:
    """The table's real columns, read from the database catalog."""
    db = app.state.metacrm.db
    schema = None if db.is_sqlite else _storage(t)
    async with db.tenant(_storage(t), writes=False) as conn:
        return await conn.run_sync(
            lambda c: [col["name"] for col in sa.inspect(c).get_columns(table, schema=schema)]
        )


async def db_tables(app: Any, t: TenantClient) -> set[str]:
    db = app.state.metacrm.db
    schema = None if db.is_sqlite else _storage(t)
    async with db.tenant(_storage(t), writes=False) as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names(schema=schema)))


async def pg_scalar(app: Any, t: TenantClient, sql: str, table: str) -> Any:
    db = app.state.metacrm.db
    async with db.tenant(_storage(t), writes=False) as conn:
        return await conn.scalar(sa.text(sql), {"name": f'"{_storage(t)}"."{table}"'})


RELFILENODE = "SELECT relfilenode FROM pg_class WHERE oid = to_regclass(:name)"
SLOTS = "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass(:name) AND attnum > 0"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"].endswith("/" + code), body
    return body


async def test_dropping_a_field_needs_confirmation(app: Any, tenant: TenantClient) -> None:
    await tenant.define(DEAL)
    await tenant.create("deal", {"name": "A", "note": "keep me"})
    count = await version_count(tenant)
    smaller = with_fields(DEAL, drop=("note",))
    plan = (await tenant.post("/api/v1/metadata/plan", json={"objects": [smaller]})).json()
    assert plan["destructive"] is True and plan["ops"][0]["op"] == "drop_field"
    body = assert_problem(await apply(tenant, smaller), 409, "destructive-change")
    assert any("deal.note" in e["message"] for e in body["errors"])
    assert_problem(
        await tenant.delete("/api/v1/metadata/objects/deal/fields/note"), 409, "destructive-change"
    )
    assert await version_count(tenant) == count
    assert "note" in await db_columns(app, tenant, "deal")
    assert (await tenant.get("/api/v1/data/deal")).json()["records"][0]["note"] == "keep me"
    response = await apply(tenant, smaller, confirm=True)
    assert response.status_code == 200, response.text
    assert await version_count(tenant) == count + 1
    assert "note" not in await db_columns(app, tenant, "deal")
    assert "note" not in (await tenant.get("/api/v1/data/deal")).json()["records"][0]
    assert (await tenant.post("/api/v1/data/deal", json={"note": "x"})).status_code == 422


async def test_dropping_an_object_needs_confirmation(app: Any, tenant: TenantClient) -> None:
    await tenant.define(DEAL)
    await tenant.create("deal", {"name": "A"})
    count = await version_count(tenant)
    assert_problem(await tenant.delete("/api/v1/metadata/objects/deal"), 409, "destructive-change")
    assert "deal" in await db_tables(app, tenant)
    assert await version_count(tenant) == count
    response = await tenant.delete("/api/v1/metadata/objects/deal", params={"confirm": "true"})
    assert response.status_code == 200, response.text
    assert "deal" not in await db_tables(app, tenant)
    assert (await tenant.get("/api/v1/data/deal")).status_code == 404
    await tenant.define(DEAL)  # the name is free again, with an empty table
    assert (await tenant.get("/api/v1/data/deal")).json()["records"] == []


async def test_removing_an_in_use_picklist_value_clears_it(tenant: TenantClient) -> None:
    await tenant.define(DEAL)
    won = await tenant.create("deal", {"name": "W", "stage": "won", "tags": ["a", "b_%", "c"]})
    new = await tenant.create("deal", {"name": "N", "stage": "new", "tags": ["b_%"]})
    lost = await tenant.create("deal", {"name": "L", "stage": "lost", "tags": ["a"]})
    count = await version_count(tenant)
    narrower = replaced(
        replaced(
            DEAL,
            {
                "api_name": "stage",
                "type": "picklist",
                "values": [{"value": "new"}, {"value": "lost"}],
            },
        ),
        {"api_name": "tags", "type": "multi_picklist", "values": [{"value": "a"}, {"value": "c"}]},
    )
    body = assert_problem(await apply(tenant, narrower), 409, "destructive-change")
    messages = " ".join(e["message"] for e in body["errors"])
    assert "['won']" in messages and "['b_%']" in messages
    assert await version_count(tenant) == count
    assert (await tenant.get(f"/api/v1/data/deal/{won['id']}")).json()["stage"] == "won"
    response = await apply(tenant, narrower, confirm=True)
    assert response.status_code == 200, response.text
    got = {r["id"]: r for r in (await tenant.get("/api/v1/data/deal")).json()["records"]}
    assert (got[won["id"]]["stage"], got[won["id"]]["tags"]) == (None, ["a", "c"])
    assert (got[new["id"]]["stage"], got[new["id"]]["tags"]) == ("new", None)
    assert (got[lost["id"]]["stage"], got[lost["id"]]["tags"]) == ("lost", ["a"])
    assert (await tenant.post("/api/v1/data/deal", json={"stage": "won"})).status_code == 422


async def test_a_failed_apply_leaves_schema_and_metadata_as_before(
    app: Any, tenant: TenantClient
) -> None:
    await tenant.define(DEAL)
    await tenant.create("deal", {"name": "A", "code": "DUP"})
    await tenant.create("deal", {"name": "B", "code": "DUP"})
    count = await version_count(tenant)
    before_columns = await db_columns(app, tenant, "deal")
    before_definition = await definition(tenant, "deal")
    change = with_fields(
        DEAL,
        {"api_name": "added", "type": "text"},  # first: its column is added before the failure
        {"api_name": "code", "type": "text", "max_length": 20, "unique": True},
    )
    plan = (await tenant.post("/api/v1/metadata/plan", json={"objects": [change]})).json()
    assert [op["op"] for op in plan["ops"]] == ["add_field", "alter_field"]
    response = await apply(tenant, change, {"api_name": "other", "fields": []})
    assert response.status_code in (409, 422), response.text
    assert response.headers["content-type"] == PROBLEM
    assert "Traceback" not in response.text
    assert await db_columns(app, tenant, "deal") == before_columns
    assert "added" not in await db_columns(app, tenant, "deal")
    assert "other" not in await db_tables(app, tenant)
    assert await version_count(tenant) == count
    assert await definition(tenant, "deal") == before_definition
    # The tenant still works, and the change goes through once the data allows it.
    records = (await tenant.get("/api/v1/data/deal", params={"order_by": "name"})).json()["records"]
    assert [r["code"] for r in records] == ["DUP", "DUP"]
    fix = await tenant.patch(f"/api/v1/data/deal/{records[1]['id']}", json={"code": "OTHER"})
    assert fix.status_code == 200, fix.text
    assert (await apply(tenant, change)).status_code == 200
    assert "added" in await db_columns(app, tenant, "deal")
    dup = await tenant.post("/api/v1/data/deal", json={"code": "DUP"})
    assert dup.status_code == 422 and dup.json()["errors"][0]["code"] == "unique"


async def test_narrowing_below_existing_data_is_refused(app: Any, tenant: TenantClient) -> None:
    await tenant.define(DEAL)
    await tenant.create("deal", {"name": "x" * 30, "amount": "12345678.99"})
    count = await version_count(tenant)
    short = replaced(DEAL, {"api_name": "name", "type": "text", "max_length": 10})
    assert_problem(await apply(tenant, short), 409, "destructive-change")
    body = assert_problem(await apply(tenant, short, confirm=True), 422, "metadata-invalid")
    assert body["errors"][0]["code"] == "data-does-not-fit"
    fewer = replaced(DEAL, {"api_name": "amount", "type": "number", "precision": 8, "scale": 2})
    body = assert_problem(await apply(tenant, fewer, confirm=True), 422, "metadata-invalid")
    assert body["errors"][0]["code"] == "data-does-not-fit"
    assert await version_count(tenant) == count
    assert (await definition(tenant, "deal"))["fields"][0]["max_length"] == 50
    # A narrowing the data fits is applied with confirmation, and then enforced.
    fits = replaced(DEAL, {"api_name": "name", "type": "text", "max_length": 30})
    assert (await apply(tenant, fits, confirm=True)).status_code == 200
    assert (await tenant.post("/api/v1/data/deal", json={"name": "y" * 31})).status_code == 422
    record = (await tenant.get("/api/v1/data/deal")).json()["records"][0]
    assert record["name"] == "x" * 30 and record["amount"] == "12345678.99"


async def test_adding_a_nullable_field_does_not_rewrite_the_table(
    app: Any, tenant: TenantClient, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("relfilenode is PostgreSQL's")
    await tenant.define(DEAL)
    for i in range(50):
        await tenant.create("deal", {"name": f"d{i}"})
    before = await pg_scalar(app, tenant, RELFILENODE, "deal")
    added = with_fields(
        DEAL,
        {"api_name": "extra", "type": "text"},
        {"api_name": "flag", "type": "boolean", "default": True, "required": True},
        {"api_name": "big", "type": "number", "precision": 30, "scale": 4},
        {"api_name": "tagged", "type": "json"},
    )
    assert (await apply(tenant, added)).status_code == 200
    assert await pg_scalar(app, tenant, RELFILENODE, "deal") == before
    records = (await tenant.get("/api/v1/data/deal", params={"limit": 200})).json()["records"]
    assert len(records) == 50 and {r["extra"] for r in records} == {None}


# ------------------------------------------------------------ PostgreSQL locks


@pytest.fixture
async def locking(settings: Settings, backend: str) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """An app with a 100 ms lock_timeout and one retry, and an HTTP client."""
    if backend != "postgresql":
        pytest.skip("lock_timeout is PostgreSQL's")
    app = create_app(settings.model_copy(update={"lock_timeout_ms": 100, "ddl_retries": 3}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield app, http


async def _hold_lock(
    t: TenantClient, table: str, held: asyncio.Event, release: asyncio.Event
) -> None:
    engine = create_async_engine(postgres_async_url(PG_URL or ""))
    try:
        async with engine.connect() as conn, conn.begin():
            await conn.exec_driver_sql(f'LOCK TABLE "{_storage(t)}"."{table}" IN ACCESS SHARE MODE')
            await conn.exec_driver_sql(f'SELECT count(*) FROM "{_storage(t)}"."{table}"')
            held.set()
            await release.wait()
    finally:
        await engine.dispose()


async def test_busy_table_waits_then_retries(locking: tuple[Any, httpx.AsyncClient]) -> None:
    app, http = locking
    t = await new_tenant(http)
    await t.define(DEAL)
    count = await version_count(t)
    held, release = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold_lock(t, "deal", held, release))
    await held.wait()

    async def release_soon() -> None:
        await asyncio.sleep(0.25)  # past the first lock_timeout, before the retries run out
        release.set()

    response, _ = await asyncio.gather(
        apply(t, with_fields(DEAL, {"api_name": "added", "type": "text"})), release_soon()
    )
    await holder
    assert response.status_code == 200, response.text
    assert "added" in await db_columns(app, t, "deal")
    assert await version_count(t) == count + 1


async def test_table_busy_past_the_retries_answers_503(
    locking: tuple[Any, httpx.AsyncClient],
) -> None:
    app, http = locking
    t = await new_tenant(http)
    await t.define(DEAL)
    count = await version_count(t)
    held, release = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(_hold_lock(t, "deal", held, release))
    await held.wait()
    try:
        response = await apply(t, with_fields(DEAL, {"api_name": "added", "type": "text"}))
    finally:
        release.set()
        await holder
    assert_problem(response, 503, "schema-busy")
    assert "added" not in await db_columns(app, t, "deal")
    assert await version_count(t) == count
    # Reads were never blocked, and the change goes through once the table is free.
    assert (await t.get("/api/v1/data/deal")).status_code == 200
    assert (
        await apply(t, with_fields(DEAL, {"api_name": "added", "type": "text"}))
    ).status_code == 200


# ------------------------------------------------------------ column churn


async def test_column_churn_rebuilds_the_table_and_keeps_data(
    app: Any, tenant: TenantClient, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dropped columns keep their PostgreSQL slot: near the limit the table is rebuilt."""
    monkeypatch.setattr(ddl, "PG_COLUMN_SLOTS_REBUILD_AT", 60)
    base = with_fields(DEAL, {"api_name": "ref", "type": "text", "external_id": True})
    await tenant.define(
        base,
        {"api_name": "child", "fields": [{"api_name": "deal", "type": "lookup", "target": "deal"}]},
    )
    kept = [
        await tenant.create(
            "deal",
            {"name": f"d{i}", "ref": f"R{i}", "stage": "won", "tags": ["a"], "amount": f"{i}.25"},
        )
        for i in range(5)
    ]
    child = await tenant.create("child", {"deal": kept[0]["id"]})
    slots, nodes = [], []
    for round_ in range(8):
        extra = [{"api_name": f"x{round_}_{i}", "type": "text"} for i in range(10)]
        response = await apply(tenant, with_fields(base, *extra))
        assert response.status_code == 200, response.text
        await tenant.patch(f"/api/v1/data/deal/{kept[0]['id']}", json={f"x{round_}_0": "v"})
        response = await apply(tenant, base, confirm=True)
        assert response.status_code == 200, response.text
        if backend == "postgresql":
            slots.append(await pg_scalar(app, tenant, SLOTS, "deal"))
            nodes.append(await pg_scalar(app, tenant, RELFILENODE, "deal"))
    if backend == "postgresql":
        assert max(slots) < 60 + 10  # never past the threshold plus one batch
        assert any(b < a for a, b in itertools.pairwise(slots)), slots  # rebuilt
        assert len(set(nodes)) > 1
    columns = await db_columns(app, tenant, "deal")
    assert not any(c.startswith("x") for c in columns)
    records = (await tenant.get("/api/v1/data/deal", params={"order_by": "ref"})).json()["records"]
    assert [
        (r["id"], r["name"], r["ref"], r["stage"], r["tags"], r["amount"]) for r in records
    ] == [(k["id"], k["name"], k["ref"], "won", ["a"], k["amount"]) for k in kept]
    assert [r["version"] for r in records] == [9, 1, 1, 1, 1]
    # Indexes and links survived the rebuild.
    dup = await tenant.post("/api/v1/data/deal", json={"ref": "R1"})
    assert dup.status_code == 422 and dup.json()["errors"][0]["code"] == "unique"
    got = await tenant.get(f"/api/v1/data/child/{child['id']}")
    assert got.json()["deal"] == kept[0]["id"]
    assert (await tenant.delete(f"/api/v1/data/deal/{kept[0]['id']}")).status_code == 204


async def test_rebuild_of_a_table_with_a_63_character_name(
    app: Any, tenant: TenantClient, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Constraint and index names past 63 bytes are truncated: the rebuild must find them."""
    monkeypatch.setattr(ddl, "PG_COLUMN_SLOTS_REBUILD_AT", 20)
    name = "l" * 63
    base = {
        "api_name": name,
        "fields": [
            {"api_name": "name", "type": "text", "unique": True},
            {"api_name": "n", "type": "auto_number"},
            {"api_name": "up", "type": "lookup", "target": name},
        ],
    }
    await tenant.define(base)
    first = await tenant.create(name, {"name": "one"})
    await tenant.create(name, {"name": "two", "up": first["id"]})
    for round_ in range(4):
        extra = [{"api_name": f"x{round_}_{i}", "type": "text"} for i in range(8)]
        response = await apply(tenant, base | {"fields": [*base["fields"], *extra]})
        assert response.status_code == 200, response.text
        response = await apply(tenant, base, confirm=True)
        assert response.status_code == 200, response.text
    if backend == "postgresql":
        assert await pg_scalar(app, tenant, SLOTS, name) < 20 + 8
    rows = (await tenant.get(f"/api/v1/data/{name}", params={"order_by": "n"})).json()["records"]
    assert [(r["name"], r["n"], r["up"]) for r in rows] == [
        ("one", "000001", None),
        ("two", "000002", first["id"]),
    ]
    assert (await tenant.post(f"/api/v1/data/{name}", json={"name": "one"})).status_code == 422
    assert (await tenant.create(name, {"name": "three"}))["n"] == "000003"


async def test_concurrent_changes_are_serialised(app: Any, tenant: TenantClient) -> None:
    """Five field additions at once: each applied once, in order, with no lost update."""
    await tenant.define(DEAL)
    count = await version_count(tenant)
    writes = [tenant.create("deal", {"name": f"w{i}"}) for i in range(5)]
    adds = [
        tenant.post(
            "/api/v1/metadata/objects/deal/fields", json={"api_name": f"c{i}", "type": "text"}
        )
        for i in range(5)
    ]
    results = await asyncio.gather(*adds, *writes)
    assert [r.status_code for r in results[:5]] == [201] * 5, [r.text for r in results[:5]]
    versions = sorted(r.json()["version"] for r in results[:5])
    assert versions == list(range(versions[0], versions[0] + 5))
    assert await version_count(tenant) == count + 5
    columns = await db_columns(app, tenant, "deal")
    assert {f"c{i}" for i in range(5)} <= set(columns)
    fields = [f["api_name"] for f in (await definition(tenant, "deal"))["fields"]]
    assert {f"c{i}" for i in range(5)} <= set(fields)
    assert len((await tenant.get("/api/v1/data/deal")).json()["records"]) == 5


async def test_drops_that_break_references_are_refused(app: Any, tenant: TenantClient) -> None:
    child = {
        "api_name": "child",
        "fields": [
            {"api_name": "deal", "type": "lookup", "target": "deal"},
            {"api_name": "double", "type": "formula", "returns": "number", "expression": "n * 2"},
            {"api_name": "n", "type": "number"},
        ],
    }
    await tenant.define(DEAL, child)
    count = await version_count(tenant)
    response = await tenant.delete("/api/v1/metadata/objects/deal", params={"confirm": "true"})
    body = assert_problem(response, 422, "metadata-invalid")
    # The lookup to the dropped object breaks: the error names it, not its symptom.
    assert (body["errors"][0]["field"], body["errors"][0]["code"]) == (
        "objects/child/fields/deal",
        "breaks-dependent",
    )
    response = await tenant.delete(
        "/api/v1/metadata/objects/child/fields/n", params={"confirm": "true"}
    )
    assert response.status_code == 422, response.text
    assert await version_count(tenant) == count
    assert {"deal", "child"} <= await db_tables(app, tenant)
    assert "n" in await db_columns(app, tenant, "child")


async def test_text_to_picklist_checks_the_picklist_column_length(tenant: TenantClient) -> None:
    """A picklist column holds 100 characters: longer text is refused alike on both databases."""
    await tenant.define(DEAL)
    await tenant.create("deal", {"note": "n" * 150})
    count = await version_count(tenant)
    picklist = {"api_name": "note", "type": "picklist", "values": [{"value": "a"}]}
    body = assert_problem(
        await apply(tenant, replaced(DEAL, picklist), confirm=True), 422, "metadata-invalid"
    )
    assert body["errors"][0]["code"] == "data-does-not-fit"
    assert await version_count(tenant) == count
    assert (await tenant.get("/api/v1/data/deal")).json()["records"][0]["note"] == "n" * 150
