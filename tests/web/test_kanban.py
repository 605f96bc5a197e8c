"""The kanban board in a real browser and over HTTP: columns by a picklist with counts and
totals under record access, paging per column, drag-and-drop stage moves with every failing
gate shown, bad parameters, accessibility."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

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

pytestmark = needs_chromium

BOARD = "/app/o/opportunity/kanban"
CARD_ID = re.compile(r'id="kanban-card-([0-9a-f-]{36})"')


def _all_records(api: httpx.Client, fields: str) -> list[dict[str, Any]]:
    """Every opportunity the API's caller may read, page by page."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"fields": fields, "limit": 200} | ({"cursor": cursor} if cursor else {})
        page = api.get("/api/v1/data/opportunity", params=params).json()
        out += page["records"]
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def _figures_by_api(api: httpx.Client) -> dict[str, tuple[int, Decimal]]:
    """Count and amount per stage, computed from the REST list API by the caller."""
    figures: dict[str, tuple[int, Decimal]] = {}
    for record in _all_records(api, "stage,amount"):
        count, total = figures.get(record["stage"], (0, Decimal(0)))
        figures[record["stage"]] = (count + 1, total + Decimal(str(record["amount"] or 0)))
    return figures


async def _page_figures(page: Any) -> dict[str, tuple[int, Decimal]]:
    """Count and amount of each column, as the board shows them."""
    out = {}
    for lane in await page.locator(".kanban-lane").all():
        value = await lane.get_attribute("data-value")
        figures = lane.locator(".kanban-figures")
        count = int(await figures.get_attribute("data-count") or 0)
        out[value] = (count, Decimal(await figures.get_attribute("data-amount") or "0"))
    return out


