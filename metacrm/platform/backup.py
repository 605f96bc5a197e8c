"""Tenant backup and restore: one zip archive per backup, verified whole before a restore.

An archive holds `manifest.json` and one `tables/<table>.jsonl` per table of the tenant's
storage (metadata versions, object records, users, audit, field history, approvals,
comments, jobs, files...), in the canonical encoding of `metacrm.runtime.data.archive`.
The manifest names the format version, the metacrm version, the tenant (its row in the
system tables: label, language, status), when and on which dialect the backup was taken,
the metadata version, and per table its columns, row count and sha256.

A backup is one point in time: on SQLite the tenant's file is copied with SQLite's online
backup API and the copy is read; on PostgreSQL one REPEATABLE READ, READ ONLY transaction
reads the tenant's schema. An archive taken on one dialect restores on the other.

A restore checks the whole archive first (zip CRCs, manifest, format version, every
table's count and checksum, the tables and columns against the archived metadata) and
touches nothing when a check fails. It then loads the tenant in one transaction: the
internal tables, the object tables of the archived latest metadata version (created by
applying the plan from the empty model, as any metadata change is), then every row, with
the auto-number sequences as they were. A failed load leaves no half tenant; with
`replace`, an existing tenant keeps its data unless the whole load commits. A process that
has the replaced tenant's metadata compiled at the same version number keeps it until it
restarts: restart the servers after `restore --replace`.

Archives hold password, API-key and session hashes and webhook secrets: they are written
with mode 0600 (directories 0700) and must be kept as secret as the database itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import sqlite3
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from metacrm import __version__
from metacrm.errors import Conflict, FieldError, MetadataInvalid, NotFound
from metacrm.metadata.diff import diff
from metacrm.metadata.model import MetadataModel
from metacrm.metadata.store import current_version, load_model, metadata_versions
from metacrm.platform.db import TENANT_NAME, Database
from metacrm.platform.system_tables import tenants
from metacrm.runtime.data.archive import (
    FORMAT,
    FORMAT_VERSION,
    KNOWN_FORMAT_VERSIONS,
    MANIFEST,
    BackupInvalid,
    RowDecoder,
    TableDigest,
    encode_row,
    internal_tables,
    latest_model,
    object_tables,
    refuse,
    row_order,
    storage_tables,
    table_file,
)
from metacrm.runtime.ddl import apply_plan
from metacrm.runtime.records import new_id, utcnow
from metacrm.runtime.tenant_tables import create_tenant_tables, sequences

#: Rows per INSERT while loading, and bytes buffered per archive member while writing.
LOAD_BATCH = 1000
WRITE_BUFFER = 1 << 16
#: A table name an archive may carry: an api_name or an internal mc_ table.
_TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

__all__ = [
    "Backup",
    "BackupInvalid",
    "Verified",
    "archive_name",
    "backup_tenant",
    "restore_tenant",
    "verify_archive",
    "verify_deep",
]


@dataclass(frozen=True)
class Backup:
    """A written archive and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def rows(self) -> int:
        return sum(t["rows"] for t in self.manifest["tables"].values())


@dataclass(frozen=True)
class Verified:
    """An archive whose every check passed, with its manifest and latest model."""

    path: Path
    manifest: dict[str, Any]
    model: MetadataModel


def _register_tables() -> None:
    # Every module keeping a table in a tenant's storage registers it when imported; the
    # app imports them all (late: the worker imports this module).
    import metacrm.platform.app  # noqa: F401


def archive_name(tenant: str, at: dt.datetime) -> str:
    """The file name of a tenant's archive taken `at`: sorts by time, names its tenant."""
    return f"{tenant}-{at.astimezone(dt.UTC):%Y%m%dT%H%M%S%fZ}.zip"


# ---------------------------------------------------------------- reading a point in time


@asynccontextmanager
async def _snapshot(db: Database, storage: str) -> AsyncIterator[AsyncConnection]:
    """A read-only connection seeing the tenant's storage at one point in time."""
    if not db.is_sqlite:
        async with db.engine.connect() as conn:
            conn = await conn.execution_options(
                isolation_level="REPEATABLE READ",
                postgresql_readonly=True,
                **db.tenant_options(storage),
            )
            async with conn.begin():
                yield conn
        return
    source = db.data_dir / "tenants" / f"{storage}.db"  # where Database keeps the file
    if not source.exists():
        raise NotFound(f"no storage {storage!r}")
    # Beside the tenant files: the copy is as secret as they are (mkdtemp makes it 0700).
    with tempfile.TemporaryDirectory(dir=db.data_dir, prefix=".backup-") as scratch:
        copy = Path(scratch) / "tenant.db"
        await asyncio.to_thread(_sqlite_copy, source, copy)
        engine = create_async_engine(f"sqlite+aiosqlite:///{copy}")
        try:
            async with engine.connect() as conn, conn.begin():
                yield conn
        finally:
            await engine.dispose()


