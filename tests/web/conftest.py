"""Browser-test fixtures: a real server per database, tenants with the CRM pack, Chromium."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from metacrm.platform.db import SYSTEM_SCHEMA
from tests.conftest import ADMIN_PASSWORD, BACKENDS, PG_URL, PLATFORM_TOKEN
from tests.servers import serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags for a sandboxed machine with no network but loopback (see the machine notes).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (.ci/run installs it: make browser)",
)
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
#: `make screenshots` sets this: the browser tests then refresh docs/screenshots/.
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"
WRITE_SCREENSHOTS = os.environ.get("METACRM_WRITE_SCREENSHOTS") == "1"


@dataclass(frozen=True)
class WebSite:
    """The session's real server: its base URL, its database and its data directory."""

    url: str
    backend: str
    data_dir: Path


@pytest.fixture(scope="session", params=BACKENDS)
def web_site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebSite]:
    """A real `metacrm serve` on a loopback port, on SQLite or PostgreSQL, for the session."""
    data_dir = tmp_path_factory.mktemp(f"web-{request.param}")
    with serve(request.param, data_dir) as url:
        yield WebSite(url, request.param, data_dir)


@pytest.fixture(scope="session")
def web_server(web_site: WebSite) -> str:
    return web_site.url


@dataclass
class Crm:
    """A tenant of the web server with example packs installed, and its people."""

    url: str
    tenant: str
    admin_token: str
    #: email -> user id of the users made by `add_user`.
    users: dict[str, str] = field(default_factory=dict)
    password: str = ADMIN_PASSWORD

    @property
    def admin(self) -> str:
        return f"admin@{self.tenant}.test"

    def api(self, token: str | None = None) -> httpx.Client:
        """A client of the REST API, as the administrator unless `token` is given."""
        return httpx.Client(
            base_url=self.url,
            timeout=60,
            headers={"Authorization": f"Bearer {token or self.admin_token}"},
        )

    def token(self, email: str) -> str:
        response = httpx.post(
            f"{self.url}/api/v1/auth/token",
            data={"tenant": self.tenant, "username": email, "password": self.password},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def add_user(
        self, email: str, *, role: str | None, manager: str | None = None, full_name: str = ""
    ) -> str:
        body: dict[str, Any] = {
            "email": email,
            "password": self.password,
            "role": role,
            "full_name": full_name or email.split("@")[0].capitalize(),
        }
        if manager:
            body["manager_id"] = self.users[manager]
        with self.api() as api:
            response = api.post("/api/v1/users", json=body)
        assert response.status_code == 201, response.text
        self.users[email] = response.json()["id"]
        return self.users[email]

    def install(self, example: str, *, seed: bool = True) -> None:
        with self.api() as api:
            response = api.post(
                "/api/v1/packs/install",
                params={"example": example, "confirm": "true", "seed": str(seed).lower()},
            )
        assert response.status_code == 200, response.text


def new_crm(url: str, *packs: str, default_language: str | None = None) -> Crm:
    """A fresh tenant on the server at `url` with `packs` installed (with their seed)."""
    name = f"w{uuid.uuid4().hex[:10]}"
    body = {"name": name, "admin_email": f"admin@{name}.test", "admin_password": ADMIN_PASSWORD}
    if default_language:
        body["default_language"] = default_language
    created = httpx.post(
        f"{url}/api/v1/platform/tenants",
        headers={"Authorization": f"Bearer {PLATFORM_TOKEN}"},
        json=body,
        timeout=30,
    )
    assert created.status_code == 201, created.text
    crm = Crm(url, name, "")
    crm.admin_token = crm.token(crm.admin)
    for pack in packs:
        crm.install(pack)
    return crm


def clone_crm(site: WebSite, template: Crm) -> Crm:
    """A new tenant of `site` holding a copy of `template`'s storage (metadata, records,
    users; its administrator renamed after the new tenant), registered as `new_crm` does:
    the tenant `new_crm` with the same packs and users makes, without installing them again.
    The template's name (a "w" and 10 hex digits) only appears in its administrator's
    e-mail, so renaming it in the copy renames nothing else."""
    name = f"w{uuid.uuid4().hex[:10]}"
    source, target = f"tenant_{template.tenant}", f"tenant_{name}"
    if site.backend == "sqlite":
        tenants = site.data_dir / "tenants"
        with (
            closing(sqlite3.connect(tenants / f"{source}.db", timeout=30)) as old,
            closing(sqlite3.connect(tenants / f"{target}.db", timeout=30)) as new,
        ):
            old.backup(new)
            with new:
                new.execute(
                    "UPDATE mc_user SET email = replace(email, ?, ?), "
                    "full_name = replace(full_name, ?, ?)",
                    (template.tenant, name) * 2,
                )
        with closing(sqlite3.connect(site.data_dir / "system.db", timeout=30)) as system, system:
            system.execute(
                "INSERT INTO tenants (id, name, label, storage, default_language, status, "
                "created_at) SELECT ?, ?, ?, ?, default_language, status, created_at "
                "FROM tenants WHERE name = ?",
                (uuid.uuid4().hex, name, name, target, template.tenant),
            )
    else:
        assert PG_URL
        dump = _run(["pg_dump", "--no-owner", "--no-privileges", "--schema", source, PG_URL])
        register = (
            f"INSERT INTO {SYSTEM_SCHEMA}.tenants (id, name, label, storage, default_language, "
            f"status, created_at) SELECT gen_random_uuid(), '{name}', '{name}', '{target}', "
            f"default_language, status, created_at FROM {SYSTEM_SCHEMA}.tenants "
            f"WHERE name = '{template.tenant}';\n"
        )
        _run(
            ["psql", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", PG_URL],
            dump.replace(template.tenant, name) + register,
        )
    crm = Crm(site.url, name, "", users=dict(template.users))
    crm.admin_token = crm.token(crm.admin)
    return crm


def _run(command: list[str], given: str = "") -> str:
    done = subprocess.run(command, input=given, capture_output=True, text=True)
    assert done.returncode == 0, f"{command[0]}: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def crm_template(web_site: WebSite) -> Crm:
    """The session's crm-core tenant with its sample data, a manager and a rep who reports
    to them: never handed to a test, only copied (see `crm`)."""
    tenant = new_crm(web_site.url, "crm-core")
    tenant.add_user("manager@web.test", role="sales_manager", full_name="Mia Manager")
    tenant.add_user(
        "rep@web.test", role="sales_rep", manager="manager@web.test", full_name="Ray Rep"
    )
    return tenant


@pytest.fixture
def crm(web_site: WebSite, crm_template: Crm) -> Crm:
    """A tenant of its own with crm-core and its sample data; a manager and a rep who
    reports to them (a copy of the session's template: installing the pack per test
    cost seconds each)."""
    return clone_crm(web_site, crm_template)


@pytest.fixture
def clients() -> Iterator[list[httpx.Client]]:
    """Plain HTTP clients a test opens (see signed_in_client); closed after it."""
    opened: list[httpx.Client] = []
    yield opened
    for client in opened:
        client.close()


def signed_in_client(
    clients: list[httpx.Client], crm: Crm, email: str, *, timeout: float = 60
) -> httpx.Client:
    """A plain HTTP client that signed in through the sign-in form, as a browser does."""
    client = httpx.Client(base_url=crm.url, timeout=timeout)
    clients.append(client)
    client.get("/app/login")
    response = client.post(
        "/app/login",
        data={
            "tenant": crm.tenant,
            "username": email,
            "password": crm.password,
            "csrf_token": client.cookies["metacrm_login_csrf"],
        },
    )
    assert response.status_code == 303, response.text
    return client


def signed_in_with_csrf(
    clients: list[httpx.Client], crm: Crm, email: str, *, timeout: float = 60
) -> tuple[httpx.Client, str]:
    """signed_in_client, and the CSRF token of its session (read off the home page)."""
    client = signed_in_client(clients, crm, email, timeout=timeout)
    return client, page_csrf(client.get("/app").text)


def page_csrf(html: str) -> str:
    """The CSRF token a workspace page carries (its meta tag)."""
    found = re.search(r'name="csrf-token" content="([0-9a-f]+)"', html)
    assert found, html[:500]
    return found.group(1)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    """One headless Chromium for the session; each test opens its own context."""
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: make browser)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def context(browser: Any) -> AsyncIterator[Any]:
    """A fresh browser profile (cookies, storage) for one test."""
    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        await ctx.close()


async def sign_in(context: Any, crm: Crm, email: str) -> Any:
    """A page of `context` signed in to the workspace as `email`, on the home page."""
    page = await context.new_page()
    await page.goto(f"{crm.url}/app/login")
    await page.get_by_label("Company").fill(crm.tenant)
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(crm.password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{crm.url}/app")
    return page


async def screenshot(page: Any, name: str, tmp_path: Path) -> Path:
    """A screenshot of the page, kept in tmp_path (and docs/screenshots for make screenshots)."""
    path = tmp_path / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000
    if WRITE_SCREENSHOTS:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENSHOTS / f"{name}.png")
    return path


async def axe_findings(browser: Any, context: Any, url: str) -> list[dict[str, Any]]:
    """Serious and critical axe-core findings on the page at `url`, seen with the cookies of
    `context` (axe is injected into a CSP-bypassing copy of the session; the page stays as is)."""
    state = await context.storage_state()
    audit = await browser.new_context(storage_state=state, bypass_csp=True)
    try:
        page = await audit.new_page()
        await page.goto(url)
        await page.add_script_tag(path=str(AXE))
        result = await page.evaluate("async () => await axe.run(document)")
    finally:
        await audit.close()
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"][:3]]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
