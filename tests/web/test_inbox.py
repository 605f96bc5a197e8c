"""The approval inbox in a real browser and over plain HTTP: deciding in place, recalling,
delegation, record access, refusals drawn as messages, accessibility."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.web.conftest import (
    Crm,
    axe_findings,
    needs_chromium,
    screenshot,
    sign_in,
    signed_in_with_csrf,
)

pytestmark = needs_chromium


def _api(clients: list[httpx.Client], crm: Crm, email: str) -> httpx.Client:
    """A REST API client as `email`, closed after the test."""
    client = crm.api(crm.token(email))
    clients.append(client)
    return client


def _quote(api: httpx.Client, name: str, discount: int = 25) -> dict[str, Any]:
    """A quote whose discount meets the flow's entry condition (discount > 20); at most 35,
    so only the owner's manager decides (the finance step's condition is discount > 35)."""
    created = api.post("/api/v1/data/quote", json={"name": name, "discount": discount})
    assert created.status_code == 201, created.text
    return dict(created.json())


def _submit(api: httpx.Client, quote: dict[str, Any], comment: str | None = None) -> str:
    body = {"comment": comment} if comment else {}
    response = api.post(f"/api/v1/data/quote/{quote['id']}/approvals", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _status(api: httpx.Client, approval_id: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/approvals/{approval_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_manager_approves_and_rejects_in_place_and_the_rep_recalls(
    crm: Crm, browser: Any, context: Any, tmp_path: Path, clients: list[httpx.Client]
) -> None:
    rep = _api(clients, crm, "rep@web.test")
    manager = _api(clients, crm, "manager@web.test")
    first = _quote(rep, "Acme renewal")
    second = _quote(rep, "Globex expansion", 30)
    third = _quote(rep, "Initech pilot", 22)
    first_run = _submit(rep, first, "Multi-year deal, the discount pays for itself")
    second_run = _submit(rep, second, "They have a competing offer from Initrode")
    third_run = _submit(rep, third)

    page = await sign_in(context, crm, "manager@web.test")
    await (
        page.get_by_role("navigation", name="Main navigation")
        .get_by_role("link", name="Approvals")
        .click()
    )
    await page.wait_for_url(f"{crm.url}/app/inbox")
    await page.get_by_role("heading", name="Approvals", level=1).wait_for()
    item = page.locator(f"#approval-{first_run}")
    # The quote's key fields (its compact layout: number, status, total), linked to its page.
    await item.get_by_role("link", name="Acme renewal").wait_for()
    link = await item.get_by_role("link", name="Acme renewal").get_attribute("href")
    assert link == f"/app/o/quote/{first['id']}"
    text = await item.inner_text()
    assert first["number"] in text
    assert "In Review" in text  # the flow's on_submit set the status; drawn by its label
    assert "Submitted by Ray Rep" in text
    assert "Multi-year deal, the discount pays for itself" in text
    assert "Step: Sales manager" in text
    assert "Quote discount approval" in text
    assert await page.locator(".inbox-item").count() == 3
    badge = page.locator("#nav-waiting")  # the navigation's count of waiting approvals
    assert (await badge.text_content() or "").startswith("3")

    await item.get_by_label("Comment (optional)").fill("Fine for a three-year term")
    await item.get_by_role("button", name="Approve").click()
    await item.wait_for(state="detached")
    notice = page.get_by_role("status")
    await notice.get_by_text(
        "You approved Quote “Acme renewal” — the approval is complete."
    ).wait_for()
    assert await page.locator(".inbox-item").count() == 2
    assert (await page.locator("#inbox-count-assigned").inner_text()).strip() == "2"
    assert (await badge.text_content() or "").startswith("2")
    await screenshot(page, "inbox", tmp_path)
    run = _status(manager, first_run)
    assert run["status"] == "approved"
    approve = next(e for e in run["events"] if e["action"] == "approve")
    assert approve["comment"] == "Fine for a three-year term"
    assert rep.get(f"/api/v1/data/quote/{first['id']}").json()["status"] == "approved"

    item = page.locator(f"#approval-{second_run}")
    await item.get_by_label("Comment (optional)").fill("30% is too much for this account")
    await item.get_by_role("button", name="Reject").click()
    await item.wait_for(state="detached")
    await page.get_by_role("status").get_by_text("You rejected Quote “Globex expansion”").wait_for()
    run = _status(manager, second_run)
    assert run["status"] == "rejected"
    reject = next(e for e in run["events"] if e["action"] == "reject")
    assert reject["comment"] == "30% is too much for this account"
    assert await axe_findings(browser, context, f"{crm.url}/app/inbox") == []

    # A stale page: the rep recalls a submission the manager still sees; deciding it shows
    # the server's refusal inside the item, which stays.
    fourth = _quote(rep, "Soylent trial", 24)
    fourth_run = _submit(rep, fourth)
    await page.reload()
    stale = page.locator(f"#approval-{fourth_run}")
    await stale.wait_for()
    assert rep.post(f"/api/v1/approvals/{fourth_run}/recall", json={}).status_code == 200
    await stale.get_by_role("button", name="Approve").click()
    await stale.get_by_role("alert").get_by_text("the approval is already recalled").wait_for()
    assert await stale.is_visible()

    # The rep recalls the third submission from "My submissions".
    rep_context = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        rep_page = await sign_in(rep_context, crm, "rep@web.test")
        await rep_page.goto(f"{crm.url}/app/inbox")
        await rep_page.get_by_text("Nothing is waiting for your approval.").wait_for()
        assert await rep_page.locator("#nav-waiting").text_content() == ""
        await rep_page.get_by_role("link", name="My submissions").click()
        await rep_page.wait_for_url(f"{crm.url}/app/inbox?tab=submitted")
        submitted = rep.get("/api/v1/approvals/submitted").json()["approvals"]
        assert [(r["id"], [t["step"] for t in r["waiting_on"]]) for r in submitted] == [
            (third_run, ["manager"])
        ]
        mine = rep_page.locator(f"#approval-{third_run}")
        assert "Sales manager: Mia Manager" in await mine.inner_text()
        assert await rep_page.locator(".inbox-item").count() == 1  # decided runs are gone
        await screenshot(rep_page, "inbox_submissions", tmp_path)
        await mine.get_by_role("button", name="Recall").click()
        await mine.wait_for(state="detached")
        await (
            rep_page.get_by_role("status")
            .get_by_text("You recalled Quote “Initech pilot”")
            .wait_for()
        )
        assert await axe_findings(browser, rep_context, f"{crm.url}/app/inbox?tab=submitted") == []
    finally:
        await rep_context.close()
    assert _status(rep, third_run)["status"] == "recalled"
    listed = rep.get("/api/v1/approvals/submitted").json()["approvals"]
    assert listed == []


async def test_a_delegate_sees_and_decides_the_managers_items(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    crm.add_user("deputy@web.test", role="sales_manager", full_name="Dora Deputy")
    crm.add_user("marketer@web.test", role="marketing", full_name="Max Marketer")
    rep = _api(clients, crm, "rep@web.test")
    manager = _api(clients, crm, "manager@web.test")
    quote = _quote(rep, "Umbrella upgrade")
    run_id = _submit(rep, quote, "Please decide before Friday")  # a task for the manager
    now = dt.datetime.now(dt.UTC)
    for delegate in ("deputy@web.test", "marketer@web.test"):
        added = manager.post(
            "/api/v1/approvals/delegations",
            json={
                "delegate": delegate,
                "starts_at": (now - dt.timedelta(minutes=5)).isoformat(),
                "ends_at": (now + dt.timedelta(days=7)).isoformat(),
            },
        )
        assert added.status_code == 201, added.text

    deputy, deputy_csrf = signed_in_with_csrf(clients, crm, "deputy@web.test")
    page = deputy.get("/app/inbox")
    assert page.status_code == 200
    assert f'id="approval-{run_id}"' in page.text
    assert "on behalf of Mia Manager" in page.text
    assert quote["number"] in page.text and "Please decide before Friday" in page.text

    chinese = deputy.get("/app/inbox", headers={"Accept-Language": "zh-CN"}).text
    assert "待我审批" in chinese and "报价折扣审批" in chinese and "步骤：销售经理" in chinese
    assert "代 Mia Manager 审批" in chinese and "同意" in chinese

    # The marketing role may not read quotes: the task is listed, the record's fields are not.
    marketer, marketer_csrf = signed_in_with_csrf(clients, crm, "marketer@web.test")
    hidden = marketer.get("/app/inbox")
    assert f'id="approval-{run_id}"' in hidden.text
    assert "You may not see this record, so its fields are not shown." in hidden.text
    assert quote["number"] not in hidden.text and "Umbrella upgrade" not in hidden.text
    assert f"/app/o/quote/{quote['id']}" not in hidden.text
    # The API refuses a delegate who may not see the record: no buttons, and a post by hand
    # answers as for an unknown approval.
    assert f"/app/inbox/{run_id}/approve" not in hidden.text
    assert "ask an administrator to reassign it" in hidden.text
    refused = marketer.post(f"/app/inbox/{run_id}/approve", data={"csrf_token": marketer_csrf})
    assert refused.status_code == 404

    # The deputy decides without htmx (a plain form post): back to the inbox with a notice.
    decided = deputy.post(
        f"/app/inbox/{run_id}/approve",
        data={"csrf_token": deputy_csrf, "comment": "Approved while Mia is away"},
    )
    assert decided.status_code == 303
    assert decided.headers["location"] == "/app/inbox?tab=assigned&notice=approved"
    after = deputy.get(decided.headers["location"])
    assert "You approved the item" in after.text and f'id="approval-{run_id}"' not in after.text
    run = _status(manager, run_id)
    assert run["status"] == "approved"
    event = next(e for e in run["events"] if e["action"] == "approve")
    assert event["detail"] == {"on_behalf_of": crm.users["manager@web.test"]}


async def test_refusals_and_bad_input_are_messages_never_500(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    crm.add_user("rep2@web.test", role="sales_rep", full_name="Rita Rep")
    rep = _api(clients, crm, "rep@web.test")
    quote = _quote(rep, "Hooli bundle")
    run_id = _submit(rep, quote)

    rep_web, rep_csrf = signed_in_with_csrf(clients, crm, "rep@web.test")
    own = rep_web.get("/app/inbox")
    assert "Nothing is waiting for your approval." in own.text
    assert f'id="approval-{run_id}"' not in own.text  # the manager's item is not the rep's

    # The submitter decides their own run by hand: refused with the server's message.
    refused = rep_web.post(f"/app/inbox/{run_id}/approve", data={"csrf_token": rep_csrf})
    assert refused.status_code == 403
    assert "text/html" in refused.headers["content-type"]
    assert "you cannot approve or reject your own submission" in refused.text

    # Another rep may read the quote (public read/write) but has no task on it.
    other, other_csrf = signed_in_with_csrf(clients, crm, "rep2@web.test")
    refused = other.post(f"/app/inbox/{run_id}/reject", data={"csrf_token": other_csrf})
    assert refused.status_code == 403
    assert "you have no pending approval work on this record" in refused.text
    # The same through htmx: the message is drawn into the item, with the same status.
    fragment = other.post(
        f"/app/inbox/{run_id}/reject",
        headers={"HX-Request": "true", "X-CSRF-Token": other_csrf},
        data={"comment": "x"},
    )
    assert fragment.status_code == 403
    assert fragment.headers["hx-retarget"] == f"#approval-{run_id} .item-message"
    assert 'role="alert"' in fragment.text and "<html" not in fragment.text
    assert "you have no pending approval work on this record" in fragment.text
    # ... and recalling someone else's submission.
    refused = other.post(f"/app/inbox/{run_id}/recall", data={"csrf_token": other_csrf})
    assert refused.status_code == 403
    assert "this flow may be recalled by: submitter_or_admin" in refused.text

    # Unknown and malformed approval ids: the 404 page.
    for bad in (str(uuid.uuid4()), "not-an-id", "1%27%20or%201=1"):
        missing = other.post(f"/app/inbox/{bad}/approve", data={"csrf_token": other_csrf})
        assert missing.status_code == 404, (bad, missing.status_code)
        assert "text/html" in missing.headers["content-type"]

    manager, manager_csrf = signed_in_with_csrf(clients, crm, "manager@web.test")
    # Without the CSRF token nothing is decided.
    assert manager.post(f"/app/inbox/{run_id}/approve", data={}).status_code == 403
    # A comment over 2,000 characters is refused with the API's message.
    long = manager.post(
        f"/app/inbox/{run_id}/approve", data={"csrf_token": manager_csrf, "comment": "x" * 2001}
    )
    assert long.status_code == 422
    assert "comment must be a text of 1 to 2000 characters" in long.text
    assert _status(rep, run_id)["status"] == "pending"
    # Decided once; a second decision (a stale page) is refused, not a 500.
    ok = manager.post(f"/app/inbox/{run_id}/approve", data={"csrf_token": manager_csrf})
    assert ok.status_code == 303
    again = manager.post(
        f"/app/inbox/{run_id}/reject",
        headers={"HX-Request": "true", "X-CSRF-Token": manager_csrf},
    )
    assert again.status_code in (403, 409), again.text
    assert 'role="alert"' in again.text
    assert _status(rep, run_id)["status"] == "approved"
    # An unknown tab shows the default list; an over-long parameter is a 400 page.
    assert manager.get("/app/inbox?tab=bogus").status_code == 200
    assert manager.get("/app/inbox?tab=" + "x" * 50).status_code == 400


async def test_a_long_inbox_shows_the_oldest_hundred(crm: Crm, clients: list[httpx.Client]) -> None:
    rep = _api(clients, crm, "rep@web.test")
    created = rep.post(
        "/api/v1/data/quote/batch",
        json={"records": [{"name": f"Bulk quote {i:03d}", "discount": 25} for i in range(101)]},
    )
    assert created.status_code == 200, created.text
    runs = [
        _submit(rep, {"id": result["id"]}, f"Bulk {i:03d}")
        for i, result in enumerate(created.json()["results"])
    ]
    manager, _csrf = signed_in_with_csrf(clients, crm, "manager@web.test")
    page = manager.get("/app/inbox").text
    assert "Showing 100 of 101; the rest appear as these are decided." in page
    assert page.count('class="card inbox-item') == 100
    assert f'id="approval-{runs[0]}"' in page and f'id="approval-{runs[-1]}"' not in page
    assert 'id="inbox-count-assigned">101<' in page
    assert 'id="nav-waiting">101<' in page
