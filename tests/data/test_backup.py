"""Tenant backup and restore: every table round-trips, the restored tenant works, bad
archives are refused before anything changes, snapshots are consistent, nightly jobs."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from metacrm.errors import Conflict, NotFound
from metacrm.platform.backup import (
    Backup,
    BackupInvalid,
    backup_tenant,
    restore_tenant,
    verify_archive,
    verify_deep,
)
from metacrm.platform.backup_schedule import BACKUP_JOB, BackupSchedule
from metacrm.platform.cli import main
from metacrm.platform.db import Database
from metacrm.platform.system_tables import tenants
from metacrm.platform.tenancy import get_tenant
from metacrm.platform.worker import Worker
from metacrm.runtime.cache import TenantCache
from metacrm.runtime.files import read_file, save_file
from metacrm.runtime.jobs import Outbound, enqueue, jobs
from metacrm.runtime.tenant_tables import field_history
from tests.conftest import ACCOUNT, ADMIN_PASSWORD, PG_URL, TenantClient, login, new_tenant

#: Bytes of every value 0-255, a few chunks' worth: binary content must survive.
BLOB = bytes(range(256)) * 9000


def _db(app: Any) -> Database:
    db: Database = app.state.metacrm.db
    return db


def _storage(tenant: TenantClient) -> str:
    return Database.storage_name(tenant.tenant)


async def _records(client: TenantClient, obj: str, *, bin_: bool = False) -> list[dict[str, Any]]:
    url = f"/api/v1/data/{obj}/recycle-bin" if bin_ else f"/api/v1/data/{obj}"
    response = await client.get(url, params={"limit": 200})
    assert response.status_code == 200, response.text
    records: list[dict[str, Any]] = response.json()["records"]
    return records


async def _crm_with_history(tenant: TenantClient, db: Database) -> dict[str, Any]:
    """crm-core with its sample data, and: a record in the recycle bin, field history, a
    comment, an approval waiting for a manager, and a stored binary file."""
    response = await tenant.post("/api/v1/packs/install", params={"example": "crm-core"})
    assert response.status_code in (200, 201), response.text
    response = await tenant.patch(
        "/api/v1/metadata/objects/account/fields/phone", json={"track_history": True}
    )
    assert response.status_code == 200, response.text
    accounts = await _records(tenant, "account")
    kept = accounts[0]
    response = await tenant.patch(f"/api/v1/data/account/{kept['id']}", json={"phone": "+86 10 1"})
    assert response.status_code == 200, response.text
    doomed = await tenant.create("account", {"name": "Gone Ltd"})
    assert (await tenant.delete(f"/api/v1/data/account/{doomed['id']}")).status_code == 204
    response = await tenant.post(
        f"/api/v1/data/account/{kept['id']}/comments", json={"body": "备份 test ✓"}
    )
    assert response.status_code == 201, response.text
    boss = await tenant.add_user("boss@backup.test", role="sales_manager")
    rep = await tenant.add_user("rep@backup.test", role="sales_rep", manager_id=boss.user_id)
    quote = await rep.create("quote", {"name": "Big discount", "discount": "25"})
    response = await rep.post(f"/api/v1/data/quote/{quote['id']}/approvals", json={})
    assert response.status_code == 201, response.text
    async with db.tenant(_storage(tenant)) as conn:
        stored = await save_file(
            conn, "blob.bin", "application/octet-stream", [BLOB], purpose="test"
        )
        # A job waiting far ahead (no worker runs it in this test).
        await enqueue(conn, "test.later", {"n": 1}, run_at=dt.datetime(2100, 1, 1, tzinfo=dt.UTC))
    return {"kept": kept, "doomed": doomed, "quote": quote, "file": stored.id}


def _summary(manifest: dict[str, Any]) -> dict[str, tuple[int, str]]:
    return {name: (t["rows"], t["sha256"]) for name, t in manifest["tables"].items()}


async def test_restore_into_a_new_tenant_keeps_every_table_and_works(
    app: Any, tenant: TenantClient, tmp_path: Path
) -> None:
    db = _db(app)
    made = await _crm_with_history(tenant, db)
    taken = await backup_tenant(db, tenant.tenant, out=tmp_path / "crm.zip")
    assert (tmp_path / "crm.zip").stat().st_mode & 0o777 == 0o600
    manifest = taken.manifest
    assert manifest["format_version"] == 1 and manifest["dialect"] == db.dialect
    assert manifest["tenant"]["name"] == tenant.tenant and manifest["metadata_version"] == 2
    tables = manifest["tables"]
    for name in ("mc_user", "mc_audit", "mc_field_history", "mc_approval", "mc_approval_task",
                 "mc_comment", "mc_job", "mc_file", "mc_file_chunk", "mc_metadata_version",
                 "mc_sequence", "account", "quote"):  # fmt: skip
        assert tables[name]["rows"] > 0, name

    new = f"r{uuid.uuid4().hex[:12]}"
    await restore_tenant(db, taken.path, new)
    again = await backup_tenant(db, new, out=tmp_path / "again.zip")
    assert _summary(again.manifest) == _summary(manifest)  # every table, count and checksum
    assert again.manifest["tenant"]["label"] == manifest["tenant"]["label"]

    # Values read directly from the restored storage.
    async with db.tenant(Database.storage_name(new), writes=False) as conn:
        content = b"".join([chunk async for chunk in read_file(conn, made["file"])])
        history = await conn.execute(sa.select(field_history.c.field, field_history.c.new_value))
        changes = {(row.field, row.new_value) for row in history}
    assert content == BLOB
    assert ("phone", "+86 10 1") in changes

    # The restored tenant works: its users sign in, lists and the recycle bin answer, the
    # pending approval is approved, auto-numbers continue where they were.
    token = await login(tenant.http, new, "boss@backup.test", ADMIN_PASSWORD)
    boss = TenantClient(tenant.http, new, token)
    admin = TenantClient(
        tenant.http,
        new,
        await login(tenant.http, new, f"admin@{tenant.tenant}.test", ADMIN_PASSWORD),
    )
    assert len(await _records(admin, "account")) == len(await _records(tenant, "account"))
    assert [r["id"] for r in await _records(admin, "account", bin_=True)] == [made["doomed"]["id"]]
    inbox = (await boss.get("/api/v1/approvals", params={"assigned_to": "me"})).json()["tasks"]
    assert len(inbox) == 1
    response = await boss.post(f"/api/v1/approvals/{inbox[0]['approval_id']}/approve", json={})
    assert response.status_code == 200, response.text
    quote = (await admin.get(f"/api/v1/data/quote/{made['quote']['id']}")).json()
    assert quote["status"] == "approved"
    original = (await tenant.get(f"/api/v1/data/quote/{made['quote']['id']}")).json()
    assert original["status"] == "in_review"  # the source tenant is untouched
    next_here = await tenant.create("quote", {"name": "After"})
    next_there = await admin.create("quote", {"name": "After"})
    assert next_here["number"] == next_there["number"] != made["quote"]["number"]


async def _small(client: Any, count: int = 3) -> TenantClient:
    tenant = await new_tenant(client)
    await tenant.define(ACCOUNT)
    for i in range(count):
        await tenant.create("account", {"name": f"A{i}", "code": f"C{i}", "revenue": "12.50"})
    return tenant


def _rewrite(source: Path, target: Path, change: Any) -> None:
    """Copy an archive member by member, `change(name, data)` deciding each one's bytes."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = change(info.filename, old.read(info.filename))
            if data is not None:
                new.writestr(info.filename, data)


