"""Every example pack installs into a fresh tenant with its seed, and passes its own tests."""

from __future__ import annotations

from typing import Any

import pytest

from metacrm.metadata.packs import examples_dir, load_path
from metacrm.runtime.packs import run_pack_tests
from tests.conftest import TenantClient

EXAMPLES = ["crm-core", "b2b-saas", "manufacturing", "education"]


def _chain(name: str) -> list[str]:
    pack = load_path(examples_dir() / name)
    return [*(d for dep in pack.manifest.depends for d in _chain(dep)), name]


@pytest.mark.parametrize("name", EXAMPLES)
async def test_example_installs_with_its_seed(tenant: TenantClient, name: str) -> None:
    for step in _chain(name):
        response = await tenant.post("/api/v1/packs/install", params={"example": step})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["applied"] and body["metadata_version"] >= 1
        pack = load_path(examples_dir() / step)
        assert body["seeded"] == {o: len(rows) for o, rows in pack.seed.items() if rows}
    installed = (await tenant.get("/api/v1/packs")).json()["packs"]
    assert {p["name"] for p in installed} == set(_chain(name))
    for object_name, count in body["seeded"].items():
        listed = await tenant.get(f"/api/v1/data/{object_name}", params={"limit": 200})
        assert listed.status_code == 200, listed.text
        assert len(listed.json()["records"]) >= count  # education adds contacts to crm-core's


@pytest.mark.parametrize("name", EXAMPLES)
async def test_example_pack_tests_pass(app: Any, name: str) -> None:
    packs = [load_path(examples_dir() / n) for n in _chain(name)]
    assert packs[-1].tests, f"{name} carries no pack tests"
    results = await run_pack_tests(app.state.metacrm.db, packs)
    failed = [r.as_dict() for r in results if not r.passed]
    assert not failed
    assert len(results) == len(packs[-1].tests)