async def test_rep_board_figures_and_stage_gates(crm: Crm, browser: Any, context: Any) -> None:
    rep = crm.api(crm.token("rep@web.test"))
    created = rep.post(
        "/api/v1/data/opportunity", json={"name": "Kanban gate deal", "stage": "qualify"}
    )
    assert created.status_code == 201, created.text
    deal = created.json()["id"]
    priced = rep.post(
        "/api/v1/data/opportunity",
        json={"name": "Priced deal", "stage": "qualify", "amount": "1250.50"},
    )
    assert priced.status_code == 201, priced.text

    page = await sign_in(context, crm, "rep@web.test")
    await page.goto(f"{crm.url}{BOARD}")
    await page.get_by_role("heading", name="Opportunities board").wait_for()
    lanes = [
        await lane.get_attribute("data-value") for lane in await page.locator(".kanban-lane").all()
    ]
    assert lanes == ["qualify", "propose", "negotiate", "won", "lost"]
    await page.get_by_role("heading", name="Qualify", exact=True).wait_for()

    # Counts and totals equal what the REST list API gives the same rep.
    expected = _figures_by_api(rep)
    shown = await _page_figures(page)
    for value, (count, total) in shown.items():
        assert (count, total) == expected.get(value, (0, Decimal(0))), value
    assert shown["qualify"][0] >= 2
    board = rep.get("/api/v1/analytics/board/opportunity").json()
    assert board["field"] == "stage" and board["amount_field"] == "amount"
    assert {lane["value"]: lane["count"] for lane in board["lanes"]} == {
        value: count for value, (count, _) in shown.items()
    }

    # Drag the deal without amount and close date to propose: refused, every gate listed.
    card = page.locator(f"#kanban-card-{deal}")
    await card.drag_to(page.locator('.kanban-lane[data-value="propose"] .kanban-cards'))
    refusal = page.locator("#kanban-alert .kanban-refusal")
    await refusal.wait_for()
    messages = await refusal.locator("li").all_inner_texts()
    assert len(messages) >= 2, messages
    assert any("Amount" in m for m in messages), messages
    assert any("Close Date" in m for m in messages), messages
    assert await page.locator(f'.kanban-lane[data-value="qualify"] #kanban-card-{deal}').count()
    assert (
        await page.locator(f'.kanban-lane[data-value="propose"] #kanban-card-{deal}').count() == 0
    )
    assert rep.get(f"/api/v1/data/opportunity/{deal}").json()["stage"] == "qualify"
    assert (await _page_figures(page)) == shown

    # Fixed through the API: the board's copy is stale now, and says so.
    fixed = rep.patch(
        f"/api/v1/data/opportunity/{deal}", json={"amount": "5000", "close_date": "2027-03-31"}
    )
    assert fixed.status_code == 200, fixed.text
    await card.drag_to(page.locator('.kanban-lane[data-value="propose"] .kanban-cards'))
    await page.locator("#kanban-alert .kanban-refusal", has_text="changed").wait_for()
    assert rep.get(f"/api/v1/data/opportunity/{deal}").json()["stage"] == "qualify"

    # Read afresh, the drag moves it; both columns' figures follow.
    await page.reload()
    before = await _page_figures(page)
    card = page.locator(f"#kanban-card-{deal}")
    await card.drag_to(page.locator('.kanban-lane[data-value="propose"] .kanban-cards'))
    await page.locator(f'.kanban-lane[data-value="propose"] #kanban-card-{deal}').wait_for()
    await page.get_by_role("status").filter(has_text="Moved to Propose").wait_for()
    assert await page.locator("#kanban-alert .alert").count() == 0
    assert rep.get(f"/api/v1/data/opportunity/{deal}").json()["stage"] == "propose"
    after = await _page_figures(page)
    assert after["qualify"] == (before["qualify"][0] - 1, before["qualify"][1] - 5000)
    assert after["propose"] == (before["propose"][0] + 1, before["propose"][1] + 5000)
    by_api = _figures_by_api(rep)
    assert after == {value: by_api.get(value, (0, Decimal(0))) for value in after}

    # The keyboard way: the card's "Move to…" select and its button (back is allowed).
    moved = page.locator(f"#kanban-card-{deal}")
    await moved.get_by_label("Move to…").select_option("qualify")
    await moved.get_by_role("button", name="Move").click()
    await page.locator(f'.kanban-lane[data-value="qualify"] #kanban-card-{deal}').wait_for()
    assert rep.get(f"/api/v1/data/opportunity/{deal}").json()["stage"] == "qualify"
    focused = await page.evaluate("document.activeElement.closest('.kanban-card').dataset.id")
    assert focused == deal

    assert await axe_findings(browser, context, f"{crm.url}{BOARD}") == []
    rep.close()


async def test_a_long_column_loads_more_cards_without_duplicates(
    crm: Crm, browser: Any, context: Any, tmp_path: Path
) -> None:
    page = await sign_in(context, crm, crm.admin)
    await page.goto(f"{crm.url}{BOARD}")
    await screenshot(page, "kanban", tmp_path)  # the sample data's board, as the admin sees it
    with crm.api() as api:
        batch = [{"name": f"Bulk deal {i:03}", "amount": "10"} for i in range(60)]
        response = api.post("/api/v1/data/opportunity/batch", json={"records": batch})
        assert response.status_code == 200, response.text
        total = sum(1 for r in _all_records(api, "stage") if r["stage"] == "qualify")
    assert total >= 60
    await page.reload()
    lane = page.locator('.kanban-lane[data-value="qualify"]')
    assert await lane.locator(".kanban-figures").get_attribute("data-count") == str(total)
    assert await lane.locator(".kanban-card").count() == 20
    more = lane.get_by_role("button", name="Load more")
    shown = 20
    while await more.count():
        await more.click()
        shown = min(shown + 20, total)
        await page.wait_for_function(
            "n => document.querySelectorAll("
            "'.kanban-lane[data-value=\"qualify\"] .kanban-card').length >= n",
            arg=shown,
        )
    ids = [await c.get_attribute("data-id") for c in await lane.locator(".kanban-card").all()]
    assert len(ids) == total
    assert len(set(ids)) == total


