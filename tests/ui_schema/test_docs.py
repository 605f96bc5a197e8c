"""The examples of docs/layouts.md apply, and serve the documents the page shows."""

from __future__ import annotations

import json
import re
from pathlib import Path

from jsonschema import Draft202012Validator

from tests.conftest import TenantClient
from tests.ui_schema.jsonforms import ui_schema_errors

DOC = Path(__file__).resolve().parents[2] / "docs" / "layouts.md"


def _examples() -> list[dict]:
    blocks = re.findall(r"```json apply\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return [json.loads(body) for body in blocks]


async def test_examples_apply_and_serve(tenant: TenantClient) -> None:
    examples = _examples()
    assert len(examples) == 3
    for document in examples:
        response = await tenant.post("/api/v1/metadata/apply", json=document)
        assert response.status_code == 200, response.text
    agent = await tenant.add_user("agent@x.test", role="agent")
    form = (await agent.get("/api/v1/ui/ticket/form")).json()
    assert form["layout"]["api_name"] == "ticket_agent"
    assert "internal_note" not in form["schema"]["properties"]
    Draft202012Validator.check_schema(form["schema"])
    assert ui_schema_errors(form["uischema"], form["schema"]) == []
    rule = form["schema"]["allOf"][0]
    assert rule["then"]["required"] == ["resolution"]
    partner = (await agent.get("/api/v1/ui/ticket/form", params={"channel": "partner"})).json()
    assert partner["layout"]["api_name"] == "ticket_partner"
    listing = (await agent.get("/api/v1/ui/ticket/list", params={"view": "open_tickets"})).json()
    assert [c["field"] for c in listing["columns"]] == ["subject", "status", "severity"]
    assert listing["query"]["order_by"] == "-created_at,subject"
    assert (await agent.get("/api/v1/data/ticket", params=listing["query"])).status_code == 200
    # The rules hold through the API.
    ticket = await tenant.create("ticket", {"subject": "Printer", "channel": "phone"})
    url = f"/api/v1/data/ticket/{ticket['id']}"
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
    ticket_def = (await tenant.get("/api/v1/metadata/objects/ticket")).json()
    ticket_def["fields"] = [f for f in ticket_def["fields"] if f["api_name"] != "internal_note"]
    role = examples[0]["roles"][0] | {"fields": {}}  # the role names the field too
    body = {"objects": [ticket_def], "roles": [role]}
    plan = (await tenant.post("/api/v1/metadata/plan", json=body)).json()
    text = json.dumps(plan, ensure_ascii=False)
    assert "~ layouts ticket_agent: no longer shows ticket.internal_note (removed)" in text
    assert "~ list-views open_tickets: no longer shows ticket.internal_note (removed)" in text