def _sqlite_copy(source: Path, target: Path) -> None:
    """Copy a live SQLite database in one step of the online backup API (one snapshot)."""
    with (
        closing(sqlite3.connect(source, timeout=30)) as src,
        closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


async def _table_columns(conn: AsyncConnection, storage: str | None) -> dict[str, list[str]]:
    """The tables of the storage `conn` reads, with their column names."""

    def inspect(sync: Any) -> dict[str, list[str]]:
        inspector = sa.inspect(sync)
        return {
            name: [c["name"] for c in inspector.get_columns(name, schema=storage)]
            for name in inspector.get_table_names(schema=storage)
        }

    return await conn.run_sync(inspect)


Sink = Callable[[sa.Table], IO[bytes]]


async def _dump(
    conn: AsyncConnection, storage: str | None, tables: list[sa.Table], sink: Sink | None
) -> dict[str, dict[str, Any]]:
    """Stream every table the storage has in canonical lines, into `sink` when given;
    per table its columns, row count and sha256. Refuses a storage holding a table or a
    column this metacrm does not know (it could not be restored)."""
    present = await _table_columns(conn, storage)
    known = {t.name: t for t in tables}
    for name in sorted(present):
        table = known.get(name)
        if table is None:
            raise Conflict(f"the tenant's storage holds table {name!r}, unknown to metacrm")
        if sorted(present[name]) != sorted(c.name for c in table.columns):
            raise Conflict(f"table {name!r} does not have the columns its definition names")
    dialect = conn.dialect.name
    summary: dict[str, dict[str, Any]] = {}
    for table in tables:
        if table.name not in present:
            continue  # an internal table newer than this storage: restored empty
        digest = TableDigest()
        member = sink(table) if sink is not None else None
        buffer = bytearray()
        result = await conn.stream(sa.select(table).order_by(*row_order(table, dialect)))
        async for row in result.mappings():
            line = encode_row(table, row)
            digest.add(line)
            if member is not None:
                buffer += line
                if len(buffer) >= WRITE_BUFFER:
                    member.write(buffer)
                    buffer.clear()
        if member is not None:
            member.write(buffer)
            member.close()
        summary[table.name] = {
            "file": table_file(table.name),
            "columns": [c.name for c in table.columns],
            "rows": digest.rows,
            "sha256": digest.sha256,
        }
    return summary


async def _tenant_row(db: Database, name: str) -> dict[str, Any]:
    async with db.system() as conn:
        row = (
            (await conn.execute(sa.select(tenants).where(tenants.c.name == name)))
            .mappings()
            .first()
        )
    if row is None:
        raise NotFound(f"no tenant named {name!r}")
    return dict(row)


# ---------------------------------------------------------------- backup


async def backup_tenant(
    db: Database,
    tenant: str,
    *,
    out: Path | None = None,
    backup_dir: Path | None = None,
    now: dt.datetime | None = None,
) -> Backup:
    """Write one archive of `tenant` to `out` (default: `backup_dir`, else
    data_dir/backups, named by `archive_name`); the file appears whole or not at all."""
    _register_tables()
    row = await _tenant_row(db, tenant)
    now = now or utcnow()
    out = out or (backup_dir or db.data_dir / "backups") / archive_name(tenant, now)
    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if out.exists():
        raise Conflict(f"{out} exists already; an archive is never overwritten")
    partial = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with (
            os.fdopen(descriptor, "wb") as raw,
            zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive,
        ):

            def member(table: sa.Table) -> IO[bytes]:
                return archive.open(table_file(table.name), "w", force_zip64=True)

            schema = None if db.is_sqlite else row["storage"]
            async with _snapshot(db, row["storage"]) as conn:
                version = await current_version(conn)
                model = await load_model(conn, version)
                summary = await _dump(conn, schema, storage_tables(model), member)
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "metacrm_version": __version__,
                "created_at": now.astimezone(dt.UTC).isoformat(),
                "dialect": db.dialect,
                "metadata_version": version,
                "tenant": {
                    "name": row["name"],
                    "label": row["label"],
                    "default_language": row["default_language"],
                    "status": row["status"],
                    "created_at": row["created_at"].isoformat(),
                },
                "tables": summary,
            }
            archive.writestr(MANIFEST, _manifest_bytes(manifest))
        os.chmod(partial, 0o600)
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return Backup(out, manifest)


def _manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")


# ---------------------------------------------------------------- verification


