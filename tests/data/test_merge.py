"""Merging duplicate records: children and history moved, dry run, undo, blockers, refusals."""

from __future__ import annotations

from typing import Any

from tests.conftest import TenantClient

ACCOUNT = {
    "api_name": "account",
    "fields": [
        {"api_name": "name", "type": "text", "required": True, "max_length": 80},
        {"api_name": "code", "type": "text", "max_length": 20, "external_id": True},
        {"api_name": "phone", "type": "phone", "track_history": True},
        {"api_name": "industry", "type": "text", "max_length": 40},
        {"api_name": "parent", "type": "lookup", "target": "account"},
    ],
}
CONTACT = {
    "api_name": "contact",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "account", "type": "lookup", "target": "account"},
    ],
}
OPPORTUNITY = {
    "api_name": "opportunity",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "account", "type": "lookup", "target": "account", "on_delete": "restrict"},
    ],
}
NOTE = {
    "api_name": "note",
    "fields": [
        {"api_name": "body", "type": "text"},
        {"api_name": "account", "type": "master_detail", "target": "account"},
    ],
}
OBJECTS = ("account", "contact", "opportunity", "note")
#: Stamps an undo moves forward (it is a new write): left out when comparing states.
STAMPS = {"version", "updated_at", "updated_by"}


async def _listing(tenant: TenantClient, *, stamps: bool = True) -> dict[str, Any]:
    """Every record of every object, live and in the recycle bin, by id."""
    state: dict[str, Any] = {}
    for name in OBJECTS:
        for where in ("", "/recycle-bin"):
            response = await tenant.get(f"/api/v1/data/{name}{where}", params={"limit": 200})
            assert response.status_code == 200, response.text
            for record in response.json()["records"]:
                kept = {k: v for k, v in record.items() if stamps or k not in STAMPS}
                state[f"{name}{where}/{record['id']}"] = kept
    return state


async def _world(tenant: TenantClient) -> dict[str, Any]:
    """Two duplicate accounts; the merged one with children, history and a comment."""
    await tenant.define(ACCOUNT, CONTACT, OPPORTUNITY, NOTE)
    keep = await tenant.create("account", {"name": "Acme", "code": "A1"})
    dup = await tenant.create(
        "account", {"name": "ACME Ltd", "code": "B1", "phone": "+86 10 1234", "industry": "tech"}
    )
    response = await tenant.patch(
        f"/api/v1/data/account/{dup['id']}", json={"phone": "+86 10 5678"}
    )
    assert response.status_code == 200, response.text
    mine = await tenant.create("contact", {"name": "Li", "account": keep["id"]})
    moved = await tenant.create("contact", {"name": "Wang", "account": dup["id"]})
    binned = await tenant.create("contact", {"name": "Zhao", "account": dup["id"]})
    assert (await tenant.delete(f"/api/v1/data/contact/{binned['id']}")).status_code == 204
    deal = await tenant.create("opportunity", {"name": "Big deal", "account": dup["id"]})
    note = await tenant.create("note", {"body": "met at fair", "account": dup["id"]})
    response = await tenant.post(
        f"/api/v1/data/account/{dup['id']}/comments", json={"body": "same firm as Acme"}
    )
    assert response.status_code == 201, response.text
    return {
        "keep": keep,
        "dup": dup,
        "mine": mine,
        "moved": moved,
        "binned": binned,
        "deal": deal,
        "note": note,
    }


