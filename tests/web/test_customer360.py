"""The customer 360: an account's page shows its contacts, its open opportunities by stage
(totals as the API counts them), every related object the user may read, and one timeline
across the account and its children."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from tests.web.conftest import Crm, axe_findings, needs_chromium, screenshot, sign_in
from tests.web.test_records import account_id, create

pytestmark = needs_chromium

CLOSED = {"won", "lost"}


def open_by_stage(api: httpx.Client, account: str) -> dict[str, tuple[int, Decimal]]:
    """Count and amount per open stage of the account's opportunities, from the REST list."""
    page = api.get(
        "/api/v1/data/opportunity",
        params={"where": f"account == '{account}'", "fields": "stage,amount", "limit": 200},
    )
    assert page.status_code == 200, page.text
    totals: dict[str, list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    for record in page.json()["records"]:
        if record["stage"] in CLOSED:
            continue
        totals[record["stage"]][0] += 1
        totals[record["stage"]][1] += Decimal(record["amount"] or 0)
    return {stage: (count, amount) for stage, (count, amount) in totals.items()}


def money(amount: Decimal) -> str:
    return f"${amount:,.2f}"


async def test_customer_360_of_a_seeded_account(
    crm: Crm, browser: Any, context: Any, tmp_path: Path
) -> None:
    acme = account_id(crm, "Acme Robotics")
    manager = crm.token("manager@web.test")
    with crm.api(manager) as api:
        contacts = api.get(
            "/api/v1/data/contact", params={"where": f"account == '{acme}'", "limit": 50}
        ).json()["records"]
    # More pipeline for Acme: two more open deals (one in a stage the seed has) and a won one.
    for name, stage, amount in (
        ("Acme spare parts", "qualify", 12500.5),
        ("Acme vision system", "qualify", 80000),
        ("Acme service plan", "won", 30000),
    ):
        body = {"name": name, "account": acme, "stage": stage, "amount": amount}
        if stage == "won":
            body |= {"close_date": "2026-01-15", "stage": "qualify", "contact": contacts[0]["id"]}
        opp = create(crm, manager, "opportunity", body)
        if stage == "won":
            with crm.api(manager) as api:
                for step in ("propose", "negotiate", "won"):
                    moved = api.post(f"/api/v1/data/opportunity/{opp}/stage", json={"to": step})
                    assert moved.status_code == 200, moved.text
    with crm.api(manager) as api:
        expected = open_by_stage(api, acme)
        summary = api.get(f"/api/v1/data/account/{acme}/related-summary").json()["summaries"]
        # Comments on the account and, later, on one of its contacts.
        assert (
            api.post(
                f"/api/v1/data/account/{acme}/comments", json={"body": "Quarterly review booked"}
            ).status_code
            == 201
        )
        contact = contacts[0]
        assert (
            api.post(
                f"/api/v1/data/contact/{contact['id']}/comments", json={"body": "Prefers e-mail"}
            ).status_code
            == 201
        )
        merged = api.get(
            f"/api/v1/data/account/{acme}/timeline", params={"children": "true"}
        ).json()["entries"]
    assert len(contacts) >= 1
    assert expected and sum(c for c, _ in expected.values()) >= 3
    # The REST summary agrees with the list: open stages only, counted and summed.
    opportunities = next(s for s in summary if s["object"] == "opportunity")
    assert {s["stage"]: (s["count"], Decimal(s["amount"])) for s in opportunities["stages"]} == (
        expected
    )
    # One timeline across the account and its children, newest first.
    assert [e["body"] for e in merged if e["kind"] == "comment"][:2] == [
        "Prefers e-mail",
        "Quarterly review booked",
    ]
    assert [e["at"] for e in merged] == sorted((e["at"] for e in merged), reverse=True)
    assert {"account", "contact", "opportunity"} <= {e["object"] for e in merged}

    page = await sign_in(context, crm, "manager@web.test")
    url = f"{crm.url}/app/o/account/{acme}"
    await page.goto(url)
    await page.get_by_role("heading", name="Acme Robotics", level=1).wait_for()
    # Its contacts.
    contacts_list = page.locator("[data-related='contact']")
    for record in contacts:
        await contacts_list.get_by_role("link", name=record["full_name"]).wait_for()
    # Open opportunities by stage, with the API's figures.
    table = page.locator("table[data-summary='opportunity']")
    for stage, (count, amount) in expected.items():
        row = table.locator(f"tr[data-stage='{stage}']")
        cells = await row.locator("td").all_inner_texts()
        assert cells == [str(count), money(amount)], (stage, cells)
    total = await table.locator("tfoot td").all_inner_texts()
    assert total == [
        str(sum(c for c, _ in expected.values())),
        money(sum((a for _, a in expected.values()), Decimal(0))),
    ]
    assert await table.locator("tr[data-stage='won']").count() == 0
    # Every related object the manager may read is on the same screen.
    for child in ("contact", "opportunity", "quote", "activity", "task"):
        assert await page.locator(f"[data-related='{child}']").count() >= 1, child
    html = await page.content()
    assert 'data-related="payment"' not in html  # sales managers may not read payments
    # One timeline: the contact's comment (newest) first, naming the contact.
    events = page.locator("#timeline .event")
    first = await events.first.inner_text()
    assert "Prefers e-mail" in first and contact["full_name"] in first
    assert "Quarterly review booked" in await page.locator("#timeline").inner_text()
    assert await page.locator("#timeline .event.stage").count() >= 1
    await screenshot(page, "customer360", tmp_path)
    assert await axe_findings(browser, context, url) == []


async def test_360_counts_only_what_the_user_may_read(crm: Crm) -> None:
    acme = account_id(crm, "Acme Robotics")
    rep = crm.token("rep@web.test")
    create(crm, rep, "opportunity", {"name": "Rep deal", "account": acme, "amount": 1000})
    with crm.api(rep) as api:
        summary = api.get(f"/api/v1/data/account/{acme}/related-summary").json()["summaries"]
        merged = api.get(
            f"/api/v1/data/account/{acme}/timeline", params={"children": "true"}
        ).json()["entries"]
        assert open_by_stage(api, acme) == {"qualify": (1, Decimal(1000))}
    opportunities = next(s for s in summary if s["object"] == "opportunity")
    # The administrator's seeded opportunity is private: neither counted nor in the timeline.
    assert opportunities["count"] == 1 and Decimal(opportunities["amount"]) == 1000
    with crm.api() as api:
        seeded = api.get(
            "/api/v1/data/opportunity", params={"where": f"account == '{acme}'"}
        ).json()["records"]
    hidden = {r["id"] for r in seeded if r["name"] != "Rep deal"}
    assert hidden and not hidden & {e["record_id"] for e in merged}
