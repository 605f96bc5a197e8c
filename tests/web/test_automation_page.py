"""The automation monitor in a real browser and over plain HTTP: runs with their outcome,
dead jobs retried, webhook deliveries replayed, and nothing of it for a sales rep."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from metacrm.platform.web.automation import PAGE
from tests.automation.test_webhooks import Receiver, private_allowed, receiver
from tests.conftest import ADMIN_PASSWORD, TenantClient
from tests.web.conftest import (
    Crm,
    axe_findings,
    needs_chromium,
    page_csrf,
    screenshot,
    sign_in,
    signed_in_with_csrf,
)
from tests.web.test_hostile import HOSTILE, LEAKS

__all__ = ["private_allowed", "receiver"]  # fixtures of the webhook tests, used here

TEMPLATE = {
    "api_name": "h8_welcome",
    "object": "lead",
    "subject": {"en": "Welcome, {{ last_name }}", "zh-CN": "{{ last_name }}，欢迎您"},
    "body": {"en": "Thank you for your interest.", "zh-CN": "感谢您的关注。"},
}
#: A rule that opens a call task for each new lead and welcomes the lead by e-mail; the
#: web server has no SMTP host, so each e-mail job dies at once ("e-mail is off").
RULE = {
    "api_name": "h8_follow_up",
    "object": "lead",
    "label": {"en": "Follow up new leads", "zh-CN": "跟进新线索"},
    "trigger": {"on": "created"},
    "actions": [
        {
            "kind": "create",
            "object": "task",
            "link": "lead",
            "set": {"subject": "'Call ' + last_name", "priority": "'high'"},
        },
        {"kind": "email", "to": [{"kind": "field", "field": "email"}], "template": "h8_welcome"},
    ],
}


def _email_jobs(crm: Crm) -> list[dict[str, Any]]:
    """The e-mail jobs, once none waits or runs: the server's own worker may hold one while
    `run-due` returns (it leaves held jobs to their worker), so run and look again."""
    for _ in range(100):
        with crm.api() as admin:
            assert admin.post("/api/v1/automation/jobs/run-due").status_code == 200
            found = admin.get("/api/v1/automation/jobs", params={"kind": "email.send"})
        listed: list[dict[str, Any]] = found.json()["jobs"]
        if listed and all(j["status"] not in ("pending", "running") for j in listed):
            return listed
        time.sleep(0.1)
    raise AssertionError(f"the e-mail jobs did not settle: {listed}")


def _lead_with_follow_up(crm: Crm) -> tuple[str, dict[str, Any]]:
    """A lead the rule follows up, its jobs run; the lead's id and its dead e-mail job."""
    with crm.api() as admin:
        for kind, body in (("email-templates", TEMPLATE), ("automation-rules", RULE)):
            response = admin.post(f"/api/v1/metadata/{kind}", json=body)
            assert response.status_code == 201, response.text
        created = admin.post(
            "/api/v1/data/lead",
            json={
                "last_name": "Lovelace",
                "company": "Analytical Engines",
                "email": "ada@example.com",
            },
        )
        assert created.status_code == 201, created.text
    [job] = _email_jobs(crm)
    assert job["status"] == "dead" and "e-mail is off" in job["last_error"]
    return created.json()["id"], job


