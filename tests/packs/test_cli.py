"""`metacrm pack plan|install|upgrade|uninstall|list|test` on a SQLite data directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from metacrm.platform.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def create_tenant(capsys: pytest.CaptureFixture[str], data: list[str]) -> None:
    """The tenant acme, with an administrator, in the data directory `data` names."""
    created = ("tenant", "create", "acme", "--admin", "a@acme.test")
    assert run(capsys, *created, "--password", "a sound passphrase", *data)[0] == 0


def test_pack_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = ["--data-dir", str(tmp_path)]
    create_tenant(capsys, data)
    code, out = run(
        capsys, "pack", "plan", str(FIXTURES / "crm-core-1.0"), "--tenant", "acme", *data
    )
    assert code == 0 and out.startswith("install crm-core 1.0.0:") and "+ object account" in out
    code, out = run(
        capsys, "pack", "install", str(FIXTURES / "crm-core-1.0"), "--tenant", "acme", *data
    )
    assert code == 0 and "seed records: account 6" in out, out
    code, out = run(capsys, "pack", "plan", "crm-core", "--tenant", "acme", *data)
    assert out.startswith("upgrade crm-core 1.2.0:")
    # 1.1 makes opportunity.probability read-only for sales reps: a loss to confirm.
    code, out = run(capsys, "pack", "upgrade", "crm-core", "--tenant", "acme", *data)
    assert code == 2 and "role sales_rep loses edit access to opportunity.probability" in out
    code, out = run(capsys, "pack", "upgrade", "crm-core", "--tenant", "acme", "--confirm", *data)
    assert code == 0, out
    code, out = run(capsys, "pack", "install", "education", "--tenant", "acme", *data)
    assert code == 0, out
    code, out = run(capsys, "pack", "list", "--tenant", "acme", *data)
    assert "crm-core 1.2.0" in out and "education 1.0.0" in out
    code, out = run(capsys, "pack", "uninstall", "crm-core", "--tenant", "acme", *data)
    assert code == 2 and "needed by education" in out
    code, out = run(capsys, "pack", "uninstall", "education", "--tenant", "acme", *data)
    assert code == 2 and "confirm" in out
    code, out = run(
        capsys, "pack", "uninstall", "education", "--tenant", "acme", "--confirm", *data
    )
    assert code == 0, out


def test_pack_test_reports_each_case(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(capsys, "pack", "test", "education")
    assert code == 0, out
    assert "ok   lessons_left" in out and "5 passed, 0 failed (education 1.0.0)" in out


def test_pack_plan_lists_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Like the API, the CLI reads a pack file by file: one unreadable file hides nothing."""
    pack = tmp_path / "broken"
    shutil.copytree(FIXTURES / "crm-core-1.0", pack)
    (pack / "objects" / "campaign.json").write_text("{ this is not JSON", encoding="utf-8")
    views = pack / "list_views.json"
    views.write_text(
        views.read_text(encoding="utf-8").replace('"columns": [', '"columns": ["ghost", ', 1)
    )
    data = ["--data-dir", str(tmp_path / "data")]
    create_tenant(capsys, data)
    code, out = run(capsys, "pack", "plan", str(pack), "--tenant", "acme", *data)
    assert code != 0
    assert "objects/campaign.json" in out and "ghost" in out, out
