"""Security of the workspace: hostile record values drawn on every page type run nothing,
CSRF on every form, record and object access on every page, redirects, cookies, headers."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from metacrm.runtime.tenant_tables import web_sessions
from tests.conftest import PG_URL
from tests.web.conftest import Crm, needs_chromium, sign_in, signed_in_with_csrf
from tests.web.test_export_page import grant_export
from tests.web.test_hostile import LEAKS, _post_routes

EXAMPLES = Path(__file__).parents[2] / "examples"
XSS_SCRIPT = "<script>alert('script')</script>"
XSS_IMG = "\"><img src=x onerror=alert('img')>"
XSS_SVG = "'><svg onload=alert('svg')>"
XSS_USER = "<img src=x onerror=alert('user')>"


def _made(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


# ------------------------------------------------------------------ XSS, in a real browser


def _hostile_data(crm: Crm) -> dict[str, str]:
    """Records whose text is markup and script, made by a user whose name is markup too."""
    crm.add_user("evil@web.test", role="sales_rep", manager="manager@web.test", full_name=XSS_USER)
    with crm.api() as admin:  # labels with quotes and markup, in both languages
        for name in ("next_step", "amount", "stage"):
            labelled = admin.patch(
                f"/api/v1/metadata/objects/opportunity/fields/{name}?confirm=true",
                json={"label": {"en": f"{name} {XSS_IMG}", "zh-CN": f"{name} {XSS_SVG}"}},
            )
            assert labelled.status_code == 200, labelled.text
    with crm.api(crm.token("evil@web.test")) as api:
        account = _made(
            api.post(
                "/api/v1/data/account",
                json={
                    "name": f"Acme {XSS_SCRIPT}",
                    "website": "https://x.example/?q=\"><script>alert('url')</script>",
                    "description": f"line one\n{XSS_IMG}",
                    "billing_city": XSS_SVG,
                },
            )
        )
        opp = _made(
            api.post(
                "/api/v1/data/opportunity",
                json={
                    "name": f"Deal {XSS_IMG}",
                    "stage": "qualify",
                    "account": account["id"],
                    "next_step": XSS_SVG,
                    "amount": 1000,
                    "close_date": "2030-01-01",
                },
            )
        )
        changed = api.patch(
            f"/api/v1/data/opportunity/{opp['id']}",
            json={"next_step": XSS_SCRIPT},
            headers={"If-Match": str(opp["version"])},
        )
        assert changed.status_code == 200, changed.text
        _made(
            api.post(
                f"/api/v1/data/opportunity/{opp['id']}/comments",
                json={"body": XSS_SCRIPT + XSS_IMG},
            )
        )
        quote = _made(
            api.post(
                "/api/v1/data/quote",
                json={"name": f"Quote {XSS_IMG}", "discount": 30, "opportunity": opp["id"]},
            )
        )
        submitted = api.post(
            f"/api/v1/data/quote/{quote['id']}/approvals", json={"comment": XSS_SCRIPT}
        )
        assert submitted.status_code in (200, 201), submitted.text
    return {"account": account["id"], "opportunity": opp["id"], "quote": quote["id"]}


@needs_chromium
async def test_hostile_values_run_nothing_on_any_page(crm: Crm, context: Any) -> None:
    ids = _hostile_data(crm)
    page = await sign_in(context, crm, "manager@web.test")
    dialogs: list[str] = []
    violations: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on(
        "console",
        lambda m: (
            violations.append(m.text)
            if m.type == "error" and "Content Security Policy" in m.text
            else None
        ),
    )
    o = f"{crm.url}/app/o"
    urls = [
        f"{crm.url}/app",
        f"{o}/account",
        f"{o}/opportunity",
        f"{o}/quote",
        f"{o}/account/{ids['account']}",
        f"{o}/opportunity/{ids['opportunity']}",
        f"{o}/quote/{ids['quote']}",
        f"{o}/opportunity/{ids['opportunity']}/edit",
        f"{o}/opportunity/kanban",
        f"{o}/opportunity/new?name={XSS_IMG}&next_step={XSS_SCRIPT}",
        f"{crm.url}/app/search?q=Acme",
        f"{crm.url}/app/search?q={XSS_SCRIPT}",
        f"{crm.url}/app/inbox",
        f"{o}/opportunity?where=name == '{XSS_IMG}'",
        f"{o}/opportunity?where={XSS_SCRIPT}",
        f"{o}/opportunity?order_by={XSS_IMG}&columns={XSS_SVG}",
        f"{o}/no{XSS_SCRIPT}",
        f"{o}/opportunity/{XSS_IMG}",
    ]
    for url in urls:
        await page.goto(url)
        await page.wait_for_load_state("networkidle")
        assert await page.locator("img[src='x'], svg[onload], script:not([src])").count() == 0, url
        assert await page.locator("a[href^='javascript:' i]").count() == 0, url
        html = await page.content()
        for leak in LEAKS:
            assert leak not in html, (url, leak)
    # The lookup's typeahead draws the hostile account's name as text.
    await page.goto(f"{o}/opportunity/{ids['opportunity']}/edit")
    box = page.get_by_role("combobox", name="Account")
    await box.fill("Acme")
    await page.locator("li[role=option][data-id]").first.wait_for()
    assert await page.locator("img[src='x'], script:not([src])").count() == 0
    # The hostile text is there, as text.
    await page.goto(f"{o}/opportunity/{ids['opportunity']}")
    body = await page.locator("main").inner_text()
    assert XSS_SCRIPT in body and "onerror=alert('img')" in body
    await page.wait_for_timeout(300)
    assert dialogs == []
    assert violations == []


# ------------------------------------------------------------------ CSRF


async def test_every_post_route_refuses_a_missing_or_foreign_csrf_token(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    rep, _ = signed_in_with_csrf(clients, crm, "rep@web.test")
    _other, other_csrf = signed_in_with_csrf(clients, crm, "manager@web.test")
    api = crm.api(crm.token("rep@web.test"))
    clients.append(api)
    opp = _made(
        api.post(
            "/api/v1/data/opportunity",
            json={"name": "CSRF target", "stage": "qualify", "close_date": "2030-01-01"},
        )
    )
    before = _made(api.get(f"/api/v1/data/opportunity/{opp['id']}"))
    routes = [
        *_post_routes(opp["id"]),
        ("/app/logout", []),
        (f"/app/o/opportunity/{opp['id']}/delete", []),
    ]
    for path, names in routes:
        form = {name: "1" for name in names} | {"owner_id": crm.users["manager@web.test"]}
        form |= {"body": "a comment", "to": "propose", "name": "Changed", "label": "A view"}
        for extra, headers in (
            ({}, {}),
            ({"csrf_token": "nope"}, {}),
            ({"csrf_token": other_csrf}, {}),
            ({}, {"x-csrf-token": other_csrf}),
            ({}, {"hx-request": "true", "x-csrf-token": ""}),
        ):
            refused = rep.post(path, data=form | extra, headers=headers)
            assert refused.status_code == 403, (path, extra, refused.status_code, refused.text)
            assert refused.headers["content-type"].startswith("text/html")
        refused = rep.post(path, json=form)  # not a form at all, no header
        assert refused.status_code == 403, (path, refused.text)
    after = _made(api.get(f"/api/v1/data/opportunity/{opp['id']}"))
    assert after == before  # not moved, renamed, transferred or deleted
    comments = _made(api.get(f"/api/v1/data/opportunity/{opp['id']}/comments"))
    assert not comments.get("comments") and not comments.get("items")
    assert rep.get("/app").status_code == 200  # still signed in: logout was refused too
    assert "metacrm_lang" not in rep.cookies


# ------------------------------------------------------------------ access


def _csv_rows(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    return list(csv.reader(io.StringIO(response.text.lstrip("\ufeff"))))


async def test_a_private_record_of_another_owner_shows_nowhere(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    secret = f"Secret {uuid.uuid4().hex[:8]}"
    with crm.api(crm.token("manager@web.test")) as api:
        account = _made(api.post("/api/v1/data/account", json={"name": "Shared Account"}))
        opp = _made(
            api.post(
                "/api/v1/data/opportunity",
                json={
                    "name": secret,
                    "stage": "qualify",
                    "account": account["id"],
                    "close_date": "2030-01-01",
                    "amount": 777,
                },
            )
        )
        _made(
            api.post(
                f"/api/v1/data/opportunity/{opp['id']}/comments", json={"body": f"{secret} memo"}
            )
        )
    with crm.api(crm.token("rep@web.test")) as api:
        _made(
            api.post(
                "/api/v1/data/opportunity",
                json={"name": "Rep own deal", "stage": "qualify", "account": account["id"]},
            )
        )
    grant_export(crm, "sales_rep")  # the export below is the rep's to make
    rep, csrf = signed_in_with_csrf(clients, crm, "rep@web.test")
    rid = opp["id"]
    for path in (
        f"/app/o/opportunity/{rid}",
        f"/app/o/opportunity/{rid}/edit",
    ):
        answer = rep.get(path)
        assert answer.status_code in (403, 404), (path, answer.status_code)
        assert secret not in answer.text
    for path, params in (
        ("/app/o/opportunity", {}),
        ("/app/o/opportunity", {"where": "amount == 777"}),
        ("/app/o/opportunity/kanban", {}),
        ("/app/o/opportunity/kanban/column", {"field": "stage", "value": "qualify"}),
        ("/app/search", {"q": "Secret"}),
        ("/app/o/quote/lookup/opportunity", {"q": "secret"}),
        (f"/app/o/account/{account['id']}", {}),  # related lists, timeline of children
        ("/app/inbox", {}),
        ("/app", {}),
        ("/app/o/quote/new", {"opportunity": rid}),
    ):
        answer = rep.get(path, params=params)
        assert answer.status_code < 500, (path, answer.text)
        assert secret not in answer.text, path
        if path != "/app/o/quote/new":  # there the rep's own input is echoed, and only that
            assert rid not in answer.text, path
    assert "Rep own deal" in rep.get(f"/app/o/account/{account['id']}").text  # the list is drawn
    exported = rep.post("/app/o/opportunity/export", data={"csrf_token": csrf})
    assert secret not in exported.text and rid not in exported.text
    assert "Rep own deal" in [row[1] for row in _csv_rows(exported)]  # the rep's own is there
    # Acting on it is refused like reading it, and changes nothing.
    for action, form in (
        ("comments", {"body": "hi"}),
        ("path", {"to": "propose"}),
        ("transfer", {"owner_id": crm.users["rep@web.test"]}),
        ("share", {"with": crm.users["rep@web.test"], "access": "edit"}),
        ("submit", {}),
        ("delete", {}),
        ("edit", {"name": "mine now", "_version": "1"}),
        ("stage", {"to": "propose", "field": "stage", "version": "1"}),
    ):
        answer = rep.post(f"/app/o/opportunity/{rid}/{action}", data={"csrf_token": csrf, **form})
        assert answer.status_code in (403, 404), (action, answer.status_code, answer.text[:500])
        assert secret not in answer.text
    with crm.api(crm.token("manager@web.test")) as api:
        still = _made(api.get(f"/api/v1/data/opportunity/{rid}"))
    assert still["name"] == secret and still["version"] == opp["version"]


async def test_an_object_the_role_may_not_read_gives_no_page_link_or_data(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    crm.add_user("mark@web.test", role="marketing", full_name="Mark Eting")
    client, csrf = signed_in_with_csrf(clients, crm, "mark@web.test")
    home = client.get("/app").text
    assert 'href="/app/o/opportunity"' not in home
    with crm.api() as api:
        opp = api.get("/api/v1/data/opportunity", params={"limit": 1}).json()["records"][0]
    for path, params in (
        ("/app/o/opportunity", {}),
        ("/app/o/opportunity/kanban", {}),
        ("/app/o/opportunity/kanban/column", {"field": "stage", "value": "qualify"}),
        ("/app/o/opportunity/new", {}),
        (f"/app/o/opportunity/{opp['id']}", {}),
        (f"/app/o/opportunity/{opp['id']}/edit", {}),
        ("/app/o/opportunity/lookup/account", {"q": "a"}),
        ("/app/o/payment", {}),
    ):
        answer = client.get(path, params=params)
        assert answer.status_code in (403, 404), (path, answer.status_code)
        assert opp["name"] not in answer.text, path
    search = client.get("/app/search", params={"q": opp["name"]})
    assert search.status_code == 200
    assert opp["id"] not in search.text and "/app/o/opportunity" not in search.text
    exported = client.post("/app/o/opportunity/export", data={"csrf_token": csrf})
    assert exported.status_code in (403, 404)
    assert opp["name"] not in exported.text


# ------------------------------------------------------------------ redirects, cookies, headers


def _sign_in_with_next(client: httpx.Client, crm: Crm, target: str) -> httpx.Response:
    client.cookies.clear()
    client.get("/app/login", params={"next": target})
    return client.post(
        "/app/login",
        data={
            "tenant": crm.tenant,
            "username": "rep@web.test",
            "password": crm.password,
            "csrf_token": client.cookies["metacrm_login_csrf"],
            "next": target,
        },
    )


async def test_no_open_redirect_and_safe_cookies(crm: Crm, clients: list[httpx.Client]) -> None:
    client = httpx.Client(base_url=crm.url, timeout=30)
    clients.append(client)
    for target in (
        "//evil.example/app",
        "https://evil.example/app",
        "/\\evil.example",
        "/app//evil.example",
        "/app/\\evil.example",
        "javascript:alert(1)",
        "/app@evil.example",
        " /app",
        "\t//evil.example",
        "/app\r\nSet-Cookie: x=1",
    ):
        signed = _sign_in_with_next(client, crm, target)
        assert signed.status_code == 303, signed.text
        location = signed.headers["location"]
        assert location.startswith("/app") and not location.startswith("//"), (target, location)
        assert httpx.URL(crm.url).join(location).host == "127.0.0.1", (target, location)
        assert "\n" not in location and "\r" not in location
        assert "x=1" not in signed.headers.get("set-cookie", "").split("metacrm_session")[0]
        # The sign-in form carries `next` as an escaped value, never as markup.
        form = client.get("/app/login", params={"next": '/app"><script>alert(1)</script>'})
        assert "<script>alert(1)" not in form.text
    cookie = signed.headers["set-cookie"]
    session = next(c for c in signed.headers.get_list("set-cookie") if "metacrm_session=" in c)
    assert "HttpOnly" in session and "SameSite=lax" in session and "Path=/" in session
    assert "Max-Age=" in session
    assert cookie
    csrf = client.get("/app").text.split('name="csrf-token" content="')[1].split('"')[0]
    switched = client.post(
        "/app/language",
        data={"csrf_token": csrf, "language": "zh-CN", "next": "//evil.example/"},
    )
    assert switched.status_code == 303 and switched.headers["location"] == "/app"
    kanban_next = client.post(
        "/app/o/opportunity/00000000-0000-0000-0000-000000000000/stage",
        data={"csrf_token": csrf, "to": "propose", "next": "https://evil.example/"},
    )
    assert "evil.example" not in kanban_next.headers.get("location", "")


async def test_every_html_answer_has_the_security_headers(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    client, csrf = signed_in_with_csrf(clients, crm, "rep@web.test")
    anonymous = httpx.Client(base_url=crm.url, timeout=30)
    clients.append(anonymous)
    answers = [
        anonymous.get("/app/login"),
        anonymous.get("/app/login", params={"next": "x" * 5000}),
        client.get("/app"),
        client.get("/app/o/opportunity"),
        client.get("/app/o/opportunity", params={"where": "((("}),
        client.get("/app/o/no_such_object"),
        client.get("/app/o/payment"),
        client.get("/app/o/opportunity/not-a-uuid"),
        client.get("/app/o/opportunity/kanban/column"),  # missing parameters: 400 page
        client.get("/app/search", params={"q": "x" * 500}),
        client.get("/app/no/such/page"),
        client.put("/app", headers={"x-csrf-token": csrf}),  # a method the page does not take
        client.get("/app/o/opportunity", headers={"hx-request": "true"}),
        client.post("/app/o/opportunity/views", data={"csrf_token": "no"}),
    ]
    for answer in answers:
        what = f"{answer.request.method} {answer.request.url} -> {answer.status_code}"
        assert answer.status_code < 500, what
        assert answer.headers["content-type"].startswith("text/html"), what
        policy = answer.headers.get("content-security-policy", "")
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, what
        assert answer.headers.get("x-frame-options") == "DENY", what
        assert answer.headers.get("cache-control") == "no-store", what
        assert answer.headers.get("x-content-type-options") == "nosniff", what
        for leak in LEAKS:
            assert leak not in answer.text, (what, leak)


async def test_sign_out_ends_the_session_and_its_csrf_token(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    client, csrf = signed_in_with_csrf(clients, crm, "rep@web.test")
    copied = httpx.Client(base_url=crm.url, timeout=30, cookies=dict(client.cookies))
    clients.append(copied)
    assert copied.get("/app").status_code == 200
    assert client.post("/app/logout", data={"csrf_token": csrf}).status_code == 303
    for who in (client, copied):
        answer = who.get("/app/o/opportunity")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/app/login")
    # A form posted with the ended session's cookie and token does nothing.
    answer = copied.post("/app/o/opportunity/views", data={"csrf_token": csrf, "label": "x"})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/app/login")


def _expire_sessions(crm: Crm, tmp_path_factory: pytest.TempPathFactory, user_id: str) -> None:
    """Move the user's web sessions' expiry into the past, in the server's own database."""
    storage = f"tenant_{crm.tenant}"
    files = list(tmp_path_factory.getbasetemp().glob(f"web-sqlite*/tenants/{storage}.db"))
    if files:
        engine = sa.create_engine(f"sqlite:///{files[0]}")
        options: dict[str, Any] = {}
    else:
        assert PG_URL
        engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
        options = {"schema_translate_map": {None: storage}}
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    try:
        with engine.begin() as conn:
            done = conn.execution_options(**options).execute(
                sa.update(web_sessions)
                .where(web_sessions.c.user_id == uuid.UUID(user_id))
                .values(expires_at=past)
            )
            assert done.rowcount >= 1
    finally:
        engine.dispose()