async def test_the_rep_board_holds_only_readable_records(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    rep_api = crm.api(crm.token("rep@web.test"))
    own = rep_api.post("/api/v1/data/opportunity", json={"name": "Rep own deal", "amount": "7"})
    assert own.status_code == 201, own.text
    readable = {r["id"] for r in _all_records(rep_api, "stage")}
    with crm.api() as admin_api:
        everything = {r["id"] for r in _all_records(admin_api, "stage")}
    hidden = everything - readable
    assert hidden, "the seed should hold opportunities the rep may not read"

    rep_html = signed_in_client(clients, crm, "rep@web.test").get(BOARD).text
    admin_html = signed_in_client(clients, crm, crm.admin).get(BOARD).text
    rep_cards = set(CARD_ID.findall(rep_html))
    assert own.json()["id"] in rep_cards
    assert rep_cards <= readable
    assert not any(record_id in rep_html for record_id in hidden)
    assert set(CARD_ID.findall(admin_html)) & hidden

    def counts(html: str) -> dict[str, int]:
        found = re.findall(
            r'<section class="kanban-lane" data-value="([^"]+)".*?data-count="(\d+)"', html, re.S
        )
        return {value: int(count) for value, count in found}

    rep_counts, admin_counts = counts(rep_html), counts(admin_html)
    assert sum(rep_counts.values()) == len(readable)
    assert sum(admin_counts.values()) == len(everything)
    assert all(rep_counts[v] <= admin_counts[v] for v in rep_counts)
    rep_api.close()


def test_bad_parameters_give_pages_never_500(crm: Crm, clients: list[httpx.Client]) -> None:
    rep = signed_in_client(clients, crm, "rep@web.test")
    admin = signed_in_client(clients, crm, crm.admin)

    def page(client: httpx.Client, path: str, **params: str) -> httpx.Response:
        response = client.get(path, params=params)
        assert response.status_code < 500, (path, params, response.text[:1000])
        assert "text/html" in response.headers["content-type"]
        return response

    nosuch = page(rep, BOARD, field="nosuch")
    assert nosuch.status_code == 422 and "has no field" in nosuch.text
    not_picklist = page(rep, BOARD, field="name")
    assert not_picklist.status_code == 422 and "not a picklist" in not_picklist.text
    assert page(rep, BOARD, field="kind").status_code == 200
    assert page(rep, BOARD, field="").status_code == 200  # an empty choice: the default
    assert page(rep, BOARD, field="x" * 500).status_code in (400, 422)
    assert page(rep, "/app/o/nosuch/kanban").status_code == 404
    no_picklist = page(admin, "/app/o/price_book_entry/kanban")
    assert no_picklist.status_code == 404 and "no picklist" in no_picklist.text
    column = f"{BOARD}/column"
    assert page(rep, column, field="stage", value="nosuch").status_code == 404
    assert page(rep, column, field="stage", value="qualify", cursor="garbage").status_code == 422
    assert page(rep, column, field="stage").status_code == 400
    assert page(rep, column, field="name", value="qualify").status_code == 422
    assert page(rep, column, field="stage", value="qualify", order="name").status_code == 404

    csrf = page_csrf(rep.get(BOARD).text)
    headers = {"X-CSRF-Token": csrf, "HX-Request": "true"}
    for path, data in [
        ("/app/o/opportunity/not-a-uuid/stage", {"to": "propose", "field": "stage"}),
        ("/app/o/nosuch/00000000-0000-0000-0000-000000000000/stage", {"to": "x"}),
        ("/app/o/opportunity/00000000-0000-0000-0000-000000000000/stage", {"to": "nosuch"}),
        ("/app/o/opportunity/00000000-0000-0000-0000-000000000000/stage", {"to": "won"}),
    ]:
        response = rep.post(path, data=data, headers=headers)
        assert 400 <= response.status_code < 500, (path, response.text[:1000])
        assert 'role="alert"' in response.text
    # Without the CSRF token nothing moves.
    refused = rep.post(
        "/app/o/opportunity/00000000-0000-0000-0000-000000000000/stage", data={"to": "won"}
    )
    assert refused.status_code == 403


def test_without_javascript_the_move_form_works_and_refusals_are_in_chinese(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    rep_api = crm.api(crm.token("rep@web.test"))
    deal = rep_api.post("/api/v1/data/opportunity", json={"name": "Form deal"}).json()
    client = signed_in_client(clients, crm, "rep@web.test")
    csrf = page_csrf(client.get(BOARD).text)
    path = f"/app/o/opportunity/{deal['id']}/stage"
    form = {"csrf_token": csrf, "field": "stage", "version": str(deal["version"])}

    # A plain form post that is refused: the board again, with every reason.
    refused = client.post(path, data=form | {"to": "propose"})
    assert refused.status_code == 422
    assert 'class="alert kanban-refusal"' in refused.text
    assert "Opportunities board" in refused.text
    assert refused.text.count("<li>") >= 2

    # In Chinese: the API's messages in the user's language, fields by their labels.
    client.cookies.set("metacrm_lang", "zh-CN")
    chinese = client.post(path, data=form | {"to": "propose"}, headers={"HX-Request": "true"})
    assert chinese.status_code == 422
    assert "进入该阶段前必须填写 金额" in chinese.text
    assert "方案报价需要金额" in chinese.text  # the stage's own entry message
    assert "卡片不能移动到“方案报价”" in chinese.text
    page = client.get(BOARD)
    assert "商机看板" in page.text and "验证客户" in page.text

    # Fixed, the same form moves it and goes back to the board (or to `next`).
    fixed = rep_api.patch(
        f"/api/v1/data/opportunity/{deal['id']}",
        json={"amount": "900", "close_date": "2027-01-31"},
    ).json()
    moved = client.post(path, data=form | {"to": "propose", "version": str(fixed["version"])})
    assert moved.status_code == 303
    assert moved.headers["location"] == f"{BOARD}?field=stage"
    back = client.post(
        path,
        data=form | {"to": "qualify", "version": "", "next": f"/app/o/opportunity/{deal['id']}"},
    )
    assert back.status_code == 303
    assert back.headers["location"] == f"/app/o/opportunity/{deal['id']}"
    assert rep_api.get(f"/api/v1/data/opportunity/{deal['id']}").json()["stage"] == "qualify"

    # A board by a picklist no stage rule governs: the move is an ordinary update.
    by_kind = client.post(
        path,
        data={"csrf_token": csrf, "field": "kind", "to": "renewal"},
        headers={"HX-Request": "true"},
    )
    assert by_kind.status_code == 200, by_kind.text
    assert f'id="kanban-card-{deal["id"]}"' in by_kind.text
    assert by_kind.text.count('class="kanban-figures"') == 3  # every column's new figures
    assert rep_api.get(f"/api/v1/data/opportunity/{deal['id']}").json()["kind"] == "renewal"
    rep_api.close()


def test_the_board_figures_api(crm: Crm) -> None:
    rep = crm.api(crm.token("rep@web.test"))
    rep.post("/api/v1/data/opportunity", json={"name": "API deal", "amount": "12.34"})
    board = rep.get("/api/v1/analytics/board/opportunity")
    assert board.status_code == 200, board.text
    body = board.json()
    assert body["field"] == "stage" and body["stage_rule"] == "opportunity_path"
    expected = _figures_by_api(rep)
    for lane in body["lanes"]:
        count, total = expected.get(lane["value"], (0, Decimal(0)))
        assert (lane["count"], Decimal(lane["amount"])) == (count, total)
    by_kind = rep.get("/api/v1/analytics/board/opportunity", params={"field": "kind"}).json()
    assert [lane["value"] for lane in by_kind["lanes"]] == ["new_business", "renewal", "upsell"]
    assert by_kind["stage_rule"] is None
    for params, status in [
        ({"field": "nosuch"}, 422),
        ({"field": "name"}, 422),
        ({"field": "kind", "amount": "x"}, 400),
    ]:
        response = rep.get("/api/v1/analytics/board/opportunity", params=params)
        assert response.status_code in (status, 422), (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert rep.get("/api/v1/analytics/board/nosuch").status_code == 404
    assert rep.get("/api/v1/analytics/board/contract").status_code == 403
    rep.close()


def test_a_reader_who_may_not_edit_gets_no_way_to_move(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    finance = crm.add_user("finance@web.test", role="finance")
    with crm.api() as api:
        made = api.post(
            "/api/v1/data/opportunity", json={"name": "Finance watches", "owner_id": finance}
        )
    assert made.status_code == 201, made.text
    deal = made.json()["id"]
    client = signed_in_client(clients, crm, "finance@web.test")
    board = client.get(BOARD)
    assert board.status_code == 200
    assert f'id="kanban-card-{deal}" draggable="false"' in board.text
    assert 'class="kanban-move"' not in board.text
    refused = client.post(
        f"/app/o/opportunity/{deal}/stage",
        data={"to": "lost", "field": "stage"},
        headers={"X-CSRF-Token": page_csrf(board.text), "HX-Request": "true"},
    )
    assert refused.status_code == 403 and 'role="alert"' in refused.text
    assert "data-amount" in board.text

    # Hide the amount from the role: no column total may reveal it any more.
    with crm.api() as api:
        role = api.get("/api/v1/metadata/roles/finance").json()
        role = {k: v for k, v in role.items() if not k.startswith("_")}
        role["fields"] = {"opportunity": {"amount": "hidden"}}
        changed = api.put("/api/v1/metadata/roles/finance", json=role, params={"confirm": "true"})
        assert changed.status_code == 200, changed.text
    hidden = client.get(BOARD).text
    assert f'id="kanban-card-{deal}"' in hidden
    assert "data-amount" not in hidden and "kanban-total" not in hidden
    assert "Amount" not in hidden
    with crm.api(crm.token("finance@web.test")) as api:
        assert api.get("/api/v1/analytics/board/opportunity").json()["amount_field"] is None


async def test_a_move_back_that_needs_a_reason_asks_for_one(
    crm: Crm, browser: Any, context: Any
) -> None:
    with crm.api() as api:
        rule = api.get("/api/v1/metadata/stage-rules/opportunity_path").json()
        rule = {k: v for k, v in rule.items() if not k.startswith("_")} | {"reason_on_back": True}
        changed = api.put("/api/v1/metadata/stage-rules/opportunity_path", json=rule)
        assert changed.status_code == 200, changed.text
    rep = crm.api(crm.token("rep@web.test"))
    deal = rep.post(
        "/api/v1/data/opportunity",
        json={"name": "Going back", "amount": "300", "close_date": "2027-02-01"},
    ).json()["id"]
    moved = rep.post(f"/api/v1/data/opportunity/{deal}/stage", json={"to": "propose"})
    assert moved.status_code == 200, moved.text

    page = await sign_in(context, crm, "rep@web.test")
    await page.goto(f"{crm.url}{BOARD}")
    await page.locator(f"#kanban-card-{deal}").drag_to(
        page.locator('.kanban-lane[data-value="qualify"] .kanban-cards')
    )
    reason = page.locator("#kanban-alert").get_by_label("Reason")
    await reason.fill("The customer reopened the budget")
    await page.get_by_role("button", name="Move with this reason").click()
    await page.locator(f'.kanban-lane[data-value="qualify"] #kanban-card-{deal}').wait_for()
    assert rep.get(f"/api/v1/data/opportunity/{deal}").json()["stage"] == "qualify"
    history = rep.get(f"/api/v1/data/opportunity/{deal}/stage-history").json()
    assert "The customer reopened the budget" in str(history)
    rep.close()
