"""Record access through relations, on both databases: a lookup reaches only what its reader may."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import TenantClient
from tests.security.test_record_access import names

ACCOUNT = {
    "api_name": "account",
    "sharing": "private",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "tier", "type": "number"},
        {"api_name": "parent", "type": "lookup", "target": "account"},
        {"api_name": "label", "type": "formula", "returns": "text", "expression": "name + '!'"},
        {
            "api_name": "deal_count",
            "type": "rollup",
            "child_object": "deal",
            "child_field": "account",
            "aggregate": "count",
        },
    ],
}
DEAL = {
    "api_name": "deal",
    "sharing": "private",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "account", "type": "lookup", "target": "account"},
        # A cross-object formula is a value of the deal: every reader of the deal sees it.
        {
            "api_name": "account_name",
            "type": "formula",
            "returns": "text",
            "expression": "account.name",
        },
    ],
}
FULL = {"create": True, "read": True, "edit": True, "delete": True}
ROLES = [
    {"api_name": "rep", "objects": {"deal": FULL, "account": FULL}},
    {"api_name": "auditor", "objects": {"deal": {"read": True}}},
]
SHARING = [
    {
        "api_name": "top_tier_deals",
        "object": "deal",
        "criteria": "account.tier > 5",
        "share_with": {"role": "auditor"},
        "access": "read",
    }
]


@dataclass
class World:
    admin: TenantClient
    alice: TenantClient
    bob: TenantClient
    auditor: TenantClient
    secret: dict[str, Any]  # alice's account, invisible to bob
    mine: dict[str, Any]  # bob's account, whose parent is alice's
    ids: dict[str, str]  # bob's deals by name


@pytest.fixture
async def world(tenant: TenantClient) -> World:
    applied = await tenant.post(
        "/api/v1/metadata/apply",
        json={"objects": [ACCOUNT, DEAL], "roles": ROLES, "sharing_rules": SHARING},
    )
    assert applied.status_code == 200, applied.text
    alice = await tenant.add_user("alice@x.test", role="rep")
    bob = await tenant.add_user("bob@x.test", role="rep")
    auditor = await tenant.add_user("auditor@x.test", role="auditor")
    secret = await alice.create("account", {"name": "Secret Co", "tier": 7})
    mine = await tenant.create(
        "account", {"name": "Bob Co", "parent": secret["id"], "owner_id": bob.user_id}
    )
    ids = {}
    for name, account in (("on secret", secret["id"]), ("on mine", mine["id"]), ("empty", None)):
        deal = await tenant.create(
            "deal", {"name": name, "account": account, "owner_id": bob.user_id}
        )
        ids[name] = deal["id"]
    return World(tenant, alice, bob, auditor, secret, mine, ids)


async def test_a_where_through_an_invisible_lookup_reads_it_as_empty(world: World) -> None:
    secret_id, alice_id = world.secret["id"], world.alice.user_id
    # Alice, of the same role, runs each filter first: what is kept per role binds no user.
    for where in (
        "account.name == 'Secret Co'",
        "account.tier > 5",
        "account.tier >= 7 and account.tier < 8",
        f"account.owner_id == '{alice_id}'",
        f"account.id == '{secret_id}'",
        "account.label == 'Secret Co!'",
        "account.deal_count > 0",
        "ISBLANK(account.name)",
        "account.name != 'Bob Co'",
        "account.parent.name == 'Secret Co'",
        "ISBLANK(account.parent.name)",
        f"account.parent.id == '{secret_id}'",
    ):
        await names(world.alice, where=where)
        seen = await names(world.bob, where=where)
        # The hop to alice's account behaves exactly like the deal with no account.
        assert ("on secret" in seen) == ("empty" in seen), (where, seen)
    assert await names(world.bob, where="account.name == 'Secret Co'") == []
    assert await names(world.bob, where="account.tier > 5") == []
    assert await names(world.bob, where="ISBLANK(account.name)") == ["empty", "on secret"]
    # Two hops: bob sees his account, not its parent.
    assert await names(world.bob, where="account.parent.name == 'Secret Co'") == []
    assert await names(world.bob, where="account.name == 'Bob Co'") == ["on mine"]
    assert await names(world.bob, "account", where="ISBLANK(parent.name)") == ["Bob Co"]
    # Those who may read the account still filter on it; the administrator on everything.
    assert await names(world.admin, where="account.parent.name == 'Secret Co'") == ["on mine"]
    assert await names(world.admin, where="account.name == 'Secret Co'") == ["on secret"]


async def test_fields_through_a_lookup_follow_the_same_access(world: World) -> None:
    response = await world.bob.get(
        "/api/v1/data/deal",
        params={"fields": "name,account.name,account.label,account.tier,account.deal_count"},
    )
    by_name = {r["name"]: r for r in response.json()["records"]}
    for field in ("account.name", "account.label", "account.tier", "account.deal_count"):
        assert by_name["on secret"][field] is None, field
    assert by_name["on mine"]["account.name"] == "Bob Co"
    assert by_name["on mine"]["account.label"] == "Bob Co!"
    assert by_name["on mine"]["account.deal_count"] == 1
    # A self-lookup: the parent of bob's account is alice's, so it expands to null.
    accounts = await world.admin.get("/api/v1/data/account", params={"fields": "name,parent.name"})
    parents = {r["name"]: r["parent.name"] for r in accounts.json()["records"]}
    assert parents == {"Bob Co": "Secret Co", "Secret Co": None}
    mine = await world.bob.get("/api/v1/data/account", params={"fields": "name,parent.name"})
    assert mine.json()["records"] == [
        {"id": world.mine["id"], "name": "Bob Co", "parent.name": None}
    ]


async def test_lookups_cannot_be_sorted_on(world: World) -> None:
    response = await world.bob.get("/api/v1/data/deal", params={"order_by": "account.name"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["code"] == "unknown-field"


async def test_a_formula_field_and_a_sharing_rule_keep_their_own_value(world: World) -> None:
    # A cross-object formula is the deal's value, read and filtered alike by every reader.
    record = (await world.bob.get(f"/api/v1/data/deal/{world.ids['on secret']}")).json()
    assert record["account_name"] == "Secret Co"
    assert await names(world.bob, where="account_name == 'Secret Co'") == ["on secret"]
    # Sharing-rule criteria define access, so they see every account: the auditor, who may
    # read no account at all, receives the deal on alice's tier-7 account.
    assert await names(world.auditor) == ["on secret"]


async def test_a_deleted_target_reads_as_an_empty_lookup(world: World) -> None:
    alice = world.alice
    old = await alice.create("account", {"name": "Old Co", "tier": 9})
    deal = await alice.create("deal", {"name": "on old", "account": old["id"]})
    # The deal goes to the recycle bin, then its account (no live deal holds it); the
    # deal comes back, still naming the deleted account.
    assert (await alice.delete(f"/api/v1/data/deal/{deal['id']}")).status_code == 204
    assert (await alice.delete(f"/api/v1/data/account/{old['id']}")).status_code == 204
    assert (await alice.post(f"/api/v1/data/deal/{deal['id']}/restore")).status_code == 200
    restored = (await alice.get(f"/api/v1/data/deal/{deal['id']}")).json()
    assert restored["account"] == old["id"]
    for client in (alice, world.admin):
        assert await names(client, where="account.name == 'Old Co'") == []
        assert await names(client, where="account.tier > 8") == []
        assert "on old" in await names(client, where="ISBLANK(account.name)")
        expanded = await client.get(
            "/api/v1/data/deal", params={"fields": "name,account.name", "where": "name == 'on old'"}
        )
        assert expanded.json()["records"] == [
            {"id": deal["id"], "name": "on old", "account.name": None}
        ]


# ------------------------------------------------------------------ master-detail

PROJECT = {
    "api_name": "project",
    "sharing": "private",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {
            "api_name": "hours",
            "type": "rollup",
            "child_object": "task",
            "child_field": "project",
            "aggregate": "sum",
            "field": "hours",
        },
    ],
}
TASK = {
    "api_name": "task",
    "sharing": "public_read_write",  # ignored: a detail's access is its master's
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "project", "type": "master_detail", "target": "project"},
        {"api_name": "hours", "type": "number"},
    ],
}
STEP = {
    "api_name": "step",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "task", "type": "master_detail", "target": "task"},
    ],
}
PROJECT_ROLES = [
    {"api_name": "rep", "objects": {"project": FULL, "task": FULL, "step": FULL}},
    # Edits projects but only reads tasks: the child's object permissions still apply.
    {
        "api_name": "lead",
        "objects": {"project": FULL, "task": {"read": True}, "step": {"read": True}},
    },
]


@dataclass
class Projects:
    admin: TenantClient
    alice: TenantClient
    bob: TenantClient
    lead: TenantClient
    project: str  # alice's private project
    task: str  # a task of it, owned by bob
    step: str  # a step of that task, owned by bob


@pytest.fixture
async def projects(tenant: TenantClient) -> Projects:
    applied = await tenant.post(
        "/api/v1/metadata/apply",
        json={"objects": [PROJECT, TASK, STEP], "roles": PROJECT_ROLES},
    )
    assert applied.status_code == 200, applied.text
    alice = await tenant.add_user("alice@x.test", role="rep")
    bob = await tenant.add_user("bob@x.test", role="rep")
    lead = await tenant.add_user("lead@x.test", role="lead")
    project = await alice.create("project", {"name": "Private"})
    task = await tenant.create(
        "task", {"name": "T", "project": project["id"], "hours": 5, "owner_id": bob.user_id}
    )
    step = await tenant.create("step", {"name": "S", "task": task["id"], "owner_id": bob.user_id})
    return Projects(tenant, alice, bob, lead, project["id"], task["id"], step["id"])


async def hours(p: Projects) -> Any:
    return (await p.alice.get(f"/api/v1/data/project/{p.project}")).json()["hours"]


async def test_a_detail_under_an_invisible_master_is_invisible(projects: Projects) -> None:
    p, bob = projects, projects.bob
    for object_name, record_id in (("task", p.task), ("step", p.step)):
        url = f"/api/v1/data/{object_name}/{record_id}"
        assert (await bob.get(url)).status_code == 404, object_name
        assert await names(bob, object_name) == []
        assert (await bob.patch(url, json={"name": "x"})).status_code == 404
        assert (await bob.delete(url)).status_code == 404
    assert (await bob.patch(f"/api/v1/data/task/{p.task}", json={"hours": 99})).status_code == 404
    created = await bob.post(
        "/api/v1/data/task", json={"name": "mine", "project": p.project, "hours": 50}
    )
    assert created.status_code == 422 and created.json()["errors"][0] == {
        "field": "project",
        "code": "lookup-target",
        "message": f"no project record you may edit has id {p.project}",
    }
    assert await hours(p) == "5"  # the roll-up is untouched
    # A where through the master is as blind as the master itself.
    assert await names(bob, "step", where="task.name == 'T'") == []
    # Alice, who owns the project, reads and edits the tasks bob owns.
    assert await names(p.alice, "task") == ["T"]
    assert await names(p.alice, "step") == ["S"]
    assert (
        await p.alice.patch(f"/api/v1/data/task/{p.task}", json={"hours": 6})
    ).status_code == 200
    assert await hours(p) == "6"


async def test_a_read_only_master_gives_read_only_details(projects: Projects) -> None:
    p, bob = projects, projects.bob
    share = await p.alice.post(
        f"/api/v1/data/project/{p.project}/shares", json={"user_id": bob.user_id, "access": "read"}
    )
    assert share.status_code == 201, share.text
    assert (await bob.get(f"/api/v1/data/task/{p.task}")).status_code == 200
    assert (await bob.get(f"/api/v1/data/step/{p.step}")).status_code == 200
    assert await names(bob, "task") == ["T"]
    for object_name, record_id in (("task", p.task), ("step", p.step)):
        url = f"/api/v1/data/{object_name}/{record_id}"
        assert (await bob.patch(url, json={"name": "x"})).status_code == 403, object_name
        assert (await bob.delete(url)).status_code == 403, object_name
    created = await bob.post("/api/v1/data/task", json={"name": "n", "project": p.project})
    assert created.status_code == 422 and created.json()["errors"][0]["code"] == "lookup-target"
    assert await hours(p) == "5"
    # With edit access to the project, its details are bob's to change.
    edit = await p.alice.post(
        f"/api/v1/data/project/{p.project}/shares", json={"user_id": bob.user_id, "access": "edit"}
    )
    assert edit.status_code == 201, edit.text
    assert (await bob.patch(f"/api/v1/data/task/{p.task}", json={"hours": 7})).status_code == 200
    created = await bob.post(
        "/api/v1/data/task", json={"name": "n", "project": p.project, "hours": 1}
    )
    assert created.status_code == 201, created.text
    assert await hours(p) == "8"
    step = await bob.post("/api/v1/data/step", json={"name": "s2", "task": p.task})
    assert step.status_code == 201, step.text
    assert (await bob.delete(f"/api/v1/data/step/{p.step}")).status_code == 204


async def test_object_permissions_on_the_detail_still_apply(projects: Projects) -> None:
    p, lead = projects, projects.lead
    await p.alice.post(
        f"/api/v1/data/project/{p.project}/shares", json={"user_id": lead.user_id, "access": "edit"}
    )
    assert (await lead.get(f"/api/v1/data/task/{p.task}")).status_code == 200
    assert (await lead.patch(f"/api/v1/data/task/{p.task}", json={"hours": 1})).status_code == 403
    created = await lead.post("/api/v1/data/task", json={"name": "n", "project": p.project})
    assert created.status_code == 403


async def test_details_are_shared_only_through_their_master(projects: Projects) -> None:
    """Manual shares and sharing rules on a detail object would do nothing, so both are
    refused with a reason instead of being silently ignored."""
    p = projects
    share = await p.admin.post(
        f"/api/v1/data/task/{p.task}/shares", json={"user_id": p.bob.user_id, "access": "read"}
    )
    assert share.status_code == 422, share.text
    assert share.json()["errors"][0]["code"] == "detail-object"
    rule = {
        "api_name": "all_tasks",
        "object": "task",
        "criteria": "hours > 0",
        "share_with": {"role": "rep"},
        "access": "read",
    }
    refused = await p.admin.post("/api/v1/metadata/sharing-rules", json=rule)
    assert refused.status_code == 422, refused.text
    assert {(e["field"], e["code"]) for e in refused.json()["errors"]} == {
        ("sharing_rules/all_tasks/object", "detail-object")
    }