async def test_merge_moves_children_history_and_undo_restores(tenant: TenantClient) -> None:
    w = await _world(tenant)
    keep, dup = w["keep"]["id"], w["dup"]["id"]
    before = await _listing(tenant)
    body = {"survivor": keep, "merged": [dup], "values": {"code": dup}}

    # The dry run says what would happen and changes nothing, not even a version.
    response = await tenant.post("/api/v1/data/account/merge", json=body | {"dry_run": True})
    assert response.status_code == 200, response.text
    preview = response.json()
    assert preview["dry_run"] is True and preview["id"] is None
    assert preview["children"] == {
        "contact": {"account": [w["moved"]["id"]]},
        "opportunity": {"account": [w["deal"]["id"]]},
        "note": {"account": [w["note"]["id"]]},
    }
    # code chosen; phone and industry blank on the survivor: the merged record's fill them.
    assert preview["changed"] == {"code": "B1", "phone": "+86 10 5678", "industry": "tech"}
    assert preview["survivor"]["name"] == "Acme"
    assert preview["moved_rows"] == {"mc_field_history": 1, "mc_comment": 1}
    assert preview["blockers"] == []
    assert await _listing(tenant) == before

    response = await tenant.post("/api/v1/data/account/merge", json=body)
    assert response.status_code == 201, response.text
    done = response.json()
    merge_id = done["id"]
    assert done["survivor"]["code"] == "B1" and done["survivor"]["phone"] == "+86 10 5678"
    assert done["moved_counts"] == {"contact": 1, "opportunity": 1, "note": 1}
    for name, key in (("contact", "moved"), ("opportunity", "deal"), ("note", "note")):
        record = (await tenant.get(f"/api/v1/data/{name}/{w[key]['id']}")).json()
        assert record["account"] == keep
    # The merged record is in the recycle bin; a child already there still points at it.
    assert (await tenant.get(f"/api/v1/data/account/{dup}")).status_code == 404
    binned = (await tenant.get("/api/v1/data/account/recycle-bin")).json()["records"]
    assert [r["id"] for r in binned] == [dup]
    deleted_contacts = (await tenant.get("/api/v1/data/contact/recycle-bin")).json()["records"]
    assert deleted_contacts[0]["account"] == dup
    # History and comments now tell the survivor's story.
    entries = (await tenant.get(f"/api/v1/data/account/{keep}/timeline")).json()["entries"]
    kinds = {e["kind"] for e in entries}
    assert {"field", "comment"} <= kinds, entries
    comments = (await tenant.get(f"/api/v1/data/account/{keep}/comments")).json()["comments"]
    assert [c["body"] for c in comments] == ["same firm as Acme"]
    # Audited, listed, readable.
    audit = (await tenant.get("/api/v1/audit", params={"action": "merge"})).json()["entries"]
    assert len(audit) == 1 and audit[0]["record_id"] == keep
    assert audit[0]["detail"]["merge_id"] == merge_id
    listed = (await tenant.get("/api/v1/merges", params={"object": "account"})).json()["merges"]
    assert [m["id"] for m in listed] == [merge_id]
    got = (await tenant.get(f"/api/v1/merges/{merge_id}")).json()
    assert got["merged_before"][dup]["name"] == "ACME Ltd" and got["undone_at"] is None
    assert {(m["object"], m["record_id"]) for m in got["moved"]} == {
        ("contact", w["moved"]["id"]),
        ("opportunity", w["deal"]["id"]),
        ("note", w["note"]["id"]),
    }

    # Undo puts every touched record back as it was (only the write stamps move on).
    response = await tenant.post(f"/api/v1/merges/{merge_id}/undo")
    assert response.status_code == 200, response.text
    assert response.json()["undone_at"] is not None
    strip = {k: {f: v for f, v in r.items() if f not in STAMPS} for k, r in before.items()}
    assert await _listing(tenant, stamps=False) == strip
    comments = (await tenant.get(f"/api/v1/data/account/{dup}/comments")).json()["comments"]
    assert [c["body"] for c in comments] == ["same firm as Acme"]
    assert (await tenant.get(f"/api/v1/data/account/{keep}/comments")).json()["comments"] == []
    history = (await tenant.get(f"/api/v1/data/account/{dup}/timeline")).json()["entries"]
    assert any(e["kind"] == "field" for e in history)
    again = await tenant.post(f"/api/v1/merges/{merge_id}/undo")
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    audit = (await tenant.get("/api/v1/audit", params={"action": "merge.undo"})).json()
    assert len(audit["entries"]) == 1


async def test_undo_refused_when_a_moved_child_was_re_pointed(tenant: TenantClient) -> None:
    w = await _world(tenant)
    keep, dup = w["keep"]["id"], w["dup"]["id"]
    response = await tenant.post(
        "/api/v1/data/account/merge", json={"survivor": keep, "merged": [dup]}
    )
    assert response.status_code == 201, response.text
    other = await tenant.create("account", {"name": "Other"})
    moved = w["moved"]["id"]
    response = await tenant.patch(f"/api/v1/data/contact/{moved}", json={"account": other["id"]})
    assert response.status_code == 200
    response = await tenant.post(f"/api/v1/merges/{await _last_merge(tenant)}/undo")
    assert response.status_code == 409, response.text
    problem = response.json()
    assert {(e["field"], e["code"]) for e in problem["errors"]} == {
        ("contact.account", "moved-since")
    }
    # Refused whole: the merged record is still in the recycle bin.
    assert (await tenant.get(f"/api/v1/data/account/{dup}")).status_code == 404


async def _last_merge(tenant: TenantClient) -> str:
    merges = (await tenant.get("/api/v1/merges")).json()["merges"]
    return str(merges[0]["id"])


