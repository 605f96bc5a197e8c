"""Batch creates written together: every record checked like a single create, one INSERT
for the new records, their audit entries and events, and the exact same answers when a
record clashes or is refused (SQLite and PostgreSQL, through the HTTP API)."""

from __future__ import annotations

from typing import Any

import pytest

from metacrm.runtime.hooks import Origin
from tests.conftest import TenantClient
from tests.process.support import OPPORTUNITY, PATH, QUOTE, codes, setup
from tests.runtime.test_write_path import Recorder

ITEM = {
    "api_name": "bulk_item",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "code", "type": "text", "unique": True},
        {"api_name": "qty", "type": "number"},
        {"api_name": "colour", "type": "text", "default": "blue"},
        {"api_name": "number", "type": "auto_number", "format": "IT-{0000}"},
    ],
}
BATCH = "/api/v1/data/bulk_item/batch"


async def _names(tenant: TenantClient, object_name: str) -> list[str]:
    response = await tenant.get(
        f"/api/v1/data/{object_name}", params={"order_by": "name", "limit": 200}
    )
    assert response.status_code == 200, response.text
    return [r["name"] for r in response.json()["records"]]


async def test_a_batch_of_500_writes_500_audit_entries_and_500_events(
    app: Any, tenant: TenantClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app.state.metacrm.settings, "batch_max", 500)
    await tenant.define(ITEM)
    recorder = Recorder("bulk_item")
    app.state.metacrm.events.subscribe(recorder)
    try:
        records = [{"name": f"n{i:03d}", "code": f"c{i}", "qty": i} for i in range(500)]
        response = await tenant.post(BATCH, json={"records": records})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
    finally:
        app.state.metacrm.events.unsubscribe(recorder)
    assert [r["index"] for r in results] == list(range(500))
    assert all(r["created"] for r in results)
    ids = [r["id"] for r in results]
    assert len(set(ids)) == 500

    # One after-commit event per record, in order, with the values written.
    assert [str(e.record_id) for e in recorder.events] == ids
    assert all(e.kind == "create" and e.before is None for e in recorder.events)
    first = recorder.events[0]
    assert first.after is not None and first.after["name"] == "n000"
    assert first.after["colour"] == "blue" and first.after["number"] == "IT-0001"
    assert first.changed == frozenset({"name", "code", "qty", "colour"})
    assert first.intent.origin is Origin.API

    # One audit entry per record, shaped like a single create's.
    audit = await tenant.get(
        "/api/v1/audit", params={"object": "bulk_item", "action": "record.create", "limit": 500}
    )
    entries = audit.json()["entries"]
    assert sorted(e["record_id"] for e in entries) == sorted(ids)
    single = await tenant.create("bulk_item", {"name": "one", "code": "single", "qty": 1})
    one = (await tenant.get("/api/v1/audit", params={"record_id": single["id"]})).json()
    assert [e["detail"] for e in one["entries"]] == [entries[0]["detail"]]
    assert {e["user_id"] for e in entries} == {one["entries"][0]["user_id"]}