def verify_archive(path: Path) -> Verified:
    """Check an archive whole: zip structure and CRCs, the manifest and its format
    version, every table's row count and sha256, and its tables and columns against the
    archived metadata. Raises BackupInvalid naming the table or check that failed."""
    _register_tables()
    try:
        with zipfile.ZipFile(path) as archive:
            return _verify(path, archive)
    except FileNotFoundError:
        raise refuse("archive", f"there is no file {path}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise refuse("archive", f"not a whole zip archive ({error})") from None


def _verify(path: Path, archive: zipfile.ZipFile) -> Verified:
    names = set(archive.namelist())
    if MANIFEST not in names:
        raise refuse("manifest", "manifest.json is missing")
    try:
        manifest = json.loads(archive.read(MANIFEST))
    except ValueError:
        raise refuse("manifest", "manifest.json is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise refuse("manifest", "manifest.json does not describe a metacrm backup")
    if manifest.get("format_version") not in KNOWN_FORMAT_VERSIONS:
        known = ", ".join(str(v) for v in sorted(KNOWN_FORMAT_VERSIONS))
        raise refuse(
            "manifest",
            f"format version {manifest.get('format_version')!r} is unknown (this metacrm reads {known})",
        )
    tenant = manifest.get("tenant")
    if not (
        isinstance(tenant, dict)
        and isinstance(tenant.get("label"), str)
        and isinstance(tenant.get("default_language"), str)
    ):
        raise refuse("manifest", "the tenant's description is missing")
    tables = manifest.get("tables")
    if not isinstance(tables, dict):
        raise refuse("manifest", "the table list is missing")
    for name, info in tables.items():
        if not (
            isinstance(name, str)
            and _TABLE_NAME.match(name)
            and isinstance(info, dict)
            and info.get("file") == table_file(name)
            and isinstance(info.get("rows"), int)
            and isinstance(info.get("sha256"), str)
            and isinstance(info.get("columns"), list)
        ):
            raise refuse(str(name), f"the manifest's entry of table {name!r} is malformed")
    expected = {MANIFEST} | {info["file"] for info in tables.values()}
    for extra in sorted(names - expected):
        raise refuse("archive", f"unexpected member {extra!r}")
    for name, info in tables.items():
        if info["file"] not in names:
            raise refuse(name, f"{info['file']} is missing")
    documents: dict[int, Any] = {}
    for name, info in tables.items():
        digest = TableDigest()
        with archive.open(info["file"]) as member:
            for line in member:
                digest.add(line)
                if name == metadata_versions.name:
                    _keep_latest(line, manifest.get("metadata_version"), documents)
        if digest.rows != info["rows"]:
            raise refuse(
                name, f"table {name} has {digest.rows} rows where the manifest says {info['rows']}"
            )
        if digest.sha256 != info["sha256"]:
            raise refuse(name, f"table {name} does not match its sha256 in the manifest")
    model = latest_model(manifest, documents)
    _check_tables(manifest, model)
    return Verified(path, manifest, model)


def _keep_latest(line: bytes, version: Any, documents: dict[int, Any]) -> None:
    try:
        row = json.loads(line)
    except ValueError:
        return  # the checksum says whether the line is what was written
    if isinstance(row, dict) and row.get("version") == version:
        documents[version] = row.get("document")


def _check_tables(manifest: dict[str, Any], model: MetadataModel) -> None:
    """Every archived table is one this metacrm creates, with the same columns; every
    object of the archived model has its table."""
    tables: dict[str, dict[str, Any]] = manifest["tables"]
    known = {t.name: t for t in internal_tables()}
    objects = {t.name: t for t in object_tables(model)}
    for name in objects:
        if name not in tables:
            raise refuse(name, f"table {name} of object {name} is missing")
    for name, info in tables.items():
        table = objects[name] if name in objects else known.get(name)
        if table is None:
            raise refuse(name, f"table {name} is not one this metacrm knows")
        wanted = {c.name for c in table.columns}
        if set(info["columns"]) != wanted:
            raise refuse(name, f"table {name}'s columns differ from its definition")


# ---------------------------------------------------------------- restore


async def _storage_tables_present(db: Database, storage: str) -> bool:
    async with db.tenant(storage, writes=False) as conn:
        return bool(await _table_columns(conn, None if db.is_sqlite else storage))


async def _empty_storage(conn: AsyncConnection, storage: str) -> None:
    """Drop every table of the storage, in the caller's transaction."""
    if conn.dialect.name == "postgresql":
        # `storage` passed Database.storage_name's pattern: safe to quote as is.
        await conn.exec_driver_sql(f'DROP SCHEMA "{storage}" CASCADE')
        await conn.exec_driver_sql(f'CREATE SCHEMA "{storage}"')
        return
    for name in await _table_columns(conn, None):
        await conn.execute(sa.schema.DropTable(sa.Table(name, sa.MetaData())))


async def _load(db: Database, storage: str, verified: Verified, *, replace: bool) -> None:
    """Create the storage's tables and load every archived row, in one transaction."""
    tables: dict[str, dict[str, Any]] = verified.manifest["tables"]
    async with db.tenant(storage) as conn:
        if replace:
            await _empty_storage(conn, storage)
        await create_tenant_tables(conn)
        empty = MetadataModel()
        await conn.run_sync(apply_plan, diff(empty, verified.model), empty)
        await conn.execute(sequences.delete())  # the archived ones follow
        with zipfile.ZipFile(verified.path) as archive:
            for table in storage_tables(verified.model):
                if table.name in tables:
                    await _load_table(conn, archive, table, tables[table.name])


async def _load_table(
    conn: AsyncConnection, archive: zipfile.ZipFile, table: sa.Table, info: dict[str, Any]
) -> None:
    decoder, digest = RowDecoder(table), TableDigest()
    batch: list[dict[str, Any]] = []
    try:
        with archive.open(info["file"]) as member:
            for number, line in enumerate(member, 1):
                digest.add(line)
                batch.append(decoder.decode(line, number))
                if len(batch) >= LOAD_BATCH:
                    await conn.execute(table.insert(), batch)
                    batch.clear()
        if batch:
            await conn.execute(table.insert(), batch)
    except sa.exc.DBAPIError as error:
        first = str(error.orig).strip().splitlines()[:1]
        raise refuse(table.name, f"the database refused rows of {table.name}: {first}") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise refuse(table.name, f"{table.name} cannot be read ({error})") from None
    # The file may have changed since it was verified: the load commits only if not.
    if (digest.rows, digest.sha256) != (info["rows"], info["sha256"]):
        raise refuse(table.name, f"table {table.name} changed since it was verified")


async def restore_tenant(
    db: Database, path: Path, tenant: str, *, replace: bool = False
) -> Verified:
    """Load the archive at `path` as tenant `tenant`: a new one, or with `replace` an
    existing one emptied first. The archive is verified whole before anything is touched."""
    if not isinstance(tenant, str) or not TENANT_NAME.match(tenant):
        raise MetadataInvalid(
            "invalid tenant name",
            [FieldError("tenant", "tenant-name", "use 1-41 lower-case letters, digits or _")],
        )
    verified = await asyncio.to_thread(verify_archive, path)
    storage = db.storage_name(tenant)
    async with db.system() as conn:
        existing = await conn.scalar(sa.select(tenants.c.id).where(tenants.c.name == tenant))
    if replace and existing is None:
        raise NotFound(f"no tenant named {tenant!r} to replace")
    if not replace and existing is not None:
        raise Conflict(f"a tenant named {tenant!r} exists already (restore with --replace)")
    described = verified.manifest["tenant"]
    if replace:
        await _load(db, storage, verified, replace=True)
        async with db.system() as conn:
            await conn.execute(
                tenants.update()
                .where(tenants.c.name == tenant)
                .values(label=described["label"], default_language=described["default_language"])
            )
        return verified
    await db.create_tenant_storage(storage)
    if await _storage_tables_present(db, storage):
        raise Conflict(f"storage {storage!r} exists already and holds tables")
    try:
        await _load(db, storage, verified, replace=False)
        async with db.system() as conn:
            await conn.execute(
                tenants.insert().values(
                    id=new_id(),
                    name=tenant,
                    label=described["label"],
                    storage=storage,
                    default_language=described["default_language"],
                    status="active",
                    created_at=utcnow(),
                )
            )
    except BaseException:
        await db.drop_tenant_storage(storage)
        raise
    return verified


async def verify_deep(db: Database, path: Path) -> Verified:
    """Verify an archive, restore it into a scratch storage (no tenant registered, so no
    worker runs its jobs), compare every table's count and checksum, and drop it."""
    verified = await asyncio.to_thread(verify_archive, path)
    storage = db.storage_name(f"verify_{uuid.uuid4().hex[:16]}")
    await db.create_tenant_storage(storage)
    try:
        await _load(db, storage, verified, replace=False)
        async with _snapshot(db, storage) as conn:
            schema = None if db.is_sqlite else storage
            restored = await _dump(conn, schema, storage_tables(verified.model), None)
    finally:
        await db.drop_tenant_storage(storage)
    archived: dict[str, dict[str, Any]] = verified.manifest["tables"]
    for name, info in restored.items():
        want = archived.get(name, {"rows": 0, "sha256": TableDigest().sha256})
        if (info["rows"], info["sha256"]) != (want["rows"], want["sha256"]):
            raise refuse(
                name,
                f"restored table {name} differs: {info['rows']} rows, {want['rows']} archived",
            )
    return verified
