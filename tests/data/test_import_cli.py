"""`metacrm import FILE`: the pipeline in the command's own process, on the suite's databases."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from metacrm.platform import cli
from metacrm.platform.settings import Settings
from tests.conftest import TenantClient
from tests.data.test_imports import COMPANY, companies, csv_bytes


@pytest.fixture
async def crm(tenant: TenantClient) -> TenantClient:
    await tenant.define(COMPANY)
    return tenant


def command(settings: Settings, tenant: TenantClient, path: Path, *extra: str) -> list[str]:
    argv = ["import", str(path), "--object", "company", "--tenant", tenant.tenant]
    argv += ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        argv += ["--database-url", settings.database_url]
    return argv + list(extra)


async def main(argv: list[str]) -> int:
    # The command runs its own event loop: off this one's thread.
    return await asyncio.to_thread(cli.main, argv)


async def test_import_command_runs_reports_and_writes_the_error_file(
    crm: TenantClient, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "公司.csv"
    path.write_bytes(
        csv_bytes(
            [
                ["公司名称", "编号", "营收", "备注"],
                ["甲", "A", "1,000", ""],
                ["乙", "B", "abc", ""],
            ],
            encoding="gb18030",
        )
    )
    dry = await main(command(settings, crm, path, "--dry-run"))
    out = capsys.readouterr().out
    assert dry == 1 and "1 created" in out and "1 refused" in out
    assert await companies(crm) == []
    assert await main(command(settings, crm, path, "--map", "备注=")) == 1
    out = capsys.readouterr().out
    assert "2/2 rows (100%)" in out and "公司名称 -> name" in out and "备注 ->" not in out
    assert [c["name"] for c in await companies(crm)] == ["甲"]
    report = path.with_name(path.name + ".errors.csv").read_bytes()
    assert report.startswith("\ufeff".encode())
    lines = report.decode("utf-8-sig").splitlines()
    assert lines[0] == "公司名称,编号,营收,备注,row,errors"
    assert lines[1].startswith("乙,B,abc,,3,\"营收 (revenue): 'abc' is not a number")
    # Every row in: exit 0; an upsert by the external id updates what is there.
    fixed = tmp_path / "fixed.csv"
    fixed.write_bytes(csv_bytes([["code", "name", "revenue"], ["B", "乙", "5"], ["A", "甲", "2"]]))
    argv = command(settings, crm, fixed, "--mode", "upsert", "--key", "code")
    assert await main([*argv, "--as", f"admin@{crm.tenant}.test"]) == 0
    assert "1 created, 1 updated" in capsys.readouterr().out
    listed: list[dict[str, Any]] = await companies(crm)
    assert [(c["name"], c["revenue"]) for c in listed] == [("乙", "5.00"), ("甲", "2.00")]


async def test_import_command_bad_usage_exits_2(
    crm: TenantClient, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(csv_bytes([["name"], ["x"]]))
    assert await main(command(settings, crm, tmp_path / "missing.csv")) == 2
    assert await main(command(settings, crm, path, "--map", "nope=name")) == 2
    assert "--map" in capsys.readouterr().err
    assert await main(command(settings, crm, path, "--mode", "update")) == 2
    assert "key_field" in capsys.readouterr().err
    junk = tmp_path / "junk.csv"
    junk.write_bytes(bytes(range(256)) * 10)
    assert await main(command(settings, crm, junk)) == 2
    with pytest.raises(SystemExit) as usage:
        cli.main(["import", str(path), "--tenant", crm.tenant])  # no --object
    assert usage.value.code == 2
    assert await companies(crm) == []
