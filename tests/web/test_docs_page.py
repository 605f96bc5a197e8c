"""The live API documentation page, drawn by a real headless Chromium against a real server."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ADMIN_PASSWORD, PLATFORM_TOKEN
from tests.web.conftest import needs_chromium

pytestmark = needs_chromium


def _token_with_a_ticket_object(url: str) -> str:
    name = f"d{uuid.uuid4().hex[:10]}"
    admin = f"admin@{name}.test"
    with httpx.Client(base_url=url, timeout=30) as http:
        created = http.post(
            "/api/v1/platform/tenants",
            headers={"Authorization": f"Bearer {PLATFORM_TOKEN}"},
            json={"name": name, "admin_email": admin, "admin_password": ADMIN_PASSWORD},
        )
        assert created.status_code == 201, created.text
        token = http.post(
            "/api/v1/auth/token",
            data={"tenant": name, "username": admin, "password": ADMIN_PASSWORD},
        ).json()["access_token"]
        ticket = {
            "api_name": "ticket",
            "label": {"en": "Ticket", "zh-CN": "工单"},
            "fields": [
                {"api_name": "title", "type": "text", "required": True},
                {"api_name": "escalated", "type": "boolean"},
            ],
        }
        defined = http.post(
            "/api/v1/metadata/objects", json=ticket, headers={"Authorization": f"Bearer {token}"}
        )
        assert defined.status_code == 201, defined.text
        return token


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
