"""The merge page in a real browser: from the list's bulk bar, side by side, a preview, the
merge, and its undo from the survivor's page; hostile addresses get pages, not errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.web.conftest import Crm, needs_chromium, screenshot, sign_in, signed_in_client

pytestmark = needs_chromium


def _duplicates(crm: Crm) -> dict[str, str]:
    """Two accounts of one firm, a contact and a deal on the duplicate."""
    with crm.api() as api:

        def create(name: str, body: dict[str, Any]) -> str:
            response = api.post(f"/api/v1/data/{name}", json=body)
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

        keep = create(
            "account", {"name": "Zenith Robotics", "phone": "+86 21 5555 0100", "billing_city": ""}
        )
        dup = create(
            "account",
            {
                "name": "Zenith Robotics Co., Ltd.",
                "phone": "+86 21 5555 0199",
                "billing_city": "Shanghai",
                "website": "https://zenith.example",
            },
        )
        contact = create("contact", {"last_name": "Chen", "account": dup})
    return {"keep": keep, "dup": dup, "contact": contact}


async def test_merge_from_the_list_preview_merge_and_undo(
    crm: Crm, context: Any, tmp_path: Path
) -> None:
    ids = _duplicates(crm)
    page = await sign_in(context, crm, crm.admin)
    await page.goto(f'{crm.url}/app/o/account?where=CONTAINS(name, "Zenith")')
    await page.get_by_label("Select Zenith Robotics", exact=True).check()
    await page.get_by_label("Select Zenith Robotics Co., Ltd.").check()
    await page.get_by_role("button", name="Merge").click()
    await page.wait_for_url(f"{crm.url}/app/o/account/merge?ids=*")
    assert await page.get_by_role("heading", name="Merge Account records").is_visible()
    # The phones differ: both are offered; the blank city is filled from the duplicate.
    phone = page.locator('tr[data-field="phone"]')
    assert "differs" in (await phone.get_attribute("class") or "")
    city = page.locator(f'tr[data-field="billing_city"] input[value="{ids["dup"]}"]')
    assert await city.is_checked()
    # Keep the first account, but the duplicate's phone.
    await phone.locator(f'input[value="{ids["dup"]}"]').check()
    await page.get_by_role("button", name="Preview").click()
    preview = page.locator(".merge-preview")
    await preview.wait_for()
    text = await preview.inner_text()
    assert "1 Contacts move to the record kept" in text, text
    assert "Billing City, Phone, Website" in text, text
    await screenshot(page, "merge", tmp_path)

    await page.get_by_role("button", name="Merge", exact=True).click()
    await page.wait_for_url(f"{crm.url}/app/o/account/{ids['keep']}?done=merged*")
    await page.get_by_text("The records were merged into this one.").wait_for()
    with crm.api() as api:
        kept = api.get(f"/api/v1/data/account/{ids['keep']}").json()
        assert kept["phone"] == "+86 21 5555 0199" and kept["billing_city"] == "Shanghai"
        contact = api.get(f"/api/v1/data/contact/{ids['contact']}").json()
        assert contact["account"] == ids["keep"]
        assert api.get(f"/api/v1/data/account/{ids['dup']}").status_code == 404

    await page.get_by_role("button", name="Undo").click()
    await page.wait_for_url(f"{crm.url}/app/o/account/{ids['keep']}?done=unmerged")
    await page.get_by_text("The merge was undone.").wait_for()
    with crm.api() as api:
        kept = api.get(f"/api/v1/data/account/{ids['keep']}").json()
        assert kept["phone"] == "+86 21 5555 0100" and kept["billing_city"] == ""
        assert api.get(f"/api/v1/data/contact/{ids['contact']}").json()["account"] == ids["dup"]


async def test_hostile_merge_addresses_get_pages(crm: Crm, clients: list[httpx.Client]) -> None:
    ids = _duplicates(crm)
    client = signed_in_client(clients, crm, crm.admin)
    one = client.get("/app/o/account/merge", params={"ids": ids["keep"]})
    assert one.status_code == 422 and "Select 2 to 3 records" in one.text
    for bad in ("nonsense", f"{ids['keep']},{ids['contact']}"):
        response = client.get("/app/o/account/merge", params={"ids": bad})
        assert response.status_code == 404, bad
        assert response.headers["content-type"].startswith("text/html")
    assert client.get("/app/o/nothing/merge", params={"ids": "a,b"}).status_code == 404
    # A form without its CSRF token is refused.
    posted = client.post("/app/o/account/merge", data={"ids": [ids["keep"], ids["dup"]]})
    assert posted.status_code == 403
