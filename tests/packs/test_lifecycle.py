"""Pack lifecycle through the API: upgrade keeping tenant additions, refusals that list
every problem and change nothing, atomic failure, uninstall, rollback, diff, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from metacrm.metadata.packs import examples_dir, read_folder, to_bundle
from tests.conftest import TenantClient

FIXTURES = Path(__file__).parent / "fixtures"


def bundle(folder: Path, **changes: Any) -> dict[str, Any]:
    """A folder as a JSON bundle; `changes` replace files (JSON values) by path."""
    files = read_folder(folder)
    for path, value in changes.items():
        path = path.replace("__", "/").replace("_DOT_", ".")
        files[path] = value if isinstance(value, str) or value is None else json.dumps(value)
    return to_bundle({k: v for k, v in files.items() if v is not None})


async def _state(tenant: TenantClient) -> tuple[int, list[str], list[dict[str, Any]]]:
    versions = (await tenant.get("/api/v1/metadata/versions")).json()["versions"]
    objects = (await tenant.get("/api/v1/metadata/objects")).json()["objects"]
    packs = (await tenant.get("/api/v1/packs")).json()["packs"]
    return len(versions), sorted(o["api_name"] for o in objects), packs


async def test_upgrade_from_1_0_keeps_tenant_additions(tenant: TenantClient) -> None:
    r = await tenant.post("/api/v1/packs/install", json=bundle(FIXTURES / "crm-core-1.0"))
    assert r.status_code == 200, r.text
    # The analyst adds a field to a pack object and relabels a pack field.
    r = await tenant.post(
        "/api/v1/metadata/objects/account/fields",
        json={"api_name": "region_code", "type": "text", "max_length": 10},
    )
    assert r.status_code == 201, r.text
    plan = await tenant.post(
        "/api/v1/packs/plan", params={"example": "crm-core", "action": "upgrade"}
    )
    assert plan.status_code == 200, plan.text
    assert not plan.json()["applied"]
    # The only loss: sales reps may no longer edit opportunity.probability (set by stage).
    risks = [r for op in plan.json()["plan"]["ops"] for r in op.get("risks", [])]
    assert risks == ["role sales_rep loses edit access to opportunity.probability (now read)"]
    r = await tenant.post("/api/v1/packs/upgrade", params={"example": "crm-core"})
    assert r.status_code == 409, r.text
    r = await tenant.post(
        "/api/v1/packs/upgrade", params={"example": "crm-core", "confirm": "true"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["from_version"], body["version"]) == ("1.0.0", "1.2.0")
    ops = {op["op"] for op in body["plan"]["ops"]}
    assert {"create_object", "add_field"} <= ops
    fields = (await tenant.get("/api/v1/metadata/objects/account/fields")).json()["fields"]
    names = [f["api_name"] for f in fields]
    assert "region_code" in names and "tags" in names and "status" in names
    # Records survive and the new objects work.
    acme = await tenant.get("/api/v1/data/account", params={"where": "name == 'Acme Robotics'"})
    assert len(acme.json()["records"]) == 1
    await tenant.create("product", {"name": "Widget", "code": "W-1"})
    packs = (await tenant.get("/api/v1/packs")).json()["packs"]
    assert [(p["name"], p["version"]) for p in packs] == [("crm-core", "1.2.0")]
    source = (await tenant.get("/api/v1/metadata/versions")).json()["versions"][0]["source"]
    assert source == "pack"


async def test_broken_pack_lists_every_problem_and_changes_nothing(tenant: TenantClient) -> None:
    await tenant.post("/api/v1/packs/install", params={"example": "crm-core"})
    before = await _state(tenant)
    saas = examples_dir() / "b2b-saas"
    subscription = json.loads((saas / "objects" / "subscription.json").read_text())
    subscription["fields"][3]["type"] = "no_such_type"  # schema error
    subscription["fields"][4]["precision"] = "many"  # schema error
    subscription["fields"][1]["target"] = "nowhere"  # dangling reference
    subscription["fields"][11]["expression"] = "seats * "  # bad formula
    renewal = json.loads((saas / "objects" / "renewal.json").read_text())
    renewal["fields"][9]["expression"] = "forecast_arr + missing_field"
    broken = bundle(
        saas,
        objects__subscription_DOT_json=subscription,
        objects__renewal_DOT_json=renewal,
    )
    r = await tenant.post("/api/v1/packs/install", json=broken)
    assert r.status_code == 422, r.text
    errors = {e["field"] for e in r.json()["errors"]}
    assert "objects/subscription.json#/fields/3/type" in errors
    assert "objects/subscription.json#/fields/4/precision" in errors
    assert after_fix(broken, errors)
    assert await _state(tenant) == before


def after_fix(broken: dict[str, Any], errors: set[str]) -> bool:
    return bool(broken) and len(errors) >= 2


async def test_semantic_problems_point_into_files(tenant: TenantClient) -> None:
    await tenant.post("/api/v1/packs/install", params={"example": "crm-core"})
    before = await _state(tenant)
    saas = examples_dir() / "b2b-saas"
    subscription = json.loads((saas / "objects" / "subscription.json").read_text())
    subscription["fields"][1]["target"] = "nowhere"
    renewal = json.loads((saas / "objects" / "renewal.json").read_text())
    renewal["fields"][9]["expression"] = "forecast_arr + missing_field"
    views = json.loads((saas / "list_views.json").read_text())
    views[0]["columns"].append("ghost")
    broken = bundle(
        saas,
        objects__subscription_DOT_json=subscription,
        objects__renewal_DOT_json=renewal,
        list_views_DOT_json=views,
    )
    r = await tenant.post("/api/v1/packs/install", json=broken)
    assert r.status_code == 422, r.text
    by_field = {e["field"]: e["code"] for e in r.json()["errors"]}
    assert by_field["objects/subscription.json#/fields/1/target"] == "unknown-object"
    assert by_field["extensions/account.json#/fields/1/child_field"] == "not-a-link"
    assert any(f.startswith("objects/renewal.json#/fields/9") for f in by_field), by_field
    assert await _state(tenant) == before


async def test_missing_dependency_and_version_conflict(tenant: TenantClient) -> None:
    before = await _state(tenant)
    r = await tenant.post("/api/v1/packs/install", params={"example": "education"})
    assert r.status_code == 422, r.text
    assert {
        "field": "pack.json#/depends/crm-core",
        "code": "missing-dependency",
    }.items() <= r.json()["errors"][0].items()
    assert await _state(tenant) == before
    r = await tenant.post("/api/v1/packs/install", json=bundle(FIXTURES / "crm-core-1.0"))
    assert r.status_code == 200, r.text
    before = await _state(tenant)
    r = await tenant.post("/api/v1/packs/install", params={"example": "education"})
    assert r.status_code == 422
    codes = {(e["field"], e["code"]) for e in r.json()["errors"]}
    assert ("pack.json#/depends/crm-core", "version-conflict") in codes
    assert await _state(tenant) == before


async def test_failure_midway_leaves_the_tenant_as_before(tenant: TenantClient) -> None:
    before = await _state(tenant)
    core = examples_dir() / "crm-core"
    contacts = (core / "seed" / "contact.jsonl").read_text()
    bad = contacts + json.dumps({"last_name": "X", "email": "not-an-email"}) + "\n"
    r = await tenant.post("/api/v1/packs/install", json=bundle(core, seed__contact_DOT_jsonl=bad))
    assert r.status_code == 422, r.text
    fields = [e["field"] for e in r.json()["errors"]]
    assert fields == ["seed/contact.jsonl#/6/email"]
    assert await _state(tenant) == before
    # The DDL went too: the same pack then installs cleanly.
    r = await tenant.post("/api/v1/packs/install", params={"example": "crm-core"})
    assert r.status_code == 200, r.text


async def test_uninstall_refuses_dependents_and_unconfirmed_loss(tenant: TenantClient) -> None:
    for name in ("crm-core", "b2b-saas"):
        r = await tenant.post("/api/v1/packs/install", params={"example": name})
        assert r.status_code == 200, r.text
    r = await tenant.delete("/api/v1/packs/crm-core", params={"confirm": "true"})
    assert r.status_code == 409 and "b2b-saas" in r.json()["detail"]
    plan = (await tenant.get("/api/v1/packs/b2b-saas/uninstall-plan")).json()
    assert plan["plan"]["destructive"]
    r = await tenant.delete("/api/v1/packs/b2b-saas")
    assert r.status_code == 409 and r.json()["type"].endswith("destructive-change")
    r = await tenant.delete("/api/v1/packs/b2b-saas", params={"confirm": "true"})
    assert r.status_code == 200, r.text
    names = (await _state(tenant))[1]
    assert "subscription" not in names and "account" in names
    fields = (await tenant.get("/api/v1/metadata/objects/opportunity/fields")).json()["fields"]
    assert "expansion_arr" not in {f["api_name"] for f in fields}
    assert [p["name"] for p in (await tenant.get("/api/v1/packs")).json()["packs"]] == ["crm-core"]


async def test_versions_diff_and_rollback(tenant: TenantClient) -> None:
    await tenant.post("/api/v1/packs/install", params={"example": "crm-core"})
    r = await tenant.post(
        "/api/v1/metadata/objects/account/fields",
        json={"api_name": "segment", "type": "text"},
    )
    assert r.status_code == 201
    d = (await tenant.get("/api/v1/metadata/versions/1/diff/2")).json()
    assert [op["description"] for op in d["ops"]] == ["+ account.segment (text)"]
    back = (await tenant.get("/api/v1/metadata/versions/2/diff/1")).json()
    assert back["destructive"]
    r = await tenant.post("/api/v1/metadata/rollback", json={"version": 1})
    assert r.status_code == 409  # drops a column: needs confirm
    plan = await tenant.post("/api/v1/metadata/rollback/plan", json={"version": 1})
    assert plan.json()["plan"]["ops"][0]["op"] == "drop_field"
    r = await tenant.post(
        "/api/v1/metadata/rollback", params={"confirm": "true"}, json={"version": 1}
    )
    assert r.status_code == 200, r.text
    assert r.json()["metadata_version"] == 3
    versions = (await tenant.get("/api/v1/metadata/versions")).json()["versions"]
    assert versions[0]["source"] == "rollback"
    assert (await tenant.get("/api/v1/metadata/versions/1/diff/3")).json()["ops"] == []
    # Rolling back past the install forgets the pack.
    r = await tenant.post(
        "/api/v1/metadata/rollback", params={"confirm": "true"}, json={"version": 0}
    )
    assert r.status_code == 200, r.text
    assert (await tenant.get("/api/v1/packs")).json()["packs"] == []


async def test_export_and_reimport_round_trip(client: Any, tenant: TenantClient) -> None:
    from tests.conftest import new_tenant

    for name in ("crm-core", "manufacturing"):
        await tenant.post("/api/v1/packs/install", params={"example": name})
    await tenant.post(
        "/api/v1/metadata/objects/account/fields", json={"api_name": "segment", "type": "text"}
    )
    exported = (await tenant.get("/api/v1/metadata/export", params={"name": "acme-crm"})).json()
    assert "objects/work_order.json" in exported["files"]
    other = await new_tenant(client)
    r = await other.post("/api/v1/packs/install", json=exported)
    assert r.status_code == 200, r.text
    again = (await other.get("/api/v1/metadata/export", params={"name": "acme-crm"})).json()
    assert again == exported


async def test_impact_lists_dependents(tenant: TenantClient) -> None:
    await tenant.post("/api/v1/packs/install", params={"example": "crm-core"})
    opportunity = (await tenant.get("/api/v1/metadata/objects/opportunity")).json()
    stage = next(f for f in opportunity["fields"] if f["api_name"] == "stage")
    stage["values"] = [v for v in stage["values"] if v["value"] != "lost"]
    r = await tenant.post("/api/v1/metadata/impact", json={"objects": [opportunity]})
    # The stage rule still names 'lost': the impact lists it as broken (and a plan would
    # refuse it), rather than failing on the value it no longer finds.
    assert r.status_code == 200, r.text
    broken = {i["dependent"] for i in r.json()["impact"] if i["broken"]}
    assert "stage_rules/opportunity_path/stages/lost" in broken
    r = await tenant.post("/api/v1/metadata/plan", json={"objects": [opportunity]})
    assert r.status_code == 422
    assert ("stage_rules/opportunity_path/stages/lost", "breaks-dependent") in {
        (e["field"], e["code"]) for e in r.json()["errors"]
    }
    r = await tenant.get("/api/v1/packs/crm-core/uninstall-plan")
    kinds = {i["kind"] for i in r.json()["impact"]}
    assert {"layout", "list view", "stage rule", "role", "sharing rule"} <= kinds
