"""The record page in a real browser: layout, stage path and gates, related lists, timeline
and comments, approval submission, transfer, share, delete; access and bad input."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.conftest import (
    Crm,
    axe_findings,
    needs_chromium,
    new_crm,
    screenshot,
    sign_in,
    signed_in_client,
    signed_in_with_csrf,
)

pytestmark = needs_chromium


def account_id(crm: Crm, name: str) -> str:
    with crm.api() as api:
        found = api.get("/api/v1/data/account", params={"where": f"name == '{name}'"})
    assert found.status_code == 200, found.text
    return str(found.json()["records"][0]["id"])


def create(crm: Crm, token: str | None, object_name: str, body: dict[str, Any]) -> str:
    with crm.api(token) as api:
        created = api.post(f"/api/v1/data/{object_name}", json=body)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def prepare_history_and_hidden_field(crm: Crm) -> None:
    """Track opportunity.next_step's history; hide opportunity.kind from sales reps."""
    with crm.api() as api:
        changed = api.patch(
            "/api/v1/metadata/objects/opportunity/fields/next_step", json={"track_history": True}
        )
        assert changed.status_code == 200, changed.text
        changed = api.patch(
            "/api/v1/metadata/objects/opportunity/fields/kind", json={"track_history": True}
        )
        assert changed.status_code == 200, changed.text
        role = api.get("/api/v1/metadata/roles/sales_rep").json()
        role["fields"]["opportunity"]["kind"] = "hidden"
        put = api.put("/api/v1/metadata/roles/sales_rep", json=role, params={"confirm": "true"})
        assert put.status_code == 200, put.text


async def test_rep_works_an_opportunity_path_gates_related_timeline(
    crm: Crm, browser: Any, context: Any, tmp_path: Path
) -> None:
    rep = crm.token("rep@web.test")
    acme = account_id(crm, "Acme Robotics")
    opp = create(
        crm,
        rep,
        "opportunity",
        {"name": "Robot arms for Acme", "account": acme, "stage": "qualify", "kind": "upsell"},
    )
    create(crm, rep, "quote", {"name": "Arms quote v1", "opportunity": opp, "account": acme})
    prepare_history_and_hidden_field(crm)

    page = await sign_in(context, crm, "rep@web.test")
    url = f"{crm.url}/app/o/opportunity/{opp}"
    await page.goto(url)
    await page.get_by_role("heading", name="Robot arms for Acme", level=1).wait_for()
    # The path bar: every stage, the current one marked, the gates of the next stages.
    current = page.locator(".path-steps [aria-current='step']")
    assert "Qualify" in await current.inner_text()
    gate = page.locator(".gate[data-stage='propose']")
    assert await gate.locator("li.missing").count() >= 2  # amount and close date empty
    # The lookup shows its target's name as a link; the related list holds the quote.
    await page.get_by_role("link", name="Acme Robotics").first.wait_for()
    related = page.locator("[data-related='quote']")
    await related.get_by_role("link", name="Arms quote v1").wait_for()
    view_all = await related.get_by_role("link", name=re.compile("View all")).get_attribute("href")
    assert view_all is not None and view_all.startswith("/app/o/quote?where=")
    # The role's hidden field is not in the HTML at all.
    html = await page.content()
    assert 'data-field="kind"' not in html and "Upsell" not in html

    # Moving without meeting the gates is refused, with every failing gate shown.
    await gate.get_by_role("button", name=re.compile("Move to")).click()
    alert = page.get_by_role("alert")
    await alert.wait_for()
    text = await alert.inner_text()
    assert "Amount" in text and "Close Date" in text

    # A field change (through the API, as the edit form would) shows in the timeline.
    with crm.api(rep) as api:
        patched = api.patch(
            f"/api/v1/data/opportunity/{opp}",
            json={"next_step": "Call the CFO", "amount": 90000, "close_date": "2027-06-30"},
        )
        assert patched.status_code == 200, patched.text
    with crm.api() as api:  # a change of the field hidden from reps: not in their timeline
        patched = api.patch(f"/api/v1/data/opportunity/{opp}", json={"kind": "renewal"})
        assert patched.status_code == 200, patched.text
    await page.goto(url)
    timeline = page.locator("#timeline")
    await timeline.get_by_text("Call the CFO").wait_for()
    html = await page.content()
    assert "Renewal" not in html and "Upsell" not in html

    # A comment the rep adds shows at the top of the timeline.
    await page.get_by_label("Add a comment").fill("Spoke with <b>Ada</b>: budget approved")
    await page.get_by_role("button", name="Post comment").click()
    await page.get_by_role("status").wait_for()
    first = page.locator(".timeline .event").first
    assert "Spoke with <b>Ada</b>: budget approved" in await first.inner_text()

    # Now the gates are met: the move goes through and the path shows the new stage.
    await page.locator(".gate[data-stage='propose']").get_by_role("button").click()
    await page.get_by_role("status").wait_for()
    assert "Propose" in await page.locator(".path-steps [aria-current='step']").inner_text()
    moved = page.locator(".timeline .event.stage").first
    assert "from Qualify to Propose" in await moved.inner_text()
    await screenshot(page, "record", tmp_path)
    assert await axe_findings(browser, context, url) == []


