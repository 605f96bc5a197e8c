"""Runs the `http` blocks of a doc in order, as the users they name, checking each status.

A block reads `user: METHOD path -> status [=> name]` then an optional JSON body;
`=> name` keeps the answer's `id` as `{name}` for later blocks, and for `POST
/api/v1/users` also logs the new user in as the client `name`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.conftest import ADMIN_PASSWORD, TenantClient, login

BLOCK = re.compile(r"```http\n(\w+): (\w+) (\S+) -> (\d+)(?: => (\w+))?\n(.*?)```", re.S)


async def run_http_doc(doc: Path, tenant: TenantClient, *, least: int) -> dict[str, Any]:
    """Run every block; returns the kept names and the last response of each path."""
    steps = BLOCK.findall(doc.read_text(encoding="utf-8"))
    assert len(steps) >= least, f"{doc.name} has {len(steps)} http blocks"
    clients = {"admin": tenant}
    names: dict[str, str] = {}
    answers: dict[str, Any] = {}
    for user, method, path, status, keep, body in steps:
        for key, value in names.items():
            path = path.replace("{" + key + "}", value)
            body = body.replace("{" + key + "}", value)
        kwargs = {"json": json.loads(body)} if body.strip() else {}
        response = await clients[user].request(method, path, **kwargs)
        assert response.status_code == int(status), (user, method, path, response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/problem+json")
        answers[f"{user} {method} {path}"] = response.json() if response.content else None
        if keep:
            names[keep] = response.json()["id"]
            if path == "/api/v1/users":
                email = kwargs["json"]["email"]
                token = await login(tenant.http, tenant.tenant, email, ADMIN_PASSWORD)
                clients[keep] = TenantClient(tenant.http, tenant.tenant, token)
    return {"names": names, "answers": answers}
