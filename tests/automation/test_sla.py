"""SLAs on both databases through the API: due times on business calendars, warnings, breaches
that reassign and notify the manager, met and moved clocks, and refused metadata."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from tests.conftest import Jobs, TenantClient

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = [["09:00", "12:00"], ["13:00", "18:00"]]
ROLES = [
    {"api_name": "sales_manager", "objects": {"lead": {"create": True, "read": True}}},
    {
        "api_name": "sales_rep",
        "reports_to": "sales_manager",
        "objects": {"lead": {"create": True, "read": True, "edit": True}},
    },
]
LEAD = {
    "api_name": "lead",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {
            "api_name": "status",
            "type": "picklist",
            "values": [{"value": "new"}, {"value": "contacted"}],
            "default": "new",
        },
        {
            "api_name": "priority",
            "type": "picklist",
            "values": [{"value": "high"}, {"value": "normal"}],
            "default": "normal",
        },
        {"api_name": "received_at", "type": "datetime"},
        {"api_name": "first_contact_due", "type": "datetime", "track_history": True},
        {"api_name": "first_contact_breached", "type": "boolean", "track_history": True},
    ],
}
CHINA = {
    "api_name": "china_office",
    "timezone": "Asia/Shanghai",
    "hours": {d: DAY for d in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": ["2030-01-14"],
    "working_days": ["2030-01-19"],
}
FIRST_CONTACT = {
    "api_name": "first_contact",
    "object": "lead",
    "start_condition": "status == 'new'",
    "met_condition": "status != 'new'",
    "targets": [{"condition": "priority == 'high'", "hours": 1}, {"hours": 4}],
    "due_field": "first_contact_due",
    "breached_field": "first_contact_breached",
}


def sh(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=SHANGHAI)


def at(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _apply(admin: TenantClient, **documents: Any) -> None:
    body = {"objects": [LEAD], "roles": ROLES} | documents
    response = await admin.post("/api/v1/metadata/apply", json=body)
    assert response.status_code == 200, response.text


async def _runs(admin: TenantClient, record_id: str) -> list[tuple[str, str]]:
    response = await admin.get("/api/v1/automation/runs", params={"record_id": record_id})
    assert response.status_code == 200, response.text
    runs = response.json()["runs"]
    return sorted((r["trigger"], r["outcome"]) for r in runs if r["source"] == "sla")


async def test_due_times_follow_the_business_calendar(tenant: TenantClient) -> None:
    """Friday 17:00 in Shanghai + 4 working hours (09-12, 13-18) is Monday 12:00; a
    holiday Monday is skipped; a make-up Saturday is worked; high priority has 1 hour."""
    sla = FIRST_CONTACT | {"calendar": "china_office", "start_field": "received_at"}
    await _apply(tenant, business_calendars=[CHINA], slas=[sla])
    cases = [
        (sh(2030, 1, 4, 17), "normal", sh(2030, 1, 7, 12)),
        (sh(2030, 1, 11, 17), "normal", sh(2030, 1, 15, 12)),  # Monday the 14th is off
        (sh(2030, 1, 18, 17), "normal", sh(2030, 1, 19, 12)),  # Saturday the 19th is worked
        (sh(2030, 1, 4, 17, 30), "high", sh(2030, 1, 7, 9, 30)),
    ]
    for received, priority, due in cases:
        lead = await tenant.create(
            "lead", {"name": "L", "priority": priority, "received_at": received.isoformat()}
        )
        assert at(lead["first_contact_due"]) == due, (received, lead["first_contact_due"])
    # No start time, no clock; a lead that is contacted at once has none either.
    assert (await tenant.create("lead", {"name": "L"}))["first_contact_due"] is None
    contacted = {"name": "L", "status": "contacted", "received_at": sh(2030, 1, 4).isoformat()}
    assert (await tenant.create("lead", contacted))["first_contact_due"] is None


async def test_a_breach_warns_first_then_reassigns_and_notifies_the_manager(
    tenant: TenantClient, jobs: Jobs
) -> None:
    await _apply(tenant)
    manager = await tenant.add_user("boss@example.com", role="sales_manager")
    rep = await tenant.add_user("rep@example.com", role="sales_rep", manager_id=manager.user_id)
    rescue = [await tenant.add_user(f"r{i}@example.com", role="sales_rep") for i in (1, 2)]
    sla = FIRST_CONTACT | {
        "warn_before_minutes": 30,
        "on_warning": [
            {"kind": "notify", "to": [{"kind": "owner"}], "title": {"en": "{{ name }} is due"}}
        ],
        "on_breach": [
            {
                "kind": "notify",
                "to": [{"kind": "manager"}],
                "title": {"en": "{{ name }} was not contacted in time"},
            },
            {"kind": "assign", "assign_to": {"kind": "queue", "queue": "rescue"}},
        ],
    }
    queue = {"api_name": "rescue", "members": [u.user_id for u in rescue]}
    await _apply(tenant, queues=[queue], slas=[sla])
    lead = await rep.create("lead", {"name": "Acme"})
    assert lead["first_contact_breached"] is None
    due = at(lead["first_contact_due"])
    pending = (await tenant.get("/api/v1/automation/jobs", params={"status": "pending"})).json()
    assert sorted(j["kind"] for j in pending["jobs"]) == ["sla.breach", "sla.warn"]

    assert await jobs.run(tenant, at=due - dt.timedelta(minutes=31)) == 0
    assert await jobs.run(tenant, at=due - dt.timedelta(minutes=29)) == 1
    warned = (await rep.get("/api/v1/notifications")).json()
    assert [n["title"] for n in warned["notifications"]] == ["Acme is due"]
    assert (await manager.get("/api/v1/notifications/unread-count")).json()["unread"] == 0

    assert await jobs.run(tenant, at=due + dt.timedelta(seconds=1)) == 1
    after = (await tenant.get(f"/api/v1/data/lead/{lead['id']}")).json()
    assert after["first_contact_breached"] is True
    assert after["owner_id"] in {u.user_id for u in rescue}
    told = (await manager.get("/api/v1/notifications")).json()["notifications"]
    assert [n["title"] for n in told] == ["Acme was not contacted in time"]
    assert await _runs(tenant, lead["id"]) == [("breach", "done"), ("warn", "done")]
    # The breach is history: a later save starts nothing and schedules nothing.
    await tenant.patch(f"/api/v1/data/lead/{lead['id']}", json={"priority": "high"})
    assert await jobs.run(tenant, later=dt.timedelta(days=30)) == 0


async def test_a_met_sla_cancels_its_jobs_and_a_met_one_in_between_is_skipped(
    tenant: TenantClient, jobs: Jobs
) -> None:
    await _apply(tenant, slas=[FIRST_CONTACT])
    lead = await tenant.create("lead", {"name": "Met"})
    response = await tenant.patch(f"/api/v1/data/lead/{lead['id']}", json={"status": "contacted"})
    assert response.status_code == 200, response.text
    assert await jobs.run(tenant, later=dt.timedelta(hours=5)) == 0
    cancelled = (await tenant.get("/api/v1/automation/jobs", params={"status": "cancelled"})).json()
    assert [j["kind"] for j in cancelled["jobs"]] == ["sla.breach"]
    assert await _runs(tenant, lead["id"]) == [("met", "done")]
    # A met clock stays met: reopening the lead and raising its priority moves nothing.
    reopened = {"status": "new", "priority": "high"}
    response = await tenant.patch(f"/api/v1/data/lead/{lead['id']}", json=reopened)
    assert response.json()["first_contact_due"] == lead["first_contact_due"]
    assert await jobs.run(tenant, later=dt.timedelta(hours=5)) == 0
    final = (await tenant.get(f"/api/v1/data/lead/{lead['id']}")).json()
    assert final["first_contact_breached"] is None


async def test_deleting_stops_the_clock_and_restoring_runs_it_on(
    tenant: TenantClient, jobs: Jobs
) -> None:
    await _apply(tenant, slas=[FIRST_CONTACT])
    lead = await tenant.create("lead", {"name": "Gone"})
    url = f"/api/v1/data/lead/{lead['id']}"
    assert (await tenant.delete(url)).status_code in (200, 204)
    pending = (await tenant.get("/api/v1/automation/jobs", params={"status": "pending"})).json()
    assert pending["jobs"] == []
    assert (await tenant.post(f"{url}/restore")).status_code == 200
    pending = (await tenant.get("/api/v1/automation/jobs", params={"status": "pending"})).json()
    assert [j["run_at"] for j in pending["jobs"]] == [lead["first_contact_due"]]
    assert await jobs.run(tenant, later=dt.timedelta(hours=5)) == 1
    assert (await tenant.get(url)).json()["first_contact_breached"] is True


async def test_a_change_of_target_moves_the_due_time_and_its_job(
    tenant: TenantClient, jobs: Jobs
) -> None:
    await _apply(tenant, slas=[FIRST_CONTACT])
    lead = await tenant.create("lead", {"name": "Moved"})
    due = at(lead["first_contact_due"])
    url = f"/api/v1/data/lead/{lead['id']}"
    moved = (await tenant.patch(url, json={"priority": "high"})).json()
    assert at(moved["first_contact_due"]) == due - dt.timedelta(hours=3)
    assert await jobs.run(tenant, at=due - dt.timedelta(hours=3, seconds=-1)) == 1
    assert (await tenant.get(url)).json()["first_contact_breached"] is True
    assert await jobs.run(tenant, at=due + dt.timedelta(seconds=1)) == 0
    # The moved due time and the breach are in the record's field history.
    history = (await tenant.get(f"{url}/history")).json()["history"]
    assert [(h["field"], h["old_value"], h["new_value"]) for h in reversed(history)] == [
        ("first_contact_due", lead["first_contact_due"], moved["first_contact_due"]),
        ("first_contact_breached", None, True),
    ]


async def test_an_escalation_the_write_path_refuses_keeps_nothing_and_says_why(
    tenant: TenantClient, jobs: Jobs
) -> None:
    sla = FIRST_CONTACT | {"on_breach": [{"kind": "update", "set": {"name": "''"}}]}
    await _apply(tenant, slas=[sla])
    lead = await tenant.create("lead", {"name": "Stuck"})
    assert await jobs.run(tenant, later=dt.timedelta(hours=5)) == 1
    dead = (await tenant.get("/api/v1/automation/jobs", params={"status": "dead"})).json()
    assert [j["kind"] for j in dead["jobs"]] == ["sla.breach"]
    assert "actions/0/name" in dead["jobs"][0]["last_error"]
    assert await _runs(tenant, lead["id"]) == [("breach", "failed")]
    after = (await tenant.get(f"/api/v1/data/lead/{lead['id']}")).json()
    assert (after["name"], after["first_contact_breached"]) == ("Stuck", None)


async def test_bad_sla_metadata_is_refused_with_its_path(tenant: TenantClient) -> None:
    await _apply(tenant)
    bad_calendar = CHINA | {"timezone": "Mars/Olympus"}
    response = await tenant.post("/api/v1/metadata/business-calendars", json=bad_calendar)
    assert response.status_code == 422, response.text
    assert ("business_calendars/china_office/timezone", "unknown-timezone") in _codes(response)
    overlapping = CHINA | {
        "api_name": "odd",
        "hours": {"mon": [["09:00", "12:00"], ["11:00", "13:00"]]},
    }
    response = await tenant.post("/api/v1/metadata/business-calendars", json=overlapping)
    assert response.status_code == 422, response.text
    assert ("business_calendars/odd/hours/mon/1", "overlapping-interval") in _codes(response)
    idle = {"api_name": "idle", "working_days": ["2030-01-19"]}
    response = await tenant.post("/api/v1/metadata/business-calendars", json=idle)
    assert ("business_calendars/idle/hours", "no-working-time") in _codes(response)
    bad = FIRST_CONTACT | {
        "calendar": "nowhere",
        "due_field": "name",
        "breached_field": "nope",
        "met_condition": "status + 1",
        "targets": [{"condition": "priority == 'high'", "hours": 1}, {"hours": 4}],
        "on_breach": [{"kind": "assign", "assign_to": {"kind": "queue", "queue": "ghosts"}}],
    }
    response = await tenant.post("/api/v1/metadata/slas", json=bad)
    assert response.status_code == 422, response.text
    found = _codes(response)
    for expected in [
        ("slas/first_contact/calendar", "unknown-calendar"),
        ("slas/first_contact/due_field", "wrong-type"),
        ("slas/first_contact/breached_field", "unknown-field"),
        ("slas/first_contact/met_condition", "formula"),
        ("slas/first_contact/on_breach/0/assign_to/queue", "unknown-queue"),
    ]:
        assert expected in found, (expected, found)
    response = await tenant.post("/api/v1/metadata/slas", json=FIRST_CONTACT | {"targets": []})
    assert response.status_code == 422, response.text


def _codes(response: Any) -> set[tuple[str, str]]:
    return {(e["field"], e["code"]) for e in response.json().get("errors", [])}
