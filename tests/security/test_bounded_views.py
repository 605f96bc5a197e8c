"""Callers cannot grow a tenant's cached views: languages and query values are bounded."""

from __future__ import annotations

import random
import string
from typing import Any

from metacrm.platform.auth import read_token
from tests.conftest import ACCOUNT, TenantClient

DEAL = {
    "api_name": "deal",
    "fields": [
        {"api_name": "name", "type": "text"},
        {
            "api_name": "kind",
            "type": "picklist",
            "values": [{"value": "direct"}, {"value": "partner"}],
        },
    ],
}
LAYOUTS = [
    {
        "api_name": "partner_deal",
        "object": "deal",
        "when": {"field": "kind", "values": ["partner"]},
        "sections": [{"title": "Main", "fields": [{"field": "name"}, {"field": "kind"}]}],
    }
]


async def _views(app: Any, tenant: TenantClient) -> int:
    """How many derived views the tenant's compiled metadata holds now."""
    state = app.state.metacrm
    identity = read_token(tenant.token, state.signing_key)
    async with state.tenant(identity, writes=False) as session:
        return len(session.ct.views)


def _noise(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=rng.randint(1, 8)))


async def test_invented_languages_and_query_values_add_no_views(
    app: Any, tenant: TenantClient
) -> None:
    await tenant.define(ACCOUNT, DEAL)
    applied = await tenant.post("/api/v1/metadata/apply", json={"layouts": LAYOUTS})
    assert applied.status_code == 200, applied.text
    rng = random.Random(10)
    for language in ("en", "zh-CN"):  # warm up: every view a language can need
        headers = {"Accept-Language": language}
        assert (await tenant.get("/api/v1/openapi.json", headers=headers)).status_code == 200
        for kind in ("direct", "partner"):
            form = await tenant.get("/api/v1/ui/deal/form", params={"kind": kind}, headers=headers)
            assert form.status_code == 200
    before = await _views(app, tenant)
    for i in range(300):
        headers = {"Accept-Language": f"{_noise(rng)}-{i}, {_noise(rng)};q=0.{rng.randint(1, 9)}"}
        assert (await tenant.get("/api/v1/openapi.json", headers=headers)).status_code == 200
        params = {"kind": rng.choice(["direct", "partner", _noise(rng)]), _noise(rng): _noise(rng)}
        form = await tenant.get("/api/v1/ui/deal/form", params=params, headers=headers)
        assert form.status_code == 200, form.text
    assert await _views(app, tenant) <= before + 2
