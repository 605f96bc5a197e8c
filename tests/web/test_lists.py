"""List pages in a real browser and over plain HTTP: views, the filter builder, sorting,
columns, paging with exact counts, personal views, bulk actions, CSV export, and access."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.web.conftest import (
    Crm,
    axe_findings,
    needs_chromium,
    page_csrf,
    screenshot,
    sign_in,
    signed_in_client,
)
from tests.web.test_export_page import grant_export

pytestmark = needs_chromium
ROLES = Path(__file__).parents[2] / "examples" / "crm-core" / "roles.json"


def _opportunities(
    crm: Crm, email: str, count: int, prefix: str, *, account: str | None = None
) -> list[str]:
    """`count` opportunities owned by `email`, named `prefix 001`..., amounts 1000, 2000..."""
    records = [
        {
            "name": f"{prefix} {i:03d}",
            "amount": 1000 * i,
            "close_date": f"2027-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "stage": "qualify",
            "next_step": "Call the CFO",
            **({"account": account} if account else {}),
        }
        for i in range(1, count + 1)
    ]
    ids = []
    with crm.api(crm.token(email)) as api:
        for start in range(0, count, 200):
            chunk = records[start : start + 200]
            response = api.post("/api/v1/data/opportunity/batch", json={"records": chunk})
            assert response.status_code == 200, response.text
            ids += [r["id"] for r in response.json()["results"]]
    return ids


def _hide_next_step_from_reps(crm: Crm) -> None:
    """The rep's role may not see an opportunity's next step (a metadata change)."""
    roles = json.loads(ROLES.read_text(encoding="utf-8"))
    rep = next(r for r in roles if r["api_name"] == "sales_rep")
    rep["fields"]["opportunity"]["next_step"] = "hidden"
    with crm.api() as api:
        response = api.post("/api/v1/metadata/apply?confirm=true", json={"roles": [rep]})
    assert response.status_code in (200, 201), response.text


async def test_rep_filters_sorts_chooses_columns_pages_and_saves_a_view(
    crm: Crm, browser: Any, context: Any, tmp_path: Path
) -> None:
    with crm.api() as api:
        accounts = api.get("/api/v1/data/account", params={"where": 'name == "Globex Software"'})
    globex = accounts.json()["records"][0]["id"]
    _opportunities(crm, "rep@web.test", 60, "Rep deal", account=globex)
    page = await sign_in(context, crm, "rep@web.test")
    await page.goto(f"{crm.url}/app/o/opportunity")
    await page.get_by_role("heading", name="Opportunities", level=1).wait_for()
    # The pipeline view shows the rep's 60 open deals, 50 a page, with the exact count.
    count = page.locator("#list-count")
    assert await count.inner_text() == "1–50 of 60"
    await page.get_by_role("link", name="Next page").click()
    await page.wait_for_url("**cursor=**")
    assert await count.inner_text() == "51–60 of 60"
    await page.get_by_role("link", name="Previous page").click()
    assert await count.inner_text() == "1–50 of 60"

    # The filter builder writes the expression; applying it filters.
    await page.get_by_label("Field", exact=True).select_option("amount")
    await page.get_by_label("Operator").select_option("ge")
    await page.get_by_label("Value", exact=True).fill("55000")
    await page.get_by_role("button", name="Add to filter").click()
    assert await page.get_by_label("Filter expression").input_value() == "amount >= 55000"
    await page.get_by_role("button", name="Apply filter").click()
    await page.wait_for_url("**where=**")
    assert await count.inner_text() == "1–6 of 6"

    # Sorting by clicking a column header, and again to reverse.
    table = page.locator("table.list-table")
    await table.get_by_role("link", name="Amount").click()
    await page.wait_for_url("**order_by=amount**")
    first = table.locator("tbody tr").first
    assert "Rep deal 055" in await first.inner_text()
    await table.get_by_role("link", name="Amount").click()
    await page.wait_for_url("**order_by=-amount**")
    top = await table.locator("tbody tr").first.inner_text()
    assert "Rep deal 060" in top and "Globex Software" in top  # the lookup shows its name
    # The totals row adds up the whole filtered list (one aggregate query).
    assert "$345,000.00" in await table.locator("tfoot").inner_text()
    assert await table.locator("th[aria-sort=descending]").inner_text() == "Amount ▼"

    # Choosing columns: drop the close date, add the number.
    await page.get_by_text("Columns", exact=True).click()
    await page.get_by_label("Close Date").uncheck()
    await page.get_by_label("Number", exact=True).check()
    await page.get_by_role("button", name="Show these columns").click()
    await page.wait_for_url("**columns=**")
    headers = await table.locator("thead th").all_inner_texts()
    assert "Number" in headers and "Close Date" not in headers
    assert await count.inner_text() == "1–6 of 6"  # the filter and sort were kept

    # Saving it as a personal view, and finding it again after a reload.
    await page.get_by_text("Save as my view", exact=True).click()
    await page.get_by_label("View name").fill("My big deals")
    await page.get_by_role("button", name="Save view").click()
    await page.wait_for_url("**view=my_**")
    await page.reload()
    assert await page.get_by_label("View").locator("option:checked").inner_text() == (
        "My big deals"
    )
    assert await count.inner_text() == "1–6 of 6"
    headers = await table.locator("thead th").all_inner_texts()
    assert "Number" in headers and "Close Date" not in headers
    view_url = page.url
    await screenshot(page, "list", tmp_path)
    assert await axe_findings(browser, context, page.url) == []

    # The manager sees neither the view in the choice nor the view by its address.
    manager = await sign_in(await browser.new_context(), crm, "manager@web.test")
    await manager.goto(f"{crm.url}/app/o/opportunity")
    assert "My big deals" not in await manager.content()
    response = await manager.goto(view_url)
    assert response is not None and response.status == 404
    await manager.context.close()

    # The rep may forget the view again.
    await page.get_by_text("Save as my view", exact=True).click()
    await page.get_by_role("button", name="Delete this view").click()
    await page.wait_for_url(f"{crm.url}/app/o/opportunity")
    assert "My big deals" not in await page.content()


async def test_bulk_actions_in_the_browser(crm: Crm, context: Any) -> None:
    _opportunities(crm, "rep@web.test", 3, "Browser deal")
    page = await sign_in(context, crm, "rep@web.test")
    await page.goto(f"{crm.url}/app/o/opportunity")
    await page.get_by_label("Select Browser deal 001").check()
    await page.get_by_label("Select Browser deal 002").check()
    await page.get_by_label("New owner").select_option(label="Mia Manager")
    await page.get_by_role("button", name="Change owner").click()
    await page.get_by_text("2 given to the new owner, 0 refused").wait_for()
    await page.get_by_role("link", name="Back to the list").click()
    # The two deals left the rep's private view; the third is still there.
    assert await page.locator("#list-count").inner_text() == "1–1 of 1"
    # Select all; the rep's role may not delete, so there is no delete button.
    await page.get_by_label("Select all records on this page").check()
    assert await page.get_by_label("Select Browser deal 003").is_checked()
    assert await page.get_by_role("button", name="Delete").count() == 0  # may not delete


async def test_bulk_change_owner_delete_and_export(crm: Crm, clients: list[httpx.Client]) -> None:
    ids = _opportunities(crm, "rep@web.test", 4, "Bulk deal")
    _hide_next_step_from_reps(crm)
    grant_export(crm, "sales_rep")
    rep = signed_in_client(clients, crm, "rep@web.test")
    page = rep.get("/app/o/opportunity", params={"where": 'CONTAINS(name, "Bulk deal")'})
    assert page.status_code == 200, page.text
    csrf = page_csrf(page.text)
    manager_id = crm.users["manager@web.test"]
    assert f'<option value="{manager_id}">Mia Manager</option>' in page.text

    # Change the owner of two records: both go to the manager.
    moved = rep.post(
        "/app/o/opportunity/bulk",
        data={"csrf_token": csrf, "action": "owner", "owner_id": manager_id, "ids": ids[:2]},
    )
    assert moved.status_code == 200, moved.text
    assert "2 given to the new owner, 0 refused" in moved.text
    with crm.api() as api:
        owners = {
            r["id"]: r["owner_id"]
            for r in api.get(
                "/api/v1/data/opportunity", params={"where": 'CONTAINS(name, "Bulk deal")'}
            ).json()["records"]
        }
    assert owners[ids[0]] == owners[ids[1]] == manager_id

    # Delete: the rep's role may not delete opportunities, so each record is refused.
    refused = rep.post(
        "/app/o/opportunity/bulk",
        data={"csrf_token": csrf, "action": "delete", "ids": [ids[2], "not-an-id"]},
    )
    assert refused.status_code == 200
    assert "0 deleted, 2 refused" in refused.text
    assert "Bulk deal 003" in refused.text and "may not delete" in refused.text
    # The manager may delete: two deleted, the one already gone is refused.
    manager = signed_in_client(clients, crm, "manager@web.test")
    mcsrf = page_csrf(manager.get("/app/o/opportunity").text)
    deleted = manager.post(
        "/app/o/opportunity/bulk",
        data={"csrf_token": mcsrf, "action": "delete", "ids": [ids[0], ids[1]]},
    )
    assert "2 deleted, 0 refused" in deleted.text
    again = manager.post(
        "/app/o/opportunity/bulk", data={"csrf_token": mcsrf, "action": "delete", "ids": [ids[0]]}
    )
    assert "0 deleted, 1 refused" in again.text
    # Without the CSRF token nothing happens.
    assert rep.post("/app/o/opportunity/bulk", data={"action": "delete"}).status_code == 403

    # Export: every page of the list, lookups named, the hidden field left out; audited.
    exported = rep.post(
        "/app/o/opportunity/export",
        data={
            "csrf_token": csrf,
            "view": "pipeline",
            "columns": "name,account,amount,next_step,stage",
        },
    )
    # next_step is hidden from the rep: asked for by name, it is refused like an unknown one.
    assert exported.status_code == 200
    assert "next_step" not in exported.text.splitlines()[0]
    exported = rep.post(
        "/app/o/opportunity/export",
        data={"csrf_token": csrf, "view": "pipeline", "columns": "name,account,amount,stage"},
    )
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert rows[0] == ["id", "name", "account", "account.name", "amount", "stage"]
    names = sorted(r[1] for r in rows[1:])
    assert names == ["Bulk deal 003", "Bulk deal 004"]  # the rep's own, live, open deals
    assert "Call the CFO" not in exported.text  # the hidden next step's value
    with crm.api() as api:
        audit = api.get("/api/v1/audit", params={"action": "export"})
    assert audit.status_code == 200, audit.text
    assert any(e["object"] == "opportunity" for e in audit.json()["entries"])


async def test_export_streams_every_page_with_lookup_names(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    _opportunities(crm, "rep@web.test", 230, "Many")
    grant_export(crm, "sales_manager")
    manager = signed_in_client(clients, crm, "manager@web.test")
    csrf = page_csrf(manager.get("/app/o/opportunity").text)
    exported = manager.post(
        "/app/o/opportunity/export",
        data={"csrf_token": csrf, "view": "pipeline", "columns": "name,account,amount"},
    )
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert sum(1 for r in rows if r[1].startswith("Many ")) == 230  # every page, once
    assert len({r[0] for r in rows}) == len(rows)
    acme = next(r for r in rows if r[1] == "Acme assembly line retrofit")
    assert acme[3] == "Acme Robotics" and len(acme[2]) == 36


async def test_rep_never_sees_hidden_records_or_fields_and_bad_parameters_give_pages(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    _opportunities(crm, "manager@web.test", 2, "Manager secret")
    _opportunities(crm, "rep@web.test", 1, "Rep own")
    _hide_next_step_from_reps(crm)
    rep = signed_in_client(clients, crm, "rep@web.test")
    page = rep.get("/app/o/opportunity", params={"columns": "name,next_step,amount"})
    # Private opportunities of another owner (and the admin's seed deals) never reach the HTML.
    assert page.status_code == 200
    assert "Rep own 001" in page.text
    assert "Manager secret" not in page.text
    assert "Acme assembly line retrofit" not in page.text
    # A hidden field is no column, no builder field, no column choice.
    assert 'value="next_step"' not in page.text and 'data-field="next_step"' not in page.text
    assert "Next Step" not in page.text and "Call the CFO" not in page.text
    assert "not fields you may see: next_step" in page.text  # what was asked is answered
    # Filtering on it is refused like an unknown field: inline, with the input kept.
    hidden = rep.get("/app/o/opportunity", params={"where": 'next_step == "call"'})
    assert hidden.status_code == 422
    assert "unknown field &#39;next_step&#39;" in hidden.text
    assert 'value="next_step == &#34;call&#34;"' in hidden.text
    manager = signed_in_client(clients, crm, "manager@web.test")
    assert "Manager secret 001" in manager.get("/app/o/opportunity").text

    for params, status in (
        ({"where": ")))"}, 422),
        ({"where": "nosuchfield == 1"}, 422),
        ({"order_by": "nosuchfield"}, 422),
        ({"order_by": "tags"}, 422),
        ({"cursor": "garbage"}, 422),
        ({"columns": "nosuch,name"}, 200),
        ({"view": "nosuch"}, 404),
        ({"view": "my_" + "0" * 32}, 404),
        ({"view": "my_garbage"}, 404),
        ({"where": "\x00"}, 422),
        ({"where": "x" * 5000}, 422),
    ):
        response = rep.get("/app/o/opportunity", params=params)
        assert response.status_code == status, (params, response.status_code, response.text[-500:])
        assert "text/html" in response.headers["content-type"]
        assert "Traceback" not in response.text
    for where in (
        'close_date < DATEVALUE("2027-13-45")',
        "amount > 1e999",
        "amount > 99999999999999999999999999999999999999999",
        'name == "\\ud800"',
        'CONTAINS(name, "%_")',
        "amount / 0 > 1",
        "account.name == 1",
        "__import__('os')",
        "owner_id == 'not-a-uuid'",
        "created_at > DATETIMEVALUE('2020-01-01 00:00:00')",
    ):
        response = rep.get("/app/o/opportunity", params={"where": where})
        assert response.status_code in (200, 422), (where, response.text[-300:])
    long = rep.get("/app/o/opportunity", params={"where": "x" * 5000})
    assert "The filter is longer than 4,000 characters." in long.text
    bad = rep.get("/app/o/opportunity", params={"where": ")))"})
    assert 'role="alert"' in bad.text and 'value=")))"' in bad.text
    assert rep.get("/app/o/no_such_object").status_code == 404
    assert rep.get("/app/o/payment").status_code == 403  # no access to the object at all
    csrf = page_csrf(rep.get("/app/o/opportunity").text)
    unnamed = rep.post(
        "/app/o/opportunity/views", data={"csrf_token": csrf, "label": "", "save_columns": "name"}
    )
    assert unnamed.status_code == 422 and "The view was not saved" in unnamed.text
    hidden_view = rep.post(
        "/app/o/opportunity/views",
        data={"csrf_token": csrf, "label": "Sneaky", "save_columns": "name,next_step"},
    )
    assert hidden_view.status_code == 422 and "next_step" in hidden_view.text
    odd = rep.post("/app/o/opportunity/bulk", data={"csrf_token": csrf, "action": "explode"})
    assert odd.status_code == 422 and "text/html" in odd.headers["content-type"]


async def test_personal_views_over_the_rest_api(crm: Crm) -> None:
    with crm.api() as admin:
        before = admin.get("/api/v1/metadata/versions").json()
    with crm.api(crm.token("rep@web.test")) as rep, crm.api(crm.token("manager@web.test")) as mgr:
        saved = rep.post(
            "/api/v1/ui/opportunity/my-list-views",
            json={"label": "Mine", "columns": ["name", "amount"], "sort": "-amount"},
        )
        assert saved.status_code == 201, saved.text
        name = saved.json()["api_name"]
        assert name.startswith("my_")
        assert (
            rep.get("/api/v1/ui/opportunity/my-list-views").json()["list_views"][0]["label"]
            == "Mine"
        )
        assert mgr.get("/api/v1/ui/opportunity/my-list-views").json()["list_views"] == []
        document = rep.get("/api/v1/ui/opportunity/list", params={"view": name}).json()
        assert document["query"] == {"fields": "name,amount", "limit": 50, "order_by": "-amount"}
        assert mgr.get("/api/v1/ui/opportunity/list", params={"view": name}).status_code == 404
        for body in (
            {"label": "x", "columns": ["nosuch"]},
            {"label": "x", "filter": ")))"},
            {"label": "x", "sort": "nosuch"},
            {"columns": ["name"]},
            {"label": "x", "visibility": {"kind": "everyone"}},
        ):
            refused = rep.post("/api/v1/ui/opportunity/my-list-views", json=body)
            assert refused.status_code == 422, (body, refused.text)
        assert mgr.delete(f"/api/v1/ui/opportunity/my-list-views/{name}").status_code == 404
        assert rep.delete(f"/api/v1/ui/opportunity/my-list-views/{name}").status_code == 204
    with crm.api() as admin:
        # Saving a personal view made no metadata version.
        assert admin.get("/api/v1/metadata/versions").json() == before


async def test_list_page_in_chinese(crm: Crm, context: Any) -> None:
    page = await sign_in(context, crm, "manager@web.test")
    await page.get_by_label("Language").select_option("zh-CN")
    await page.get_by_role("heading", name="欢迎，Mia Manager").wait_for()
    await page.goto(f"{crm.url}/app/o/account")
    await page.get_by_role("heading", name="客户", level=1).wait_for()
    assert "共 6 条" in await page.locator("#list-count").inner_text()
    await page.get_by_role("button", name="应用筛选").wait_for()
    await page.get_by_role("link", name="客户名称").click()  # sort by the name, in Chinese
    await page.wait_for_url("**order_by=-name**")


async def test_list_totals_over_the_rest_api(crm: Crm) -> None:
    _opportunities(crm, "rep@web.test", 3, "Sum")  # 1000 + 2000 + 3000
    _opportunities(crm, "manager@web.test", 1, "Sum")
    _hide_next_step_from_reps(crm)
    where = 'CONTAINS(name, "Sum 00")'
    with crm.api(crm.token("rep@web.test")) as rep, crm.api(crm.token("manager@web.test")) as mgr:
        mine = rep.get(
            "/api/v1/analytics/totals/opportunity", params={"fields": "amount", "where": where}
        )
        assert mine.status_code == 200, mine.text
        assert float(mine.json()["totals"]["amount"]) == 6000  # only what the rep may read
        theirs = mgr.get(
            "/api/v1/analytics/totals/opportunity", params={"fields": "amount", "where": where}
        )
        assert float(theirs.json()["totals"]["amount"]) == 7000
        for params in (
            {"fields": "name"},
            {"fields": "next_step"},
            {"fields": "nosuch"},
            {"fields": "amount", "where": ")))"},
            {"fields": "amount", "where": 'next_step == "x"'},
        ):
            refused = rep.get("/api/v1/analytics/totals/opportunity", params=params)
            assert refused.status_code == 422, (params, refused.text)
        assert (
            rep.get("/api/v1/analytics/totals/payment", params={"fields": "amount"}).status_code
            == 403
        )


async def test_deep_paging_keeps_its_place(crm: Crm, clients: list[httpx.Client]) -> None:
    _opportunities(crm, "rep@web.test", 45, "Deep")
    with crm.api(crm.token("rep@web.test")) as api:
        saved = api.post(
            "/api/v1/ui/opportunity/my-list-views",
            json={"label": "One a page", "columns": ["name"], "sort": "name", "limit": 1},
        )
    view = saved.json()["api_name"]
    rep = signed_in_client(clients, crm, "rep@web.test")
    url = f"/app/o/opportunity?view={view}"
    for _ in range(43):
        page = rep.get(url)
        assert page.status_code == 200
        url = html.unescape(re.search(r'href="([^"]+)" rel="next"', page.text)[1])  # type: ignore[index]
    page = rep.get(url)
    assert '<p class="count" id="list-count" aria-live="polite">44–44 of 45</p>' in page.text
    assert "Deep 044" in page.text
    assert len(parse_qs(urlsplit(url).query)["back"]) == 40  # the URL stays short
    earlier = html.unescape(re.search(r'href="([^"]+)" rel="prev"', page.text)[1])  # type: ignore[index]
    page = rep.get(earlier)
    assert "43–43 of 45" in page.text and "Deep 043" in page.text
