"""HTTP helpers the routers share: ids from paths, If-Match versions, record responses."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.responses import JSONResponse, Response

from metacrm.errors import NotFound, StaleVersion


def path_id(value: str, what: str = "record") -> uuid.UUID:
    """An id from the URL; a malformed one is simply not found (no 422 to probe with)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"no {what} has this id") from None


def if_match_version(value: str | None) -> int | None:
    """The version an If-Match header asks for (None for absent or `*`)."""
    if value is None or value.strip() == "*":
        return None
    tag = value.strip().removeprefix("W/").strip('"')
    if not tag.isdigit() or len(tag) > 12:
        raise StaleVersion("If-Match names no version of this record")
    return int(tag)


def record_response(
    record: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A record as JSON with its version as the ETag."""
    return JSONResponse(
        record, status_code=status, headers={"ETag": f'"{record["version"]}"', **(headers or {})}
    )
