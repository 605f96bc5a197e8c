"""Every `http` block of docs/process.md runs, in order, and answers as documented."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import TenantClient
from tests.doc_runner import run_http_doc

DOC = Path(__file__).resolve().parents[2] / "docs" / "process.md"


async def test_process_doc_runs(tenant: TenantClient) -> None:
    await run_http_doc(DOC, tenant, least=20)
    funnel = (await tenant.get("/api/v1/analytics/funnel/quote_path")).json()
    assert [(s["stage"], s["count"]) for s in funnel["stages"]] == [
        ("draft", 0),
        ("sent", 0),
        ("declined", 1),
    ]
