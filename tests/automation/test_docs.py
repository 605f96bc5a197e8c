"""docs/automation.md runs as written against `make run`'s demo, and its examples do what
the page says: leads assigned in turn, follow-up tasks, the SLA's pending escalation and the
ERP webhook's delivery log."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import zoneinfo
from collections.abc import Awaitable, Callable
from typing import Any

from tests.doc_runner import ROOT, DocsRun, doc_steps

DOC = "automation.md"
# The background worker runs the page's jobs on its own; the test waits for their outcome,
# at most this long (a bound on a loaded machine, not a speed requirement).
WAIT_SECONDS = 120.0


async def _eventually(probe: Callable[[], Awaitable[Any]]) -> Any:
    """The first truthy answer of `probe`, polled until WAIT_SECONDS have passed."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = await probe()
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.25)


def _utc(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_automation_doc_runs_and_cleans_up(docs: DocsRun) -> None:
    docs.result(DOC)
    assert len(doc_steps(ROOT / "docs" / DOC)) >= 30
    for kind in (
        "automation-rules",
        "assignment-rules",
        "queues",
        "business-calendars",
        "slas",
        "email-templates",
    ):
        listing = (await docs.admin.get(f"/api/v1/metadata/{kind}")).json()
        documents = next(v for v in listing.values() if isinstance(v, list))
        assert [d["api_name"] for d in documents if d["api_name"].startswith("auto_")] == []


async def test_leads_go_round_robin_and_get_a_follow_up(docs: DocsRun) -> None:
    names, admin = docs.result(DOC).names, docs.admin
    leads = [(await admin.get(f"/api/v1/data/lead/{names[n]}")).json() for n in ("lead1", "lead2")]
    # The queue's members in turn, given in the save itself.
    assert [lead["owner_id"] for lead in leads] == [names["rep1"], names["rep2"]]
    runs = (await admin.get("/api/v1/automation/runs?rule=auto_lead_assignment")).json()["runs"]
    assert sorted(r["detail"]["owner_id"] for r in runs if r["outcome"] == "done") == sorted(
        [names["rep1"], names["rep2"]]
    )

    async def tasks() -> list[dict[str, Any]] | None:
        found = []
        for lead in leads:
            answer = await admin.get(f"/api/v1/data/task?where=lead=='{lead['id']}'")
            found += answer.json()["records"]
        return found if len(found) == 2 else None

    opened = await _eventually(tasks)
    assert opened, "the follow-up rule opened no task"
    assert [t["subject"] for t in opened] == [
        "Call Lovelace (Analytical Engines Ltd)",
        "Call Zhang (Hangzhou Silk Co)",
    ]
    assert {t["priority"] for t in opened} == {"high"}
    for task in opened:  # ADDDAYS(TODAY(), 2) on the day the worker ran the rule
        created = _utc(task["created_at"]).date()
        assert dt.date.fromisoformat(task["due_date"]) == created + dt.timedelta(days=2)
    runs = (await admin.get("/api/v1/automation/runs?rule=auto_follow_up")).json()["runs"]
    assert sorted(r["record_id"] for r in runs) == sorted(lead["id"] for lead in leads)
    assert {r["outcome"] for r in runs} == {"done"}
    # `make run` has no SMTP server: the welcome e-mails end dead, saying how to turn it on.
    mails = (await admin.get("/api/v1/automation/jobs?kind=email.send")).json()["jobs"]
    welcome = {
        j["payload"]["to"]: j for j in mails if j["payload"].get("template") == "auto_lead_welcome"
    }
    assert sorted(welcome) == ["ada@example.com", "zhang.wei@example.com"]
    assert {j["status"] for j in welcome.values()} == {"dead"}
    assert all("METACRM_SMTP_HOST" in j["last_error"] for j in welcome.values())
    assert welcome["ada@example.com"]["payload"]["subject"]["en"] == "Welcome, Ada Lovelace"


async def test_the_sla_escalation_waits_and_is_met(docs: DocsRun) -> None:
    result = docs.result(DOC)
    case_id = result.names["case"]
    case = result.answers["agent POST /api/v1/data/service_case"]
    due = _utc(case["sla_due_at"])
    # Four working hours on the Shanghai support hours: due within them, after the save.
    local = due.astimezone(zoneinfo.ZoneInfo("Asia/Shanghai"))
    assert local.weekday() < 5 and dt.time(9) < local.time() <= dt.time(18)
    assert due > _utc(case["created_at"])
    pending = result.answers[
        f"admin GET /api/v1/automation/jobs?status=pending&record_id={case_id}"
    ]
    runs_at = {job["kind"]: _utc(job["run_at"]) for job in pending["jobs"]}
    assert set(runs_at) == {"sla.warn", "sla.breach"}
    assert runs_at["sla.breach"] == due and runs_at["sla.warn"] < due
    # The first response met it: both jobs cancelled, the history says so.
    after = (await docs.admin.get(f"/api/v1/automation/jobs?record_id={case_id}")).json()
    assert {j["kind"]: j["status"] for j in after["jobs"]} == {
        "sla.warn": "cancelled",
        "sla.breach": "cancelled",
    }
    runs = result.answers[f"admin GET /api/v1/automation/runs?record_id={case_id}"]["runs"]
    assert [(r["name"], r["trigger"], r["outcome"]) for r in runs] == [
        ("auto_first_response", "met", "done")
    ]


async def test_the_erp_webhook_logs_its_deliveries(docs: DocsRun) -> None:
    names, admin = docs.result(DOC).names, docs.admin
    hook = (await admin.get(f"/api/v1/webhooks/{names['erp']}")).json()
    # Saved switched off: the page sends nothing beyond this machine.
    assert (hook["name"], hook["object"], hook["active"]) == (
        "auto_erp_orders",
        "sales_order",
        False,
    )
    assert "secret" not in hook

    async def finished() -> list[dict[str, Any]] | None:
        log = await admin.get(f"/api/v1/webhooks/{names['erp']}/deliveries")
        done = [e for e in log.json()["deliveries"] if e["status"] != "pending"]
        return done or None

    entries = await _eventually(finished)
    assert entries, "the rule's delivery to the ERP webhook was never logged"
    # Only the rule's action queued a delivery (the subscription's own events queue nothing
    # while it is off), and it ended without a request.
    assert [(e["event"], e["status"], e["error"], e["http_status"]) for e in entries] == [
        ("automation", "failed", "the webhook is inactive", None)
    ]
    assert entries[0]["record_id"] == names["order"]
    listing = (await admin.get(f"/api/v1/automation/jobs?record_id={names['order']}")).json()
    delivered = [j for j in listing["jobs"] if j["kind"] == "webhook.deliver"]
    assert [j["status"] for j in delivered] == ["dead"]
    body = json.loads(delivered[0]["payload"]["body"])
    assert (body["type"], body["data"]["changed"]) == ("sales_order.automation", [])
    assert body["data"]["record"]["status"] == "confirmed"
    runs = (await admin.get("/api/v1/automation/runs?rule=auto_big_orders_to_erp")).json()
    assert [(r["record_id"], r["outcome"]) for r in runs["runs"]] == [(names["order"], "done")]


async def test_the_schedule_rule_waited_for_nine_in_shanghai(docs: DocsRun) -> None:
    result = docs.result(DOC)
    path = "admin GET /api/v1/automation/jobs?kind=automation.schedule&status=pending"
    waiting = [j for j in result.answers[path]["jobs"] if j["key"] == "schedule:auto_overdue_tasks"]
    assert len(waiting) == 1
    run_at = _utc(waiting[0]["run_at"])
    local = run_at.astimezone(zoneinfo.ZoneInfo("Asia/Shanghai"))
    assert (local.weekday() < 5, local.time()) == (True, dt.time(9))
    assert run_at > _utc(waiting[0]["created_at"])
    # Deleting the rule at the end of the page cancelled that run.
    listing = await docs.admin.get("/api/v1/automation/jobs?kind=automation.schedule")
    runs = [j for j in listing.json()["jobs"] if j["id"] == waiting[0]["id"]]
    assert [j["status"] for j in runs] == ["cancelled"]
