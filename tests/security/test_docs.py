"""Every `http` block of docs/security.md runs, in order, against `make run`'s demo tenant."""

from __future__ import annotations

from tests.doc_runner import ROOT, DocsRun, doc_steps


async def test_security_doc_runs(docs: DocsRun) -> None:
    result = docs.result("security.md")
    assert len(doc_steps(ROOT / "docs" / "security.md")) >= 20
    entries = result.answers["fin GET /api/v1/audit?action=owner.transfer"]["entries"]
    assert [e["record_id"] for e in entries] == [result.names["big"]]
