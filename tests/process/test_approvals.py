"""Approval flows end to end through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tests.conftest import Jobs, TenantClient
from tests.process.support import BIG_DISCOUNT, codes, setup


async def _team(admin: TenantClient) -> dict[str, TenantClient]:
    await setup(admin)
    boss = await admin.add_user("boss@x.test", role="sales_manager")
    rep = await admin.add_user("rep@x.test", role="sales_rep", manager_id=boss.user_id)
    fin1 = await admin.add_user("fin1@x.test", role="finance")
    fin2 = await admin.add_user("fin2@x.test", role="finance")
    return {"boss": boss, "rep": rep, "fin1": fin1, "fin2": fin2}


def _pending(run: dict[str, Any]) -> set[tuple[str, str]]:
    return {(t["step"], t["assignee_id"]) for t in run["tasks"] if t["status"] == "pending"}


async def test_discount_rejected_edited_resubmitted_approved(tenant: TenantClient) -> None:
    team = await _team(tenant)
    rep, boss, fin1, fin2 = team["rep"], team["boss"], team["fin1"], team["fin2"]
    quote = await rep.create("quote", {"name": "Q1", "amount": "50000", "discount": "0.25"})
    url = f"/api/v1/data/quote/{quote['id']}"

    response = await rep.post(f"{url}/approvals", json={"comment": "please"})
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["flow"] == "big_discount" and run["status"] == "pending"
    assert run["definition"]["steps"][0]["api_name"] == "manager"  # the snapshot
    assert _pending(run) == {("manager", boss.user_id)}
    assert (await rep.get(url)).json()["status"] == "pending"  # on_submit action

    # The inbox shows it to the manager, not to finance yet.
    inbox = (await boss.get("/api/v1/approvals", params={"assigned_to": "me"})).json()["tasks"]
    assert [t["approval_id"] for t in inbox] == [run["id"]]
    assert (await fin1.get("/api/v1/approvals")).json()["tasks"] == []

    # Locked: the owner cannot edit; the approver may edit only notes; admins may.
    response = await rep.patch(url, json={"discount": "0.1"})
    assert response.status_code == 422
    assert codes(response) == {("discount", "record-locked")}
    response = await boss.patch(url, json={"notes": "checked", "amount": "1"})
    assert codes(response) == {("amount", "record-locked")}
    assert (await boss.patch(url, json={"notes": "checked"})).status_code == 200
    assert (await tenant.patch(url, json={"notes": "admin"})).status_code == 200
    assert (await rep.delete(url)).status_code == 409

    # Manager approves; finance (all must approve): one approves, the other rejects.
    run = (await boss.post(f"/api/v1/approvals/{run['id']}/approve", json={})).json()
    assert run["status"] == "pending" and run["current_steps"] == ["finance"]
    assert _pending(run) == {("finance", fin1.user_id), ("finance", fin2.user_id)}
    assert (await boss.post(f"/api/v1/approvals/{run['id']}/approve", json={})).status_code == 403
    run = (await fin1.post(f"/api/v1/approvals/{run['id']}/approve", json={})).json()
    assert run["status"] == "pending"
    response = await fin2.post(f"/api/v1/approvals/{run['id']}/reject", json={"comment": "too low"})
    run = response.json()
    assert run["status"] == "rejected", response.text
    assert (await rep.get(url)).json()["status"] == "rejected"  # on_reject action

    # Unlocked again: edit and resubmit; this time everyone approves.
    assert (await rep.patch(url, json={"discount": "0.22"})).status_code == 200
    second = (await rep.post(f"{url}/approvals", json={})).json()
    for user in (boss, fin1, fin2):
        response = await user.post(f"/api/v1/approvals/{second['id']}/approve", json={})
        assert response.status_code == 200, response.text
    assert response.json()["status"] == "approved"
    assert (await rep.get(url)).json()["status"] == "approved"

    history = (await rep.get(f"{url}/approvals")).json()["approvals"]
    assert [h["status"] for h in history] == ["rejected", "approved"]
    actions = [e["action"] for e in history[0]["events"]]
    assert actions == [
        "submit",
        "approve",
        "step_approved",
        "approve",
        "reject",
        "step_rejected",
        "rejected",
    ]
    assert history[0]["events"][4]["comment"] == "too low"


async def test_entry_condition_and_step_condition(tenant: TenantClient) -> None:
    team = await _team(tenant)
    rep, boss = team["rep"], team["boss"]
    small = await rep.create("quote", {"name": "Q", "amount": "500", "discount": "0.05"})
    response = await rep.post(f"/api/v1/data/quote/{small['id']}/approvals", json={})
    assert response.status_code == 422
    assert codes(response) == {("approval_flows/big_discount/entry_condition", "entry-condition")}
    # amount <= 1000: the finance step is skipped, the manager alone approves.
    cheap = await rep.create("quote", {"name": "Q", "amount": "500", "discount": "0.3"})
    run = (await rep.post(f"/api/v1/data/quote/{cheap['id']}/approvals", json={})).json()
    run = (await boss.post(f"/api/v1/approvals/{run['id']}/approve", json={})).json()
    assert run["status"] == "approved"
    assert "skip" in [e["action"] for e in run["events"]]


async def test_recall_and_self_approval(tenant: TenantClient) -> None:
    team = await _team(tenant)
    rep, boss = team["rep"], team["boss"]
    quote = await rep.create("quote", {"name": "Q", "amount": "5000", "discount": "0.3"})
    url = f"/api/v1/data/quote/{quote['id']}"
    run = (await rep.post(f"{url}/approvals", json={})).json()
    # Only the submitter or an admin may recall.
    assert (await boss.post(f"/api/v1/approvals/{run['id']}/recall", json={})).status_code == 403
    response = await rep.post(f"/api/v1/approvals/{run['id']}/recall", json={"comment": "oops"})
    assert response.json()["status"] == "recalled", response.text
    assert all(t["status"] != "pending" for t in response.json()["tasks"])
    assert (await rep.get(url)).json()["status"] == "draft"  # on_recall
    assert (await boss.post(f"/api/v1/approvals/{run['id']}/approve", json={})).status_code == 409
    assert (await rep.patch(url, json={"discount": "0.4"})).status_code == 200  # unlocked

    # The manager submits their own quote: the manager step has no one but them -> refused.
    own = await boss.create("quote", {"name": "B", "amount": "5000", "discount": "0.3"})
    response = await boss.post(f"/api/v1/data/quote/{own['id']}/approvals", json={})
    assert response.status_code == 422
    assert ("steps/manager/approvers", "no-approver") in codes(response)
    # A flow allowing self-approval lets a finance user approve what they submitted.
    flow = BIG_DISCOUNT | {
        "api_name": "self_ok",
        "allow_self_approval": True,
        "steps": [{"api_name": "fin", "approvers": [{"kind": "role", "role": "finance"}]}],
        "on_submit": [],
    }
    assert (await tenant.post("/api/v1/metadata/approval-flows", json=flow)).status_code == 201
    fin1 = team["fin1"]
    mine = await tenant.create("quote", {"name": "F", "amount": "5000", "discount": "0.3"})
    run = (
        await fin1.post(f"/api/v1/data/quote/{mine['id']}/approvals", json={"flow": "self_ok"})
    ).json()
    assert (await fin1.post(f"/api/v1/approvals/{run['id']}/approve", json={})).json()[
        "status"
    ] == "approved"
    # Without it, a submitter can never decide their own submission, nor be handed it.
    quote = await rep.create("quote", {"name": "G", "amount": "5000", "discount": "0.3"})
    run = (await rep.post(f"/api/v1/data/quote/{quote['id']}/approvals", json={})).json()
    response = await tenant.post(
        f"/api/v1/approvals/{run['id']}/reassign",
        json={"to": rep.user_id, "task_id": run["tasks"][0]["id"]},
    )
    assert codes(response) == {("to", "self-approval")}
    response = await rep.post(f"/api/v1/approvals/{run['id']}/approve", json={})
    assert response.status_code == 403


async def test_reassign_co_approver_and_delegation(tenant: TenantClient) -> None:
    team = await _team(tenant)
    rep, boss, fin1, fin2 = team["rep"], team["boss"], team["fin1"], team["fin2"]
    quote = await rep.create("quote", {"name": "Q", "amount": "5000", "discount": "0.3"})
    run = (await rep.post(f"/api/v1/data/quote/{quote['id']}/approvals", json={})).json()
    # The manager adds finance 1 as a co-approver (any-one step: either decides).
    response = await boss.post(
        f"/api/v1/approvals/{run['id']}/approvers", json={"user": "fin1@x.test"}
    )
    assert _pending(response.json()) == {("manager", boss.user_id), ("manager", fin1.user_id)}
    # Finance 1 reassigns their task to finance 2, who approves for the step.
    response = await fin1.post(f"/api/v1/approvals/{run['id']}/reassign", json={"to": fin2.user_id})
    assert _pending(response.json()) == {("manager", boss.user_id), ("manager", fin2.user_id)}
    run = (await fin2.post(f"/api/v1/approvals/{run['id']}/approve", json={})).json()
    assert run["current_steps"] == ["finance"]
    # Finance 2 delegates to the manager for now; the manager sees and decides their task.
    response = await fin2.post(
        "/api/v1/approvals/delegations",
        json={
            "delegate": boss.user_id,
            "starts_at": "2000-01-01T00:00:00Z",
            "ends_at": "2999-01-01T00:00:00Z",
        },
    )
    assert response.status_code == 201, response.text
    inbox = (await boss.get("/api/v1/approvals")).json()["tasks"]
    assert [(t["step"], t["delegated"]) for t in inbox] == [("finance", True)]
    await fin1.post(f"/api/v1/approvals/{run['id']}/approve", json={})
    run = (await boss.post(f"/api/v1/approvals/{run['id']}/approve", json={})).json()
    assert run["status"] == "approved"
    # New tasks for a user who delegates go to the delegate directly.
    quote = await rep.create("quote", {"name": "Q2", "amount": "5000", "discount": "0.3"})
    run = (await rep.post(f"/api/v1/data/quote/{quote['id']}/approvals", json={})).json()
    run = (await boss.post(f"/api/v1/approvals/{run['id']}/approve", json={})).json()
    routed = {t["assignee_id"]: t["on_behalf_of"] for t in run["tasks"] if t["status"] == "pending"}
    assert routed == {fin1.user_id: None, boss.user_id: fin2.user_id}


async def test_flow_versions_keep_their_definition(tenant: TenantClient) -> None:
    team = await _team(tenant)
    rep, boss = team["rep"], team["boss"]
    quote = await rep.create("quote", {"name": "Q", "amount": "5000", "discount": "0.3"})
    run = (await rep.post(f"/api/v1/data/quote/{quote['id']}/approvals", json={})).json()
    # The flow loses its finance step while the run is in progress.
    changed = BIG_DISCOUNT | {"steps": BIG_DISCOUNT["steps"][:1]}
    response = await tenant.put("/api/v1/metadata/approval-flows/big_discount", json=changed)
    assert response.status_code == 200, response.text
    run = (await boss.post(f"/api/v1/approvals/{run['id']}/approve", json={})).json()
    assert run["current_steps"] == ["finance"]  # the run keeps its own version
    # A new run uses the new version.
    other = await rep.create("quote", {"name": "Q2", "amount": "5000", "discount": "0.3"})
    run = (await rep.post(f"/api/v1/data/quote/{other['id']}/approvals", json={})).json()
    run = (await boss.post(f"/api/v1/approvals/{run['id']}/approve", json={})).json()
    assert run["status"] == "approved"


async def _urgent(
    admin: TenantClient, rep: TenantClient, **due: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An "urgent" flow whose manager step has the `due` times and escalates to finance;
    a quote the rep submitted to it, and its run."""
    step = {
        "api_name": "manager",
        "approvers": [{"kind": "manager"}],
        "escalate_to": {"kind": "role", "role": "finance"},
    }
    flow = BIG_DISCOUNT | {"api_name": "urgent", "steps": [step | due]}
    assert (await admin.post("/api/v1/metadata/approval-flows", json=flow)).status_code == 201
    quote = await rep.create("quote", {"name": "Q", "amount": "5000", "discount": "0.3"})
    url = f"/api/v1/data/quote/{quote['id']}/approvals"
    run = (await rep.post(url, json={"flow": "urgent"})).json()
    return quote, run


