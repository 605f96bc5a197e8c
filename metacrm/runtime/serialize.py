"""Turns database rows into JSON-ready records and back (for cursors)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any


def json_value(value: Any) -> Any:
    """A JSON-ready form of one stored value: decimals as exact strings, times in ISO 8601."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return value  # only JSON fields hold floats: numeric columns come back as Decimal
    if isinstance(value, list):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    return value


def row_to_record(row: Any) -> dict[str, Any]:
    """A row mapping with JSON-ready values."""
    return {key: json_value(value) for key, value in row.items()}