async def test_submit_a_quote_for_approval_and_see_the_run(
    crm: Crm, context: Any, tmp_path: Path
) -> None:
    rep = crm.token("rep@web.test")
    quote = create(crm, rep, "quote", {"name": "Deep discount", "discount": 30})
    page = await sign_in(context, crm, "rep@web.test")
    await page.goto(f"{crm.url}/app/o/quote/{quote}")
    await page.get_by_role("link", name="Edit").wait_for()
    await page.get_by_label("Comment for the approvers").fill("Strategic logo")
    await page.get_by_role("button", name="Submit for approval").click()
    await page.get_by_role("status").wait_for()
    run = page.locator(".run")
    assert await run.get_attribute("data-status") == "pending"
    assert "Strategic logo" in await run.inner_text()
    event = page.locator("#timeline .event.approval").first
    assert "Quote discount approval: submitted" in await event.inner_text()
    # The flow locks the record: no edit, delete or transfer for the rep meanwhile.
    html = await page.content()
    assert f"/app/o/quote/{quote}/edit" not in html
    assert "/delete" not in html and "/transfer" not in html and "/submit" not in html
    assert "locks this record" in html
    with crm.api(rep) as api:
        runs = api.get(f"/api/v1/data/quote/{quote}/approvals").json()["approvals"]
    assert [r["status"] for r in runs] == ["pending"]


async def test_transfer_share_and_delete(crm: Crm, browser: Any, context: Any) -> None:
    crm.add_user("rep2@web.test", role="sales_rep", full_name="Rita Rep")
    rep = crm.token("rep@web.test")
    rep2 = crm.token("rep2@web.test")
    shared = create(crm, rep, "opportunity", {"name": "Shared deal", "stage": "qualify"})
    given = create(crm, rep, "opportunity", {"name": "Given deal", "stage": "qualify"})
    page = await sign_in(context, crm, "rep@web.test")

    with crm.api(rep2) as api:
        assert api.get(f"/api/v1/data/opportunity/{shared}").status_code == 404
    await page.goto(f"{crm.url}/app/o/opportunity/{shared}")
    await page.get_by_label("Share with").select_option(label="Rita Rep")
    await page.get_by_label("Access").select_option("read")
    await page.locator("#share-title ~ form button").click()
    await page.get_by_role("status").wait_for()
    with crm.api(rep2) as api:
        assert api.get(f"/api/v1/data/opportunity/{shared}").status_code == 200

    await page.goto(f"{crm.url}/app/o/opportunity/{given}")
    await page.get_by_label("New owner").select_option(label="Rita Rep")
    await page.get_by_role("button", name="Transfer", exact=True).click()
    # The rep no longer sees the record: back to the list.
    await page.wait_for_url(f"{crm.url}/app/o/opportunity")
    with crm.api(rep2) as api:
        record = api.get(f"/api/v1/data/opportunity/{given}").json()
    assert record["owner_id"] == crm.users["rep2@web.test"]

    # Reps may not delete; their manager may, also the rep's records.
    doomed = create(crm, rep, "opportunity", {"name": "Doomed deal", "stage": "qualify"})
    await page.goto(f"{crm.url}/app/o/opportunity/{doomed}")
    assert await page.get_by_role("button", name="Delete").count() == 0
    manager_context = await browser.new_context()
    try:
        manager = await sign_in(manager_context, crm, "manager@web.test")
        await manager.goto(f"{crm.url}/app/o/opportunity/{doomed}")
        manager.once("dialog", lambda dialog: dialog.accept())
        await manager.get_by_role("button", name="Delete").click()
        await manager.wait_for_url(f"{crm.url}/app/o/opportunity")
    finally:
        await manager_context.close()
    with crm.api(rep) as api:
        assert api.get(f"/api/v1/data/opportunity/{doomed}").status_code == 404