async def test_an_expired_session_is_refused(
    crm: Crm, clients: list[httpx.Client], tmp_path_factory: pytest.TempPathFactory
) -> None:
    client, csrf = signed_in_with_csrf(clients, crm, "rep@web.test")
    assert client.get("/app/o/opportunity").status_code == 200
    _expire_sessions(crm, tmp_path_factory, crm.users["rep@web.test"])
    answer = client.get("/app/o/opportunity")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/app/login")
    made = client.post("/app/o/opportunity/views", data={"csrf_token": csrf, "label": "Late"})
    assert made.status_code == 303 and made.headers["location"].startswith("/app/login")
    fragment = client.get("/app/o/opportunity", headers={"hx-request": "true"})
    assert fragment.status_code == 401 and fragment.headers["hx-redirect"] == "/app/login"


async def test_a_huge_form_is_refused_before_it_is_read(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    """FastAPI parses a route's form before the session is checked: without a limit anyone
    could make the server hold 1,000 fields of 1 MB each per request."""
    client, csrf = signed_in_with_csrf(clients, crm, "rep@web.test")
    anonymous = httpx.Client(base_url=crm.url, timeout=60)
    clients.append(anonymous)
    piece = b"a=" + b"b" * 1_000_000 + b"&"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
        yield from [piece] * 3

    for who, path in (
        (anonymous, "/app/login"),
        (anonymous, "/app/language"),
        (client, "/app/o/opportunity/views"),
        (client, "/app/o/opportunity/new"),
    ):
        form = {"content-type": "application/x-www-form-urlencoded", "x-csrf-token": csrf}
        for body in (piece * 3, chunks()):
            answer = who.post(path, content=body, headers=form)
            assert answer.status_code in (400, 413), (path, answer.status_code)
            assert answer.headers["content-type"].startswith("text/html")
    # The API's token endpoint takes a form too, from anyone.
    token = anonymous.post(
        "/api/v1/auth/token",
        content=piece * 3,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert token.status_code in (400, 413), token.text[:300]
    assert crm.token("rep@web.test")  # an ordinary sign-in still works
    # A form of ordinary size still works.
    made = client.post("/app/o/opportunity/views", data={"csrf_token": csrf, "label": "Mine"})
    assert made.status_code == 303


async def test_a_hidden_field_shows_nowhere_not_even_in_history(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    roles = json.loads((EXAMPLES / "crm-core" / "roles.json").read_text(encoding="utf-8"))
    rep_role = next(r for r in roles if r["api_name"] == "sales_rep")
    rep_role["fields"]["opportunity"]["next_step"] = "hidden"
    secret = f"Hidden step {uuid.uuid4().hex[:8]}"
    with crm.api() as api:
        applied = api.post("/api/v1/metadata/apply?confirm=true", json={"roles": [rep_role]})
        assert applied.status_code in (200, 201), applied.text
        for name in ("next_step", "amount"):
            tracked = api.patch(
                f"/api/v1/metadata/objects/opportunity/fields/{name}?confirm=true",
                json={"track_history": True},
            )
            assert tracked.status_code == 200, tracked.text
    with crm.api(crm.token("rep@web.test")) as api:
        opp = _made(
            api.post(
                "/api/v1/data/opportunity",
                json={"name": "Rep deal with a secret", "stage": "qualify"},
            )
        )
    with crm.api(crm.token("manager@web.test")) as api:  # the manager may edit the rep's
        changed = api.patch(
            f"/api/v1/data/opportunity/{opp['id']}",
            json={"next_step": secret, "amount": 5},
            headers={"If-Match": str(opp["version"])},
        )
        assert changed.status_code == 200, changed.text
    manager, _ = signed_in_with_csrf(clients, crm, "manager@web.test")
    rid = opp["id"]
    assert secret in manager.get(f"/app/o/opportunity/{rid}").text  # in the manager's history
    grant_export(crm, "sales_rep")
    rep, csrf = signed_in_with_csrf(clients, crm, "rep@web.test")
    record = rep.get(f"/app/o/opportunity/{rid}")
    assert record.status_code == 200 and "Rep deal with a secret" in record.text
    assert 'data-kind="field"' in record.text  # the amount's history is drawn for the rep
    for path, params in (
        (f"/app/o/opportunity/{rid}", {}),
        (f"/app/o/opportunity/{rid}/edit", {}),
        ("/app/o/opportunity", {"columns": "name,next_step"}),
        ("/app/o/opportunity", {"where": f"next_step == '{secret}'"}),
        ("/app/o/opportunity", {"order_by": "next_step"}),
        ("/app/o/opportunity/kanban", {}),
        ("/app/search", {"q": "Hidden step"}),
        ("/app/o/opportunity/new", {"next_step": "planted"}),
    ):
        answer = rep.get(path, params=params)
        assert answer.status_code < 500, (path, answer.text[:300])
        shown = answer.text.replace(secret, "") if "where" in params else answer.text
        assert secret not in shown and "Next Step" not in shown, path
    # A filter on the hidden field is refused: it would tell its value, row by row.
    probe = rep.get("/app/o/opportunity", params={"where": f"next_step == '{secret}'"})
    assert probe.status_code == 422 and "Rep deal with a secret" not in probe.text
    exported = rep.post(
        "/app/o/opportunity/export", data={"csrf_token": csrf, "columns": "name,next_step"}
    )
    assert secret not in exported.text


async def test_cookies_are_secure_behind_https(crm: Crm, clients: list[httpx.Client]) -> None:
    """Behind a TLS proxy on this host (X-Forwarded-Proto), every cookie is Secure."""
    https = {"X-Forwarded-Proto": "https"}
    client = httpx.Client(base_url=crm.url, timeout=30, headers=https)
    clients.append(client)
    form = client.get("/app/login")
    token = form.headers["set-cookie"].split("metacrm_login_csrf=")[1].split(";")[0]
    assert "Secure" in form.headers["set-cookie"]
    signed = client.post(
        "/app/login",
        data={
            "tenant": crm.tenant,
            "username": "rep@web.test",
            "password": crm.password,
            "csrf_token": token,
        },
        headers={"Cookie": f"metacrm_login_csrf={token}"},
    )
    assert signed.status_code == 303, signed.text
    session = next(c for c in signed.headers.get_list("set-cookie") if "metacrm_session=" in c)
    assert "Secure" in session and "HttpOnly" in session and "SameSite=lax" in session


async def test_signing_in_returns_to_the_page_asked_for_with_its_query(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    client = httpx.Client(base_url=crm.url, timeout=30)
    clients.append(client)
    asked = "/app/o/opportunity?where=amount > 5&order_by=-amount"
    bounced = client.get(asked)
    assert bounced.status_code == 303
    login = bounced.headers["location"]
    assert login.startswith("/app/login?next=")
    next_value = httpx.URL(login).params["next"]
    sent = bounced.request.url.raw_path.decode()  # the path and query, as sent
    assert next_value == sent
    signed = _sign_in_with_next(client, crm, next_value)
    assert signed.status_code == 303 and signed.headers["location"] == sent
    assert client.get(sent).status_code == 200


async def test_colleagues_e_mail_addresses_are_not_shown(
    crm: Crm, clients: list[httpx.Client]
) -> None:
    """The owner and share choices name colleagues as the API's directory does: by name,
    never by e-mail address (a user named by an address shows its local part)."""
    with crm.api(crm.token("rep@web.test")) as api:
        opp = _made(api.post("/api/v1/data/opportunity", json={"name": "Mine", "stage": "qualify"}))
    rep, _ = signed_in_with_csrf(clients, crm, "rep@web.test")
    record = rep.get(f"/app/o/opportunity/{opp['id']}")
    assert record.status_code == 200 and 'name="owner_id"' in record.text
    listed = rep.get("/app/o/opportunity")
    assert listed.status_code == 200
    for page in (record.text, listed.text):
        assert "Mia Manager" in page
        for email in ("manager@web.test", crm.admin):
            assert email not in page
