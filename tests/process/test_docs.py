"""Every `http` block of docs/process.md runs, in order, and answers as documented."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import ADMIN_PASSWORD, TenantClient, login

DOC = Path(__file__).resolve().parents[2] / "docs" / "process.md"
BLOCK = re.compile(r"```http\n(\w+): (\w+) (\S+) -> (\d+)(?: => (\w+))?\n(.*?)```", re.S)


async def test_process_doc_runs(tenant: TenantClient) -> None:
    steps = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    assert len(steps) >= 20
    clients = {"admin": tenant}
    names: dict[str, str] = {}
    for user, method, path, status, keep, body in steps:
        for key, value in names.items():
            path = path.replace("{" + key + "}", value)
            body = body.replace("{" + key + "}", value)
        kwargs = {"json": json.loads(body)} if body.strip() else {}
        response = await clients[user].request(method, path, **kwargs)
        assert response.status_code == int(status), (method, path, response.text)
        if keep:
            names[keep] = response.json()["id"]
            if path == "/api/v1/users":
                email = kwargs["json"]["email"]
                token = await login(tenant.http, tenant.tenant, email, ADMIN_PASSWORD)
                clients[keep] = TenantClient(tenant.http, tenant.tenant, token)
        if path.endswith("/stage") and status == "422":
            assert response.headers["content-type"].startswith("application/problem+json")
    funnel = (await tenant.get("/api/v1/analytics/funnel/quote_path")).json()
    assert [(s["stage"], s["count"]) for s in funnel["stages"]] == [
        ("draft", 0),
        ("sent", 0),
        ("declined", 1),
    ]
