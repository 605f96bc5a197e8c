"""Metadata and helpers shared by the process tests."""

from __future__ import annotations

from typing import Any

from tests.conftest import TenantClient

ROLES = [
    {"api_name": "ceo", "objects": {"opportunity": {"read": True, "view_all": True}}},
    {
        "api_name": "sales_manager",
        "reports_to": "ceo",
        "objects": {
            "opportunity": {"create": True, "read": True, "edit": True, "view_all": True},
            "quote": {"create": True, "read": True, "edit": True, "view_all": True},
        },
    },
    {
        "api_name": "sales_rep",
        "reports_to": "sales_manager",
        "objects": {
            "opportunity": {"create": True, "read": True, "edit": True},
            "quote": {"create": True, "read": True, "edit": True, "delete": True},
        },
    },
    {
        "api_name": "finance",
        "objects": {"quote": {"read": True, "edit": True, "view_all": True}},
    },
]

OPPORTUNITY = {
    "api_name": "opportunity",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "amount", "type": "currency"},
        {"api_name": "close_date", "type": "date"},
        {"api_name": "next_step", "type": "text"},
        {"api_name": "probability", "type": "percent"},
        {
            "api_name": "stage",
            "type": "picklist",
            "values": [
                {"value": "qualify"},
                {"value": "propose"},
                {"value": "negotiate"},
                {"value": "won"},
                {"value": "lost"},
            ],
        },
    ],
}

QUOTE = {
    "api_name": "quote",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "amount", "type": "currency"},
        {"api_name": "discount", "type": "percent", "scale": 4},
        {"api_name": "notes", "type": "text"},
        {
            "api_name": "status",
            "type": "picklist",
            "values": [
                {"value": "draft"},
                {"value": "pending"},
                {"value": "approved"},
                {"value": "rejected"},
            ],
            "default": "draft",
        },
    ],
}

PATH = {
    "api_name": "opportunity_path",
    "object": "opportunity",
    "field": "stage",
    "probability_field": "probability",
    "reason_on_back": True,
    "stages": [
        {"value": "qualify", "probability": 10},
        {
            "value": "propose",
            "probability": 50,
            "required_fields": ["amount", "close_date"],
            "entry_condition": "amount > 0",
            "entry_message": {"en": "A proposal needs a positive amount"},
            "tasks": [
                {"api_name": "send_deck", "subject": "Send the deck", "due_in_days": 3},
                {
                    "api_name": "call",
                    "subject": "Optional call",
                    "optional": True,
                    "assignee": {"kind": "manager"},
                },
            ],
        },
        {
            "value": "negotiate",
            "probability": 80,
            "allow_back": True,
            "required_fields": ["next_step"],
            "on_entry": [{"set": {"next_step": "'negotiating ' + name"}}],
        },
        {"value": "won", "probability": 100, "closed": True, "requires_approval": "deal_desk"},
        {"value": "lost", "probability": 0, "closed": True, "reason_required": True},
    ],
}

DEAL_DESK = {
    "api_name": "deal_desk",
    "object": "opportunity",
    "lock_record": False,
    "steps": [{"api_name": "manager", "approvers": [{"kind": "manager", "of": "owner"}]}],
}

BIG_DISCOUNT = {
    "api_name": "big_discount",
    "object": "quote",
    "entry_condition": "discount > 0.2",
    "lock_record": True,
    "steps": [
        {
            "api_name": "manager",
            "approvers": [{"kind": "manager", "of": "owner"}],
            "editable_fields": ["notes"],
        },
        {
            "api_name": "finance",
            "approvers": [{"kind": "role", "role": "finance"}],
            "rule": "all",
            "condition": "amount > 1000",
        },
    ],
    "on_submit": [{"set": {"status": "'pending'"}}],
    "on_approve": [{"set": {"status": "'approved'"}}],
    "on_reject": [{"set": {"status": "'rejected'"}}],
    "on_recall": [{"set": {"status": "'draft'"}}],
}


async def setup(admin: TenantClient, **extra: Any) -> None:
    document = {
        "objects": [OPPORTUNITY, QUOTE],
        "roles": ROLES,
        "stage_rules": [PATH],
        "approval_flows": [DEAL_DESK, BIG_DISCOUNT],
    } | extra
    response = await admin.post("/api/v1/metadata/apply", json=document)
    assert response.status_code == 200, response.text


def codes(response: Any) -> set[tuple[str, str]]:
    return {(e["field"], e["code"]) for e in response.json().get("errors", [])}
