"""The ticket + follow-up model and its "on saved -> create a follow-up" rule, one definition
for bench/bench_jobs.py and the crash test (tests/automation/test_crash.py)."""

from __future__ import annotations

from typing import Any

TICKET: dict[str, Any] = {
    "api_name": "ticket",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "code", "type": "text", "external_id": True, "unique": True},
        {"api_name": "note", "type": "text"},
    ],
}
#: The ticket's shape under another name, with no rule: what a save costs without one.
PLAIN: dict[str, Any] = {**TICKET, "api_name": "plain"}
FOLLOW_UP: dict[str, Any] = {
    "api_name": "follow_up",
    "fields": [
        {"api_name": "name", "type": "text", "required": True},
        {"api_name": "ticket", "type": "lookup", "target": "ticket"},
    ],
}
#: Every committed save of a ticket enqueues one `automation.rule` job creating one follow-up.
RULE: dict[str, Any] = {
    "api_name": "follow_up_every_save",
    "object": "ticket",
    "trigger": {"on": "saved"},
    "actions": [
        {
            "kind": "create",
            "object": "follow_up",
            "set": {"name": "'Follow up ' + name"},
            "link": "ticket",
        }
    ],
}
