"""Every `http` block of docs/process.md runs, in order, against `make run`'s demo tenant."""

from __future__ import annotations

from tests.doc_runner import ROOT, DocsRun, doc_steps


async def test_process_doc_runs(docs: DocsRun) -> None:
    docs.result("process.md")
    assert len(doc_steps(ROOT / "docs" / "process.md")) >= 20
    funnel = (await docs.admin.get("/api/v1/analytics/funnel/proc_quote_path")).json()
    assert [(s["stage"], s["count"]) for s in funnel["stages"]] == [
        ("draft", 0),
        ("sent", 0),
        ("declined", 1),
    ]