@needs_chromium
async def test_an_admin_sees_runs_and_retries_a_dead_job_a_rep_sees_nothing(
    crm: Crm, browser: Any, context: Any, tmp_path: Path
) -> None:
    lead_id, job = _lead_with_follow_up(crm)
    page = await sign_in(context, crm, crm.admin)
    await (
        page.get_by_role("navigation", name="Main navigation")
        .get_by_role("link", name="Automation")
        .click()
    )
    await page.wait_for_url(f"{crm.url}/app/automation")
    await page.get_by_role("heading", name="Automation monitor", level=1).wait_for()

    # The run: the rule, its trigger, the lead as a link, done, a duration, its detail.
    run = page.locator("tr.auto-run", has_text="h8_follow_up")
    assert await run.count() == 1
    text = await run.inner_text()
    assert "Rule" in text and "created" in text and re.search(r"\d+ ms", text)
    assert await run.locator(".auto-badge").inner_text() == "Done"
    lead = run.get_by_role("link", name="Lead · Analytical Engines")  # its name field
    assert await lead.get_attribute("href") == f"/app/o/lead/{lead_id}"
    detail = run.locator("pre.auto-detail")
    assert not await detail.is_visible()
    await run.get_by_text("Show").click()
    assert '"actions"' in await detail.inner_text()
    await screenshot(page, "automation-runs", tmp_path)
    assert await axe_findings(browser, context, page.url) == []

    # Filtering by another outcome leaves the run out.
    await page.get_by_label("Outcome").select_option("failed")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url(re.compile(r".*outcome=failed.*"))
    await page.get_by_text("No automation has run yet.").wait_for()

    # The dead e-mail job, its error and attempts, and Retry.
    await (
        page.get_by_role("navigation", name="What to show").get_by_role("link", name="Jobs").click()
    )
    await page.get_by_role("navigation", name="Status").get_by_role("link", name="Dead").click()
    await page.wait_for_url(f"{crm.url}/app/automation/jobs?status=dead")
    row = page.locator(f"#job-{job['id']}")
    assert "e-mail is off" in await row.locator(".auto-error").inner_text()
    assert await row.get_by_role("link", name="Lead · Analytical Engines").count() == 1
    attempts = f"{job['attempts']} / {job['max_attempts']}"
    assert await row.locator(".auto-attempts").inner_text() == attempts
    assert await page.locator("tr.auto-job").count() == 1  # the dead ones only
    await screenshot(page, "automation-jobs", tmp_path)
    assert await axe_findings(browser, context, page.url) == []

    await row.get_by_role("button", name="Retry").click()
    await page.wait_for_url(f"{crm.url}/app/automation/jobs?status=dead&notice=retried")
    await page.get_by_role("status").get_by_text("The job is back in the queue.").wait_for()
    # Run again (unless the server's own worker did already), it dies again.
    [again] = _email_jobs(crm)
    assert again["status"] == "dead" and again["finished_at"] > job["finished_at"]
    await page.goto(f"{crm.url}/app/automation/jobs?status=dead")
    row = page.locator(f"#job-{job['id']}")
    assert "e-mail is off" in await row.locator(".auto-error").inner_text()
    assert await row.locator(".auto-attempts").inner_text() == (
        f"{again['attempts']} / {again['max_attempts']}"
    )

    # No subscription yet: the deliveries tab says so.
    await page.get_by_role("link", name="Webhook deliveries").click()
    await page.get_by_text("No webhook subscriptions.").wait_for()

    # A sales rep: no link in the navigation, a 403 page at the address.
    rep_context = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        rep = await sign_in(rep_context, crm, "rep@web.test")
        assert await rep.get_by_role("link", name="Automation").count() == 0
        refused = await rep.goto(f"{crm.url}/app/automation/jobs")
        assert refused is not None and refused.status == 403
        await rep.get_by_text("You may not do this.").wait_for()
    finally:
        await rep_context.close()


