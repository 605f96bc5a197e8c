"""Global search in a real browser and over the REST API: names and searchable fields of
every readable object, in both languages, never a record or field the user may not read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.web.conftest import Crm, axe_findings, needs_chromium, screenshot, sign_in

pytestmark = needs_chromium
ROLES = Path(__file__).parents[2] / "examples" / "crm-core" / "roles.json"


def _opportunity(crm: Crm, email: str, name: str) -> str:
    with crm.api(crm.token(email)) as api:
        response = api.post("/api/v1/data/opportunity", json={"name": name, "stage": "qualify"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_search_finds_accounts_by_name_and_contacts_by_phone(
    crm: Crm, browser: Any, context: Any, tmp_path: Path
) -> None:
    _opportunity(crm, "manager@web.test", "Acme secret expansion")
    mine = _opportunity(crm, "rep@web.test", "Acme pilot for Ray")
    page = await sign_in(context, crm, "rep@web.test")
    # From the search box in the top bar, a fragment of a name, in another case.
    await page.get_by_role("searchbox", name="Search", exact=True).fill("acme rob")
    await page.get_by_role("button", name="Search", exact=True).click()
    await page.wait_for_url("**/app/search?q=acme+rob")
    accounts = page.get_by_role("region", name="Accounts")
    await accounts.get_by_role("link", name="Acme Robotics", exact=True).wait_for()
    await accounts.get_by_role("link", name="Acme Robotics Europe").wait_for()
    assert await accounts.locator("mark").first.inner_text() == "Acme Rob"
    # The account links to its record page.
    href = await accounts.get_by_role("link", name="Acme Robotics", exact=True).get_attribute(
        "href"
    )
    assert href is not None and href.startswith("/app/o/account/")

    # Opportunities are private: the rep finds their own, never the manager's (nor the
    # admin's seed deals) — not in the HTML at all.
    await page.get_by_label("Search for").fill("Acme")
    await page.get_by_role("button", name="Search again").click()
    await page.wait_for_url("**q=Acme")
    html = await page.content()
    assert "</mark> pilot for Ray" in html and f"/app/o/opportunity/{mine}" in html
    assert "secret expansion" not in html
    assert "assembly line retrofit" not in html

    # A contact by a fragment of their phone number (a searchable field), shown beside it.
    await page.get_by_label("Search for").fill("5555 0101")
    await page.get_by_role("button", name="Search again").click()
    contacts = page.get_by_role("region", name="Contacts")
    await contacts.get_by_role("link", name="伟 王").wait_for()
    assert "+86 10 5555 0101" in await contacts.inner_text()
    assert "Accounts" not in await page.locator("main").inner_text()

    await page.get_by_label("Search for").fill("acme")
    await page.get_by_role("button", name="Search again").click()
    await screenshot(page, "search", tmp_path)
    assert await axe_findings(browser, context, page.url) == []

    # No match, and odd input: a page, never an error.
    await page.goto(f"{crm.url}/app/search?q=%22%29%29%29%20or%20True%20or%20%28%22")
    await page.get_by_text("No record you may see matches").wait_for()
    for q in ("", "   ", "\\", "%_", "x" * 150):
        response = await page.goto(f"{crm.url}/app/search?q={q}")
        assert response is not None and response.status == 200, q
    response = await page.goto(f"{crm.url}/app/search?q={'x' * 300}")
    assert response is not None and response.status == 400


async def test_search_in_chinese(crm: Crm, context: Any) -> None:
    page = await sign_in(context, crm, "rep@web.test")
    await page.get_by_label("Language").select_option("zh-CN")
    await page.get_by_role("heading", name="欢迎，Ray Rep").wait_for()
    await page.get_by_role("searchbox", name="搜索").fill("启明")
    await page.get_by_role("button", name="搜索", exact=True).click()
    await page.get_by_role("heading", name="“启明”的搜索结果").wait_for()
    await (
        page.get_by_role("region", name="客户").get_by_role("link", name="北京启明教育").wait_for()
    )
    await page.get_by_label("搜索内容").fill("没有这样的记录")
    await page.get_by_role("button", name="重新搜索").click()
    await page.get_by_text("没有您可查看的记录与“没有这样的记录”匹配。").wait_for()


async def test_search_api_applies_field_access(crm: Crm) -> None:
    # The rep may not see contacts' phone numbers: searching by phone finds nothing.
    roles = json.loads(ROLES.read_text(encoding="utf-8"))
    rep = next(r for r in roles if r["api_name"] == "sales_rep")
    rep["fields"]["contact"] = {"phone": "hidden"}
    with crm.api() as admin:
        applied = admin.post("/api/v1/metadata/apply?confirm=true", json={"roles": [rep]})
        assert applied.status_code in (200, 201), applied.text
        found = admin.get("/api/v1/search", params={"q": "5555 0101"}).json()
    assert [g["object"] for g in found["results"]] == ["contact"]
    assert "phone" in found["results"][0]["fields"]
    with crm.api(crm.token("rep@web.test")) as api:
        hidden = api.get("/api/v1/search", params={"q": "5555 0101"})
        assert hidden.status_code == 200
        assert hidden.json()["results"] == []
        by_name = api.get("/api/v1/search", params={"q": "globex", "limit": 1}).json()
        account = next(g for g in by_name["results"] if g["object"] == "account")
        assert account["records"][0]["name"] == "Globex Software"
        assert "phone" not in json.dumps(by_name["results"][1:])  # contacts: no phone field
        assert api.get("/api/v1/search", params={"q": "x", "limit": 0}).status_code == 422
        assert api.get("/api/v1/search", params={"q": "x", "nope": 1}).status_code == 400


async def test_more_results_lead_to_the_whole_list(crm: Crm, context: Any) -> None:
    with crm.api(crm.token("rep@web.test")) as api:
        for i in range(7):
            created = api.post("/api/v1/data/opportunity", json={"name": f"Zeta {i}"})
            assert created.status_code == 201, created.text
            lost = api.post(
                f"/api/v1/data/opportunity/{created.json()['id']}/stage",
                json={"to": "lost", "fields": {"loss_reason": "price"}},
            )
            assert lost.status_code == 200, lost.text
    page = await sign_in(context, crm, "rep@web.test")
    await page.goto(f"{crm.url}/app/search?q=zeta")
    group = page.get_by_role("region", name="Opportunities")
    assert await group.get_by_role("listitem").count() == 5
    await group.get_by_role("link", name="More Opportunities in the list").click()
    # Lost deals are outside the pipeline view: the generated default view shows all seven.
    await page.get_by_text("1–7 of 7").wait_for()
