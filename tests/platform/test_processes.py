"""Two real server processes share one store: a field added through one is live in the other."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_PASSWORD, PG_URL, PLATFORM_TOKEN


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def two_servers(backend: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    env = os.environ | {
        "METACRM_DATA_DIR": str(tmp_path / "data"),
        "METACRM_PLATFORM_ADMIN_TOKEN": PLATFORM_TOKEN,
        "METACRM_SECRET_KEY": "shared-test-signing-key-" + "y" * 24,
    }
    if backend == "postgresql":
        env["METACRM_DATABASE_URL"] = PG_URL or ""
    processes, urls = [], []
    try:
        for _ in range(2):
            port = _free_port()
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "metacrm.platform.cli", "serve", "--port", str(port)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
            _wait_ready(urls[-1], processes[-1])
        yield urls[0], urls[1]
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)
            if process.stderr:
                process.stderr.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited: {process.stderr.read().decode() if process.stderr else ''}"
            )
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise TimeoutError(url)


def test_metadata_change_is_seen_by_the_other_process(two_servers: tuple[str, str]) -> None:
    first, second = two_servers
    tenant = f"shared_{uuid.uuid4().hex[:8]}"
    with httpx.Client(timeout=30) as http:
        created = http.post(
            f"{first}/api/v1/platform/tenants",
            headers={"Authorization": f"Bearer {PLATFORM_TOKEN}"},
            json={
                "name": tenant,
                "admin_email": "admin@shared.test",
                "admin_password": ADMIN_PASSWORD,
            },
        )
        assert created.status_code == 201, created.text
        token = http.post(
            f"{second}/api/v1/auth/token",
            data={"tenant": tenant, "username": "admin@shared.test", "password": ADMIN_PASSWORD},
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        obj = {"api_name": "ticket", "fields": [{"api_name": "title", "type": "text"}]}
        assert (
            http.post(f"{first}/api/v1/metadata/objects", json=obj, headers=auth).status_code == 201
        )
        # The second process has compiled nothing for this tenant yet; warm its cache.
        assert http.get(f"{second}/api/v1/data/ticket", headers=auth).status_code == 200
        field = {
            "api_name": "priority",
            "type": "picklist",
            "values": [{"value": "high"}, {"value": "low"}],
        }
        added = http.post(
            f"{first}/api/v1/metadata/objects/ticket/fields", json=field, headers=auth
        )
        assert added.status_code == 201, added.text
        # The very next request to the other process sees the new field.
        record = http.post(
            f"{second}/api/v1/data/ticket", json={"title": "t", "priority": "high"}, headers=auth
        )
        assert record.status_code == 201, record.text
        assert record.json()["priority"] == "high"
        spec = http.get(f"{second}/api/v1/openapi.json", headers=auth).json()
        assert "priority" in spec["components"]["schemas"]["Ticket"]["properties"]
