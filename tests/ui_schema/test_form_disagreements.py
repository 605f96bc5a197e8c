"""The disagreements between the form's JSON Schema and the API found so far, one by one."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from tests.conftest import TenantClient

TICKET = {
    "api_name": "form_ticket",
    "fields": [
        {
            "api_name": "channel",
            "type": "picklist",
            "values": [{"value": "email"}, {"value": "phone"}, {"value": "partner"}],
        },
        {"api_name": "partner_ref", "type": "text"},
        {"api_name": "region", "type": "text"},
        {"api_name": "seats", "type": "number", "default": 5},
        {"api_name": "code", "type": "text"},
        {"api_name": "met_at", "type": "datetime"},
        {"api_name": "due", "type": "date"},
        {"api_name": "hours", "type": "number", "precision": 4, "scale": 0},
    ],
    "field_rules": [
        {
            "api_name": "partner_only",
            "when": "channel != 'partner'",
            "fields": ["partner_ref"],
            "effect": "hidden",
        },
        {
            "api_name": "fixed_region",
            "when": "channel not in ('email', 'phone')",
            "fields": ["region"],
            "effect": "required",
        },
        {
            "api_name": "ref_needed",
            "when": "channel in ('phone', 'partner')",
            "fields": ["partner_ref"],
            "effect": "required",
        },
        {"api_name": "fixed_seats", "when": "True", "fields": ["seats"], "effect": "read_only"},
        {"api_name": "fixed_code", "when": "True", "fields": ["code"], "effect": "read_only"},
    ],
}
AGREED: list[tuple[dict[str, Any], bool]] = [
    # `channel != 'partner'` is null, not true, for a null channel: nothing is hidden.
    ({"channel": None, "partner_ref": "P-1", "region": "x"}, True),
    ({"channel": "email", "partner_ref": "P-1"}, False),
    ({"channel": "partner", "partner_ref": "P-1", "region": "x"}, True),
    # `channel not in (...)` is null for a null channel: region is not required.
    ({"channel": None}, True),
    ({"channel": "partner"}, False),
    # Hidden wins over required: a phone ticket's partner_ref is hidden, so not demanded.
    ({"channel": "phone"}, True),
    ({"channel": "partner", "region": "x"}, False),
    # Read-only on create: blank or the default, in any JSON spelling the API reads.
    ({"channel": "email", "seats": 5}, True),
    ({"channel": "email", "seats": "5"}, True),
    ({"channel": "email", "seats": 6}, False),
    ({"channel": "email", "code": ""}, True),
    ({"channel": "email", "code": "x"}, False),
    # Dates and date-times the API reads, and those it refuses.
    ({"channel": "email", "met_at": "2027-03-01T09:30:00z"}, False),
    ({"channel": "email", "met_at": "2027-03-01T24:00:00Z"}, False),
    ({"channel": "email", "met_at": "2027-02-30T10:00:00Z"}, False),
    ({"channel": "email", "met_at": "2024-02-29t09:30:00.5+08:00"}, True),
    ({"channel": "email", "due": "2027-02-29"}, False),
    ({"channel": "email", "due": "2028-02-29"}, True),
    # Leading zeros do not count as digits; other scripts' digits are not numbers.
    ({"channel": "email", "hours": "0001234"}, True),
    ({"channel": "email", "hours": "\uff11\uff12"}, False),
    # What rounds past the field's digits is refused (PostgreSQL answered 500 before).
    ({"channel": "email", "hours": 9999.4}, True),
    ({"channel": "email", "hours": 9999.6}, False),
    ({"channel": "email", "hours": -9999.5}, False),
    # Offsets are RFC 3339's: hours to 23, minutes to 59, with a colon; no bare dates.
    ({"channel": "email", "met_at": "2027-03-01T09:30:00+08:60"}, False),
    ({"channel": "email", "met_at": "2027-03-01T09:30:00+0800"}, False),
    ({"channel": "email", "met_at": "2027-03-01"}, False),
    ({"channel": "email", "met_at": "2027-03-01T09:30:00.1234567Z"}, False),
]


@pytest.mark.parametrize(("payload", "accepted"), AGREED)
async def test_the_form_and_the_api_agree(
    tenant: TenantClient, payload: dict[str, Any], accepted: bool
) -> None:
    await tenant.define(TICKET)
    schema = (await tenant.get("/api/v1/ui/form_ticket/form")).json()["schema"]
    filled = {
        name: prop["default"]
        for name, prop in schema["properties"].items()
        if "default" in prop and name not in payload
    } | payload
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    problems = [e.message for e in validator.iter_errors(filled)]
    response = await tenant.post("/api/v1/data/form_ticket", json=payload)
    assert (response.status_code == 201) == accepted, response.text
    assert (not problems) == accepted, problems


HIDDEN_AND_REQUIRED = {
    "api_name": "form_hidden_required",
    "fields": [
        {"api_name": "f0", "type": "number", "precision": 4, "scale": 0},
        {"api_name": "f1", "type": "text"},
    ],
    "field_rules": [
        {"api_name": "r0", "when": "f0 is None or -2 < f0", "fields": ["f0"], "effect": "required"},
        {"api_name": "r1", "when": "f0 is None", "fields": ["f0"], "effect": "hidden"},
        {"api_name": "r2", "when": "True", "fields": ["f1"], "effect": "required"},
        {"api_name": "r3", "when": "f1 == 'x'", "fields": ["f1"], "effect": "hidden"},
    ],
}


@pytest.mark.parametrize(
    ("payload", "accepted"),
    [
        # Found by the property test: hidden while empty, so not required.
        ({"f1": "a"}, True),
        ({"f0": 5, "f1": "a"}, True),
        ({"f0": -5, "f1": "a"}, True),
        ({"f0": None}, False),  # f1 is required and not hidden
        ({"f0": 1, "f1": "x"}, False),  # f1 is hidden by its own value
    ],
)
async def test_a_hidden_field_is_never_required(
    tenant: TenantClient, payload: dict[str, Any], accepted: bool
) -> None:
    await tenant.define(HIDDEN_AND_REQUIRED)
    schema = (await tenant.get("/api/v1/ui/form_hidden_required/form")).json()["schema"]
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    problems = [e.message for e in validator.iter_errors(payload)]
    response = await tenant.post("/api/v1/data/form_hidden_required", json=payload)
    assert (response.status_code == 201) == accepted, response.text
    assert (not problems) == accepted, problems
