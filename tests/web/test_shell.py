"""The workspace shell in a real browser: sign-in, navigation by permission, language,
sign-out, session fixation and CSRF, error pages, accessibility."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.web.conftest import (
    Crm,
    axe_findings,
    needs_chromium,
    screenshot,
    sign_in,
    signed_in_client,
)

pytestmark = needs_chromium


def _client(clients: list[httpx.Client], crm: Crm, **kw: Any) -> httpx.Client:
    """A client that has not signed in (closed after the test)."""
    client = httpx.Client(base_url=crm.url, timeout=30, **kw)
    clients.append(client)
    return client


async def test_rep_signs_in_and_sees_only_what_their_role_may_read(
    crm: Crm, browser: Any, context: Any, tmp_path: Path
) -> None:
    page = await sign_in(context, crm, "rep@web.test")
    await page.get_by_role("heading", name="Welcome, Ray Rep").wait_for()
    nav = page.get_by_role("navigation", name="Main navigation")
    await nav.get_by_role("link", name="Opportunities").wait_for()
    html = await page.content()
    # The rep's role has no access to payments or contracts: not in the HTML at all.
    assert 'data-object="payment"' not in html
    assert 'data-object="contract"' not in html
    assert 'data-object="opportunity"' in html
    await screenshot(page, "home", tmp_path)
    assert await axe_findings(browser, context, f"{crm.url}/app") == []

    admin = await sign_in(await browser.new_context(), crm, crm.admin)
    assert 'data-object="payment"' in await admin.content()
    await admin.context.close()


async def test_language_switch_and_accept_language(crm: Crm, browser: Any, context: Any) -> None:
    page = await sign_in(context, crm, "rep@web.test")
    await page.get_by_label("Language").select_option("zh-CN")
    await page.get_by_role("heading", name="欢迎，Ray Rep").wait_for()
    assert await page.locator("html").get_attribute("lang") == "zh-CN"
    await page.get_by_role("link", name="商机").first.wait_for()  # crm-core's zh-CN label

    chinese = await browser.new_context(
        locale="zh-CN", extra_http_headers={"Accept-Language": "zh-CN"}
    )
    page = await chinese.new_page()
    await page.goto(f"{crm.url}/app/login")
    await page.get_by_role("button", name="登录").wait_for()
    await chinese.close()


async def test_sign_out_ends_the_session_everywhere(crm: Crm, clients: list[httpx.Client]) -> None:
    client = signed_in_client(clients, crm, "rep@web.test")
    cookie = client.cookies["metacrm_session"]
    home = client.get("/app")
    assert home.status_code == 200
    csrf = home.text.split('name="csrf-token" content="')[1].split('"')[0]
    assert client.post("/app/logout", data={"csrf_token": csrf}).status_code == 303
    # A copy of the cookie taken before sign-out no longer opens anything.
    copied = _client(clients, crm, cookies={"metacrm_session": cookie})
    response = copied.get("/app")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/app/login")


async def test_session_fixation_a_planted_cookie_is_replaced_at_sign_in(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    planted = "mcs." + crm.tenant + "." + "0" * 32 + ".attacker-chosen-secret"
    client = _client(clients, crm, cookies={"metacrm_session": planted})
    assert client.get("/app").status_code == 303  # the planted value opens nothing
    form = client.get("/app/login")
    token = client.cookies["metacrm_login_csrf"]
    assert form.status_code == 200
    signed = client.post(
        "/app/login",
        data={
            "tenant": crm.tenant,
            "username": "rep@web.test",
            "password": crm.password,
            "csrf_token": token,
        },
    )
    assert signed.status_code == 303
    fresh = signed.cookies["metacrm_session"]
    assert fresh != planted and crm.tenant in fresh
    # Two sign-ins never share a session id.
    other = signed_in_client(clients, crm, "rep@web.test").cookies["metacrm_session"]
    assert other.split(".")[2] != fresh.split(".")[2]


async def test_csrf_is_required_on_every_form(crm: Crm, clients: list[httpx.Client]) -> None:
    client = signed_in_client(clients, crm, "rep@web.test")
    # No token, a wrong token, and another session's token: all refused, nothing changed.
    other = signed_in_client(clients, crm, "manager@web.test")
    other_csrf = other.get("/app").text.split('name="csrf-token" content="')[1].split('"')[0]
    for data in ({}, {"csrf_token": "nope"}, {"csrf_token": other_csrf}):
        refused = client.post("/app/logout", data=data)
        assert refused.status_code == 403, refused.text
        assert "CSRF" in refused.text
    assert client.get("/app").status_code == 200  # still signed in
    # The login form is protected too (login CSRF): a post without its cookie is refused.
    bare = httpx.post(
        f"{crm.url}/app/login",
        data={"tenant": crm.tenant, "username": "rep@web.test", "password": crm.password},
    )
    assert bare.status_code == 403
    assert "metacrm_session" not in bare.cookies


async def test_wrong_password_and_unknown_pages_answer_pages_not_500(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    client = _client(clients, crm)
    client.get("/app/login")
    token = client.cookies["metacrm_login_csrf"]
    wrong = client.post(
        "/app/login",
        data={
            "tenant": crm.tenant,
            "username": "rep@web.test",
            "password": "x",
            "csrf_token": token,
        },
    )
    assert wrong.status_code == 401
    assert "The company, e-mail or password is wrong." in wrong.text
    assert 'value="rep@web.test"' in wrong.text  # the form keeps what was typed
    signed = signed_in_client(clients, crm, "rep@web.test")
    for path in ("/app/nowhere", "/app/o/nothing_here", "/app/o/account/not-an-id"):
        response = signed.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert "text/html" in response.headers["content-type"]
    # Redirects after sign-in stay inside the workspace.
    client.get("/app/login")
    token = client.cookies["metacrm_login_csrf"]
    away = client.post(
        "/app/login",
        data={
            "tenant": crm.tenant,
            "username": "rep@web.test",
            "password": crm.password,
            "csrf_token": token,
            "next": "//evil.example/app",
        },
    )
    assert away.headers["location"] == "/app"


async def test_login_page_is_accessible_and_works_on_a_phone(
    crm: Crm, browser: Any, tmp_path: Path
) -> None:
    phone = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = await phone.new_page()
    await page.goto(f"{crm.url}/app/login")
    await screenshot(page, "login", tmp_path)
    assert await axe_findings(browser, phone, f"{crm.url}/app/login") == []
    await phone.close()
    phone = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = await sign_in(phone, crm, "rep@web.test")
    menu = page.get_by_role("button", name="Menu")
    await menu.click()
    await (
        page.get_by_role("navigation", name="Main navigation")
        .get_by_role("link", name="Opportunities")
        .click()
    )
    await page.wait_for_url(f"{crm.url}/app/o/opportunity")
    await phone.close()