async def test_access_hidden_records_and_buttons(crm: Crm, clients: list[httpx.Client]) -> None:
    client = signed_in_client(clients, crm, "rep@web.test")
    # A seeded opportunity belongs to the administrator: private, so the rep gets the 404 page.
    with crm.api() as api:
        theirs = api.get("/api/v1/data/opportunity", params={"limit": 1}).json()["records"][0]
    response = client.get(f"/app/o/opportunity/{theirs['id']}")
    assert response.status_code == 404
    assert theirs["name"] not in response.text
    # The REST side of the page answers the same: not found, nothing written.
    with crm.api(crm.token("rep@web.test")) as api:
        base = f"/api/v1/data/opportunity/{theirs['id']}"
        for path in ("/comments", "/timeline", "/actions", "/related-summary"):
            assert api.get(base + path).status_code == 404, path
        assert api.post(base + "/comments", json={"body": "hi"}).status_code == 404
    with crm.api() as api:
        assert api.get(f"/api/v1/data/opportunity/{theirs['id']}/comments").json() == {
            "comments": []
        }
    # An object the role may not read at all: 404 too, never the data.
    with crm.api() as api:
        payment = api.get("/api/v1/data/payment", params={"limit": 1}).json()["records"][0]
    response = client.get(f"/app/o/payment/{payment['id']}")
    assert response.status_code == 404
    # A public account the rep may read and edit but not delete, transfer or share.
    acme = account_id(crm, "Acme Robotics")
    page = client.get(f"/app/o/account/{acme}")
    assert page.status_code == 200
    assert f"/app/o/account/{acme}/edit" in page.text
    for action in ("delete", "transfer", "share"):
        assert f"/app/o/account/{acme}/{action}" not in page.text
    client.cookies.set("metacrm_lang", "zh-CN")
    chinese = client.get(f"/app/o/account/{acme}")
    assert "负责人" in chinese.text and "编辑" in chinese.text and "客户信息" in chinese.text
    client.cookies.delete("metacrm_lang")
    # The rep's own opportunity: every action of an owner.
    mine = create(
        crm, crm.token("rep@web.test"), "opportunity", {"name": "Mine", "stage": "qualify"}
    )
    page = client.get(f"/app/o/opportunity/{mine}")
    assert page.status_code == 200
    for action in ("edit", "transfer", "share", "path"):
        assert f"/app/o/opportunity/{mine}/{action}" in page.text
    assert f"/app/o/opportunity/{mine}/delete" not in page.text  # reps may not delete
    assert f"/app/o/opportunity/{mine}/submit" not in page.text  # no flow on opportunities


