"""The workspace's day, end to end in a real browser on both databases: a rep filters a list,
drags an opportunity across a gate and is refused, fixes it in the form, moves it, submits a
quote for approval; the manager approves it from the inbox; what the rep may not see is not in
the HTML; the pages speak zh-CN when chosen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.web.conftest import Crm, needs_chromium, sign_in

pytestmark = needs_chromium


def _create(crm: Crm, token: str, object_name: str, data: dict[str, Any]) -> str:
    with crm.api(token) as api:
        response = api.post(f"/api/v1/data/{object_name}", json=data)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _get(crm: Crm, token: str, path: str) -> Any:
    with crm.api(token) as api:
        response = api.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_rep_and_a_manager_work_a_deal_through_the_workspace(
    crm: Crm, browser: Any, context: Any, tmp_path: Path
) -> None:
    rep_token = crm.token("rep@web.test")
    deal = _create(crm, rep_token, "opportunity", {"name": "Scenario deal", "stage": "qualify"})
    # A private deal of the manager's own: the rep must not meet it anywhere.
    manager_token = crm.token("manager@web.test")
    secret = _create(
        crm, manager_token, "opportunity", {"name": "Manager secret deal", "stage": "qualify"}
    )
    assert _get(crm, rep_token, f"/api/v1/data/opportunity?where=id == '{secret}'")["records"] == []

    page = await sign_in(context, crm, "rep@web.test")

    # 1. Filter a list.
    nav = page.get_by_role("navigation", name="Main navigation")
    async with page.expect_navigation():
        await nav.get_by_role("link", name="Opportunities", exact=True).click()
    await page.get_by_label("Filter expression").fill('CONTAINS(name, "Scenario")')
    await page.get_by_role("button", name="Apply filter").click()
    table = page.locator("table.list-table")
    await table.get_by_role("link", name="Scenario deal").wait_for()
    assert await table.locator("tbody tr").count() == 1
    html = await page.content()
    assert "Manager secret deal" not in html and secret not in html

    # 2. Drag the deal across the propose gate: refused, every failing gate shown.
    await page.goto(f"{crm.url}/app/o/opportunity/kanban")
    card = page.locator(f"#kanban-card-{deal}")
    await card.drag_to(page.locator('.kanban-lane[data-value="propose"] .kanban-cards'))
    refusal = page.locator("#kanban-alert .kanban-refusal")
    await refusal.wait_for()
    messages = await refusal.locator("li").all_inner_texts()
    assert any("Amount" in m for m in messages) and any("Close Date" in m for m in messages)
    assert await page.locator(f'.kanban-lane[data-value="qualify"] #kanban-card-{deal}').count()
    assert secret not in await page.content()

    # 3. Fix the fields in the form.
    await page.goto(f"{crm.url}/app/o/opportunity/{deal}")
    await page.get_by_role("link", name="Edit").click()
    await page.get_by_label("Amount").fill("48000")
    await page.get_by_label("Close Date").fill("2027-06-30")
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_url(f"{crm.url}/app/o/opportunity/{deal}")
    saved = _get(crm, rep_token, f"/api/v1/data/opportunity/{deal}")
    assert saved["amount"] in ("48000", "48000.00") and saved["close_date"] == "2027-06-30"

    # 4. Move it now: the gate lets it through.
    await page.goto(f"{crm.url}/app/o/opportunity/kanban")
    card = page.locator(f"#kanban-card-{deal}")
    await card.drag_to(page.locator('.kanban-lane[data-value="propose"] .kanban-cards'))
    await page.locator(f'.kanban-lane[data-value="propose"] #kanban-card-{deal}').wait_for()
    await page.get_by_role("status").filter(has_text="Moved to Propose").wait_for()
    assert _get(crm, rep_token, f"/api/v1/data/opportunity/{deal}")["stage"] == "propose"

    # 5. Submit a quote for approval from its page (the flow asks for a discount over 20%).
    quote = _create(
        crm, rep_token, "quote", {"name": "Scenario quote", "discount": 25, "opportunity": deal}
    )
    await page.goto(f"{crm.url}/app/o/quote/{quote}")
    await page.get_by_label("Comment for the approvers").fill("Three-year term")
    await page.get_by_role("button", name="Submit for approval").click()
    await page.get_by_role("status").wait_for()
    runs = _get(crm, rep_token, f"/api/v1/data/quote/{quote}/approvals")["approvals"]
    assert [r["status"] for r in runs] == ["pending"]

    # 6. The manager approves it from the inbox.
    manager_context = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        manager = await sign_in(manager_context, crm, "manager@web.test")
        await manager.get_by_role("link", name="Approvals").first.click()
        item = manager.locator(f"#approval-{runs[0]['id']}")
        await item.get_by_role("link", name="Scenario quote").wait_for()
        await item.get_by_label("Comment (optional)").fill("Approved for the term")
        await item.get_by_role("button", name="Approve").click()
        await item.wait_for(state="detached")
    finally:
        await manager_context.close()
    run = _get(crm, rep_token, f"/api/v1/approvals/{runs[0]['id']}")
    assert run["status"] == "approved"

    # 7. zh-CN labels when chosen, on the pages the rep just used.
    async with page.expect_navigation():
        await page.get_by_label("Language").select_option("zh-CN")
    await page.goto(f"{crm.url}/app/o/opportunity/{deal}")
    assert await page.locator("html").get_attribute("lang") == "zh-CN"
    text = await page.locator("main").inner_text()
    assert "金额" in text  # crm-core's zh-CN label of amount
    await page.goto(f"{crm.url}/app/o/opportunity/kanban")
    assert "方案报价" in await page.locator("main").inner_text()  # the propose stage's label
