"""Funnel numbers, stage-rule changes with records mid-way, save-time errors, races."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from tests.conftest import TenantClient
from tests.process.support import OPPORTUNITY, PATH, QUOTE, codes, setup


async def _opportunity(user: TenantClient, name: str, amount: str, *stages: str) -> str:
    opp = await user.create("opportunity", {"name": name, "stage": "qualify"})
    url = f"/api/v1/data/opportunity/{opp['id']}"
    fields = {"amount": amount, "close_date": "2030-01-01", "next_step": "x"}
    for stage in stages:
        response = await user.post(f"{url}/stage", json={"to": stage, "fields": fields})
        assert response.status_code == 200, response.text
        if stage == "propose":
            tasks = (await user.get(f"{url}/stage-tasks")).json()["tasks"]
            for task in tasks:
                if task["status"] == "open" and not task["optional"]:
                    await user.post(f"/api/v1/stage-tasks/{task['id']}/done")
    return opp["id"]


async def test_funnel_matches_the_data(tenant: TenantClient) -> None:
    await setup(tenant)
    await _opportunity(tenant, "a", "100")
    await _opportunity(tenant, "b", "200", "propose")
    await _opportunity(tenant, "c", "300", "propose")
    await _opportunity(tenant, "d", "400", "propose", "negotiate")
    await _opportunity(tenant, "e", "500", "propose", "negotiate")
    lost = await _opportunity(tenant, "g", "70")
    response = await tenant.post(
        f"/api/v1/data/opportunity/{lost}/stage", json={"to": "lost", "reason": "budget"}
    )
    assert response.status_code == 200
    funnel = (await tenant.get("/api/v1/analytics/funnel/opportunity_path")).json()
    by_stage = {s["stage"]: s for s in funnel["stages"]}

    listed = (await tenant.get("/api/v1/data/opportunity", params={"limit": 100})).json()
    rows = listed.get("records") or listed.get("items") or listed.get("data")
    for stage in ("qualify", "propose", "negotiate", "won", "lost"):
        mine = [r for r in rows if r["stage"] == stage]
        assert by_stage[stage]["count"] == len(mine), stage
        total = sum((Decimal(r["amount"] or 0) for r in mine), Decimal(0))
        assert Decimal(by_stage[stage]["amount"]) == total, stage
    assert funnel["total"] == len(rows)
    assert [by_stage[s]["reached"] for s in ("qualify", "propose", "negotiate")] == [6, 4, 2]
    assert by_stage["propose"]["conversion_from_previous"] == round(4 / 6, 4)
    assert by_stage["negotiate"]["conversion_from_previous"] == 0.5
    assert Decimal(by_stage["negotiate"]["weighted_amount"]) == Decimal("720.00")
    assert by_stage["qualify"]["avg_days_in_stage"] is not None
    assert by_stage["won"]["avg_days_in_stage"] is None


async def test_removed_stage_needs_a_mapping(tenant: TenantClient) -> None:
    await setup(tenant)
    opp = await _opportunity(tenant, "a", "100", "propose", "negotiate")
    await _opportunity(tenant, "b", "100", "propose")
    rule = PATH | {"stages": [s for s in PATH["stages"] if s["value"] != "negotiate"]}
    url = "/api/v1/metadata/stage-rules/opportunity_path"
    response = await tenant.put(url, json=rule)
    assert response.status_code == 422, response.text
    assert codes(response) == {
        ("stage_rules/opportunity_path/stage_mapping/negotiate", "records-in-removed-stage")
    }
    assert "1 opportunity record(s)" in response.text
    # The plan reports it too.
    response = await tenant.post("/api/v1/metadata/plan", json={"stage_rules": [rule]})
    assert codes(response) == {
        ("stage_rules/opportunity_path/stage_mapping/negotiate", "records-in-removed-stage")
    }
    # A mapping to a stage the rule lacks is refused at save time.
    response = await tenant.put(url, json=rule | {"stage_mapping": {"negotiate": "nowhere"}})
    assert ("stage_rules/opportunity_path/stage_mapping/negotiate", "unknown-stage") in codes(
        response
    )
    response = await tenant.put(url, json=rule | {"stage_mapping": {"negotiate": "propose"}})
    assert response.status_code == 200, response.text
    record = (await tenant.get(f"/api/v1/data/opportunity/{opp}")).json()
    assert record["stage"] == "propose"
    history = (await tenant.get(f"/api/v1/data/opportunity/{opp}/stage-history")).json()
    last = history["rules"][0]["transitions"][-1]
    assert (last["from"], last["to"]) == ("negotiate", "propose")
    assert "mapped" in last["reason"]


async def test_bad_definitions_are_refused_at_save_time(tenant: TenantClient) -> None:
    await setup(tenant)
    bad_rule = {
        "api_name": "bad_path",
        "object": "opportunity",
        "field": "name",
        "stages": [{"value": "qualify", "entry_condition": "amount + 1"}],
    }
    response = await tenant.post("/api/v1/metadata/stage-rules", json=bad_rule)
    assert response.status_code == 422
    assert ("stage_rules/bad_path/field", "wrong-type") in codes(response)
    bad_rule = PATH | {
        "api_name": "bad_path",
        "stages": [
            {"value": "qualify", "next": ["nowhere"]},
            {"value": "dreaming"},
            {
                "value": "won",
                "requires_approval": "no_flow",
                "on_entry": [{"set": {"amount": "'x'"}}],
            },
        ],
    }
    response = await tenant.post("/api/v1/metadata/stage-rules", json=bad_rule)
    assert {
        ("stage_rules/bad_path/stages/qualify/next/nowhere", "unknown-stage"),
        ("stage_rules/bad_path/stages/dreaming", "unknown-value"),
        ("stage_rules/bad_path/stages/won/requires_approval", "unknown-flow"),
        ("stage_rules/bad_path/stages/won/on_entry/0/set/amount", "wrong-type"),
        ("stage_rules/bad_path/field", "duplicate-field"),
    } <= codes(response), response.text
    bad_flow = {
        "api_name": "bad_flow",
        "object": "quote",
        "entry_condition": "discount",
        "steps": [{"api_name": "s", "approvers": [{"kind": "role", "role": "pope"}]}],
    }
    response = await tenant.post("/api/v1/metadata/approval-flows", json=bad_flow)
    assert ("approval_flows/bad_flow/steps/s/approvers/0/role", "unknown-role") in codes(response)
    response = await tenant.post(
        "/api/v1/metadata/approval-flows",
        json=bad_flow | {"steps": [{"api_name": "s", "approvers": [{"kind": "manager"}]}]},
    )
    assert response.status_code == 422
    assert any(e["field"].endswith("entry_condition") for e in response.json()["errors"])
    # An unreachable stage is a warning, not an error.
    island = PATH | {
        "api_name": "island",
        "object": "quote",
        "field": "status",
        "probability_field": None,
        "stages": [
            {"value": "draft", "next": ["pending"]},
            {"value": "pending", "next": ["draft"]},
            {"value": "approved"},
        ],
    }
    response = await tenant.post("/api/v1/metadata/stage-rules", json=island)
    assert response.status_code == 201, response.text
    warnings = (await tenant.get("/api/v1/process/warnings")).json()["warnings"]
    assert {(w["field"], w["code"]) for w in warnings} == {
        ("stage_rules/island/stages/approved", "unreachable")
    }


async def test_opportunity_without_rule_values_is_not_a_stage(tenant: TenantClient) -> None:
    extra = OPPORTUNITY | {
        "fields": [
            *OPPORTUNITY["fields"][:-1],
            {
                "api_name": "stage",
                "type": "picklist",
                "values": [*OPPORTUNITY["fields"][-1]["values"], {"value": "limbo"}],
            },
        ]
    }
    await setup(tenant, objects=[extra, QUOTE])
    opp = await tenant.create("opportunity", {"name": "a", "stage": "qualify"})
    response = await tenant.patch(f"/api/v1/data/opportunity/{opp['id']}", json={"stage": "limbo"})
    assert codes(response) == {("stage", "not-a-stage")}


async def _quote_run(tenant: TenantClient, flow: dict) -> tuple[dict, dict]:
    response = await tenant.post("/api/v1/metadata/approval-flows", json=flow)
    assert response.status_code == 201, response.text
    boss = await tenant.add_user("boss@x.test", role="sales_manager")
    rep = await tenant.add_user("rep@x.test", role="sales_rep", manager_id=boss.user_id)
    fin1 = await tenant.add_user("fin1@x.test", role="finance")
    fin2 = await tenant.add_user("fin2@x.test", role="finance")
    return {"boss": boss, "rep": rep, "fin1": fin1, "fin2": fin2}, flow


ANY_FINANCE = {
    "api_name": "any_finance",
    "object": "quote",
    "steps": [{"api_name": "fin", "approvers": [{"kind": "role", "role": "finance"}]}],
    "on_approve": [{"set": {"status": "'approved'"}}],
    "on_recall": [{"set": {"status": "'draft'"}}],
}


async def test_two_approvers_at_once_make_one_decision(tenant: TenantClient) -> None:
    await setup(tenant)
    team, _flow = await _quote_run(tenant, ANY_FINANCE)
    rep, fin1, fin2 = team["rep"], team["fin1"], team["fin2"]
    for i in range(4):
        quote = await rep.create("quote", {"name": f"Q{i}", "amount": "10", "discount": "0.5"})
        run = (
            await rep.post(
                f"/api/v1/data/quote/{quote['id']}/approvals", json={"flow": "any_finance"}
            )
        ).json()
        decisions = await asyncio.gather(
            fin1.post(f"/api/v1/approvals/{run['id']}/approve", json={}),
            fin2.post(f"/api/v1/approvals/{run['id']}/reject", json={}),
        )
        statuses = sorted(r.status_code for r in decisions)
        assert statuses == [200, 409], [r.text for r in decisions]
        winner = next(r for r in decisions if r.status_code == 200).json()
        run = (await rep.get(f"/api/v1/approvals/{run['id']}")).json()
        assert run["status"] == winner["status"]
        decided = [t for t in run["tasks"] if t["status"] in ("approved", "rejected")]
        assert len(decided) == 1
        assert [e["action"] for e in run["events"]].count("step_" + run["status"]) == 1


async def test_recall_racing_approval_has_one_outcome(tenant: TenantClient) -> None:
    await setup(tenant)
    team, _flow = await _quote_run(tenant, ANY_FINANCE)
    rep, fin1 = team["rep"], team["fin1"]
    for i in range(4):
        quote = await rep.create("quote", {"name": f"Q{i}", "amount": "10", "discount": "0.5"})
        run = (
            await rep.post(
                f"/api/v1/data/quote/{quote['id']}/approvals", json={"flow": "any_finance"}
            )
        ).json()
        recall, approve = await asyncio.gather(
            rep.post(f"/api/v1/approvals/{run['id']}/recall", json={}),
            fin1.post(f"/api/v1/approvals/{run['id']}/approve", json={}),
        )
        assert sorted([recall.status_code, approve.status_code]) == [200, 409]
        final = (await rep.get(f"/api/v1/approvals/{run['id']}")).json()["status"]
        record = (await rep.get(f"/api/v1/data/quote/{quote['id']}")).json()
        if recall.status_code == 200:
            assert (final, record["status"]) == ("recalled", "draft")
        else:
            assert (final, record["status"]) == ("approved", "approved")


async def test_funnel_sums_a_currency_formula(tenant: TenantClient) -> None:
    weighted = {
        "api_name": "weighted",
        "type": "formula",
        "returns": "currency",
        "expression": "amount * 2",
    }
    await setup(
        tenant, objects=[OPPORTUNITY | {"fields": [*OPPORTUNITY["fields"], weighted]}, QUOTE]
    )
    for name, amount in (("a", "100"), ("b", "50")):
        await tenant.create("opportunity", {"name": name, "stage": "qualify", "amount": amount})
    await _opportunity(tenant, "c", "250", "propose")
    response = await tenant.get(
        "/api/v1/analytics/funnel/opportunity_path", params={"amount": "weighted"}
    )
    assert response.status_code == 200, response.text
    funnel = response.json()
    assert funnel["amount_field"] == "weighted"
    by_stage = {s["stage"]: s for s in funnel["stages"]}
    assert Decimal(by_stage["qualify"]["amount"]) == Decimal("300")
    assert Decimal(by_stage["propose"]["amount"]) == Decimal("500")
    # A text formula is still refused.
    response = await tenant.get(
        "/api/v1/analytics/funnel/opportunity_path", params={"amount": "name"}
    )
    assert response.status_code == 422
    # The stage rule may name the currency formula as its amount field at save time too.
    rule = (await tenant.get("/api/v1/metadata/stage-rules/opportunity_path")).json()
    saved = await tenant.put(
        "/api/v1/metadata/stage-rules/opportunity_path", json=rule | {"amount_field": "weighted"}
    )
    assert saved.status_code == 200, saved.text
    funnel = (await tenant.get("/api/v1/analytics/funnel/opportunity_path")).json()
    assert funnel["amount_field"] == "weighted"
    text_amount = await tenant.put(
        "/api/v1/metadata/stage-rules/opportunity_path", json=rule | {"amount_field": "name"}
    )
    assert text_amount.status_code == 422
    assert text_amount.json()["errors"][0]["code"] == "wrong-type"
