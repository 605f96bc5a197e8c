"""Reads a JSON request body safely: bounded size, strict UTF-8, exact decimals, no NaN."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from metacrm.errors import (
    BadRequest,
    FieldError,
    PayloadTooLarge,
    RecordInvalid,
    UnsupportedMediaType,
)

_MAX_DEPTH = 64
_PARSE_INLINE_BYTES = 256 * 1024


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _depth_ok(raw: bytes) -> bool:
    """True when brackets nest at most _MAX_DEPTH deep (strings skipped), before parsing."""
    depth, in_string, escaped = 0, False, False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > _MAX_DEPTH:
                return False
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return True


def parse_json(raw: bytes) -> Any:
    """The JSON document in `raw`, or BadRequest saying what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest(f"the body is not valid UTF-8 (byte {error.start})") from None
    if raw.count(b"[") + raw.count(b"{") > _MAX_DEPTH and not _depth_ok(raw):
        raise BadRequest(f"the JSON nests deeper than {_MAX_DEPTH} levels")
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except RecursionError:
        raise BadRequest(f"the JSON nests deeper than {_MAX_DEPTH} levels") from None
    except ValueError as error:
        raise BadRequest(f"the body is not valid JSON: {str(error)[:200]}") from None


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refusing more than `max_bytes` whatever Content-Length claims."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"the body exceeds {max_bytes} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"the body exceeds {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, max_bytes: int) -> Any:
    """The JSON body of a request, checked for media type, size, encoding and syntax."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType("send the body as application/json")
    raw = await read_body(request, max_bytes)
    if not raw.strip():
        raise BadRequest("the body is empty; send a JSON document")
    if len(raw) > _PARSE_INLINE_BYTES:
        # Megabytes of tiny containers take seconds to scan and parse: not on the event loop.
        return await run_in_threadpool(parse_json, raw)
    return parse_json(raw)


async def read_object(request: Request, max_bytes: int) -> dict[str, Any]:
    """A JSON body that must be an object."""
    body = await read_json(request, max_bytes)
    if not isinstance(body, dict):
        raise RecordInvalid(
            "the body must be a JSON object", [FieldError("", "type", "expected a JSON object")]
        )
    return body
