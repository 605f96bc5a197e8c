"""The one write path: after-commit events, owner transfer under approval locks, and
writes that change nothing (SQLite and PostgreSQL, through the HTTP API)."""

from __future__ import annotations

from typing import Any

from metacrm.runtime.events import RecordEvent
from metacrm.runtime.hooks import Origin
from tests.conftest import TenantClient
from tests.process.support import codes, setup


def _deal(name: str) -> dict[str, Any]:
    return {
        "api_name": name,
        "fields": [
            {"api_name": "name", "type": "text", "required": True},
            {"api_name": "amount", "type": "currency"},
            {"api_name": "stage", "type": "picklist", "values": [{"value": "new"}]},
        ],
    }


class Recorder:
    """An after-commit subscriber keeping the events of one object."""

    def __init__(self, object_name: str) -> None:
        self.object_name = object_name
        self.events: list[RecordEvent] = []

    async def __call__(self, event: RecordEvent) -> None:
        if event.object == self.object_name:
            self.events.append(event)


async def _failing(event: RecordEvent) -> None:
    raise RuntimeError("a broken subscriber")


async def test_events_reach_subscribers_after_commit_only(app: Any, tenant: TenantClient) -> None:
    await tenant.define(_deal("evt_deal"))
    recorder = Recorder("evt_deal")
    subscribers = app.state.metacrm.events
    subscribers.subscribe(_failing)  # a failing subscriber neither hides events nor fails
    subscribers.subscribe(recorder)
    try:
        deal = await tenant.create("evt_deal", {"name": "a", "amount": "10"})
        url = f"/api/v1/data/evt_deal/{deal['id']}"
        assert [(e.kind, str(e.record_id)) for e in recorder.events] == [("create", deal["id"])]
        created = recorder.events[0]
        assert created.before is None and created.after is not None
        assert created.after["name"] == "a"
        assert created.intent.origin is Origin.API and str(created.intent.actor.user_id)
        assert {"name", "amount"} <= created.changed

        # Refused writes and rolled-back batches publish nothing.
        response = await tenant.patch(url, json={"amount": "not a number"})
        assert response.status_code == 422
        response = await tenant.post(
            "/api/v1/data/evt_deal/batch",
            json={"records": [{"name": "b"}, {"name": "c", "stage": "nowhere"}]},
        )
        assert response.status_code == 422
        assert len(recorder.events) == 1
        listed = (await tenant.get("/api/v1/data/evt_deal")).json()["records"]
        assert [r["name"] for r in listed] == ["a"]

        response = await tenant.patch(url, json={"amount": "20", "name": "a"})
        assert response.status_code == 200, response.text
        updated = recorder.events[-1]
        assert updated.kind == "update" and updated.changed == frozenset({"amount"})
        assert updated.before is not None and updated.after is not None
        assert (str(updated.before["amount"]), str(updated.after["amount"])) == ("10.00", "20.00")

        assert (await tenant.delete(url)).status_code == 204
        assert (await tenant.post(f"{url}/restore")).status_code == 200
        assert [e.kind for e in recorder.events] == ["create", "update", "delete", "restore"]
    finally:
        subscribers.unsubscribe(recorder)
        subscribers.unsubscribe(_failing)


async def test_a_write_that_changes_nothing_writes_nothing(tenant: TenantClient) -> None:
    await tenant.define(_deal("same_deal"))
    deal = await tenant.create("same_deal", {"name": "a", "amount": "10"})
    url = f"/api/v1/data/same_deal/{deal['id']}"
    response = await tenant.patch(url, json={"name": "a", "amount": "10.00"})
    assert response.status_code == 200, response.text
    assert response.json()["version"] == deal["version"]
    audit = (await tenant.get("/api/v1/audit", params={"record_id": deal["id"]})).json()
    assert [e["action"] for e in audit["entries"]] == ["record.create"]


async def test_owner_transfer_is_refused_while_a_locking_approval_is_pending(
    tenant: TenantClient,
) -> None:
    await setup(tenant)
    boss = await tenant.add_user("boss@x.test", role="sales_manager")
    rep = await tenant.add_user("rep@x.test", role="sales_rep", manager_id=boss.user_id)
    quote = await rep.create("quote", {"name": "Q", "amount": "5000", "discount": "0.3"})
    url = f"/api/v1/data/quote/{quote['id']}"
    run = (await rep.post(f"{url}/approvals", json={})).json()
    assert run["status"] == "pending"

    response = await rep.post(f"{url}/owner", json={"owner_id": boss.user_id})
    assert response.status_code == 422, response.text
    assert codes(response) == {("owner_id", "record-locked")}
    assert (await rep.get(url)).json()["owner_id"] == rep.user_id

    # Once the run is recalled the lock is gone and the owner may give the record away.
    assert (await rep.post(f"/api/v1/approvals/{run['id']}/recall", json={})).status_code == 200
    response = await rep.post(f"{url}/owner", json={"owner_id": boss.user_id})
    assert response.status_code == 200, response.text
    assert response.json()["owner_id"] == boss.user_id


async def test_a_cascade_is_recorded_like_any_write(app: Any, tenant: TenantClient) -> None:
    """Deleting a master deletes its details and clears lookups to it: each of those
    records gets its audit entry (origin cascade) and its after-commit event, and a
    restore brings the details back the same way."""
    master = {"api_name": "cas_master", "fields": [{"api_name": "name", "type": "text"}]}
    detail = {
        "api_name": "cas_detail",
        "fields": [
            {"api_name": "name", "type": "text"},
            {"api_name": "master", "type": "master_detail", "target": "cas_master"},
        ],
    }
    ref = {
        "api_name": "cas_ref",
        "fields": [
            {"api_name": "name", "type": "text"},
            {
                "api_name": "master",
                "type": "lookup",
                "target": "cas_master",
                "on_delete": "set_null",
            },
        ],
    }
    await tenant.define(master, detail, ref)
    details, refs = Recorder("cas_detail"), Recorder("cas_ref")
    subscribers = app.state.metacrm.events
    subscribers.subscribe(details)
    subscribers.subscribe(refs)
    try:
        m = await tenant.create("cas_master", {"name": "m"})
        d = await tenant.create("cas_detail", {"name": "d", "master": m["id"]})
        r = await tenant.create("cas_ref", {"name": "r", "master": m["id"]})
        assert (await tenant.delete(f"/api/v1/data/cas_master/{m['id']}")).status_code == 204
        assert [e.kind for e in details.events] == ["create", "delete"]
        assert [e.kind for e in refs.events] == ["create", "update"]
        cleared = refs.events[-1]
        assert cleared.changed == {"master"} and cleared.after is not None
        assert cleared.after["master"] is None and cleared.intent.origin is Origin.CASCADE
        for record_id, action in ((d["id"], "record.delete"), (r["id"], "record.update")):
            entries = (await tenant.get("/api/v1/audit", params={"record_id": record_id})).json()
            last = entries["entries"][0] if entries["entries"][0]["action"] == action else None
            assert last is not None, entries
            assert last["detail"]["origin"] == "cascade"
            assert last["detail"]["reason"] == "cas_master deleted"
        restored = await tenant.post(f"/api/v1/data/cas_master/{m['id']}/restore")
        assert restored.status_code == 200, restored.text
        assert [e.kind for e in details.events] == ["create", "delete", "restore"]
        back = await tenant.get(f"/api/v1/data/cas_detail/{d['id']}")
        assert back.status_code == 200
    finally:
        subscribers.unsubscribe(details)
        subscribers.unsubscribe(refs)
