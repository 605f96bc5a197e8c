"""Every `http` block of docs/security.md runs, in order, and answers as documented."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import TenantClient
from tests.doc_runner import run_http_doc

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


async def test_security_doc_runs(tenant: TenantClient) -> None:
    result = await run_http_doc(DOC, tenant, least=20)
    entries = result["answers"]["fin GET /api/v1/audit?action=owner.transfer"]["entries"]
    assert [e["record_id"] for e in entries] == [result["names"]["big"]]
