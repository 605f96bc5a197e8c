"""The live API documentation page, drawn by a real headless Chromium against a real server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD, PLATFORM_TOKEN
from tests.platform.test_processes import _free_port, _wait_ready

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (.ci/run installs it: make browser)",
)
# Flags for a sandboxed machine with no network but loopback (see the machine notes).
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    env = os.environ | {
        "METACRM_DATA_DIR": str(tmp_path / "data"),
        "METACRM_PLATFORM_ADMIN_TOKEN": PLATFORM_TOKEN,
    }
    env.pop("METACRM_DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "metacrm.platform.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


def _token_with_a_ticket_object(url: str) -> str:
    with httpx.Client(base_url=url, timeout=30) as http:
        created = http.post(
            "/api/v1/platform/tenants",
            headers={"Authorization": f"Bearer {PLATFORM_TOKEN}"},
            json={"name": "web", "admin_email": "admin@web.test", "admin_password": ADMIN_PASSWORD},
        )
        assert created.status_code == 201, created.text
        token = http.post(
            "/api/v1/auth/token",
            data={"tenant": "web", "username": "admin@web.test", "password": ADMIN_PASSWORD},
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


async def test_docs_page_shows_the_tenants_objects(server: str, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    token = _token_with_a_ticket_object(server)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.add_init_script(f"window.localStorage.setItem('metacrm_token', '{token}')")
            await page.goto(f"{server}/api/v1/docs")
            # Swagger UI fetched the caller's live OpenAPI and drew the object's operations.
            await page.get_by_text("/api/v1/data/ticket/{id}", exact=True).first.wait_for(
                timeout=20_000
            )
            await page.get_by_text("Create a Ticket record").first.wait_for(timeout=5_000)
            await page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)
            assert (tmp_path / "docs.png").stat().st_size > 10_000
        finally:
            await browser.close()
