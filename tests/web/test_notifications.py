"""Notifications in a real browser: the bell's unread count, the page's list, marking read."""

from __future__ import annotations

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

#: A rule telling an opportunity's owner and the owner's manager about it when it is made.
RULE = {
    "api_name": "tell_new_deals",
    "object": "opportunity",
    "trigger": {"on": "created"},
    "actions": [
        {
            "kind": "notify",
            "to": [{"kind": "owner"}, {"kind": "manager"}],
            "title": {"en": "New deal {{ name }}", "zh-CN": "新商机 {{ name }}"},
            "message": {"en": "Amount: {{ amount }}", "zh-CN": "金额：{{ amount }}"},
        }
    ],
}


def _deals(crm: Crm, clients: list[httpx.Client], *names: str) -> list[str]:
    """Opportunities the rep makes, and the rule's jobs run at once; their ids."""
    with crm.api() as admin:
        response = admin.post("/api/v1/metadata/automation-rules", json=RULE)
        assert response.status_code == 201, response.text
    rep = crm.api(crm.token("rep@web.test"))
    clients.append(rep)
    ids = []
    for name in names:
        created = rep.post(
            "/api/v1/data/opportunity",
            json={"name": name, "amount": "1200", "stage": "qualify", "close_date": "2031-01-31"},
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    with crm.api() as admin:
        assert admin.post("/api/v1/automation/jobs/run-due").status_code == 200
    return ids


async def test_the_bell_counts_and_the_page_marks_read(
    crm: Crm, browser: Any, context: Any, tmp_path: Path, clients: list[httpx.Client]
) -> None:
    first, second = _deals(crm, clients, "Acme renewal", "Globex expansion")
    page = await sign_in(context, crm, "rep@web.test")
    bell = page.locator("a.bell")
    assert (await bell.locator("#bell-count").inner_text()).startswith("2")
    await bell.click()
    await page.wait_for_url(f"{crm.url}/app/notifications")
    await page.get_by_role("heading", name="Notifications", level=1).wait_for()
    items = page.locator(".notes-item")
    assert await items.count() == 2
    newest = items.nth(0)
    assert await newest.get_by_role("link", name="New deal Globex expansion").get_attribute(
        "href"
    ) == (f"/app/o/opportunity/{second}")
    assert "Amount: 1200" in await newest.inner_text()
    await screenshot(page, "notifications", tmp_path)
    assert await axe_findings(browser, context, page.url) == []

    await newest.get_by_role("button", name="Mark read").click()
    await page.wait_for_url(f"{crm.url}/app/notifications")
    assert (await page.locator("#bell-count").inner_text()).startswith("1")
    assert await page.locator(".notes-item.unread").count() == 1
    assert await page.locator(f"#notification-{(await _ids(page))[1]}.unread").count() == 1

    filters = page.get_by_role("navigation", name="Which notifications")
    await filters.get_by_role("link", name="Unread").click()
    await page.wait_for_url(f"{crm.url}/app/notifications?unread=true")
    assert await page.locator(".notes-item").count() == 1
    await page.get_by_role("button", name="Mark all read").click()
    await page.wait_for_url(f"{crm.url}/app/notifications?unread=true")
    await page.get_by_text("You have read every notification.").wait_for()
    assert await page.locator("#bell-count").inner_text() == ""

    # The record link opens the deal the notification is about.
    await page.goto(f"{crm.url}/app/notifications")
    await page.get_by_role("link", name="New deal Acme renewal").click()
    await page.wait_for_url(f"{crm.url}/app/o/opportunity/{first}")


async def _ids(page: Any) -> list[str]:
    found = await page.locator(".notes-item").evaluate_all("els => els.map(e => e.id)")
    return [str(i).removeprefix("notification-") for i in found]


def test_forms_need_the_csrf_token_and_stay_with_their_owner(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    _deals(crm, clients, "Initech pilot")
    rep, csrf = signed_in_with_csrf(clients, crm, "rep@web.test")
    manager, manager_csrf = signed_in_with_csrf(clients, crm, "manager@web.test")
    page = manager.get("/app/notifications")
    assert page.status_code == 200 and "New deal Initech pilot" in page.text
    theirs = page.text.split('id="notification-', 1)[1].split('"', 1)[0]
    # Without the token nothing changes; with the rep's own token, another's is not found.
    refused = manager.post(f"/app/notifications/{theirs}/read")
    assert refused.status_code == 403
    assert (
        rep.post(f"/app/notifications/{theirs}/read", data={"csrf_token": csrf}).status_code == 404
    )
    done = manager.post(f"/app/notifications/{theirs}/read", data={"csrf_token": manager_csrf})
    assert done.status_code == 303 and done.headers["location"] == "/app/notifications"
    zh = manager.get("/app/notifications", headers={"Accept-Language": "zh-CN"})
    assert "新商机 Initech pilot" in zh.text and "金额：1200" in zh.text
