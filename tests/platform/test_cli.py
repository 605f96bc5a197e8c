"""The command line: db upgrade, tenant create, metadata plan and apply."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from metacrm.platform.cli import main
from tests.conftest import PG_URL


@pytest.fixture
def cli_args(backend: str, tmp_path: Path) -> list[str]:
    args = ["--data-dir", str(tmp_path / "data")]
    if backend == "postgresql":
        args += ["--database-url", PG_URL or ""]
    return args


def test_tenant_create_and_metadata_plan_apply(
    cli_args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    name = f"cli_{uuid.uuid4().hex[:12]}"
    assert main(["db", "upgrade", *cli_args]) == 0
    assert (
        main(
            [
                "tenant",
                "create",
                name,
                "--admin",
                "boss@cli.test",
                "--password",
                "long enough pw",
                *cli_args,
            ]
        )
        == 0
    )
    assert "created" in capsys.readouterr().out
    assert (
        main(
            [
                "tenant",
                "create",
                name,
                "--admin",
                "boss@cli.test",
                "--password",
                "long enough pw",
                *cli_args,
            ]
        )
        == 2
    )
    assert "exists already" in capsys.readouterr().err
    document = tmp_path / "model.json"
    document.write_text(
        json.dumps(
            {"objects": [{"api_name": "lead", "fields": [{"api_name": "company", "type": "text"}]}]}
        )
    )
    assert main(["metadata", "plan", str(document), "--tenant", name, *cli_args]) == 0
    assert "+ object lead (1 fields)" in capsys.readouterr().out
    assert main(["metadata", "apply", str(document), "--tenant", name, *cli_args]) == 0
    assert "applied as metadata version 1" in capsys.readouterr().out
    document.write_text(json.dumps({"objects": [{"api_name": "lead", "fields": []}]}))
    assert main(["metadata", "plan", str(document), "--tenant", name, *cli_args]) == 0
    out = capsys.readouterr().out
    assert "- lead.company" in out and "--confirm" in out
    assert main(["metadata", "apply", str(document), "--tenant", name, *cli_args]) == 2
    assert "destroys or narrows data" in capsys.readouterr().err
    assert main(["metadata", "apply", str(document), "--tenant", name, "--confirm", *cli_args]) == 0


def test_tenant_create_refuses_a_short_password(
    cli_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            ["tenant", "create", "shorty", "--admin", "a@b.test", "--password", "short", *cli_args]
        )
        == 2
    )
    assert "password" in capsys.readouterr().err