async def test_pending_approval_blocks_the_merge(tenant: TenantClient) -> None:
    w = await _world(tenant)
    keep, dup = w["keep"]["id"], w["dup"]["id"]
    approver = await tenant.add_user("boss@x.test")
    flow = {
        "api_name": "check",
        "object": "account",
        "steps": [{"api_name": "boss", "approvers": [{"kind": "user", "user": "boss@x.test"}]}],
    }
    assert (await tenant.post("/api/v1/metadata/approval-flows", json=flow)).status_code == 201
    response = await tenant.post(f"/api/v1/data/account/{dup}/approvals", json={})
    assert response.status_code in (200, 201), response.text
    run_id = response.json()["id"]
    before = await _listing(tenant)
    body = {"survivor": keep, "merged": [dup]}
    response = await tenant.post("/api/v1/data/account/merge", json=body)
    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["errors"][0]["code"] == "approval-pending"
    assert run_id in problem["errors"][0]["message"]
    preview = (
        await tenant.post("/api/v1/data/account/merge", json=body | {"dry_run": True})
    ).json()
    assert preview["blockers"] == [
        {"object": "account", "record_id": dup, "approval_id": run_id, "flow": "check"}
    ]
    assert preview["children"]["contact"] == {"account": [w["moved"]["id"]]}
    assert await _listing(tenant) == before
    # Once decided, the run is history: the merge goes through and the run moves along.
    assert (await approver.post(f"/api/v1/approvals/{run_id}/approve", json={})).status_code == 200
    response = await tenant.post("/api/v1/data/account/merge", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["moved_rows"]["mc_approval"] == 1


async def test_refusals(tenant: TenantClient) -> None:
    w = await _world(tenant)
    keep, dup = w["keep"]["id"], w["dup"]["id"]
    url = "/api/v1/data/account/merge"

    async def refused(body: dict[str, Any], status: int) -> set[tuple[str, str]]:
        response = await tenant.post(url, json=body)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        return {(e["field"], e["code"]) for e in response.json().get("errors", [])}

    assert await refused({"survivor": keep, "merged": [keep]}, 422) == {("merged", "survivor")}
    assert await refused({"survivor": keep, "merged": []}, 422) == {("merged", "required")}
    third = await tenant.create("account", {"name": "Acme 3"})
    fourth = await tenant.create("account", {"name": "Acme 4"})
    many = [dup, third["id"], fourth["id"]]
    assert await refused({"survivor": keep, "merged": many}, 422) == {("merged", "max-items")}
    assert await refused({"survivor": keep, "merged": [dup, dup]}, 422) == {("merged", "duplicate")}
    assert await refused({"survivor": "x", "merged": [dup], "bogus": 1}, 422) == {
        ("survivor", "type"),
        ("bogus", "unknown-field"),
    }
    assert await refused(
        {"survivor": keep, "merged": [dup], "values": {"created_at": dup, "name": keep[:-1]}}, 422
    ) == {("values.name", "type")}
    assert await refused(
        {"survivor": keep, "merged": [dup], "values": {"created_at": dup}}, 422
    ) == {("values.created_at", "unknown-field")}
    assert await refused(
        {"survivor": keep, "merged": [dup], "values": {"name": third["id"]}}, 422
    ) == {("values.name", "not-merged")}
    # A record of another object, or no record at all: not found among the accounts.
    await refused({"survivor": keep, "merged": [w["mine"]["id"]]}, 404)
    await refused({"survivor": "0190c7a4-0000-7000-8000-000000000000", "merged": [dup]}, 404)
    response = await tenant.post(
        "/api/v1/data/nothing/merge", json={"survivor": keep, "merged": [dup]}
    )
    assert response.status_code == 404
    assert (await tenant.get("/api/v1/merges/nope")).status_code == 404

    # A rep who may edit but not delete accounts may not merge them.
    role = {
        "api_name": "rep",
        "objects": {"account": {"read": True, "create": True, "edit": True, "view_all": True}},
    }
    assert (await tenant.post("/api/v1/metadata/apply", json={"roles": [role]})).status_code == 200
    rep = await tenant.add_user("rep@x.test", role="rep")
    response = await rep.post(url, json={"survivor": keep, "merged": [dup]})
    assert response.status_code == 403, response.text
    # ... nor undo one, nor see merges of records they cannot read.
    assert (await tenant.post(url, json={"survivor": keep, "merged": [dup]})).status_code == 201
    merge_id = await _last_merge(tenant)
    assert (await rep.post(f"/api/v1/merges/{merge_id}/undo")).status_code == 403
    stranger = await tenant.add_user("none@x.test")
    assert (await stranger.get(f"/api/v1/merges/{merge_id}")).status_code == 404
    assert (await stranger.get("/api/v1/merges")).json() == {"merges": []}


async def test_three_records_and_a_self_lookup(tenant: TenantClient) -> None:
    await tenant.define(ACCOUNT, CONTACT, OPPORTUNITY, NOTE)
    keep = (await tenant.create("account", {"name": "Acme"}))["id"]
    second = (await tenant.create("account", {"name": "Acme Co", "parent": keep}))["id"]
    third = (await tenant.create("account", {"name": "ACME Co., Ltd.", "code": "C3"}))["id"]
    branch = (await tenant.create("account", {"name": "Acme Pudong", "parent": second}))["id"]
    body = {"survivor": keep, "merged": [second, third], "values": {"name": third}}
    response = await tenant.post("/api/v1/data/account/merge", json=body)
    assert response.status_code == 201, response.text
    merged = response.json()
    assert merged["survivor"]["name"] == "ACME Co., Ltd." and merged["survivor"]["code"] == "C3"
    # The branch follows the survivor; the merged record keeps its own lookup to it.
    assert merged["children"] == {"account": {"parent": [branch]}}
    assert (await tenant.get(f"/api/v1/data/account/{branch}")).json()["parent"] == keep
    binned = (await tenant.get("/api/v1/data/account/recycle-bin")).json()["records"]
    assert {r["id"]: r["parent"] for r in binned} == {second: keep, third: None}
