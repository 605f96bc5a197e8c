"""Record forms in a real browser and by hand-made posts: live field rules, lookups among
readable records, server errors on their fields, If-Match on every save, access."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.web.conftest import (
    AXE,
    Crm,
    axe_findings,
    needs_chromium,
    new_crm,
    page_csrf,
    screenshot,
    sign_in,
    signed_in_client,
)

pytestmark = needs_chromium

#: Field rules added to crm-core's opportunity: the loss reason appears, required, once
#: the deal is lost; a renewal's amount is fixed; a lost deal is no upsell.
RULES = [
    {
        "api_name": "loss_reason_only_when_lost",
        "when": "stage != 'lost'",
        "fields": ["loss_reason"],
        "effect": "hidden",
    },
    {
        "api_name": "loss_reason_needed",
        "when": "stage == 'lost'",
        "fields": ["loss_reason"],
        "effect": "required",
    },
    {
        "api_name": "renewal_amount_is_fixed",
        "when": "kind == 'renewal'",
        "fields": ["amount"],
        "effect": "read_only",
    },
    {
        "api_name": "lost_deals_are_not_upsells",
        "when": "stage == 'lost'",
        "fields": ["kind"],
        "effect": "allowed_values",
        "values": ["new_business", "renewal"],
    },
]


def _add_rules(crm: Crm) -> None:
    with crm.api() as api:
        described = api.get("/api/v1/metadata/objects/opportunity")
        assert described.status_code == 200, described.text
        obj = described.json()
        obj["field_rules"] = RULES
        changed = api.put("/api/v1/metadata/objects/opportunity", json=obj)
        assert changed.status_code == 200, changed.text


def _hide_from_rep(crm: Crm, field: str) -> None:
    with crm.api() as api:
        role = api.get("/api/v1/metadata/roles/sales_rep").json()
        role.setdefault("fields", {}).setdefault("opportunity", {})[field] = "hidden"
        changed = api.put("/api/v1/metadata/roles/sales_rep", params={"confirm": "true"}, json=role)
        assert changed.status_code == 200, changed.text


def _rep_opportunity(crm: Crm, **values: Any) -> dict[str, Any]:
    with crm.api(crm.token("rep@web.test")) as api:
        created = api.post("/api/v1/data/opportunity", json={"name": "Rep deal", **values})
    assert created.status_code == 201, created.text
    return dict(created.json())


async def test_rep_creates_and_edits_an_opportunity_with_live_rules_and_lookup(
    crm: Crm, browser: Any, context: Any, tmp_path: Path
) -> None:
    _add_rules(crm)
    page = await sign_in(context, crm, "rep@web.test")
    await page.goto(f"{crm.url}/app/o/opportunity/new")
    await page.get_by_role("heading", name="New Opportunity").wait_for()
    reason = page.locator("[data-field=loss_reason]")
    assert await reason.is_hidden()
    # The rep's role may only read the probability: shown, not editable.
    assert await page.locator("[data-field=probability].static").count() == 1
    assert await page.locator("[name=probability]").count() == 0

    await page.get_by_label("Opportunity Name").fill("Robots for Acme")
    account = page.get_by_role("combobox", name="Account")
    await account.fill("robot")
    option = page.get_by_role("option", name="Acme Robotics", exact=True)
    await option.wait_for()
    listed = page.locator("#f-account-options [role=option]")
    await expect(listed).to_have_count(2)
    assert await listed.all_inner_texts() == ["Acme Robotics", "Acme Robotics Europe"]
    await account.press("ArrowDown")
    await account.press("Enter")
    assert await account.input_value() == "Acme Robotics"
    account_id = await page.locator("input[name=account][type=hidden]").input_value()
    assert re.fullmatch(r"[0-9a-f-]{36}", account_id)

    # The form asks the server again only when a field the rules read changes.
    assert await page.locator("form.record-form").get_attribute("data-watch") == "kind stage"
    # A new deal starts in its stage rule's first stage: the other stages are not offered.
    assert await page.get_by_label("Stage").input_value() == "qualify"
    assert await page.locator("#f-stage option[value=lost]").is_disabled()
    # A field rule applies as the type changes, before anything is saved.
    await page.get_by_label("Type").select_option("renewal")
    await expect(page.locator("#f-amount")).to_be_disabled()
    assert await page.locator("[data-field=amount][data-rule-readonly]").count() == 1
    await page.get_by_label("Type").select_option("new_business")
    await expect(page.locator("#f-amount")).to_be_enabled()

    # A check of the server: shown on its field, the input kept.
    await page.get_by_label("Amount").fill("-5")
    await page.get_by_role("button", name="Save").click()
    error = page.locator("#f-amount-error")
    await error.wait_for()
    assert await page.locator("#f-amount").get_attribute("aria-invalid") == "true"
    assert "f-amount-error" in (
        await page.locator("#f-amount").get_attribute("aria-describedby") or ""
    )
    assert await page.get_by_label("Opportunity Name").input_value() == "Robots for Acme"
    assert await page.get_by_label("Amount").input_value() == "-5"
    assert await account.input_value() == "Acme Robotics"
    assert await page.locator("#form-summary a[href='#f-amount']").count() == 1
    assert await page.evaluate("document.activeElement.id") == "form-summary"
    await screenshot(page, "form", tmp_path)

    await page.get_by_label("Amount").fill("125000")
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_url(re.compile(r"/app/o/opportunity/[0-9a-f-]{36}$"))
    record_id = page.url.rsplit("/", 1)[-1]
    with crm.api() as api:
        saved = api.get(f"/api/v1/data/opportunity/{record_id}").json()
    assert saved["name"] == "Robots for Acme" and saved["stage"] == "qualify"
    assert saved["account"] == account_id and saved["amount"] in (125000, "125000.00")

    # Edit it: the values are in the form; a validation rule answers on its field.
    await page.goto(f"{crm.url}/app/o/opportunity/{record_id}/edit")
    assert await page.get_by_label("Opportunity Name").input_value() == "Robots for Acme"
    assert await account.input_value() == "Acme Robotics"
    await page.get_by_label("Next Step").fill("Send the contract")
    assert await page.locator("#f-stage option[value=won]").is_disabled()  # not from qualify
    await page.get_by_label("Stage").select_option("lost")
    await reason.wait_for(state="visible")
    await page.locator("[data-field=loss_reason][data-rule-required]").wait_for()
    assert await page.locator("#f-loss_reason").get_attribute("aria-required") == "true"
    assert await page.locator("#f-kind option[value=upsell]").is_disabled()
    assert await page.locator("#f-kind option[value=renewal]").is_enabled()
    await page.get_by_role("button", name="Save").click()
    await page.locator("#f-loss_reason-error").wait_for()
    assert "Loss Reason is required" in await page.locator("#f-loss_reason-error").inner_text()
    assert await page.get_by_label("Next Step").input_value() == "Send the contract"
    assert await reason.is_visible()
    await page.get_by_label("Loss Reason").fill("Budget moved to next year")
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_url(f"{crm.url}/app/o/opportunity/{record_id}")
    with crm.api() as api:
        saved = api.get(f"/api/v1/data/opportunity/{record_id}").json()
    assert saved["next_step"] == "Send the contract" and saved["version"] == 2
    assert saved["stage"] == "lost" and saved["loss_reason"] == "Budget moved to next year"
    assert saved["account"] == account_id


async def test_a_stale_edit_names_who_changed_the_record_and_overwrites_nothing(
    crm: Crm, context: Any
) -> None:
    deal = _rep_opportunity(crm)
    page = await sign_in(context, crm, "rep@web.test")
    await page.goto(f"{crm.url}/app/o/opportunity/{deal['id']}/edit")
    await page.get_by_label("Opportunity Name").fill("The rep's name")
    with crm.api(crm.token("manager@web.test")) as api:
        changed = api.patch(
            f"/api/v1/data/opportunity/{deal['id']}", json={"name": "The manager's name"}
        )
    assert changed.status_code == 200, changed.text
    await page.get_by_role("button", name="Save").click()
    alert = page.locator("#form-stale")
    await alert.wait_for()
    assert "Mia Manager" in await alert.inner_text()
    assert await page.get_by_label("Opportunity Name").input_value() == "The rep's name"
    # Saving again still refuses: the form keeps the version it was drawn from.
    await page.get_by_role("button", name="Save").click()
    await alert.wait_for()
    with crm.api() as api:
        current = api.get(f"/api/v1/data/opportunity/{deal['id']}").json()
    assert current["name"] == "The manager's name" and current["version"] == 2
    await page.get_by_role("link", name="Reload the record and edit it again").click()
    assert await page.get_by_label("Opportunity Name").input_value() == "The manager's name"


def test_hidden_fields_read_only_fields_and_lookups_follow_the_reps_access(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    _hide_from_rep(crm, "next_step")
    rep = signed_in_client(clients, crm, "rep@web.test")
    form = rep.get("/app/o/opportunity/new")
    assert form.status_code == 200
    assert "next_step" not in form.text and "Next Step" not in form.text
    assert 'name="probability"' not in form.text
    assert 'data-watch=""' in form.text  # no field rule here: no live requests at all
    token = page_csrf(form.text)

    # A hidden field posted by hand is unknown; a read-only one is refused: messages.
    posted = rep.post(
        "/app/o/opportunity/new",
        data={"csrf_token": token, "name": "By hand", "next_step": "x", "probability": "90"},
    )
    assert posted.status_code == 422, posted.text[:500]
    assert "may not change probability" in posted.text
    assert 'id="f-probability-error"' in posted.text and 'href="#f-probability"' in posted.text
    assert "has no field next_step" in posted.text
    with crm.api() as api:
        found = api.get("/api/v1/data/opportunity", params={"where": "name == 'By hand'"})
    assert found.json()["records"] == []

    # Editing: the read-only probability cannot be changed by hand either.
    deal = _rep_opportunity(crm)
    edit = rep.get(f"/app/o/opportunity/{deal['id']}/edit")
    assert edit.status_code == 200 and 'name="_version" value="1"' in edit.text
    posted = rep.post(
        f"/app/o/opportunity/{deal['id']}/edit",
        data={"csrf_token": token, "_version": "1", "name": "Rep deal", "probability": "5"},
    )
    assert posted.status_code == 422 and "may not change probability" in posted.text

    # Lookup search runs as the rep: opportunities are private, the seeded ones are the
    # administrator's; only the rep's own deal is offered.
    options = rep.get("/app/o/quote/lookup/opportunity", params={"q": ""})
    assert options.status_code == 200
    assert options.text.count('role="option"') == 1 and "Rep deal" in options.text
    with crm.api() as api:
        seeded = api.get("/api/v1/data/opportunity", params={"fields": "name"}).json()
    for record in seeded["records"]:
        if record["name"] != "Rep deal":
            assert record["name"] not in options.text
    accounts = rep.get("/app/o/opportunity/lookup/account", params={"q": "GLOBEX"})
    assert "Globex Software" in accounts.text and accounts.text.count('role="option"') == 1
    tricky = rep.get("/app/o/opportunity/lookup/account", params={"q": "') or (1 == 1"})
    assert tricky.status_code == 200 and "No matching records" in tricky.text
    for q in ("a\\b", "it's", 'say "hi"', "\\'", "😀", "\x00\x1fzz", "{x}", "a\nb", "%_"):
        odd = rep.get("/app/o/opportunity/lookup/account", params={"q": q})
        assert odd.status_code == 200 and "No matching records" in odd.text, (q, odd.text[:300])
    chinese = rep.get("/app/o/opportunity/lookup/account", params={"q": "北京"})
    assert chinese.text.count('role="option"') >= 1 and "北京" in chinese.text
    denied = rep.get("/app/o/quote/lookup/price_book", params={"q": "PB"})
    assert denied.status_code == 200 and "may not read these records" in denied.text
    assert "data-id" not in denied.text
    assert rep.get("/app/o/opportunity/lookup/next_step").status_code == 404
    assert rep.get("/app/o/opportunity/lookup/name").status_code == 404
    assert rep.get("/app/o/payment/new").status_code == 403

    # The live rule state comes from the server, for the REST API too.
    rule_state = rep.post(
        "/app/o/opportunity/form-state",
        data={"stage": "lost"},
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    )
    assert rule_state.status_code == 200 and "form-state" in rule_state.text


def test_hand_made_bad_posts_give_messages_never_a_500(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    _add_rules(crm)
    rep = signed_in_client(clients, crm, "rep@web.test")
    token = page_csrf(rep.get("/app/o/opportunity/new").text)
    base = {"csrf_token": token, "name": "Bad input", "stage": "qualify"}
    cases = [
        ({"no_such_field": "x"}, "has no field no_such_field"),
        ({"name": "n" * 10_000}, "Opportunity Name"),
        ({"amount": "abc"}, "Amount"),
        ({"close_date": "2026-13-45"}, "Close Date"),
        ({"stage": "nonsense"}, "Stage"),
        ({"account": "not-an-id"}, "Account"),
        ({"tags": ["strategic", "bogus"]}, "Tags"),
        ({"stage": "lost"}, "Loss Reason"),
    ]
    for extra, expected in cases:
        response = rep.post("/app/o/opportunity/new", data=base | extra)
        assert response.status_code == 422, (extra, response.status_code, response.text[:300])
        assert expected in response.text, extra
        if set(extra) <= {"name", "amount", "close_date", "stage", "account"}:
            assert 'aria-invalid="true"' in response.text, extra
        assert "Traceback" not in response.text
    # A multipart post with a file where a value belongs: a message, not a crash.
    upload = rep.post(
        "/app/o/opportunity/new",
        data={"csrf_token": token, "stage": "qualify"},
        files={"name": ("name.txt", b"a file", "text/plain")},
    )
    assert upload.status_code == 422 and "Opportunity Name" in upload.text
    deal = _rep_opportunity(crm)
    # The same rule state over REST, for any other client.
    with crm.api(crm.token("rep@web.test")) as api:
        lost = api.post("/api/v1/ui/opportunity/form-state", json={"record": {"stage": "lost"}})
        assert lost.status_code == 200, lost.text
        assert lost.json()["required"] == ["loss_reason"] and lost.json()["hidden"] == []
        assert lost.json()["allowed_values"] == {
            "kind": ["new_business", "renewal"],
            "stage": ["qualify"],
        }
        moving = api.post(
            "/api/v1/ui/opportunity/form-state",
            json={"record": {}, "id": deal["id"]},
        )
        assert moving.json()["allowed_values"] == {"stage": ["qualify", "propose", "lost"]}
        early = api.post("/api/v1/ui/opportunity/form-state", json={"record": {}})
        assert early.json()["hidden"] == ["loss_reason"]
        renewal = api.post(
            "/api/v1/ui/opportunity/form-state", json={"record": {"kind": "renewal"}}
        )
        assert renewal.json()["read_only"] == ["amount"]
        # A new deal may only start in the first stage; an open one moves on as its rule says.
        assert renewal.json()["allowed_values"] == {"stage": ["qualify"]}
        bad = api.post("/api/v1/ui/opportunity/form-state", json={"record": 5})
        assert bad.status_code == 422
    # In Chinese, labels and messages too.
    chinese = rep.post(
        "/app/o/opportunity/new",
        data=base | {"amount": "-1"},
        headers={"Accept-Language": "zh-CN"},
    )
    assert (
        chinese.status_code == 422
        and "商机名称" in chinese.text
        and "记录未保存" in chinese.text
        and "金额 小于允许的最小值" in chinese.text
    )
    no_csrf = rep.post("/app/o/opportunity/new", data={"name": "No token"})
    assert no_csrf.status_code == 403
    for version in ("", "abc", "99"):
        stale = rep.post(
            f"/app/o/opportunity/{deal['id']}/edit",
            data={"csrf_token": token, "_version": version, "name": "x"},
        )
        assert stale.status_code == 409 and "Ray Rep" in stale.text
    for path in (
        "/app/o/opportunity/not-an-id/edit",
        f"/app/o/nothing/{deal['id']}/edit",
        "/app/o/nothing/new",
        "/app/o/opportunity/lookup/nothing",
    ):
        assert rep.get(path).status_code == 404, path
    assert (
        rep.post("/app/o/opportunity/form-state?record=zzz", data={"csrf_token": token}).status_code
        == 404
    )
    with crm.api() as api:
        found = api.get("/api/v1/data/opportunity", params={"where": "name == 'Bad input'"})
    assert found.json()["records"] == []


async def test_forms_pass_axe_with_and_without_errors(crm: Crm, browser: Any, context: Any) -> None:
    _add_rules(crm)
    deal = _rep_opportunity(crm)
    page = await sign_in(context, crm, "rep@web.test")
    assert await axe_findings(browser, context, f"{crm.url}/app/o/opportunity/new") == []
    # The edit form with the server's errors shown (axe runs on the page as answered).
    audit = await browser.new_context(storage_state=await context.storage_state(), bypass_csp=True)
    try:
        edit = await audit.new_page()
        await edit.goto(f"{crm.url}/app/o/opportunity/{deal['id']}/edit")
        await edit.get_by_label("Amount").fill("-5")
        await edit.get_by_label("Opportunity Name").fill("")
        await edit.get_by_role("button", name="Save").click()
        await edit.locator("#form-summary").wait_for()
        assert await edit.locator(".field-error").count() == 2
        await edit.add_script_tag(path=str(AXE))
        result = await edit.evaluate("async () => await axe.run(document)")
    finally:
        await audit.close()
    serious = [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == []
    await page.close()


@pytest.mark.parametrize(
    "packs",
    [
        ("crm-core",),
        ("crm-core", "b2b-saas"),
        ("crm-core", "education"),
        ("crm-core", "manufacturing"),
    ],
    ids=lambda packs: packs[-1],
)
async def test_every_objects_edit_form_saves_unchanged_as_drawn(
    web_server: str, packs: tuple[str, ...], context: Any
) -> None:
    """Every control gives back the value it was drawn with: saving an untouched form
    changes nothing (no new version), for every object of each example pack with records."""
    crm = new_crm(web_server, *packs)
    page = await sign_in(context, crm, crm.admin)
    with crm.api() as api:
        names = [o["api_name"] for o in api.get("/api/v1/metadata/objects").json()["objects"]]
        tried = 0
        for name in names:
            found = api.get(f"/api/v1/data/{name}", params={"limit": 1}).json()["records"]
            if not found:
                continue
            before = found[0]
            await page.goto(f"{crm.url}/app/o/{name}/{before['id']}/edit")
            await page.get_by_role("button", name="Save").click()
            await page.wait_for_url(f"{crm.url}/app/o/{name}/{before['id']}")
            after = api.get(f"/api/v1/data/{name}/{before['id']}").json()
            assert after["version"] == before["version"], (name, before, after)
            tried += 1
    assert tried >= 10


RENEWAL = {
    "api_name": "opportunity_renewal",
    "object": "opportunity",
    "label": {"en": "Renewal", "zh-CN": "续约"},
    "when": {"field": "kind", "values": ["renewal"]},
    "sections": [
        {
            "title": {"en": "Renewal terms", "zh-CN": "续约条款"},
            "columns": 1,
            "fields": [
                {"field": "name"},
                {"field": "kind"},
                {"field": "account"},
                {"field": "amount", "required": True},
                {"field": "next_step", "help_text": {"en": "What the customer renews"}},
            ],
        }
    ],
}


async def test_a_record_type_draws_its_own_layout_as_it_is_chosen(crm: Crm, context: Any) -> None:
    with crm.api() as api:
        added = api.post("/api/v1/metadata/layouts", json=RENEWAL)
        assert added.status_code in (200, 201), added.text
        account = api.get(
            "/api/v1/data/account", params={"where": "name == 'Globex Software'"}
        ).json()["records"][0]
    page = await sign_in(context, crm, "rep@web.test")
    # Fields filled in from the address (a related list's "New"), lookups named.
    await page.goto(f"{crm.url}/app/o/opportunity/new?account={account['id']}&bogus=1")
    assert await page.get_by_role("combobox", name="Account").input_value() == "Globex Software"
    assert await page.locator("legend", has_text="Renewal terms").count() == 0
    await page.get_by_label("Opportunity Name").fill("Globex renewal")
    await page.get_by_label("Type").select_option("renewal")
    # The form is drawn again with the renewal layout, keeping what was typed.
    await page.locator("legend", has_text="Renewal terms").wait_for()
    assert await page.get_by_label("Opportunity Name").input_value() == "Globex renewal"
    assert await page.get_by_role("combobox", name="Account").input_value() == "Globex Software"
    assert await page.locator("#f-next_step-help").inner_text() == "What the customer renews"
    assert await page.locator("#f-amount").get_attribute("aria-required") == "true"
    assert await page.locator("#form-summary").count() == 0
    await page.get_by_role("button", name="Save").click()
    await page.locator("#f-amount-error").wait_for()  # the layout requires it
    await page.get_by_label("Amount").fill("5000")
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_url(re.compile(r"/app/o/opportunity/[0-9a-f-]{36}$"))
    with crm.api() as api:
        saved = api.get(f"/api/v1/data/opportunity/{page.url.rsplit('/', 1)[-1]}").json()
    assert saved["kind"] == "renewal" and saved["account"] == account["id"]
    # Opened again, the record's type picks the layout at once.
    await page.goto(f"{page.url}/edit")
    await page.locator("legend", has_text="Renewal terms").wait_for()


def test_a_record_locked_by_a_pending_approval_says_so_and_refuses_by_message(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    deal = _rep_opportunity(crm)
    with crm.api(crm.token("rep@web.test")) as api:
        quote = api.post(
            "/api/v1/data/quote",
            json={"name": "Big discount", "opportunity": deal["id"], "discount": 30},
        )
        assert quote.status_code == 201, quote.text
        quote_id = quote.json()["id"]
        submitted = api.post(f"/api/v1/data/quote/{quote_id}/approvals", json={})
        assert submitted.status_code == 201, submitted.text
    rep = signed_in_client(clients, crm, "rep@web.test")
    form = rep.get(f"/app/o/quote/{quote_id}/edit")
    assert form.status_code == 200 and 'id="form-pending"' in form.text
    version = re.search(r'name="_version" value="(\d+)"', form.text)
    assert version is not None
    posted = rep.post(
        f"/app/o/quote/{quote_id}/edit",
        data={"csrf_token": page_csrf(form.text), "_version": version.group(1), "discount": "5"},
    )
    assert posted.status_code == 422, posted.text[:500]
    assert 'id="form-summary"' in posted.text and "Discount" in posted.text
    with crm.api() as api:
        assert api.get(f"/api/v1/data/quote/{quote_id}").json()["discount"] in (30, "30.00", 30.0)


async def test_controls_give_the_apis_types(crm: Crm, context: Any) -> None:
    """A cleared multi-select clears the field, an unticked box is false, a date-time is
    read as UTC, a decimal keeps its scale."""
    with crm.api() as api:

        def first(name: str, where: str) -> dict[str, Any]:
            found = api.get(f"/api/v1/data/{name}", params={"where": where}).json()
            return dict(found["records"][0])

        account = first("account", "name == 'Acme Robotics'")
        contact = first("contact", "email == 'ada.moreau@acme-robotics.example'")
        case = first("service_case", "subject == 'Robot arm calibration drift'")
    assert account["tags"] and contact["is_primary"] is True
    page = await sign_in(context, crm, crm.admin)

    await page.goto(f"{crm.url}/app/o/account/{account['id']}/edit")
    await page.get_by_label("Tags").select_option([])
    await page.get_by_label("Annual Revenue").fill("1234.5")
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_url(f"{crm.url}/app/o/account/{account['id']}")

    await page.goto(f"{crm.url}/app/o/contact/{contact['id']}/edit")
    await page.get_by_label("Primary Contact").uncheck()
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_url(f"{crm.url}/app/o/contact/{contact['id']}")

    await page.goto(f"{crm.url}/app/o/service_case/{case['id']}/edit")
    assert await page.get_by_label("Opened At").input_value() == "2027-01-05T09:00"
    await page.get_by_label("SLA Due At").fill("2027-01-07T17:45")
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_url(f"{crm.url}/app/o/service_case/{case['id']}")

    with crm.api() as api:
        account = api.get(f"/api/v1/data/account/{account['id']}").json()
        contact = api.get(f"/api/v1/data/contact/{contact['id']}").json()
        case = api.get(f"/api/v1/data/service_case/{case['id']}").json()
    assert account["tags"] in (None, [])
    assert str(account["annual_revenue"]).startswith("1234.5")
    assert contact["is_primary"] is False
    assert case["sla_due_at"].startswith("2027-01-07T17:45")
    assert case["opened_at"].startswith("2027-01-05T09:00:00")  # untouched, kept
