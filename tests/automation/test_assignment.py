"""Assignment rules and queues through the API on both databases: round-robin over a queue
or a role, load-balanced, by field, first entry wins, inactive users skipped, batch
creates, on-demand reassignment, refused metadata, and fairness under concurrency."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from metacrm.platform.db import Database
from metacrm.runtime.automation.history import automation_runs
from tests.conftest import BACKENDS, TenantClient, new_tenant
from tests.servers import serve

LEAD = {
    "api_name": "lead",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "country", "type": "text"},
        {"api_name": "referrer", "type": "email"},
        {"api_name": "score", "type": "number"},
        {
            "api_name": "status",
            "type": "picklist",
            "values": [{"value": "new"}, {"value": "working"}, {"value": "closed"}],
            "default": "new",
        },
    ],
}
ROLES = [
    {
        "api_name": "sales_rep",
        "objects": {"lead": {"create": True, "read": True, "edit": True}},
    },
    {
        "api_name": "assigner",
        "permissions": ["manage_automation"],
        "objects": {"lead": {"read": True}},
    },
]


def rule(*entries: dict[str, Any], api_name: str = "lead_assignment") -> dict[str, Any]:
    return {"api_name": api_name, "object": "lead", "entries": list(entries)}


async def setup(
    admin: TenantClient,
    *rules: dict[str, Any],
    queues: list[dict[str, Any]] | None = None,
    objects: list[dict[str, Any]] | None = None,
) -> httpx.Response:
    document = {
        "objects": objects or [LEAD],
        "roles": ROLES,
        "queues": queues or [],
        "assignment_rules": list(rules),
    }
    return await admin.post("/api/v1/metadata/apply", json=document)


async def reps(admin: TenantClient, count: int, role: str = "sales_rep") -> list[TenantClient]:
    """The lead object and roles, and users rep1..repN (e-mails sorted as numbered) of `role`."""
    assert (await setup(admin)).status_code == 200
    return [await admin.add_user(f"rep{i}@acme.com", role=role) for i in range(1, count + 1)]


async def new_lead(client: TenantClient, **values: Any) -> dict[str, Any]:
    return await client.create("lead", {"name": "Lead", **values})


def codes(response: httpx.Response) -> set[tuple[str, str]]:
    return {(e["field"], e["code"]) for e in response.json().get("errors", [])}


async def test_round_robin_over_a_queue_in_its_order(tenant: TenantClient) -> None:
    r1, r2, r3 = await reps(tenant, 3)
    queue = {
        "api_name": "inbound",
        # Ids and e-mails both name members; the queue's order is the turn order.
        "members": [r2.user_id, "REP3@acme.com", "rep1@acme.com"],
    }
    applied = await setup(
        tenant, rule({"assign_to": {"kind": "queue", "queue": "inbound"}}), queues=[queue]
    )
    assert applied.status_code == 200, applied.text
    owners = [(await new_lead(tenant))["owner_id"] for _ in range(7)]
    turn = [r2.user_id, r3.user_id, r1.user_id]
    assert owners == turn + turn + turn[:1]
    # A rep creating a lead gets it assigned too: the rule, not the creator, decides.
    assert (await new_lead(r1))["owner_id"] == r3.user_id


async def test_round_robin_over_a_role_skips_inactive_users(tenant: TenantClient) -> None:
    r1, r2, r3 = await reps(tenant, 3)
    applied = await setup(tenant, rule({"assign_to": {"kind": "role", "role": "sales_rep"}}))
    assert applied.status_code == 200, applied.text
    first = [(await new_lead(tenant))["owner_id"] for _ in range(3)]
    assert first == [r1.user_id, r2.user_id, r3.user_id]
    off = await tenant.patch(f"/api/v1/users/{r2.user_id}", json={"is_active": False})
    assert off.status_code == 200, off.text
    later = [(await new_lead(tenant))["owner_id"] for _ in range(4)]
    assert r2.user_id not in later
    assert Counter(later) == {r1.user_id: 2, r3.user_id: 2}


async def test_load_balanced_counts_open_records_only(tenant: TenantClient) -> None:
    r1, r2, r3 = await reps(tenant, 3)
    target = {
        "kind": "role",
        "role": "sales_rep",
        "method": "load_balanced",
        "open_condition": "status != 'closed'",
    }
    applied = await setup(tenant, rule({"condition": "ISBLANK(country)", "assign_to": target}))
    assert applied.status_code == 200, applied.text
    # Named owners (and leads the rule does not take: a country) are left alone.
    for owner, count, status in ((r1, 2, "new"), (r2, 1, "working"), (r3, 4, "closed")):
        for _ in range(count):
            lead = await new_lead(tenant, owner_id=owner.user_id, status=status, country="FR")
            assert lead["owner_id"] == owner.user_id
    assert (await new_lead(tenant))["owner_id"] == r3.user_id  # no open lead yet
    for _ in range(2):
        await new_lead(tenant)
    listed = await tenant.get("/api/v1/data/lead", params={"where": "status != 'closed'"})
    open_by = Counter(r["owner_id"] for r in listed.json()["records"])
    assert open_by == {r1.user_id: 2, r2.user_id: 2, r3.user_id: 2}


async def test_first_matching_entry_wins_and_by_field(tenant: TenantClient) -> None:
    r1, r2, r3 = await reps(tenant, 3)
    applied = await setup(
        tenant,
        rule(
            {"condition": "country == 'DE'", "assign_to": {"kind": "user", "user": r2.user_id}},
            {
                "condition": "NOT(ISBLANK(referrer))",
                "assign_to": {"kind": "field", "field": "referrer"},
            },
            {"condition": "score > 50", "assign_to": {"kind": "user", "user": "rep3@acme.com"}},
            {"assign_to": {"kind": "user", "user": "rep1@acme.com"}},
        ),
    )
    assert applied.status_code == 200, applied.text
    both = await new_lead(tenant, country="DE", referrer="rep3@acme.com")
    assert both["owner_id"] == r2.user_id
    assert (await new_lead(tenant, referrer="rep3@acme.com"))["owner_id"] == r3.user_id
    # A referrer who is no user: that entry names nobody, so the next that holds decides.
    assert (await new_lead(tenant, referrer="x@nowhere.com", score=90))["owner_id"] == r3.user_id
    assert (await new_lead(tenant))["owner_id"] == r1.user_id


async def test_runs_are_recorded(app: Any, tenant: TenantClient) -> None:
    (r1,) = await reps(tenant, 1)
    only_de = rule(
        {"condition": "country == 'DE'", "assign_to": {"kind": "user", "user": "rep1@acme.com"}}
    )
    assert (await setup(tenant, only_de)).status_code == 200
    assigned = await new_lead(tenant, country="DE")
    kept = await new_lead(tenant, country="FR")
    assert kept["owner_id"] != r1.user_id  # no entry holds: the creator keeps it
    storage = Database.storage_name(tenant.tenant)
    async with app.state.metacrm.db.tenant(storage, writes=False) as conn:
        t = automation_runs
        rows = (await conn.execute(sa.select(t).where(t.c.source == "assignment"))).mappings()
        runs = {str(r["record_id"]): r for r in rows}
    done, skipped = runs[assigned["id"]], runs[kept["id"]]
    assert (done["outcome"], done["trigger"], done["name"]) == ("done", "create", "lead_assignment")
    assert done["detail"] == {"owner_id": r1.user_id, "entry": 0}
    assert skipped["outcome"] == "skipped"


async def test_leads_created_by_the_batch_endpoint_are_assigned(tenant: TenantClient) -> None:
    r1, r2 = await reps(tenant, 2)
    assert (
        await setup(tenant, rule({"assign_to": {"kind": "role", "role": "sales_rep"}}))
    ).status_code == 200
    body = {
        "records": [{"name": f"L{i}"} for i in range(4)] + [{"name": "N", "owner_id": r1.user_id}]
    }
    response = await tenant.post("/api/v1/data/lead/batch", json=body)
    assert response.status_code == 200, response.text
    ids = [r["id"] for r in response.json()["results"]]
    owners = [(await tenant.get(f"/api/v1/data/lead/{i}")).json()["owner_id"] for i in ids]
    assert owners == [r1.user_id, r2.user_id, r1.user_id, r2.user_id, r1.user_id]
    # A refused batch rolls its turns back with it: the next lead still goes to rep1.
    refused = await tenant.post("/api/v1/data/lead/batch", json={"records": [{"name": "A"}, {}]})
    assert refused.status_code == 422
    assert (await new_lead(tenant))["owner_id"] == r1.user_id


async def test_on_demand_reassignment(tenant: TenantClient) -> None:
    r1, r2, r3 = await reps(tenant, 3)
    assigner = await tenant.add_user("ops@acme.com", role="assigner")
    queue = {"api_name": "inbound", "members": ["rep2@acme.com", "rep3@acme.com"]}
    no_rule = await new_lead(tenant)
    assert (await setup(tenant, queues=[queue])).status_code == 200
    missing = await tenant.post(f"/api/v1/automation/assign/lead/{no_rule['id']}")
    assert missing.status_code == 409
    target = {"kind": "queue", "queue": "inbound"}
    assert (await setup(tenant, rule({"assign_to": target}), queues=[queue])).status_code == 200
    mine = await new_lead(tenant, owner_id=r1.user_id)
    other = await new_lead(tenant, owner_id=r1.user_id)
    assert mine["owner_id"] == r1.user_id  # a named owner is left alone
    # The owner may run the rule on their own record (they could transfer it by hand).
    done = await r1.post(f"/api/v1/automation/assign/lead/{mine['id']}")
    assert done.status_code == 200, done.text
    assert done.json() == {"id": mine["id"], "owner_id": r2.user_id, "changed": True, "entry": 0}
    record = (await tenant.get(f"/api/v1/data/lead/{mine['id']}")).json()
    assert (record["owner_id"], record["version"]) == (r2.user_id, 2)
    # Another rep may not: they may not transfer a record they do not own.
    refused = await r3.post(f"/api/v1/automation/assign/lead/{other['id']}")
    assert refused.status_code == 403
    # A manage_automation holder may, on any record, one or many at once.
    batch = await assigner.post(
        "/api/v1/automation/assign/lead", json={"ids": [other["id"], no_rule["id"]]}
    )
    assert batch.status_code == 200, batch.text
    assert [r["owner_id"] for r in batch.json()["results"]] == [r3.user_id, r2.user_id]
    history = await tenant.get(f"/api/v1/data/lead/{other['id']}/history")
    assert history.status_code == 200
    bad = await assigner.post(
        "/api/v1/automation/assign/lead", json={"ids": [other["id"], "nope"], "x": 1}
    )
    assert codes(bad) == {("x", "unknown-field")}
    bad = await assigner.post("/api/v1/automation/assign/lead", json={"ids": [other["id"], "nope"]})
    assert bad.status_code == 422
    assert codes(bad) == {("ids/1", "not-found")}
    again = (await tenant.get(f"/api/v1/data/lead/{other['id']}")).json()
    assert again["owner_id"] == r3.user_id  # all or nothing: the refused batch changed none


async def test_bad_metadata_is_refused_with_paths(tenant: TenantClient) -> None:
    base = "assignment_rules/lead_assignment"
    response = await setup(
        tenant,
        rule(
            {"condition": "score + 'x'", "assign_to": {"kind": "queue", "queue": "nobody"}},
            {"condition": "status", "assign_to": {"kind": "role", "role": "ghost"}},
            {"assign_to": {"kind": "field", "field": "score"}},
            {"assign_to": {"kind": "field", "field": "missing"}},
            {
                "assign_to": {
                    "kind": "user",
                    "user": "a@b.com",
                    "method": "load_balanced",
                    "open_condition": "nonsense > 1",
                }
            },
        ),
        rule({"assign_to": {"kind": "user", "user": "a@b.com"}}, api_name="second"),
        {
            "api_name": "elsewhere",
            "object": "ghost",
            "entries": [{"assign_to": {"kind": "user", "user": "a@b.com"}}],
        },
        queues=[{"api_name": "twice", "members": ["a@b.com", "A@b.com"]}],
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert codes(response) == {
        (f"{base}/entries/0/condition", "formula"),
        (f"{base}/entries/0/assign_to/queue", "unknown-queue"),
        (f"{base}/entries/1/condition", "formula"),
        (f"{base}/entries/1/assign_to/role", "unknown-role"),
        (f"{base}/entries/2/assign_to/field", "wrong-type"),
        (f"{base}/entries/3/assign_to/field", "unknown-field"),
        (f"{base}/entries/4/assign_to/method", "not-a-group"),
        (f"{base}/entries/4/assign_to/open_condition", "formula"),
        ("assignment_rules/second/active", "duplicate-active"),
        ("assignment_rules/elsewhere/object", "unknown-object"),
        ("queues/twice/members", "duplicate-member"),
    }
    # Shape problems (a queue target without its queue) come back with their path too.
    shape = await setup(tenant, rule({"assign_to": {"kind": "queue"}}))
    assert shape.status_code == 422, shape.text


# The fairness test: a real server per database, 16 clients creating 1,000 leads at once.


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    with serve(request.param, tmp_path_factory.mktemp(f"assign-{request.param}")) as url:
        yield url


@pytest.mark.slow
async def test_concurrent_creates_are_assigned_fairly(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=120) as http:
        admin = await new_tenant(http)
        team = await reps(admin, 5)
        applied = await setup(admin, rule({"assign_to": {"kind": "role", "role": "sales_rep"}}))
        assert applied.status_code == 200, applied.text
        pending = iter(range(1000))

        async def client(worker: TenantClient) -> list[str]:
            owners = []
            for i in pending:  # the 16 tasks share one iterator: 1,000 creates in all
                owners.append((await new_lead(worker, country=str(i)))["owner_id"])
            return owners

        # 16 clients: the administrator and the reps, each through their own token.
        clients = [admin, *team] * 3
        results = await asyncio.gather(*(client(c) for c in clients[:16]))
    per_rep = Counter(owner for owners in results for owner in owners)
    assert sum(per_rep.values()) == 1000
    assert set(per_rep) == {rep.user_id for rep in team}
    assert max(per_rep.values()) - min(per_rep.values()) <= 1, per_rep