async def test_bad_ids_objects_and_input_never_500(crm: Crm, clients: list[httpx.Client]) -> None:
    client, csrf = signed_in_with_csrf(clients, crm, "rep@web.test")
    mine = create(
        crm, crm.token("rep@web.test"), "opportunity", {"name": "Mine", "stage": "qualify"}
    )
    for path in (
        "/app/o/nope/" + str(uuid.uuid4()),
        "/app/o/opportunity/not-an-id",
        "/app/o/opportunity/" + str(uuid.uuid4()),
        "/app/o/opportunity/%27%3B--",
    ):
        response = client.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert "Traceback" not in response.text
    for action, data in (
        ("path", {"to": "no-such-stage"}),
        ("path", {"to": "won"}),
        ("transfer", {"owner_id": "not-a-user"}),
        ("share", {"with": "user:nobody", "access": "write"}),
        ("comments", {"body": "   "}),
        ("submit", {"comment": "x"}),
    ):
        response = client.post(
            f"/app/o/opportunity/{mine}/{action}", data={**data, "csrf_token": csrf}
        )
        assert response.status_code in (400, 403, 404, 409, 422), (action, response.status_code)
        assert "Traceback" not in response.text
        if response.status_code in (409, 422):
            assert 'role="alert"' in response.text
    bad = client.post(
        f"/app/o/opportunity/{uuid.uuid4()}/comments", data={"body": "x", "csrf_token": csrf}
    )
    assert bad.status_code == 404
    # Without the CSRF token nothing is done.
    forged = client.post(f"/app/o/opportunity/{mine}/comments", data={"body": "forged"})
    assert forged.status_code == 403
    with crm.api(crm.token("rep@web.test")) as api:
        listed = api.get(f"/api/v1/data/opportunity/{mine}/comments").json()["comments"]
    assert listed == []


async def test_stage_task_listed_gating_and_completed_from_the_path(crm: Crm, context: Any) -> None:
    with crm.api() as api:
        rule = api.get("/api/v1/metadata/stage-rules/opportunity_path").json()
        propose = next(s for s in rule["stages"] if s["value"] == "propose")
        propose["tasks"] = [{"api_name": "send_deck", "subject": "Send the deck"}]
        put = api.put(
            "/api/v1/metadata/stage-rules/opportunity_path", json=rule, params={"confirm": "true"}
        )
        assert put.status_code == 200, put.text
    rep = crm.token("rep@web.test")
    opp = create(
        crm,
        rep,
        "opportunity",
        {"name": "Tasked deal", "stage": "qualify", "amount": 5000, "close_date": "2027-01-31"},
    )
    with crm.api(rep) as api:
        moved = api.post(f"/api/v1/data/opportunity/{opp}/stage", json={"to": "propose"})
        assert moved.status_code == 200, moved.text
    page = await sign_in(context, crm, "rep@web.test")
    await page.goto(f"{crm.url}/app/o/opportunity/{opp}")
    tasks = page.locator(".stage-tasks")
    await tasks.get_by_text("Send the deck", exact=True).wait_for()
    gate = page.locator(".gate[data-stage='negotiate']")
    missing = " ".join(await gate.locator("li.missing").all_inner_texts())
    assert "Task done: Send the deck" in missing
    await tasks.get_by_role("button", name="Mark done: Send the deck").click()
    await page.get_by_role("status").wait_for()
    assert await page.locator(".stage-tasks").count() == 0
    assert "task done: Send the deck" in await page.locator("#timeline").inner_text()
    with crm.api(rep) as api:
        listed = api.get(f"/api/v1/data/opportunity/{opp}/stage-tasks").json()["tasks"]
    assert [t["status"] for t in listed] == ["done"]


@pytest.mark.parametrize("pack", ["b2b-saas", "education", "manufacturing"])
async def test_every_object_of_every_pack_draws_its_record_page(
    web_server: str, pack: str, clients: list[httpx.Client]
) -> None:
    """No per-object code: the first record of every object, of crm-core and the pack, draws
    for the administrator, with its sections, and its timeline; nothing answers 500."""
    crm = new_crm(web_server, "crm-core", pack)
    client = signed_in_client(clients, crm, crm.admin)
    with crm.api() as api:
        objects = [o["api_name"] for o in api.get("/api/v1/metadata/objects").json()["objects"]]
        drawn = 0
        for name in objects:
            found = api.get(f"/api/v1/data/{name}", params={"limit": 1}).json()["records"]
            if not found:
                continue
            page = client.get(f"/app/o/{name}/{found[0]['id']}")
            assert page.status_code == 200, (name, page.status_code)
            assert 'id="timeline"' in page.text and '<dl class="fields' in page.text, name
            drawn += 1
            rest = api.get(f"/api/v1/data/{name}/{found[0]['id']}/actions")
            assert rest.status_code == 200 and rest.json()["edit"] is True, name
    assert drawn >= 10
