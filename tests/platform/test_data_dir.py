"""One data directory: what the command line writes by default, `make run`'s server serves."""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx

from tests.doc_runner import DocsRun

PASSWORD = "long enough pw 1"


def _cli(docs: DocsRun, *args: str) -> subprocess.CompletedProcess[str]:
    """`metacrm ARGS` in the server's directory, with no --data-dir, as a reader types it."""
    return subprocess.run(
        [sys.executable, "-m", "metacrm.platform.cli", *args],
        cwd=docs.server.directory,
        env=docs.server.env,
        capture_output=True,
        text=True,
        timeout=180,
    )


async def test_cli_commands_use_the_store_make_run_serves(docs: DocsRun) -> None:
    name = f"cli_{uuid.uuid4().hex[:8]}"
    created = _cli(
        docs, "tenant", "create", name, "--admin", "boss@cli.test", "--password", PASSWORD
    )
    assert created.returncode == 0, created.stderr
    async with httpx.AsyncClient(base_url=docs.server.url, timeout=60) as http:
        login = await http.post(
            "/api/v1/auth/token",
            data={"tenant": name, "username": "boss@cli.test", "password": PASSWORD},
        )
    assert login.status_code == 200, login.text
    listed = _cli(docs, "pack", "list", "--tenant", "demo")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("crm-core "), listed.stdout
