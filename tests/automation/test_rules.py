"""Automation rules through the API on both databases: record, stage, time and schedule
triggers, the cascade guard, the outbox on a rolled-back batch, and metadata checks."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from metacrm.runtime.records import utcnow
from tests.conftest import Jobs, TenantClient

LEAD = {
    "api_name": "lead",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "rating", "type": "number"},
        {"api_name": "notes", "type": "text"},
        {"api_name": "contacted", "type": "boolean"},
        {"api_name": "follow_up_at", "type": "datetime"},
        {
            "api_name": "status",
            "type": "picklist",
            "values": [{"value": "new"}, {"value": "working"}, {"value": "qualified"}],
        },
    ],
}
TASK = {
    "api_name": "task",
    "fields": [
        {"api_name": "subject", "type": "text", "required": True},
        {"api_name": "lead", "type": "lookup", "target": "lead"},
    ],
}
LEAD_PATH = {
    "api_name": "lead_path",
    "object": "lead",
    "field": "status",
    "stages": [{"value": "new"}, {"value": "working"}, {"value": "qualified"}],
}


async def _setup(tenant: TenantClient, *rules: dict[str, Any]) -> None:
    body = {"objects": [LEAD, TASK], "stage_rules": [LEAD_PATH], "automation_rules": list(rules)}
    response = await tenant.post("/api/v1/metadata/apply", json=body)
    assert response.status_code == 200, response.text


async def _rules(tenant: TenantClient, *rules: dict[str, Any]) -> None:
    response = await tenant.post("/api/v1/metadata/apply", json={"automation_rules": list(rules)})
    assert response.status_code == 200, response.text


async def _runs(tenant: TenantClient, **params: Any) -> list[dict[str, Any]]:
    response = await tenant.get("/api/v1/automation/runs", params=params)
    assert response.status_code == 200, response.text
    runs: list[dict[str, Any]] = response.json()["runs"]
    return runs


async def _tasks(tenant: TenantClient) -> list[dict[str, Any]]:
    response = await tenant.get("/api/v1/data/task", params={"order_by": "subject"})
    assert response.status_code == 200, response.text
    records: list[dict[str, Any]] = response.json()["records"]
    return records


async def _lead(tenant: TenantClient, lead_id: str) -> dict[str, Any]:
    response = await tenant.get(f"/api/v1/data/lead/{lead_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def _patch(tenant: TenantClient, lead_id: str, data: dict[str, Any]) -> None:
    response = await tenant.patch(f"/api/v1/data/lead/{lead_id}", json=data)
    assert response.status_code == 200, response.text


FOLLOW_UP = {
    "api_name": "follow_up",
    "object": "lead",
    "trigger": {"on": "created"},
    "condition": "not ISBLANK(name)",
    "actions": [
        {
            "kind": "create",
            "object": "task",
            "set": {"subject": "'Call ' + name"},
            "link": "lead",
        },
        {"kind": "notify", "to": [{"kind": "owner"}], "title": {"en": "New lead {{ name }}"}},
    ],
}


async def test_a_new_lead_gets_a_follow_up_task_and_its_owner_a_notification(
    tenant: TenantClient, jobs: Jobs
) -> None:
    await _setup(tenant, FOLLOW_UP)
    lead = await tenant.create("lead", {"name": "Ada"})
    assert await _tasks(tenant) == []  # the actions run on the job queue, not in the save
    assert await jobs.run(tenant) >= 1
    [task] = await _tasks(tenant)
    assert (task["subject"], task["lead"]) == ("Call Ada", lead["id"])
    assert task["owner_id"] == lead["owner_id"]  # created as the user who saved the lead
    [run] = await _runs(tenant, rule="follow_up")
    assert (run["outcome"], run["trigger"], run["record_id"]) == ("done", "created", lead["id"])
    assert run["detail"]["actions"][0] == {"kind": "create", "object": "task", "id": task["id"]}
    assert run["depth"] == 1 and run["job_id"] and run["duration_ms"] is not None
    notes = (await tenant.get("/api/v1/notifications")).json()["notifications"]
    assert [n["title"] for n in notes] == ["New lead Ada"]
    # An update is no creation.
    await _patch(tenant, lead["id"], {"notes": "x"})
    await jobs.run(tenant)
    assert len(await _tasks(tenant)) == 1


async def test_field_changed_and_stage_entered_rules_see_prior_values(
    tenant: TenantClient, jobs: Jobs
) -> None:
    upgraded = {
        "api_name": "upgraded",
        "object": "lead",
        "trigger": {"on": "field_changed", "fields": ["rating"]},
        "condition": "not ISNEW() and ISCHANGED(rating) and rating > PRIORVALUE(rating)",
        "actions": [{"kind": "update", "set": {"notes": "'upgraded to ' + TEXT(rating)"}}],
    }
    qualified = {
        "api_name": "qualified",
        "object": "lead",
        "trigger": {"on": "stage_entered", "stage": "qualified"},
        "actions": [{"kind": "create", "object": "task", "set": {"subject": "'Hand over'"}}],
    }
    await _setup(tenant, upgraded, qualified)
    lead = await tenant.create("lead", {"name": "Bo", "rating": 3, "status": "new"})
    await _patch(tenant, lead["id"], {"rating": 2})
    await jobs.run(tenant)
    assert (await _lead(tenant, lead["id"]))["notes"] is None  # went down: no run
    await _patch(tenant, lead["id"], {"rating": 5})
    await jobs.run(tenant)
    assert (await _lead(tenant, lead["id"]))["notes"] == "upgraded to 5"
    assert [r["outcome"] for r in await _runs(tenant, rule="upgraded")] == ["done"]

    await _patch(tenant, lead["id"], {"status": "working"})
    await jobs.run(tenant)
    assert await _tasks(tenant) == []
    await _patch(tenant, lead["id"], {"status": "qualified"})
    await jobs.run(tenant)
    assert [t["subject"] for t in await _tasks(tenant)] == ["Hand over"]


async def test_a_time_rule_fires_when_due_moves_with_its_date_and_is_rechecked(
    tenant: TenantClient, jobs: Jobs
) -> None:
    remind = {
        "api_name": "remind",
        "object": "lead",
        "trigger": {"on": "time", "date_field": "follow_up_at", "offset_minutes": 60},
        "condition": "not contacted",
        "actions": [{"kind": "update", "set": {"notes": "'follow up now'"}}],
    }
    await _setup(tenant, remind)
    start = utcnow()
    hour = dt.timedelta(hours=1)
    at = (start + hour).isoformat()
    lead = await tenant.create("lead", {"name": "Cy", "follow_up_at": at, "contacted": False})
    other = await tenant.create("lead", {"name": "Di", "follow_up_at": at, "contacted": False})
    gone = await tenant.create("lead", {"name": "Ed", "follow_up_at": at, "contacted": False})

    await jobs.run(tenant, at=start + 1.5 * hour)  # due at start + 2 h: not yet
    assert (await _lead(tenant, lead["id"]))["notes"] is None
    # The date moves: the timer moves with it. The condition stops holding: no timer.
    await _patch(tenant, lead["id"], {"follow_up_at": (start + 3 * hour).isoformat()})
    await _patch(tenant, other["id"], {"contacted": True})
    assert (await tenant.delete(f"/api/v1/data/lead/{gone['id']}")).status_code == 204
    await jobs.run(tenant, at=start + 3 * hour)
    assert (await _lead(tenant, lead["id"]))["notes"] is None
    await jobs.run(tenant, at=start + 4 * hour + dt.timedelta(minutes=1))
    assert (await _lead(tenant, lead["id"]))["notes"] == "follow up now"
    assert (await _lead(tenant, other["id"]))["notes"] is None
    runs = await _runs(tenant, rule="remind")
    assert [(r["record_id"], r["outcome"], r["trigger"]) for r in runs] == [
        (lead["id"], "done", "time")
    ]

    # Re-checked when due: a rule changed since the timer was set no longer holds.
    third = await tenant.create(
        "lead", {"name": "Flo", "follow_up_at": start.isoformat(), "contacted": False}
    )
    await _rules(tenant, remind | {"condition": "not contacted and rating > 100"})
    await jobs.run(tenant, at=start + 2 * hour)
    assert (await _lead(tenant, third["id"]))["notes"] is None
    [skipped] = await _runs(tenant, rule="remind", outcome="skipped")
    assert skipped["record_id"] == third["id"]
    assert skipped["detail"] == {"reason": "the condition no longer holds"}


async def test_a_schedule_rule_runs_on_its_cron_over_matching_records(
    tenant: TenantClient, jobs: Jobs
) -> None:
    stale = {
        "api_name": "stale",
        "object": "lead",
        "trigger": {"on": "schedule", "cron": "0 9 * * *", "timezone": "Asia/Shanghai"},
        "condition": "status == 'new'",
        "actions": [{"kind": "update", "set": {"notes": "'still new'"}}],
    }
    await _setup(tenant, stale)
    fresh = await tenant.create("lead", {"name": "Gus", "status": "new"})
    working = await tenant.create("lead", {"name": "Hal", "status": "new"})
    await _patch(tenant, working["id"], {"status": "working"})
    jobs_now = await tenant.get("/api/v1/automation/jobs", params={"kind": "automation.schedule"})
    [armed] = jobs_now.json()["jobs"]
    due = dt.datetime.fromisoformat(armed["run_at"])
    # 09:00 in Shanghai is 01:00 UTC.
    assert (due.hour, due.minute) == (1, 0) and armed["status"] == "pending"
    await jobs.run(tenant, at=due - dt.timedelta(minutes=1))
    assert (await _lead(tenant, fresh["id"]))["notes"] is None
    await jobs.run(tenant, at=due)
    assert (await _lead(tenant, fresh["id"]))["notes"] == "still new"
    assert (await _lead(tenant, working["id"]))["notes"] is None
    [run] = await _runs(tenant, rule="stale")
    assert (run["trigger"], run["outcome"], run["record_id"]) == ("schedule", "done", fresh["id"])
    listed = await tenant.get("/api/v1/automation/jobs", params={"kind": "automation.schedule"})
    pending = [j for j in listed.json()["jobs"] if j["status"] == "pending"]
    assert [dt.datetime.fromisoformat(j["run_at"]) for j in pending] == [due + dt.timedelta(days=1)]
    # Removing the rule cancels its schedule.
    response = await tenant.delete("/api/v1/metadata/automation-rules/stale")
    assert response.status_code in (200, 204), response.text
    listed = await tenant.get("/api/v1/automation/jobs", params={"kind": "automation.schedule"})
    assert "pending" not in {j["status"] for j in listed.json()["jobs"]}


async def test_rules_that_trigger_each_other_stop_at_the_depth_limit(
    tenant: TenantClient, jobs: Jobs
) -> None:
    ping = {
        "api_name": "ping",
        "object": "lead",
        "trigger": {"on": "field_changed", "fields": ["rating"]},
        "actions": [{"kind": "update", "set": {"notes": "'rating ' + TEXT(rating)"}}],
    }
    pong = {
        "api_name": "pong",
        "object": "lead",
        "trigger": {"on": "field_changed", "fields": ["notes"]},
        "actions": [{"kind": "update", "set": {"rating": "rating + 1"}}],
    }
    await _setup(tenant, ping, pong)
    lead = await tenant.create("lead", {"name": "Ivy", "rating": 0})
    # A minute ahead: the jobs the runs enqueue (due at once) are due within this drain.
    await jobs.run(tenant, later=dt.timedelta(minutes=1))
    runs = await _runs(tenant, record_id=lead["id"])
    done = [(r["name"], r["depth"]) for r in reversed(runs) if r["outcome"] == "done"]
    assert done == [("ping", 1), ("pong", 2), ("ping", 3), ("pong", 4), ("ping", 5)]
    [stopped] = await _runs(tenant, outcome="stopped")
    assert (stopped["name"], stopped["depth"]) == ("pong", 6)
    assert "cascade guard" in stopped["detail"]["reason"]
    assert (await _lead(tenant, lead["id"]))["rating"] in (2, "2")


async def test_a_submit_action_needs_no_edit_access_and_its_flow_stays_in_the_chain(
    tenant: TenantClient, jobs: Jobs
) -> None:
    # The run-as user has no role (no access to leads); the rule submits with system
    # rights. The flow approves at once (its only step is skipped) and its approval
    # action changes the rating, which triggers the rule again: the approval's writes
    # count as steps of the rule's chain, so the guard stops it.
    await tenant.add_user("nobody@example.com")
    resubmit = {
        "api_name": "resubmit",
        "object": "lead",
        "trigger": {"on": "field_changed", "fields": ["rating"]},
        "run_as": "nobody@example.com",
        "actions": [{"kind": "submit", "flow": "auto"}],
    }
    auto = {
        "api_name": "auto",
        "object": "lead",
        "lock_record": False,
        "steps": [
            {
                "api_name": "never",
                "condition": "rating < 0",
                "approvers": [{"kind": "user", "user": f"admin@{tenant.tenant}.test"}],
            }
        ],
        "on_approve": [{"set": {"rating": "rating + 1"}}],
    }
    body = {"objects": [LEAD], "approval_flows": [auto], "automation_rules": [resubmit]}
    response = await tenant.post("/api/v1/metadata/apply", json=body)
    assert response.status_code == 200, response.text
    lead = await tenant.create("lead", {"name": "Ivy", "rating": 0})
    await jobs.run(tenant, later=dt.timedelta(minutes=1))
    runs = await _runs(tenant, record_id=lead["id"])
    done = [r["depth"] for r in reversed(runs) if r["outcome"] == "done"]
    assert done == [1, 2, 3, 4, 5]
    [stopped] = await _runs(tenant, outcome="stopped")
    assert stopped["depth"] == 6
    approvals = (await tenant.get(f"/api/v1/data/lead/{lead['id']}/approvals")).json()
    assert [a["status"] for a in approvals["approvals"]] == ["approved"] * 5
    assert (await _lead(tenant, lead["id"]))["rating"] in (5, "5")


async def test_a_refused_action_fails_its_run_for_good(tenant: TenantClient, jobs: Jobs) -> None:
    broken = {
        "api_name": "broken",
        "object": "lead",
        "trigger": {"on": "created"},
        # A task needs a subject: this create is refused whatever the retries.
        "actions": [{"kind": "create", "object": "task", "set": {"subject": "notes"}}],
    }
    await _setup(tenant, broken)
    await tenant.create("lead", {"name": "Jo"})
    await jobs.run(tenant, later=dt.timedelta(days=2))
    [run] = await _runs(tenant, rule="broken")
    assert run["outcome"] == "failed"
    assert run["detail"]["errors"][0]["field"] == "actions/0/subject"
    listed = await tenant.get("/api/v1/automation/jobs", params={"kind": "automation.rule"})
    assert [j["status"] for j in listed.json()["jobs"]] == ["dead"]
    assert await _tasks(tenant) == []


async def test_a_rolled_back_batch_enqueues_nothing(tenant: TenantClient, jobs: Jobs) -> None:
    await _setup(tenant, FOLLOW_UP)
    records = [{"name": "fine"}, {"rating": 1}]  # the second lacks its name
    response = await tenant.post("/api/v1/data/lead/batch", json={"records": records})
    assert response.status_code == 422, response.text
    listed = await tenant.get("/api/v1/automation/jobs")
    assert listed.json()["jobs"] == []
    response = await tenant.post("/api/v1/data/lead/batch", json={"records": records[:1]})
    assert response.status_code == 200, response.text
    await jobs.run(tenant)
    assert [t["subject"] for t in await _tasks(tenant)] == ["Call fine"]


async def test_bad_rules_are_refused_with_paths(tenant: TenantClient) -> None:
    await _setup(tenant)
    bad = [
        {
            "api_name": "everything_wrong",
            "object": "lead",
            "trigger": {"on": "field_changed", "fields": ["nope"]},
            "condition": "rating + ",
            "actions": [
                {"kind": "update", "set": {"rating": "'text'"}},
                {"kind": "create", "object": "task", "link": "subject"},
                {"kind": "email", "to": [{"kind": "role", "role": "ghost"}], "template": "nope"},
                {"kind": "stage", "stage": "won"},
            ],
        },
        {
            "api_name": "bad_time",
            "object": "lead",
            "trigger": {"on": "time", "date_field": "name"},
            "condition": "ISCHANGED(rating)",  # checked again when due: no save to compare
            "actions": [{"kind": "update", "set": {"notes": "'x'"}}],
        },
        {
            "api_name": "bad_schedule",
            "object": "lead",
            "trigger": {"on": "schedule", "cron": "61 * * * * *", "timezone": "Mars/Olympus"},
            "condition": "ISCHANGED(rating)",
            "actions": [{"kind": "submit", "flow": "nope"}],
        },
        {
            "api_name": "no_object",
            "object": "ghost",
            "trigger": {"on": "created"},
            "actions": [{"kind": "update", "set": {"notes": "'x'"}}],
        },
    ]
    response = await tenant.post("/api/v1/metadata/apply", json={"automation_rules": bad})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    found = {(e["field"], e["code"]) for e in response.json()["errors"]}
    base = "automation_rules/everything_wrong"
    assert {
        (f"{base}/trigger/fields/0", "unknown-field"),
        (f"{base}/condition", "formula"),
        (f"{base}/actions/0/set/rating", "wrong-type"),
        (f"{base}/actions/1/link", "wrong-type"),
        (f"{base}/actions/2/to/0/role", "unknown-role"),
        (f"{base}/actions/2/template", "unknown-template"),
        (f"{base}/actions/3/stage", "unknown-stage"),
        ("automation_rules/bad_time/trigger/date_field", "wrong-type"),
        ("automation_rules/bad_time/condition", "formula"),
        ("automation_rules/bad_schedule/trigger/cron", "invalid-cron"),
        ("automation_rules/bad_schedule/trigger/timezone", "unknown-timezone"),
        ("automation_rules/bad_schedule/condition", "formula"),
        ("automation_rules/bad_schedule/actions/0/flow", "unknown-flow"),
        ("automation_rules/no_object/object", "unknown-object"),
    } <= found, found
    # A shape problem (a trigger without what it needs) is a 422 too.
    shapeless = {
        "api_name": "x",
        "object": "lead",
        "trigger": {"on": "stage_entered"},
        "actions": [{"kind": "update", "set": {"notes": "'x'"}}],
    }
    response = await tenant.post("/api/v1/metadata/apply", json={"automation_rules": [shapeless]})
    assert response.status_code == 422, response.text


async def test_run_history_is_for_automation_managers(tenant: TenantClient) -> None:
    await _setup(tenant)
    rep = await tenant.add_user("rep@example.com")
    assert (await rep.get("/api/v1/automation/runs")).status_code == 403
    response = await tenant.get("/api/v1/automation/runs", params={"outcome": "exploded"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "outcome"


class _Receiver:
    """A loopback HTTP endpoint that answers 204 and keeps each request's JSON body."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        length = 0
        while (line := (await reader.readline()).decode().strip()) != "":
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        self.bodies.append(json.loads(await reader.readexactly(length)))
        writer.write(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[_Receiver]:
    found = _Receiver()
    server = await asyncio.start_server(found.handle, "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    async with server:
        yield found


@pytest.fixture
def loopback_webhooks(app: Any) -> Iterator[None]:
    """The operator's switch for private targets, on for the test (the receiver is local)."""
    state = app.state.metacrm

    def allow(allowed: bool) -> None:
        state.settings.webhooks_allow_private = allowed
        state.worker.outbound = dataclasses.replace(
            state.worker.outbound, webhooks_allow_private=allowed
        )

    allow(True)
    yield
    allow(False)


@pytest.mark.usefixtures("loopback_webhooks")
async def test_every_action_kind_runs_as_the_run_as_user(
    tenant: TenantClient, jobs: Jobs, receiver: _Receiver
) -> None:
    rep = await tenant.add_user("rep@example.com")
    boss = await tenant.add_user("boss@example.com", is_admin=True)
    hot = {
        "api_name": "hot",
        "object": "lead",
        "trigger": {"on": "updated"},
        "condition": "ISCHANGED(rating) and rating >= 10",
        "run_as": "boss@example.com",
        "actions": [
            {"kind": "update", "set": {"notes": "'hot'"}},
            {"kind": "assign", "assign_to": {"kind": "user", "user": "rep@example.com"}},
            {"kind": "stage", "stage": "working"},
            {"kind": "submit", "flow": "review"},
            {"kind": "email", "to": [{"kind": "owner"}], "template": "hot_lead"},
            {"kind": "webhook", "endpoint": "erp"},
            {"kind": "notify", "to": [{"kind": "owner"}], "title": {"en": "Hot: {{ name }}"}},
        ],
    }
    body = {
        "objects": [LEAD, TASK],
        "stage_rules": [LEAD_PATH],
        "approval_flows": [
            {
                "api_name": "review",
                "object": "lead",
                "lock_record": False,
                "steps": [
                    {
                        "api_name": "boss",
                        "approvers": [{"kind": "user", "user": f"admin@{tenant.tenant}.test"}],
                    }
                ],
            }
        ],
        "email_templates": [
            {
                "api_name": "hot_lead",
                "object": "lead",
                "subject": {"en": "{{ name }} is hot"},
                "body": {"en": "Go"},
            }
        ],
        "automation_rules": [hot],
    }
    response = await tenant.post("/api/v1/metadata/apply", json=body)
    assert response.status_code == 200, response.text
    url = f"http://127.0.0.1:{receiver.port}/erp"
    response = await tenant.post("/api/v1/webhooks", json={"name": "erp", "url": url})
    assert response.status_code == 201, response.text

    lead = await tenant.create("lead", {"name": "Kai", "rating": 1, "status": "new"})
    await _patch(tenant, lead["id"], {"rating": 12})
    await jobs.run(tenant, later=dt.timedelta(minutes=1))

    [run] = await _runs(tenant, rule="hot")
    assert run["outcome"] == "done", run["detail"]
    kinds = [a["kind"] for a in run["detail"]["actions"]]
    assert kinds == ["update", "assign", "stage", "submit", "email", "webhook", "notify"]
    found = await _lead(tenant, lead["id"])
    assert (found["notes"], found["status"], found["owner_id"]) == ("hot", "working", rep.user_id)
    assert found["updated_by"] == boss.user_id  # the writes carry the run_as user
    assert run["detail"]["run_as"] == boss.user_id
    approvals = await tenant.get(f"/api/v1/data/lead/{lead['id']}/approvals")
    assert [a["flow"] for a in approvals.json()["approvals"]] == ["review"]
    listed = await tenant.get("/api/v1/automation/jobs", params={"kind": "email.send"})
    assert len(listed.json()["jobs"]) == 1
    # The subscription hears every write too; the rule's call is its own event.
    called = [b for b in receiver.bodies if b["type"] == "lead.automation"]
    assert [b["data"]["id"] for b in called] == [lead["id"]]
    notes = (await rep.get("/api/v1/notifications")).json()["notifications"]
    assert [n["title"] for n in notes] == ["Hot: Kai"]  # the owner after the assignment


async def test_a_deleted_trigger_acts_on_the_record_in_the_recycle_bin(
    tenant: TenantClient, jobs: Jobs
) -> None:
    gone = {
        "api_name": "gone",
        "object": "lead",
        "trigger": {"on": "deleted"},
        "condition": "rating > 5",
        "actions": [
            {"kind": "create", "object": "task", "set": {"subject": "'Lost ' + name"}},
        ],
    }
    await _setup(tenant, gone)
    big = await tenant.create("lead", {"name": "Lu", "rating": 9})
    small = await tenant.create("lead", {"name": "Mo", "rating": 1})
    for lead in (big, small):
        assert (await tenant.delete(f"/api/v1/data/lead/{lead['id']}")).status_code == 204
    await jobs.run(tenant)
    assert [t["subject"] for t in await _tasks(tenant)] == ["Lost Lu"]


async def test_a_time_rule_without_a_date_counts_from_the_save_that_set_it(
    tenant: TenantClient, jobs: Jobs
) -> None:
    nudge = {
        "api_name": "nudge",
        "object": "lead",
        "trigger": {"on": "time", "offset_minutes": 30},
        "condition": "status == 'new'",
        "actions": [{"kind": "update", "set": {"notes": "'nudged'"}}],
    }
    await _setup(tenant, nudge)
    start = utcnow()
    lead = await tenant.create("lead", {"name": "Nia", "status": "new"})
    await _patch(tenant, lead["id"], {"rating": 1})  # held already: the timer stands
    await jobs.run(tenant, at=start + dt.timedelta(minutes=20))
    assert (await _lead(tenant, lead["id"]))["notes"] is None
    await jobs.run(tenant, at=start + dt.timedelta(minutes=31))
    assert (await _lead(tenant, lead["id"]))["notes"] == "nudged"
    # Its own update does not set it again.
    await jobs.run(tenant, at=start + dt.timedelta(hours=2))
    assert [r["outcome"] for r in await _runs(tenant, rule="nudge")] == ["done"]


async def test_transferred_and_restored_triggers(tenant: TenantClient, jobs: Jobs) -> None:
    handed = {
        "api_name": "handed",
        "object": "lead",
        "trigger": {"on": "transferred"},
        "actions": [
            {"kind": "notify", "to": [{"kind": "owner"}], "title": {"en": "Yours: {{ name }}"}}
        ],
    }
    back = {
        "api_name": "back",
        "object": "lead",
        "trigger": {"on": "restored"},
        "actions": [{"kind": "update", "set": {"notes": "'restored'"}}],
    }
    await _setup(tenant, handed, back)
    rep = await tenant.add_user("rep@example.com")
    lead = await tenant.create("lead", {"name": "Oz"})
    url = f"/api/v1/data/lead/{lead['id']}"
    response = await tenant.post(f"{url}/owner", json={"owner_id": rep.user_id})
    assert response.status_code == 200, response.text
    assert (await tenant.delete(url)).status_code == 204
    assert (await tenant.post(f"{url}/restore")).status_code == 200
    await jobs.run(tenant, later=dt.timedelta(minutes=1))
    notes = (await rep.get("/api/v1/notifications")).json()["notifications"]
    assert [n["title"] for n in notes] == ["Yours: Oz"]
    assert (await _lead(tenant, lead["id"]))["notes"] == "restored"
    assert sorted(r["trigger"] for r in await _runs(tenant)) == ["restored", "transferred"]
