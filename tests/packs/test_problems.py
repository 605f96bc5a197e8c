"""A pack's problems come all at once: a file that cannot be read hides nothing else."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import TenantClient
from tests.packs.test_lifecycle import FIXTURES, bundle


def _fixture(path: str) -> object:
    return json.loads((FIXTURES / "crm-core-1.0" / Path(path)).read_text(encoding="utf-8"))


async def test_invalid_json_in_one_file_hides_no_other_problem(tenant: TenantClient) -> None:
    contact = _fixture("objects/contact.json")
    assert isinstance(contact, dict)
    account_link = next(f for f in contact["fields"] if f["api_name"] == "account")
    account_link["target"] = "nowhere"  # a dangling reference in another file
    full_name = next(f for f in contact["fields"] if f["api_name"] == "full_name")
    full_name["expression"] = "first_name + missing_field"  # a formula that does not check
    views = _fixture("list_views.json")
    assert isinstance(views, list)
    views[0]["columns"].append("ghost")  # a list view placing an unknown field
    broken = bundle(
        FIXTURES / "crm-core-1.0",
        objects__campaign_DOT_json="{ this is not JSON",
        objects__contact_DOT_json=contact,
        list_views_DOT_json=views,
    )
    for url in ("/api/v1/packs/plan", "/api/v1/packs/install"):
        r = await tenant.post(url, json=broken)
        assert r.status_code == 422, r.text
        found = {(e["field"], e["code"]) for e in r.json()["errors"]}
        assert ("objects/campaign.json#", "json") in found, found
        assert ("objects/contact.json#/fields/3/target", "unknown-object") in found, found
        assert ("objects/contact.json#/fields/2/expression", "formula") in found, found
        assert ("list_views.json#/0/columns/ghost", "unknown-field") in found, found
        # Nothing is reported about campaign beyond its own file: the objects, layouts,
        # roles and seed that name it are not "unknown object" problems.
        assert not [f for f, code in found if code == "unknown-object" and "contact" not in f]
    assert (await tenant.get("/api/v1/packs")).json()["packs"] == []
