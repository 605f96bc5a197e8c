"""The README tour ends in the browser: sign in to `make run`'s demo, see the ticket made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.doc_runner import DocsRun
from tests.web.conftest import needs_chromium, screenshot

pytestmark = needs_chromium


async def test_tour_ends_with_the_ticket_in_the_workspace(
    docs: DocsRun, browser: Any, tmp_path: Path
) -> None:
    if docs.tour is None:
        pytest.skip(docs.tour_skipped)
    url = docs.server.url
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = await context.new_page()
        # Step 5 of the tour, as the README words it.
        await page.goto(f"{url}/app")
        await page.get_by_label("Company").fill("demo")
        await page.get_by_label("E-mail").fill("admin@demo")
        await page.get_by_label("Password").fill(docs.server.password())
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(f"{url}/app")
        await page.locator('nav a[data-object="ticket"]').click()
        await page.wait_for_url(f"{url}/app/o/ticket")
        await page.get_by_role("link", name="Printer on fire").click()
        await page.get_by_role("heading", name="Printer on fire").wait_for()
        html = await page.content()
        assert "Acme Robotics" in html  # the lookup is shown by its account's name
        await screenshot(page, "tour-ticket", tmp_path)
    finally:
        await context.close()
