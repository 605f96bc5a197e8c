"""The wheel carries what a deployment needs: migrations, example packs, the schema."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_migrations_examples_and_schema(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("metacrm-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "metacrm/_bundled/migrations/env.py" in names
    assert "metacrm/_bundled/migrations/versions/0001_tenants.py" in names
    assert "metacrm/_bundled/examples/crm-core/pack.json" in names
    assert "metacrm/metadata/schemas/metadata.schema.json" in names
