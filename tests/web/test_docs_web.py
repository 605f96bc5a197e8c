"""docs/web.md's requests run as written and answer what the page says they answer."""

from __future__ import annotations

from tests.doc_runner import DocsRun


async def test_the_rest_api_behind_the_pages(docs: DocsRun) -> None:
    result = docs.result("web.md")
    account = result.names["web_account"]
    answers = result.answers
    timeline = answers[f"admin GET /api/v1/data/account/{account}/timeline"]
    assert any("Called about the renewal" in str(event) for event in timeline["entries"])
    actions = answers[f"admin GET /api/v1/data/account/{account}/actions"]
    assert actions["edit"] is True and actions["delete"] is True
    found = answers["admin GET /api/v1/search?q=6408%203177"]["results"]
    assert [(r["object"], [x["id"] for x in r["records"]]) for r in found] == [
        ("account", [account])
    ]
    board = answers["admin GET /api/v1/analytics/board/opportunity"]
    assert board["field"] == "stage" and board["lanes"]
    assert answers["admin GET /api/v1/approvals/submitted"] is not None