async def test_unique_clashes_name_exactly_the_records_that_clash(
    app: Any, tenant: TenantClient
) -> None:
    await tenant.define(ITEM)
    await tenant.create("bulk_item", {"name": "old3", "code": "taken-3"})
    await tenant.create("bulk_item", {"name": "old7", "code": "taken-7"})
    recorder = Recorder("bulk_item")
    app.state.metacrm.events.subscribe(recorder)
    try:
        records = [{"name": f"new{i}", "code": f"free-{i}"} for i in range(10)]
        records[3]["code"] = "taken-3"
        records[7]["code"] = "taken-7"
        response = await tenant.post(BATCH, json={"records": records})
        assert response.status_code == 422, response.text
        assert response.json()["errors"] == [
            {
                "field": f"records/{i}/code",
                "code": "unique",
                "message": "another bulk_item record has this code",
            }
            for i in (3, 7)
        ]
        assert await _names(tenant, "bulk_item") == ["old3", "old7"]

        # Two records of the batch with the same value: the later one is named, as when
        # records were written one by one.
        records = [
            {"name": f"dup{i}", "code": "same" if i in (1, 4) else f"d{i}"} for i in range(6)
        ]
        response = await tenant.post(BATCH, json={"records": records})
        assert response.status_code == 422, response.text
        assert codes(response) == {("records/4/code", "unique")}
        assert await _names(tenant, "bulk_item") == ["old3", "old7"]
        assert recorder.events == []
    finally:
        app.state.metacrm.events.unsubscribe(recorder)

    # A clash reported with another record's problems, in record order.
    records = [{"name": "a", "code": "taken-3"}, {"code": "b"}, {"name": "c", "code": "ok"}]
    response = await tenant.post(BATCH, json={"records": records})
    assert response.status_code == 422, response.text
    assert [(e["field"], e["code"]) for e in response.json()["errors"]] == [
        ("records/0/code", "unique"),
        ("records/1/name", "required"),
    ]
    # Nothing consumed the auto-numbers of refused batches.
    fresh = await tenant.create("bulk_item", {"name": "fresh"})
    assert fresh["number"] == "IT-0003"


def _opportunity() -> dict[str, Any]:
    return OPPORTUNITY | {
        "validation_rules": [
            {
                "api_name": "no_negative",
                "condition": "amount < 0",
                "message": "The amount cannot be negative",
                "field": "amount",
            }
        ],
        "field_rules": [
            {
                "api_name": "big_needs_step",
                "when": "amount > 1000",
                "fields": ["next_step"],
                "effect": "required",
            }
        ],
    }


async def test_every_refused_record_is_reported_at_once(tenant: TenantClient) -> None:
    await setup(tenant, objects=[_opportunity(), QUOTE])
    records = [
        {"name": "fine", "stage": "qualify"},
        {"name": "negative", "amount": "-5", "stage": "qualify"},
        {"name": "big", "amount": "5000", "stage": "qualify"},
        {"name": "late", "stage": "won"},
        {"name": "also fine", "stage": "qualify"},
        {"name": "everything", "amount": "-1", "stage": "propose"},
    ]
    response = await tenant.post("/api/v1/data/opportunity/batch", json={"records": records})
    assert response.status_code == 422, response.text
    found = codes(response)
    assert {
        ("records/1/amount", "no_negative"),
        ("records/2/next_step", "required"),
        ("records/3/stage", "illegal-move"),
        ("records/5/stage", "illegal-move"),
        ("records/5/amount", "no_negative"),
    } <= found, found
    assert {f.split("/")[1] for f, _ in found} == {"1", "2", "3", "5"}
    assert await _names(tenant, "opportunity") == []

    # Accepted, each record gets its stage history and the stage's probability.
    records = [{"name": f"o{i}", "stage": "qualify"} for i in range(3)]
    response = await tenant.post("/api/v1/data/opportunity/batch", json={"records": records})
    assert response.status_code == 200, response.text
    for result in response.json()["results"]:
        url = f"/api/v1/data/opportunity/{result['id']}"
        assert (await tenant.get(url)).json()["probability"] == "10.00"
        history = (await tenant.get(f"{url}/stage-history")).json()["rules"][0]
        assert [(t["from"], t["to"]) for t in history["transitions"]] == [(None, "qualify")]
    assert PATH["api_name"] == "opportunity_path"


async def test_auto_numbers_of_a_batch_are_consecutive(tenant: TenantClient) -> None:
    await tenant.define(ITEM)
    before = await tenant.create("bulk_item", {"name": "before"})
    records = [{"name": f"b{i}"} for i in range(7)]
    response = await tenant.post(BATCH, json={"records": records})
    assert response.status_code == 200, response.text
    after = await tenant.create("bulk_item", {"name": "after"})
    numbers = [before["number"]]
    for result in response.json()["results"]:
        numbers.append(
            (await tenant.get(f"/api/v1/data/bulk_item/{result['id']}")).json()["number"]
        )
    numbers.append(after["number"])
    assert numbers == [f"IT-{n:04d}" for n in range(1, 10)]