async def test_due_times_and_escalation(tenant: TenantClient) -> None:
    team = await _team(tenant)
    rep = team["rep"]
    _quote, run = await _urgent(tenant, rep, due_in_hours=1, remind_before_hours=1)
    assert run["tasks"][0]["due_at"] is not None
    response = await tenant.post("/api/v1/approvals/run-due")
    assert response.json() == {"reminded": 1, "escalated": 0}
    assert (await rep.post("/api/v1/approvals/run-due")).status_code == 403


async def test_reminders_and_escalation_run_on_the_job_queue(
    tenant: TenantClient, jobs: Jobs
) -> None:
    """Opening a task with a due time schedules its job; nothing runs before it is due,
    and at the due time the worker escalates the task to the step's target."""
    team = await _team(tenant)
    quote, run = await _urgent(tenant, team["rep"], due_in_hours=2)
    pending = (await tenant.get("/api/v1/automation/jobs", params={"status": "pending"})).json()
    assert [j["kind"] for j in pending["jobs"]] == ["approvals.due"]
    assert await jobs.run(tenant, later=dt.timedelta(hours=1)) == 0
    assert await jobs.run(tenant, later=dt.timedelta(hours=2, minutes=1)) == 1
    done = (await tenant.get("/api/v1/automation/jobs", params={"status": "done"})).json()
    assert done["jobs"][0]["result"] == {"reminded": 0, "escalated": 1}
    tasks = (await tenant.get(f"/api/v1/approvals/{run['id']}")).json()["tasks"]
    assert [t["status"] for t in tasks] == ["reassigned", "pending"]
    assert tasks[1]["assignee_id"] in {team["fin1"].user_id, team["fin2"].user_id}
    target = team["fin1"] if tasks[1]["assignee_id"] == team["fin1"].user_id else team["fin2"]
    [note] = (await target.get("/api/v1/notifications")).json()["notifications"]
    assert note["title"] == "An overdue approval was escalated to you"
    assert note["record_id"] == quote["id"]
    assert (await team["rep"].get("/api/v1/automation/jobs")).status_code == 403
