"""A size limit on workspace request bodies and on forms, enforced before any is parsed."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from metacrm.errors import PayloadTooLarge

PREFIX = "/app"
#: Where import files are uploaded (limited by `import_max_bytes`).
IMPORTS = "/api/v1/imports"
#: ... and where the workspace's import page uploads them.
WEB_IMPORT = re.compile(r"/app/o/[a-z][a-z0-9_]{0,62}/import")
#: Used until the application's settings are known (the lifespan sets them).
DEFAULT_MAX_BYTES = 1_048_576


class BodyLimit:
    """Refuse a workspace request, or a form sent anywhere (the API's token endpoint takes
    one), whose body exceeds the settings' `max_body_bytes`.

    FastAPI parses a route's form before its dependencies run (the session and the CSRF
    check), and Starlette keeps up to 1,000 fields of 1 MB each: without this limit anyone,
    signed in or not, could make the server hold a gigabyte per request. The error is raised
    while the body is read, so the workspace's error page answers it (413)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = dict(scope.get("headers", []))
        kind = headers.get(b"content-type", b"").lower()
        form = kind.startswith((b"application/x-www-form-urlencoded", b"multipart/form-data"))
        if not (form or path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        # An import's file upload has a limit of its own (a form like any other).
        upload = path == IMPORTS or WEB_IMPORT.fullmatch(path) is not None
        limit = _max_bytes(scope, "import_max_bytes" if upload else "max_body_bytes")
        declared = headers.get(b"content-length", b"")
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            if declared.isdigit() and int(declared) > limit:
                raise PayloadTooLarge(f"the form exceeds {limit} bytes")
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"the form exceeds {limit} bytes")
            return message

        await self.app(scope, limited, send)


def _max_bytes(scope: Scope, setting: str) -> int:
    state = getattr(getattr(scope.get("app"), "state", None), "metacrm", None)
    settings = getattr(state, "settings", None)
    value = getattr(settings, setting, DEFAULT_MAX_BYTES)
    return value if isinstance(value, int) else DEFAULT_MAX_BYTES