def _manifest_edit(edit: Any) -> Any:
    def change(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        edit(manifest)
        return json.dumps(manifest).encode()

    return change


def _flip_in(member: str) -> Any:
    def change(name: str, data: bytes) -> bytes:
        if name != member:
            return data
        at = len(data) // 2
        return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]

    return change


def _corruptions(good: Path, tmp: Path) -> list[tuple[str, Path, str]]:
    """(what, archive, the field the refusal names)."""
    cases: list[tuple[str, Path, str]] = []

    def add(what: str, field: str, write: Any) -> None:
        path = tmp / f"{what}.zip"
        write(path)
        cases.append((what, path, field))

    add("flipped-row", "account", lambda p: _rewrite(good, p, _flip_in("tables/account.jsonl")))
    add("flipped-byte", "archive", lambda p: _flip_raw(good, p))
    add(
        "truncated",
        "archive",
        lambda p: p.write_bytes(good.read_bytes()[: good.stat().st_size // 2]),
    )
    add("count", "account", lambda p: _rewrite(good, p, _manifest_edit(
        lambda m: m["tables"]["account"].update(rows=2))))  # fmt: skip
    add("checksum", "mc_user", lambda p: _rewrite(good, p, _manifest_edit(
        lambda m: m["tables"]["mc_user"].update(sha256="0" * 64))))  # fmt: skip
    add("format", "manifest", lambda p: _rewrite(good, p, _manifest_edit(
        lambda m: m.update(format_version=99))))  # fmt: skip
    add("no-manifest", "manifest", lambda p: _rewrite(
        good, p, lambda n, d: None if n == "manifest.json" else d))  # fmt: skip
    add("dropped-table", "account", lambda p: _rewrite(
        good, p, lambda n, d: None if n == "tables/account.jsonl" else d))  # fmt: skip
    add("foreign-table", "evil", lambda p: _add_table(good, p, "evil"))
    return cases


def _add_table(source: Path, target: Path, name: str) -> None:
    """A copy of the account table under another name, listed in the manifest."""
    shutil.copy(source, tmp := target.with_suffix(".tmp"))

    def listed(manifest: dict[str, Any]) -> None:
        entry = dict(manifest["tables"]["account"], file=f"tables/{name}.jsonl")
        manifest["tables"][name] = entry

    _rewrite(tmp, target, _manifest_edit(listed))
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "a") as new:
        new.writestr(f"tables/{name}.jsonl", old.read("tables/account.jsonl"))


def _flip_raw(source: Path, target: Path) -> None:
    """Flip one byte inside the compressed data of the account table's member."""
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = archive.getinfo("tables/account.jsonl")
    header = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[header + info.compress_size // 2] ^= 0xFF
    target.write_bytes(bytes(data))


async def test_corrupted_archives_are_refused_and_leave_the_target_untouched(
    app: Any, client: Any, settings: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _db(app)
    source = await _small(client)
    good = (await backup_tenant(db, source.tenant, out=tmp_path / "good.zip")).path
    with pytest.raises(Conflict):  # an archive is never overwritten
        await backup_tenant(db, source.tenant, out=good)
    target = await _small(client, count=5)
    before = sorted(r["name"] for r in await _records(target, "account"))
    cases = _corruptions(good, tmp_path)
    for what, path, field in cases:
        with pytest.raises(BackupInvalid) as refused:
            verify_archive(path)
        assert [e.field for e in refused.value.errors] == [field], what
        new = f"x{uuid.uuid4().hex[:12]}"
        with pytest.raises(BackupInvalid):
            await restore_tenant(db, path, new)
        with pytest.raises(NotFound):
            await get_tenant(db, new)
        if db.is_sqlite:
            assert not (db.data_dir / "tenants" / f"tenant_{new}.db").exists(), what
        with pytest.raises(BackupInvalid):
            await restore_tenant(db, path, target.tenant, replace=True)
        assert sorted(r["name"] for r in await _records(target, "account")) == before, what

    # The command line says which check failed and exits with 2.
    store = ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        store += ["--database-url", settings.database_url]
    flipped = next(path for what, path, _f in cases if what == "flipped-row")
    # (in a thread: the command runs its own event loop)
    assert await asyncio.to_thread(main, ["restore", str(flipped), "--tenant", "nope", *store]) == 2
    assert "table account does not match its sha256" in capsys.readouterr().err
    assert main(["backup", "verify", str(cases[2][1])]) == 2
    assert "not a whole zip archive" in capsys.readouterr().err

    # A good archive replaces the target's data; a new name that exists is a conflict.
    with pytest.raises(Conflict):
        await restore_tenant(db, good, target.tenant)
    command = ["restore", str(good), "--tenant", target.tenant, "--replace", *store]
    assert await asyncio.to_thread(main, command) == 0
    # The target's users are now the archive's: the old token is refused, theirs works.
    assert (await target.get("/api/v1/data/account")).status_code == 401
    email = f"admin@{source.tenant}.test"
    replaced = TenantClient(
        client, target.tenant, await login(client, target.tenant, email, ADMIN_PASSWORD)
    )
    assert sorted(r["name"] for r in await _records(replaced, "account")) == ["A0", "A1", "A2"]
    assert await asyncio.to_thread(main, ["backup", "verify", str(good), "--deep", *store]) == 0
    assert "restored and compared" in capsys.readouterr().out


async def test_a_failed_load_leaves_no_half_tenant(app: Any, client: Any, tmp_path: Path) -> None:
    """An archive whose checksums match but whose rows the database refuses (a duplicate
    primary key, checksums recomputed) rolls the whole load back."""
    db = _db(app)
    source = await _small(client)
    good = (await backup_tenant(db, source.tenant, out=tmp_path / "good.zip")).path
    bad = tmp_path / "bad.zip"
    lines: dict[str, bytes] = {}

    def double(name: str, data: bytes) -> bytes:
        if name == "tables/account.jsonl":
            data += data.splitlines(keepends=True)[0]
            lines["account"] = data
        return data

    _rewrite(good, tmp_path / "step.zip", double)
    _rewrite(tmp_path / "step.zip", bad, _manifest_edit(lambda m: m["tables"]["account"].update(
        rows=4, sha256=hashlib.sha256(lines["account"]).hexdigest())))  # fmt: skip
    verify_archive(bad)  # structurally sound: only the database can refuse it
    new = f"h{uuid.uuid4().hex[:12]}"
    with pytest.raises(BackupInvalid) as refused:
        await restore_tenant(db, bad, new)
    assert refused.value.errors[0].field == "account"
    with pytest.raises(NotFound):
        await get_tenant(db, new)
    if db.is_sqlite:
        assert not (db.data_dir / "tenants" / f"tenant_{new}.db").exists()
    else:
        async with db.system() as conn:
            schema = await conn.scalar(
                sa.text("SELECT count(*) FROM pg_namespace WHERE nspname = :n"),
                {"n": f"tenant_{new}"},
            )
        assert schema == 0
    with pytest.raises(BackupInvalid):
        await restore_tenant(db, bad, source.tenant, replace=True)
    assert len(await _records(source, "account")) == 3


@pytest.mark.slow
async def test_backup_during_writes_is_one_point_in_time(
    app: Any, client: Any, tmp_path: Path
) -> None:
    """Each create writes its record and its audit row in one transaction: an archive taken
    while creates run holds as many of the one as of the other."""
    db = _db(app)
    tenant = await _small(client, count=1)
    stop = asyncio.Event()

    async def write() -> int:
        made = 0
        while not stop.is_set():
            await tenant.create("account", {"name": f"W{made}"})
            made += 1
        return made

    writer = asyncio.create_task(write())
    await asyncio.sleep(0.05)
    taken: list[Backup] = []
    for i in range(3):
        taken.append(await backup_tenant(db, tenant.tenant, out=tmp_path / f"live{i}.zip"))
    stop.set()
    made = await writer
    for archive in taken:
        with zipfile.ZipFile(archive.path) as zf:
            accounts = zf.read("tables/account.jsonl").splitlines()
            audit = [json.loads(line) for line in zf.read("tables/mc_audit.jsonl").splitlines()]
        creates = [a for a in audit if a["action"] == "record.create" and a["object"] == "account"]
        assert len(accounts) == len(creates) == archive.manifest["tables"]["account"]["rows"]
        assert 1 <= len(accounts) <= made + 1
        verify_archive(archive.path)


async def test_nightly_backups_run_on_the_queue_and_keep_the_newest(
    app: Any, client: Any, tmp_path: Path, backend: str
) -> None:
    if backend == "postgresql" and os.environ.get("CI"):
        # The session's docs server (tests/conftest.py `docs`) shares CI's PostgreSQL
        # database and its in-process worker takes this test's jobs; passes run alone.
        pytest.skip("a docs server's worker shares the database in the whole suite")
    db = _db(app)
    tenant = await _small(client, count=2)
    storage = _storage(tenant)
    folder = tmp_path / "nightly"
    schedule = BackupSchedule(folder, "0 2 * * *", keep=2)
    worker = Worker(db, TenantCache(), Outbound(), backups=schedule, name="nightly-test")
    start = dt.datetime(2031, 3, 1, 1, 0, tzinfo=dt.UTC)
    assert await worker.drain(storage, now=start) == 0  # arms the first night, 02:00
    for night in range(4):
        at = start + dt.timedelta(days=night, hours=1, seconds=30)
        assert await worker.drain(storage, now=at) == 1, night
        assert await worker.drain(storage, now=at) == 0  # the next one waits for tomorrow
    kept = sorted(p.name for p in folder.iterdir())
    assert kept == [f"{tenant.tenant}-2031030{day}T020030000000Z.zip" for day in (3, 4)]
    assert verify_archive(folder / kept[-1]).manifest["tables"]["account"]["rows"] == 2
    async with db.tenant(storage, writes=False) as conn:
        rows = (
            await conn.execute(
                sa.select(jobs.c.status, jobs.c.run_at, jobs.c.result)
                .where(jobs.c.kind == BACKUP_JOB)
                .order_by(jobs.c.run_at)
            )
        ).all()
    assert [r.status for r in rows] == ["done"] * 4 + ["pending"]
    assert rows[-1].run_at == dt.datetime(2031, 3, 5, 2, 0, tzinfo=dt.UTC)
    assert rows[3].result["pruned"] == [f"{tenant.tenant}-20310302T020030000000Z.zip"]

    # A worker whose settings have no backup_cron cancels the armed run.
    off = Worker(db, TenantCache(), Outbound(), name="nightly-off")
    await off.drain(storage, now=start + dt.timedelta(days=4))
    async with db.tenant(storage, writes=False) as conn:
        status = await conn.scalar(
            sa.select(jobs.c.status).where(jobs.c.kind == BACKUP_JOB).order_by(
                jobs.c.run_at.desc()).limit(1))  # fmt: skip
    assert status == "cancelled"


@pytest.mark.skipif(not PG_URL, reason="a restore across dialects needs PostgreSQL")
async def test_an_archive_from_sqlite_restores_on_postgresql(
    app: Any, client: Any, backend: str, tmp_path: Path
) -> None:
    if backend != "sqlite":
        pytest.skip("runs once, from the SQLite session")
    from metacrm.platform.migrate import upgrade_system

    tenant = await _small(client)
    await tenant.post(
        f"/api/v1/data/account/{(await _records(tenant, 'account'))[0]['id']}/comments",
        json={"body": "跨库 ✓"},
    )
    archive = await backup_tenant(_db(app), tenant.tenant, out=tmp_path / "lite.zip")
    postgres = Database(database_url=PG_URL, data_dir=tmp_path / "pg")
    try:
        await upgrade_system(postgres)
        await verify_deep(postgres, archive.path)  # restored there, every checksum equal
        name = f"p{uuid.uuid4().hex[:12]}"
        await restore_tenant(postgres, archive.path, name)
        back = await backup_tenant(postgres, name, out=tmp_path / "pg.zip")
        assert back.manifest["dialect"] == "postgresql"
        assert _summary(back.manifest) == _summary(archive.manifest)
        shutil.rmtree(tmp_path / "pg", ignore_errors=True)
        await postgres.drop_tenant_storage(Database.storage_name(name))
        async with postgres.system() as conn:
            await conn.execute(tenants.delete().where(tenants.c.name == name))
    finally:
        await postgres.dispose()
