"""Fixtures: the app on SQLite and on PostgreSQL, HTTP clients, and fresh tenants."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

# Cheap password hashing for the suite (set before metacrm is imported; servers the
# tests start inherit it). Production keeps argon2's RFC 9106 profile.
os.environ.setdefault("METACRM_ARGON2_PROFILE", "CHEAPEST")

from metacrm.platform.app import create_app
from metacrm.platform.db import Database
from metacrm.platform.settings import Settings
from metacrm.runtime.records import utcnow

PG_URL = os.environ.get("METACRM_TEST_POSTGRES_URL")
PLATFORM_TOKEN = "platform-admin-test-token"
ADMIN_PASSWORD = "correct horse battery staple"

BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            not PG_URL, reason="PostgreSQL tests need METACRM_TEST_POSTGRES_URL (.ci/run sets it)"
        ),
    ),
]


# One app per backend for the whole session: every test makes its own tenant, so tests
# stay independent while the server start-up (migrations, engines) is paid once.
@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def settings(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        data_dir=tmp_path_factory.mktemp(f"data-{backend}"),
        database_url=PG_URL if backend == "postgresql" else None,
        platform_admin_token=PLATFORM_TOKEN,
        secret_key="test-signing-key-" + "x" * 32,
        # Tests run due jobs themselves, with a clock of their own (state.worker.drain).
        jobs_in_process=False,
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


class TenantClient:
    """An HTTP client logged in to one tenant as one user."""

    def __init__(self, http: httpx.AsyncClient, tenant: str, token: str) -> None:
        self.http, self.tenant, self.token = http, tenant, token
        self.user_id: str | None = None

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **(extra or {})}

    async def request(
        self, method: str, url: str, *, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        return await self.http.request(method, url, headers=self._headers(headers), **kw)

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", url, **kw)

    async def post(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("POST", url, **kw)

    async def put(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("PUT", url, **kw)

    async def patch(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("PATCH", url, **kw)

    async def delete(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kw)

    async def define(self, *objects: dict[str, Any], confirm: bool = False) -> httpx.Response:
        """Upsert object definitions through the metadata API; asserts success."""
        response = await self.post(
            "/api/v1/metadata/apply",
            params={"confirm": str(confirm).lower()},
            json={"objects": list(objects)},
        )
        assert response.status_code == 200, response.text
        return response

    async def add_user(
        self,
        email: str,
        *,
        role: str | None = None,
        manager_id: str | None = None,
        is_admin: bool = False,
    ) -> TenantClient:
        """Create a user of this tenant and return a client logged in as them."""
        body: dict[str, Any] = {
            "email": email,
            "password": ADMIN_PASSWORD,
            "is_admin": is_admin,
            "role": role,
        }
        if manager_id:
            body["manager_id"] = manager_id
        response = await self.post("/api/v1/users", json=body)
        assert response.status_code == 201, response.text
        user = TenantClient(
            self.http, self.tenant, await login(self.http, self.tenant, email, ADMIN_PASSWORD)
        )
        user.user_id = response.json()["id"]
        return user

    async def create(self, object_name: str, data: dict[str, Any]) -> dict[str, Any]:
        response = await self.post(f"/api/v1/data/{object_name}", json=data)
        assert response.status_code == 201, response.text
        return response.json()


async def new_tenant(
    http: httpx.AsyncClient, *, name: str | None = None, default_language: str | None = None
) -> TenantClient:
    """A fresh tenant with an administrator, logged in."""
    name = name or f"t{uuid.uuid4().hex[:12]}"
    admin = f"admin@{name}.test"
    body = {"name": name, "admin_email": admin, "admin_password": ADMIN_PASSWORD}
    if default_language is not None:
        body["default_language"] = default_language
    response = await http.post(
        "/api/v1/platform/tenants", headers={"Authorization": f"Bearer {PLATFORM_TOKEN}"}, json=body
    )
    assert response.status_code == 201, response.text
    token = await login(http, name, admin, ADMIN_PASSWORD)
    return TenantClient(http, name, token)


async def login(http: httpx.AsyncClient, tenant: str, email: str, password: str) -> str:
    response = await http.post(
        "/api/v1/auth/token", data={"tenant": tenant, "username": email, "password": password}
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture
async def tenant(client: httpx.AsyncClient) -> TenantClient:
    return await new_tenant(client)


class Jobs:
    """Runs a tenant's due jobs as the background worker would, at a time the test picks
    (the suite's app runs no worker of its own: `jobs_in_process` is off)."""

    def __init__(self, app: Any) -> None:
        self.state = app.state.metacrm

    @property
    def worker(self) -> Any:
        return self.state.worker

    async def run(
        self,
        tenant: TenantClient,
        *,
        at: dt.datetime | None = None,
        later: dt.timedelta = dt.timedelta(0),
    ) -> int:
        """Run every job of `tenant` due at `at` (default: now + `later`), and the jobs
        those cause; how many ran."""
        now = at or utcnow() + later
        return int(await self.worker.drain(Database.storage_name(tenant.tenant), now=now))


@pytest.fixture
def jobs(app: Any) -> Jobs:
    return Jobs(app)


@pytest.fixture(scope="session")
async def docs(backend: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    """The README tour and docs/*.md run in order against a real `make run` server."""
    from tests.doc_runner import docs_run

    directory = tmp_path_factory.mktemp(f"make-run-{backend}")
    database_url = PG_URL if backend == "postgresql" else None
    async with docs_run(directory, database_url=database_url) as run:
        yield run


ACCOUNT = {
    "api_name": "account",
    "label": {"en": "Account", "zh-CN": "客户"},
    "fields": [
        {"api_name": "name", "type": "text", "required": True, "max_length": 80},
        {"api_name": "code", "type": "text", "max_length": 20, "external_id": True},
        {
            "api_name": "industry",
            "type": "picklist",
            "values": [{"value": "tech"}, {"value": "retail"}, {"value": "old", "active": False}],
        },
        {"api_name": "revenue", "type": "currency", "min": 0},
        {"api_name": "active", "type": "boolean", "default": True},
    ],
}
OPPORTUNITY = {
    "api_name": "opportunity",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "account", "type": "lookup", "target": "account", "on_delete": "restrict"},
        {"api_name": "amount", "type": "currency"},
        {
            "api_name": "stage",
            "type": "picklist",
            "values": [{"value": "new"}, {"value": "won"}, {"value": "lost"}],
            "default": "new",
        },
        {"api_name": "close_date", "type": "date"},
    ],
}
LINE = {
    "api_name": "line",
    "fields": [
        {"api_name": "opportunity", "type": "master_detail", "target": "opportunity"},
        {"api_name": "quantity", "type": "number", "precision": 10, "scale": 2},
    ],
}


@pytest.fixture
async def crm(tenant: TenantClient) -> TenantClient:
    """A tenant with account, opportunity and line objects."""
    await tenant.define(ACCOUNT, OPPORTUNITY, LINE)
    return tenant