def test_forms_need_the_token_and_the_permission(crm: Crm, clients: list[httpx.Client]) -> None:
    _lead_id, job = _lead_with_follow_up(crm)
    admin, csrf = signed_in_with_csrf(clients, crm, crm.admin)
    rep, rep_csrf = signed_in_with_csrf(clients, crm, "rep@web.test")
    retry = f"/app/automation/jobs/{job['id']}/retry"
    # No token: refused, nothing changes; the rep's own token: refused for lack of the right.
    assert admin.post(retry).status_code == 403
    assert rep.post(retry, data={"csrf_token": rep_csrf}).status_code == 403
    for path in ("/app/automation", "/app/automation/jobs", "/app/automation/webhooks"):
        assert rep.get(path).status_code == 403
    assert 'href="/app/automation"' not in rep.get("/app").text
    assert _email_jobs(crm)[0]["finished_at"] == job["finished_at"]
    # Not a job id, or a job that is not dead: not found.
    assert admin.post("/app/automation/jobs/x/retry", data={"csrf_token": csrf}).status_code == 404
    # `back` leads to a page of the monitor only.
    done = admin.post(retry, params={"back": "https://evil.test/"}, data={"csrf_token": csrf})
    assert done.status_code == 303
    assert done.headers["location"] == "/app/automation/jobs?notice=retried"
    assert _email_jobs(crm)[0]["finished_at"] > job["finished_at"]  # retried, died again
    # Bad filters: an unknown outcome or status shows everything; a bad `before` is a 400.
    assert "h8_follow_up" in admin.get("/app/automation", params={"outcome": "nope"}).text
    assert admin.get("/app/automation/jobs", params={"status": "nope"}).status_code == 200
    assert admin.get("/app/automation", params={"before": "yesterday"}).status_code == 400
    # In Chinese.
    zh = admin.get("/app/automation", headers={"Accept-Language": "zh-CN"})
    assert "自动化监控" in zh.text and "完成" in zh.text


def test_older_pages_follow_the_apis_paging(crm: Crm, clients: list[httpx.Client]) -> None:
    rule = {
        "api_name": "h8_tell_owner",
        "object": "lead",
        "trigger": {"on": "created"},
        "actions": [{"kind": "notify", "to": [{"kind": "owner"}], "title": "New lead"}],
    }
    leads = [{"last_name": f"L{i}", "company": f"Company {i}"} for i in range(PAGE + 1)]
    with crm.api() as admin:
        assert admin.post("/api/v1/metadata/automation-rules", json=rule).status_code == 201
        batch = admin.post("/api/v1/data/lead/batch", json={"records": leads})
        assert batch.status_code == 200, batch.text
        for _ in range(100):  # the server's own worker may hold some while run-due returns
            assert admin.post("/api/v1/automation/jobs/run-due").status_code == 200
            runs = admin.get("/api/v1/automation/runs", params={"limit": 200}).json()["runs"]
            if len(runs) == PAGE + 1:
                break
            time.sleep(0.1)
    assert len(runs) == PAGE + 1
    admin_page, _csrf = signed_in_with_csrf(clients, crm, crm.admin)
    oldest = {}
    for first in ("/app/automation?rule=h8_tell_owner", "/app/automation/jobs?status=done"):
        page = admin_page.get(first).text
        assert len(re.findall(r'<tr id="(?:run|job)-', page)) == PAGE
        older = re.search(r'<a href="([^"]+)">Older</a>', page)
        assert older, page[-800:]
        rest = admin_page.get(older.group(1).replace("&amp;", "&")).text
        assert len(re.findall(r'<tr id="(?:run|job)-', rest)) == 1
        assert ">Older</a>" not in rest
        oldest[first] = rest
    # The oldest run and job are the first lead's (the batch saved the leads in order).
    assert all("Lead · Company 0<" in rest for rest in oldest.values())


def test_hostile_parameters_get_a_page_never_a_500(crm: Crm, clients: list[httpx.Client]) -> None:
    _lead_with_follow_up(crm)
    admin, csrf = signed_in_with_csrf(clients, crm, crm.admin)
    job = _email_jobs(crm)[0]["id"]
    routes = {
        "/app/automation": ["outcome", "rule", "before"],
        "/app/automation/jobs": ["status", "kind", "before", "notice"],
        "/app/automation/webhooks": ["webhook", "before", "notice"],
    }
    for value in HOSTILE:
        answers = [
            admin.get(path, params=dict.fromkeys(names, value)) for path, names in routes.items()
        ]
        answers += [
            admin.get(path, params={name: value})
            for path, names in routes.items()
            for name in names
        ]
        answers.append(
            admin.post(
                f"/app/automation/jobs/{job}/retry",
                params={"back": value},
                data={"csrf_token": csrf},
            )
        )
        answers.append(
            admin.post(
                f"/app/automation/webhooks/deliveries/{quote(value, safe='')}/replay",
                data={"csrf_token": csrf},
            )
        )
        for answer in answers:
            what = f"{answer.request.method} {answer.request.url!s:.200}"
            assert answer.status_code < 500, f"{what}: {answer.text[:2000]}"
            assert answer.status_code == 303 or answer.headers["content-type"].startswith(
                "text/html"
            ), what
            assert not any(leak in answer.text for leak in LEAKS), what
            if answer.status_code == 303:  # back to the monitor, whatever `back` said
                assert answer.headers["location"].startswith("/app/automation/jobs"), what


