"""Login throttling by user name and client address: an attacker slows only themselves."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from metacrm.platform.login import get_clock
from tests.conftest import ADMIN_PASSWORD, TenantClient


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock(app: Any) -> Any:
    fake = FakeClock()
    app.dependency_overrides[get_clock] = lambda: fake
    yield fake
    app.dependency_overrides.pop(get_clock, None)


@pytest.fixture
async def attacker(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4711))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_failures_slow_only_the_address_that_makes_them(
    tenant: TenantClient, client: httpx.AsyncClient, attacker: httpx.AsyncClient, clock: FakeClock
) -> None:
    admin = f"admin@{tenant.tenant}.test"

    async def log_in(http: httpx.AsyncClient, password: str) -> int:
        form = {"tenant": tenant.tenant, "username": admin, "password": password}
        return (await http.post("/api/v1/auth/token", data=form)).status_code

    for _ in range(5):
        assert await log_in(attacker, "guess") == 401
    assert await log_in(attacker, ADMIN_PASSWORD) == 429  # even the right password waits
    # The administrator, from their own address, is not locked out.
    assert await log_in(client, ADMIN_PASSWORD) == 200
    # The attacker waits a minute, then each further failure doubles the wait.
    clock.advance(59)
    assert await log_in(attacker, "guess") == 429
    clock.advance(2)
    assert await log_in(attacker, "guess") == 401
    clock.advance(119)
    assert await log_in(attacker, "guess") == 429
    clock.advance(2)
    assert await log_in(attacker, "guess") == 401
    clock.advance(239)
    assert await log_in(attacker, ADMIN_PASSWORD) == 429
    clock.advance(2)
    assert await log_in(attacker, ADMIN_PASSWORD) == 200
    # A success clears that address's count.
    assert await log_in(attacker, "guess") == 401
    assert await log_in(attacker, ADMIN_PASSWORD) == 200
