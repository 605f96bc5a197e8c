"""Stage rules end to end through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.conftest import TenantClient
from tests.process.support import BIG_DISCOUNT, DEAL_DESK, codes, setup


async def test_gates_refuse_then_allow(tenant: TenantClient) -> None:
    await setup(tenant)
    manager = await tenant.add_user("boss@x.test", role="sales_manager")
    rep = await tenant.add_user("rep@x.test", role="sales_rep", manager_id=manager.user_id)
    opp = await rep.create("opportunity", {"name": "Acme", "stage": "qualify"})
    assert opp["probability"] == "10.00"
    url = f"/api/v1/data/opportunity/{opp['id']}"

    # Every missing field and failed condition at once.
    response = await rep.post(f"{url}/stage", json={"to": "propose"})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert codes(response) == {
        ("amount", "required-for-stage"),
        ("close_date", "required-for-stage"),
        ("stage", "entry-condition"),
    }
    # The same gate on PATCH.
    response = await rep.patch(url, json={"stage": "propose", "amount": "0"})
    assert codes(response) == {("close_date", "required-for-stage"), ("stage", "entry-condition")}
    assert "positive amount" in response.text
    # Skipping a stage is refused.
    response = await rep.patch(url, json={"stage": "negotiate"})
    assert ("stage", "illegal-move") in codes(response)

    response = await rep.post(
        f"{url}/stage",
        json={"to": "propose", "fields": {"amount": "5000", "close_date": "2030-01-31"}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["stage"] == "propose"
    assert response.json()["probability"] == "50.00"

    # A task must be done before leaving; the optional one goes to the manager.
    tasks = (await rep.get(f"{url}/stage-tasks")).json()["tasks"]
    assert {t["task"]: t["assignee_id"] for t in tasks} == {
        "send_deck": rep.user_id,
        "call": manager.user_id,
    }
    response = await rep.post(f"{url}/stage", json={"to": "negotiate"})
    assert codes(response) == {
        ("tasks/send_deck", "task-open"),
        ("next_step", "required-for-stage"),
    }
    deck = next(t for t in tasks if t["task"] == "send_deck")
    assert (await rep.post(f"/api/v1/stage-tasks/{deck['id']}/done")).status_code == 200
    response = await rep.post(
        f"{url}/stage", json={"to": "negotiate", "fields": {"next_step": "call"}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["next_step"] == "negotiating Acme"  # on-entry field update

    # Backward needs a reason (reason_on_back); closing lost needs one too.
    response = await rep.post(f"{url}/stage", json={"to": "propose"})
    assert codes(response) == {("reason", "reason-required")}
    response = await rep.post(f"{url}/stage", json={"to": "propose", "reason": "re-scope"})
    assert response.status_code == 200, response.text
    # Re-entering propose opened its task again.
    tasks = (await rep.get(f"{url}/stage-tasks")).json()["tasks"]
    again = [t for t in tasks if t["task"] == "send_deck" and t["status"] == "open"]
    assert len(again) == 1
    await rep.post(f"/api/v1/stage-tasks/{again[0]['id']}/done")
    response = await rep.post(f"{url}/stage", json={"to": "negotiate"})
    assert response.status_code == 200, response.text
    response = await rep.patch(url, json={"stage": "lost"})
    assert codes(response) == {("reason", "reason-required")}

    # won requires the approved deal desk flow.
    response = await rep.post(f"{url}/stage", json={"to": "won"})
    assert codes(response) == {("stage", "approval-required")}
    run = (await rep.post(f"{url}/approvals", json={"flow": "deal_desk"})).json()
    response = await manager.post(f"/api/v1/approvals/{run['id']}/approve", json={})
    assert response.json()["status"] == "approved", response.text
    response = await rep.post(f"{url}/stage", json={"to": "won"})
    assert response.status_code == 200, response.text
    # Closed: nothing follows.
    response = await rep.post(f"{url}/stage", json={"to": "lost", "reason": "x"})
    assert ("stage", "illegal-move") in codes(response)

    history = (await rep.get(f"{url}/stage-history")).json()["rules"][0]
    moves = [(t["from"], t["to"]) for t in history["transitions"]]
    assert moves == [
        (None, "qualify"),
        ("qualify", "propose"),
        ("propose", "negotiate"),
        ("negotiate", "propose"),
        ("propose", "negotiate"),
        ("negotiate", "won"),
    ]
    assert history["transitions"][3]["reason"] == "re-scope"
    assert history["current"] == "won"
    assert set(history["time_in_stage"]) == {"qualify", "propose", "negotiate", "won"}
    assert all(v["seconds"] >= 0 for v in history["time_in_stage"].values())


async def test_create_must_start_in_an_initial_stage(tenant: TenantClient) -> None:
    await setup(tenant)
    response = await tenant.post(
        "/api/v1/data/opportunity", json={"name": "x", "stage": "propose", "amount": "1"}
    )
    assert response.status_code == 422
    assert ("stage", "illegal-move") in codes(response)
    # Batch goes through the same gates.
    response = await tenant.post(
        "/api/v1/data/opportunity/batch",
        json={"records": [{"name": "a", "stage": "qualify"}, {"name": "b", "stage": "won"}]},
    )
    assert response.status_code == 422
    assert ("records/1/stage", "illegal-move") in codes(response)


async def test_moving_to_the_current_stage_changes_nothing(tenant: TenantClient) -> None:
    await setup(tenant)
    opp = await tenant.create("opportunity", {"name": "Acme", "stage": "qualify"})
    url = f"/api/v1/data/opportunity/{opp['id']}"
    response = await tenant.post(f"{url}/stage", json={"to": "qualify"})
    assert response.status_code == 200, response.text
    assert response.json()["version"] == opp["version"]
    assert (await tenant.get(url)).json()["version"] == opp["version"]
    history = (await tenant.get(f"{url}/stage-history")).json()["rules"][0]
    assert [(t["from"], t["to"]) for t in history["transitions"]] == [(None, "qualify")]


async def _negotiating(user: TenantClient, amount: str) -> str:
    opp = await user.create("opportunity", {"name": "Deal", "stage": "qualify"})
    url = f"/api/v1/data/opportunity/{opp['id']}"
    fields = {"amount": amount, "close_date": "2030-01-01"}
    response = await user.post(f"{url}/stage", json={"to": "propose", "fields": fields})
    assert response.status_code == 200, response.text
    for task in (await user.get(f"{url}/stage-tasks")).json()["tasks"]:
        if not task["optional"]:
            await user.post(f"/api/v1/stage-tasks/{task['id']}/done")
    response = await user.post(
        f"{url}/stage", json={"to": "negotiate", "fields": {"next_step": "x"}}
    )
    assert response.status_code == 200, response.text
    return url


async def test_a_required_approval_applies_only_when_its_flow_accepts_the_record(
    tenant: TenantClient,
) -> None:
    # The deal desk only takes deals above 10000: smaller ones may close without it.
    desk = DEAL_DESK | {"entry_condition": "amount > 10000"}
    await setup(tenant, approval_flows=[desk, BIG_DISCOUNT])
    small = await _negotiating(tenant, "5000")
    response = await tenant.post(f"{small}/stage", json={"to": "won"})
    assert response.status_code == 200, response.text
    assert response.json()["stage"] == "won"

    big = await _negotiating(tenant, "50000")
    response = await tenant.post(f"{big}/stage", json={"to": "won"})
    assert codes(response) == {("stage", "approval-required")}
    # The gate judges the record as it will be: lowering the amount in the move lifts it.
    response = await tenant.post(f"{big}/stage", json={"to": "won", "fields": {"amount": "9000"}})
    assert response.status_code == 200, response.text
