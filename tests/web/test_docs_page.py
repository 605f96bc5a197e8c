"""The live API documentation page, drawn by a real headless Chromium against a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.web.conftest import needs_chromium, new_crm

pytestmark = needs_chromium


def _token_with_a_ticket_object(url: str) -> str:
    crm = new_crm(url)
    ticket = {
        "api_name": "ticket",
        "label": {"en": "Ticket", "zh-CN": "工单"},
        "fields": [
            {"api_name": "title", "type": "text", "required": True},
            {"api_name": "escalated", "type": "boolean"},
        ],
    }
    with crm.api() as http:
        defined = http.post("/api/v1/metadata/objects", json=ticket)
        assert defined.status_code == 201, defined.text
    return crm.admin_token


async def test_docs_page_shows_the_tenants_objects(
    web_server: str, browser: Any, tmp_path: Path
) -> None:
    token = _token_with_a_ticket_object(web_server)
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.add_init_script(f"window.localStorage.setItem('metacrm_token', '{token}')")
        await page.goto(f"{web_server}/api/v1/docs")
        # Swagger UI fetched the caller's live OpenAPI and drew the object's operations.
        await page.get_by_text("/api/v1/data/ticket/{id}", exact=True).first.wait_for(
            timeout=20_000
        )
        await page.get_by_text("Create a Ticket record").first.wait_for(timeout=5_000)
        await page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)
        assert (tmp_path / "docs.png").stat().st_size > 10_000
    finally:
        await context.close()
