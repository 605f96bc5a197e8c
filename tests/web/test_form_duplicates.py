"""Duplicate rules in the record form: a refused save lists the possible duplicates, a
warning can be saved anyway, a block cannot; leaving a compared field hints before saving;
records the user may not read are not named."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import expect

from tests.web.conftest import (
    AXE,
    Crm,
    needs_chromium,
    page_csrf,
    screenshot,
    sign_in,
    signed_in_client,
)

pytestmark = needs_chromium

EXISTING = "北京字节跳动科技有限公司"
TYPED = "北京字节跳动科技"
REP = "rep@web.test"


def _add_rule(crm: Crm, action: str) -> None:
    rule = {
        "api_name": "same_company",
        "object": "account",
        "label": {"en": "Same company", "zh-CN": "同一公司"},
        "action": action,
        "criteria": [{"field": "name", "method": "company"}],
    }
    with crm.api() as api:
        created = api.post("/api/v1/metadata/duplicate-rules", json=rule)
    assert created.status_code in (200, 201), created.text


def _account(crm: Crm, name: str, token: str | None = None) -> str:
    with crm.api(token) as api:
        created = api.post("/api/v1/data/account", json={"name": name})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _accounts_named(crm: Crm, part: str) -> list[str]:
    with crm.api() as api:
        listed = api.get(
            "/api/v1/data/account", params={"where": f"CONTAINS(name, '{part}')", "fields": "name"}
        )
    assert listed.status_code == 200, listed.text
    return sorted(r["name"] for r in listed.json()["records"])


async def _axe_on_refusal(browser: Any, context: Any, crm: Crm) -> list[dict[str, Any]]:
    """Serious and critical axe-core findings on the refused form with its panel (a copy
    of the session that bypasses the CSP, so that axe can be injected)."""
    audit = await browser.new_context(storage_state=await context.storage_state(), bypass_csp=True)
    try:
        page = await audit.new_page()
        await page.goto(f"{crm.url}/app/o/account/new")
        await page.locator("#f-name").fill(TYPED)
        await page.get_by_role("button", name="Save", exact=True).click()
        await page.locator("#form-duplicates-panel").wait_for()
        await page.add_script_tag(path=str(AXE))
        result = await page.evaluate("async () => await axe.run(document)")
    finally:
        await audit.close()
    return [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")]


def _post_new(client: httpx.Client, **extra: str) -> httpx.Response:
    csrf = page_csrf(client.get("/app/o/account/new").text)
    return client.post("/app/o/account/new", data={"csrf_token": csrf, "name": TYPED, **extra})


async def test_a_warning_lists_the_duplicates_and_can_be_saved_anyway(
    crm: Crm, browser: Any, context: Any, tmp_path: Path
) -> None:
    _add_rule(crm, "warn")
    existing = _account(crm, EXISTING, crm.token(REP))
    page = await sign_in(context, crm, REP)
    await page.goto(f"{crm.url}/app/o/account/new")
    form = page.locator("form.record-form")
    assert await form.get_attribute("data-duplicate-watch") == "name"

    # Leaving the name field hints at the existing account, before anything is saved.
    await page.locator("#f-name").fill(TYPED)
    await page.locator("#f-name").press("Tab")
    hint = page.get_by_role("status").filter(has_text="Possible duplicates")
    await hint.wait_for()
    assert await hint.get_by_role("link", name=EXISTING).count() == 1
    assert await hint.get_by_role("button", name="Save anyway").count() == 0

    await page.get_by_role("button", name="Save", exact=True).click()
    panel = page.get_by_role("alert").filter(has_text="Possible duplicates")
    await panel.wait_for()
    # The input is kept; the existing account is named, linked (a new tab), with the rule.
    assert await page.locator("#f-name").input_value() == TYPED
    link = panel.get_by_role("link", name=EXISTING)
    assert await link.get_attribute("href") == f"/app/o/account/{existing}"
    assert await link.get_attribute("target") == "_blank"
    row = panel.locator(f"tr[data-duplicate='{existing}']")
    assert "Same company" in await row.inner_text()
    assert re.search(r"\b\d{2,3}%", await row.inner_text())
    assert await page.evaluate("document.activeElement.id") == "form-duplicates-panel"
    # The duplicate is listed once, in the panel, not again as a field error.
    assert await page.locator("#form-summary").count() == 0
    assert await page.locator("#f-name-error").count() == 0
    await screenshot(page, "form-duplicates", tmp_path)
    assert await _axe_on_refusal(browser, context, crm) == []
    assert _accounts_named(crm, "字节") == [EXISTING]

    await panel.get_by_role("button", name="Save anyway").click()
    await page.wait_for_url(re.compile(r"/app/o/account/[0-9a-f-]{36}$"))
    assert _accounts_named(crm, "字节") == [TYPED, EXISTING]
    with crm.api() as api:
        pairs = api.get("/api/v1/duplicates/account/pairs").json()["pairs"]
    assert [(p["record"]["name"], p["other"]["id"]) for p in pairs] == [(TYPED, existing)]


async def test_a_block_offers_no_save_anyway_and_saves_nothing(
    crm: Crm, context: Any, clients: list[httpx.Client]
) -> None:
    _add_rule(crm, "block")
    existing = _account(crm, EXISTING, crm.token(REP))
    page = await sign_in(context, crm, REP)
    await page.goto(f"{crm.url}/app/o/account/new")
    await page.locator("#f-name").fill(TYPED)
    await page.get_by_role("button", name="Save", exact=True).click()
    panel = page.get_by_role("alert").filter(has_text="Possible duplicates")
    await panel.wait_for()
    assert await panel.get_by_role("link", name=EXISTING).count() == 1
    assert "does not allow" in await panel.inner_text()
    await expect(page.get_by_role("button", name="Save anyway")).to_have_count(0)
    # Posting "save anyway" by hand does not lift a block either.
    client = signed_in_client(clients, crm, REP)
    refused = _post_new(client, _allow_duplicates="1")
    assert refused.status_code == 422
    assert f'data-duplicate="{existing}"' in refused.text
    assert _accounts_named(crm, "字节") == [EXISTING]


def test_an_edit_warned_about_is_saved_anyway_in_chinese(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    _add_rule(crm, "warn")
    existing = _account(crm, EXISTING)
    other = _account(crm, "Other Co")
    client = signed_in_client(clients, crm, REP)
    client.headers["Accept-Language"] = "zh-CN"
    form = client.get(f"/app/o/account/{other}/edit").text
    version = re.search(r'name="_version" value="(\d+)"', form)
    assert version
    data = {"csrf_token": page_csrf(form), "_version": version.group(1), "name": TYPED}
    warned = client.post(f"/app/o/account/{other}/edit", data=data)
    assert warned.status_code == 422
    assert "疑似重复记录" in warned.text and "仍然保存" in warned.text and "同一公司" in warned.text
    assert f'data-duplicate="{existing}"' in warned.text
    # The record itself is no duplicate of itself; its version is unchanged.
    assert f'data-duplicate="{other}"' not in warned.text
    saved = client.post(f"/app/o/account/{other}/edit", data={**data, "_allow_duplicates": "1"})
    assert saved.status_code == 303, saved.text
    assert _accounts_named(crm, "字节") == [TYPED, EXISTING]


def test_records_the_user_may_not_read_are_not_named(crm: Crm, clients: list[httpx.Client]) -> None:
    with crm.api() as api:
        account = api.get("/api/v1/metadata/objects/account").json()
        account["sharing"] = "private"
        changed = api.put(
            "/api/v1/metadata/objects/account", params={"confirm": "true"}, json=account
        )
        assert changed.status_code == 200, changed.text
    _add_rule(crm, "warn")
    hidden = _account(crm, EXISTING)  # the administrator's: the rep may not read it
    client = signed_in_client(clients, crm, REP)
    warned = _post_new(client)
    assert warned.status_code == 422
    assert "It matches a record you may not see." in warned.text
    assert EXISTING not in warned.text and hidden not in warned.text
    assert "Save anyway" in warned.text
    # The hint before saving reveals no more.
    csrf = page_csrf(client.get("/app/o/account/new").text)
    hint = client.post("/app/o/account/duplicates", data={"csrf_token": csrf, "name": TYPED})
    assert hint.status_code == 200
    assert "may not see" in hint.text and EXISTING not in hint.text and hidden not in hint.text
    nothing = client.post(
        "/app/o/account/duplicates", data={"csrf_token": csrf, "name": "Unrelated Ltd"}
    )
    assert nothing.status_code == 200 and "Possible duplicates" not in nothing.text
    saved = _post_new(client, _allow_duplicates="1")
    assert saved.status_code == 303, saved.text


def test_the_hint_needs_the_csrf_token(crm: Crm, clients: list[httpx.Client]) -> None:
    client = signed_in_client(clients, crm, REP)
    refused = client.post("/app/o/account/duplicates", data={"name": TYPED})
    assert refused.status_code == 403
