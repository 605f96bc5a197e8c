"""Reading is not acting: process actions need edit access to the record (404 when it is
not visible, 403 when it is only readable), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.conftest import TenantClient
from tests.process.support import OPPORTUNITY, PATH, QUOTE, setup

#: Every sales rep may read (not edit) the big quotes and deals of the others.
SHARING = [
    {
        "api_name": "big_quotes",
        "object": "quote",
        "criteria": "amount > 1000",
        "share_with": {"role": "sales_rep"},
        "access": "read",
    },
    {
        "api_name": "big_deals",
        "object": "opportunity",
        "criteria": "amount > 1000",
        "share_with": {"role": "sales_rep"},
        "access": "read",
    },
]
#: The deck goes to any sales rep, so that a colleague is among its assignees.
SHARED_TASK_PATH = PATH | {
    "stages": [
        {
            **stage,
            "tasks": [
                {
                    "api_name": "send_deck",
                    "subject": "Send the deck",
                    "assignee": {"kind": "role", "role": "sales_rep"},
                }
            ],
        }
        if stage["value"] == "propose"
        else stage
        for stage in PATH["stages"]
    ]
}


async def _reps(admin: TenantClient) -> tuple[TenantClient, TenantClient]:
    private = [OPPORTUNITY | {"sharing": "private"}, QUOTE | {"sharing": "private"}]
    await setup(admin, objects=private, sharing_rules=SHARING, stage_rules=[SHARED_TASK_PATH])
    boss = await admin.add_user("boss@x.test", role="sales_manager")
    owner = await admin.add_user("rep1@x.test", role="sales_rep", manager_id=boss.user_id)
    colleague = await admin.add_user("rep2@x.test", role="sales_rep", manager_id=boss.user_id)
    return owner, colleague


async def test_submit_needs_edit_access(tenant: TenantClient) -> None:
    owner, colleague = await _reps(tenant)
    big = await owner.create("quote", {"name": "Big", "amount": "5000", "discount": "0.3"})
    small = await owner.create("quote", {"name": "Small", "amount": "500", "discount": "0.3"})
    big_url = f"/api/v1/data/quote/{big['id']}"
    assert (await colleague.get(big_url)).status_code == 200  # readable through the rule

    response = await colleague.post(f"{big_url}/approvals", json={})
    assert response.status_code == 403, response.text
    response = await colleague.post(f"/api/v1/data/quote/{small['id']}/approvals", json={})
    assert response.status_code == 404, response.text
    # Nothing was started: the owner is not locked out and may submit.
    assert (await owner.get(f"{big_url}/approvals")).json()["approvals"] == []
    assert (await owner.patch(big_url, json={"notes": "mine"})).status_code == 200
    assert (await owner.post(f"{big_url}/approvals", json={})).status_code == 201


async def _proposed(owner: TenantClient, amount: str) -> tuple[str, dict[str, Any]]:
    opp = await owner.create("opportunity", {"name": "Deal", "stage": "qualify"})
    url = f"/api/v1/data/opportunity/{opp['id']}"
    fields = {"amount": amount, "close_date": "2030-01-01"}
    response = await owner.post(f"{url}/stage", json={"to": "propose", "fields": fields})
    assert response.status_code == 200, response.text
    task = (await owner.get(f"{url}/stage-tasks")).json()["tasks"][0]
    return url, task


async def test_stage_moves_and_tasks_need_edit_access(tenant: TenantClient) -> None:
    owner, colleague = await _reps(tenant)
    big_url, big_task = await _proposed(owner, "5000")
    small_url, small_task = await _proposed(owner, "500")
    assert (await colleague.get(big_url)).status_code == 200
    assert big_task["assignee_role"] == "sales_rep"

    response = await colleague.post(f"{big_url}/stage", json={"to": "lost", "reason": "mine"})
    assert response.status_code == 403, response.text
    response = await colleague.post(f"{small_url}/stage", json={"to": "lost", "reason": "x"})
    assert response.status_code == 404, response.text

    response = await colleague.post(f"/api/v1/stage-tasks/{big_task['id']}/done")
    assert response.status_code == 403, response.text
    response = await colleague.post(f"/api/v1/stage-tasks/{small_task['id']}/done")
    assert response.status_code == 404, response.text
    tasks = (await owner.get(f"{big_url}/stage-tasks")).json()["tasks"]
    assert [t["status"] for t in tasks] == ["open"]

    # The owner, who may edit the record, acts on it.
    response = await owner.post(f"/api/v1/stage-tasks/{big_task['id']}/done")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "done"
    response = await owner.post(f"{big_url}/stage", json={"to": "lost", "reason": "budget"})
    assert response.status_code == 200, response.text