# -- webhook deliveries, on the suite's in-process app (loopback targets allowed) --------


@pytest.fixture
async def workspace_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client of the in-process app, for the workspace's pages."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def _sign_in(http: httpx.AsyncClient, tenant: TenantClient) -> str:
    """Sign `http` in as the tenant's administrator; the CSRF token of the session."""
    await http.get("/app/login")
    response = await http.post(
        "/app/login",
        data={
            "tenant": tenant.tenant,
            "username": f"admin@{tenant.tenant}.test",
            "password": ADMIN_PASSWORD,
            "csrf_token": http.cookies["metacrm_login_csrf"],
        },
    )
    assert response.status_code == 303, response.text
    return page_csrf((await http.get("/app")).text)


@pytest.mark.usefixtures("private_allowed")
async def test_deliveries_are_listed_per_subscription_and_replayed(
    tenant: TenantClient, receiver: Receiver, jobs: Any, workspace_client: httpx.AsyncClient
) -> None:
    hooks = []
    for name in ("erp", "zapier"):
        created = await tenant.post("/api/v1/webhooks", json={"name": name, "url": receiver.url})
        assert created.status_code == 201, created.text
        hooks.append(created.json()["id"])
    erp, zapier = hooks
    receiver.statuses = [500]
    assert (await tenant.post(f"/api/v1/webhooks/{erp}/test")).status_code == 202
    await jobs.run(tenant)
    csrf = await _sign_in(workspace_client, tenant)

    # The first subscription by name is shown; its failed attempt with HTTP 500.
    page = (await workspace_client.get("/app/automation/webhooks")).text
    assert "Deliveries of erp" in page and "zapier" in page
    [failed] = re.findall(r'<tr id="delivery-([0-9a-f-]+)"', page)
    assert (
        "Failed" in page and '<td class="number">500</td>' in page and "<code>ping</code>" in page
    )
    assert "x" * 2000 in page  # the start of the receiver's answer, as the log keeps it

    replay = await workspace_client.post(
        f"/app/automation/webhooks/deliveries/{failed}/replay",
        params={"back": f"/app/automation/webhooks?webhook={erp}"},
        data={"csrf_token": csrf},
    )
    assert replay.status_code == 303
    assert replay.headers["location"] == (f"/app/automation/webhooks?webhook={erp}&notice=replayed")
    await jobs.run(tenant)
    page = (await workspace_client.get(replay.headers["location"])).text
    assert "The delivery is queued again." in page
    assert len(re.findall(r'<tr id="delivery-', page)) >= 2 and "Succeeded" in page
    assert len(receiver.requests) >= 2

    # The other subscription has delivered nothing; an unknown one is not found.
    other = await workspace_client.get("/app/automation/webhooks", params={"webhook": zapier})
    assert "Deliveries of zapier" in other.text and "Nothing delivered yet." in other.text
    missing = await workspace_client.get(
        "/app/automation/webhooks", params={"webhook": "00000000-0000-0000-0000-000000000000"}
    )
    assert missing.status_code == 404
    assert (
        await workspace_client.post(
            "/app/automation/webhooks/deliveries/nope/replay", data={"csrf_token": csrf}
        )
    ).status_code == 404
