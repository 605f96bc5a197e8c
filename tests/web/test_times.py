"""Moments are sent in UTC and shown in the reader's time zone and language by the browser."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import Crm, needs_chromium, sign_in

pytestmark = needs_chromium


async def test_a_datetime_is_shown_in_the_readers_time_zone(crm: Crm, browser: Any) -> None:
    with crm.api(crm.token("rep@web.test")) as api:
        created = api.post(
            "/api/v1/data/activity",
            json={"subject": "Late call", "kind": "call", "occurred_at": "2027-01-08T15:00:00Z"},
        )
    assert created.status_code == 201, created.text
    url = f"{crm.url}/app/o/activity/{created.json()['id']}"
    for timezone, shown in (("Asia/Shanghai", "11:00"), ("America/New_York", "10:00")):
        context = await browser.new_context(timezone_id=timezone)
        try:
            page = await sign_in(context, crm, "rep@web.test")
            await page.goto(url)
            moment = page.locator('time[datetime^="2027-01-08T15:00"]').first
            await moment.wait_for()
            text = await moment.inner_text()
            assert shown in text and "UTC" not in text, (timezone, text)
            assert await moment.get_attribute("title") == "2027-01-08T15:00:00Z"
        finally:
            await context.close()
