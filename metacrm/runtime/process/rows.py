"""Process rows (runs, tasks, events, delegations, stage tasks) as JSON-ready dicts."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any


def iso(value: Any) -> Any:
    """A datetime as ISO 8601 in UTC with `Z`, a UUID as text, anything else as is."""
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def row_json(row: Any) -> dict[str, Any]:
    return {k: iso(v) for k, v in dict(row).items()}
