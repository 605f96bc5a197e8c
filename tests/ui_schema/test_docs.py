"""The examples of docs/layouts.md, applied to `make run`'s demo, serve the documents it shows."""

from __future__ import annotations

import json

from jsonschema import Draft202012Validator

from tests.doc_runner import ROOT, DocsRun, doc_steps
from tests.ui_schema.jsonforms import ui_schema_errors


async def test_examples_apply_and_serve(docs: DocsRun) -> None:
    docs.result("layouts.md")
    assert len(doc_steps(ROOT / "docs" / "layouts.md")) == 3
    tenant = docs.admin
    agent = await tenant.add_user("agent@desk.test", role="desk_agent")
    form = (await agent.get("/api/v1/ui/desk_ticket/form")).json()
    assert form["layout"]["api_name"] == "desk_ticket_agent"
    assert "internal_note" not in form["schema"]["properties"]
    Draft202012Validator.check_schema(form["schema"])
    assert ui_schema_errors(form["uischema"], form["schema"]) == []
    rule = form["schema"]["allOf"][0]
    assert rule["then"]["required"] == ["resolution"]
    partner = (await agent.get("/api/v1/ui/desk_ticket/form", params={"channel": "partner"})).json()
    assert partner["layout"]["api_name"] == "desk_ticket_partner"
    listing = (
        await agent.get("/api/v1/ui/desk_ticket/list", params={"view": "desk_open_tickets"})
    ).json()
    assert [c["field"] for c in listing["columns"]] == ["subject", "status", "severity"]
    assert listing["query"]["order_by"] == "-created_at,subject"
    assert (await agent.get("/api/v1/data/desk_ticket", params=listing["query"])).status_code == 200
    # The rules hold through the API.
    ticket = await tenant.create("desk_ticket", {"subject": "Printer", "channel": "phone"})
    url = f"/api/v1/data/desk_ticket/{ticket['id']}"
    refused = await tenant.patch(url, json={"status": "solved"})
    assert refused.json()["errors"][0]["field"] == "resolution"
    refused = await tenant.patch(url, json={"severity": "critical"})
    assert refused.json()["errors"][0]["code"] == "not-allowed"
    refused = await tenant.patch(url, json={"partner_ref": "P-1"})
    assert refused.json()["errors"][0]["code"] == "hidden"
    closed = await tenant.patch(url, json={"status": "closed", "resolution": "Fixed"})
    assert closed.status_code == 200, closed.text
    refused = await tenant.patch(url, json={"severity": "high"})
    assert refused.json()["errors"][0]["code"] == "read-only"
    # Removing a field a layout uses: a plan step of its own.
    ticket_def = (await tenant.get("/api/v1/metadata/objects/desk_ticket")).json()
    ticket_def["fields"] = [f for f in ticket_def["fields"] if f["api_name"] != "internal_note"]
    role = (await tenant.get("/api/v1/metadata/roles/desk_agent")).json()
    role["fields"] = {}  # the role names the field too
    body = {"objects": [ticket_def], "roles": [role]}
    plan = (await tenant.post("/api/v1/metadata/plan", json=body)).json()
    text = json.dumps(plan, ensure_ascii=False)
    assert (
        "~ layouts desk_ticket_agent: no longer shows desk_ticket.internal_note (removed)" in text
    )
    assert (
        "~ list-views desk_open_tickets: no longer shows desk_ticket.internal_note (removed)"
        in text
    )
