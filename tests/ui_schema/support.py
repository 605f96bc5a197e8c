"""A metadata fixture for the UI schema tests: a deal object with field rules, roles,
layouts and list views; and the schema side of "does the form accept this record"."""

from __future__ import annotations

import copy
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

DEAL: dict[str, Any] = {
    "api_name": "deal",
    "label": {"en": "Deal", "zh-CN": "交易"},
    "fields": [
        {
            "api_name": "name",
            "type": "text",
            "required": True,
            "max_length": 40,
            "label": {"en": "Name", "zh-CN": "名称"},
        },
        {"api_name": "number", "type": "auto_number", "format": "D-{0000}"},
        {
            "api_name": "kind",
            "type": "picklist",
            "values": [
                {"value": "direct"},
                {"value": "partner", "label": {"en": "Partner", "zh-CN": "渠道"}},
            ],
        },
        {"api_name": "partner", "type": "text", "max_length": 40},
        {
            "api_name": "stage",
            "type": "picklist",
            "default": "new",
            "required": True,
            "label": {"en": "Stage", "zh-CN": "阶段"},
            "values": [
                {"value": "new"},
                {"value": "won", "color": "#00aa00"},
                {"value": "lost"},
                {"value": "gone", "active": False},
            ],
        },
        {"api_name": "amount", "type": "currency", "precision": 12, "scale": 2, "min": 0},
        {"api_name": "close_date", "type": "date"},
        {
            "api_name": "loss_reason",
            "type": "picklist",
            "values": [{"value": "price"}, {"value": "timing"}, {"value": "other"}],
        },
        {
            "api_name": "tags",
            "type": "multi_picklist",
            "values": [{"value": "a"}, {"value": "b"}, {"value": "c"}],
        },
        {"api_name": "discount", "type": "percent"},
        {"api_name": "secret", "type": "text"},
        {"api_name": "notes", "type": "long_text"},
        {"api_name": "email", "type": "email"},
        {"api_name": "site", "type": "url"},
        {"api_name": "phone", "type": "phone"},
        {"api_name": "signed_at", "type": "datetime"},
        {"api_name": "vip", "type": "boolean"},
        {"api_name": "account", "type": "lookup", "target": "account"},
        {"api_name": "total", "type": "formula", "returns": "currency", "expression": "amount * 2"},
    ],
    "field_rules": [
        {
            "api_name": "close_required",
            "when": "stage == 'won'",
            "fields": ["close_date"],
            "effect": "required",
        },
        {
            "api_name": "partner_hidden",
            "when": "kind == 'direct'",
            "fields": ["partner"],
            "effect": "hidden",
        },
        {
            "api_name": "amount_locked",
            "when": "stage in ('won', 'lost')",
            "fields": ["amount"],
            "effect": "read_only",
        },
        {
            "api_name": "partner_reasons",
            "when": "kind == 'partner' and not vip",
            "fields": ["loss_reason"],
            "effect": "allowed_values",
            "values": ["price", "other"],
        },
        {
            "api_name": "partner_tags",
            "when": "kind == 'partner'",
            "fields": ["tags"],
            "effect": "allowed_values",
            "values": ["a"],
        },
        {
            "api_name": "big_needs_reason",
            "when": "amount >= 1000 and ISBLANK(partner)",
            "fields": ["loss_reason"],
            "effect": "required",
        },
    ],
}
#: A rule over a lookup path: enforced by the API, listed (not translated) in the form.
PATH_RULE = {
    "api_name": "big_account_discount",
    "when": "account.name == 'Big'",
    "fields": ["discount"],
    "effect": "required",
}

ROLES = [
    {
        "api_name": "sales",
        "objects": {
            "deal": {"create": True, "read": True, "edit": True},
            "account": {"read": True},
        },
        "fields": {"deal": {"secret": "hidden", "discount": "read"}},
    },
    {
        "api_name": "viewer",
        "objects": {"deal": {"read": True}},
        "fields": {"deal": {"secret": "hidden", "notes": "hidden"}},
    },
]
MAIN = [
    "name",
    "kind",
    "partner",
    "stage",
    "amount",
    "close_date",
    "loss_reason",
    "tags",
    "discount",
    "secret",
    "total",
    "number",
]
LAYOUTS = [
    {
        "api_name": "deal_sales",
        "object": "deal",
        "roles": ["sales", "viewer"],
        "label": {"en": "Sales deal", "zh-CN": "销售交易"},
        "sections": [
            {
                "title": {"en": "Main", "zh-CN": "主要"},
                "columns": 2,
                "fields": [{"field": f} for f in MAIN],
            },
            {
                "title": "More",
                "columns": 1,
                "fields": [
                    {"field": "notes", "widget": "text_area", "help_text": "Anything"},
                    {"field": "account", "widget": "lookup_search"},
                    {"field": "vip", "read_only": True},
                ],
            },
        ],
        "compact": ["name", "stage", "secret"],
    },
    {
        "api_name": "deal_partner",
        "object": "deal",
        "when": {"field": "kind", "values": ["partner"]},
        "sections": [
            {
                "columns": 3,
                "fields": [
                    {"field": "name"},
                    {"field": "kind"},
                    {"field": "partner", "required": True},
                    {"field": "stage"},
                    {"field": "amount"},
                    {"field": "close_date"},
                    {"field": "loss_reason", "widget": "radio"},
                    {"field": "tags"},
                    {"field": "discount"},
                    {"field": "vip"},
                    {"field": "email"},
                    {"field": "site"},
                    {"field": "phone"},
                    {"field": "signed_at"},
                    {"field": "secret", "hidden": True},
                ],
            }
        ],
    },
]
LIST_VIEWS = [
    {
        "api_name": "open_deals",
        "object": "deal",
        "label": {"en": "Open deals", "zh-CN": "进行中"},
        "columns": ["name", "stage", "amount", "secret", "total"],
        "filter": "stage == 'new'",
        "sort": "-amount,name",
        "limit": 25,
        "kanban_field": "stage",
    },
    {
        "api_name": "secret_deals",
        "object": "deal",
        "columns": ["name"],
        "filter": "secret == 'x'",
        "visibility": {"kind": "roles", "roles": ["sales"]},
    },
    {
        "api_name": "viewer_only",
        "object": "deal",
        "columns": ["name"],
        "visibility": {"kind": "roles", "roles": ["viewer"]},
    },
]


def schema_accepts(schema: dict[str, Any], record: dict[str, Any]) -> bool:
    """Whether a form with `schema` may submit `record`: defaults filled in as JSON Forms'
    `useDefaults` does, then validated; `readOnly` properties may not be written."""
    data = copy.deepcopy(record)
    for name, prop in schema["properties"].items():
        if name not in data and "default" in prop:
            data[name] = prop["default"]
    if any(schema["properties"].get(n, {}).get("readOnly") for n in record):
        return False
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    return validator.is_valid(data)
