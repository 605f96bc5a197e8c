"""Real `metacrm serve` processes on loopback ports, for tests that need a real server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import PG_URL, PLATFORM_TOKEN
from tests.platform.test_processes import _free_port, _wait_ready


def server_env(backend: str, data_dir: Path, **env: str) -> dict[str, str]:
    """The environment of a `metacrm` process of the test servers (serve, worker) on
    SQLite or PostgreSQL, with extra METACRM_* settings from `env`."""
    environ = os.environ | {
        "METACRM_DATA_DIR": str(data_dir),
        "METACRM_PLATFORM_ADMIN_TOKEN": PLATFORM_TOKEN,
        "METACRM_SECRET_KEY": "served-test-signing-key-" + "s" * 24,
    }
    environ.pop("METACRM_DATABASE_URL", None)
    if backend == "postgresql":
        environ["METACRM_DATABASE_URL"] = PG_URL or ""
    return environ | env


@contextmanager
def serve(backend: str, data_dir: Path, **env: str) -> Iterator[str]:
    """A `metacrm serve` on SQLite or PostgreSQL (extra METACRM_* settings in `env`);
    its base URL while the block runs."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "metacrm.platform.cli", "serve", "--port", str(port)],
        env=server_env(backend, data_dir, **env),
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
