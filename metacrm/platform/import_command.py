"""`metacrm import FILE`: the import pipeline run in the command's own process, with a
progress bar, a summary and the error report written next to the file.

Exit codes: 0 when every row went in (or, with --dry-run, would), 1 when some rows were
refused (FILE.errors.csv lists them with their reasons), 2 on bad usage or a file that
cannot be read.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError, NotFound, RecordInvalid
from metacrm.metadata.store import current_version
from metacrm.platform.db import Database
from metacrm.platform.tenancy import get_tenant, normalise_email
from metacrm.runtime import files
from metacrm.runtime.actor import Actor
from metacrm.runtime.cache import TenantCache
from metacrm.runtime.compiler import CompiledTenant
from metacrm.runtime.data import imports as store
from metacrm.runtime.data.import_pipeline import run_dry, run_real, write_error_report
from metacrm.runtime.tenant_tables import create_tenant_tables, users


def add_parser(commands: Any, common: Any) -> None:
    """The `import` subcommand's arguments."""
    parser = commands.add_parser("import", help="import a CSV or .xlsx file into an object")
    parser.add_argument("file", help="the CSV or .xlsx file")
    parser.add_argument("--object", required=True, help="the object the rows go into")
    parser.add_argument("--tenant", required=True)
    parser.add_argument(
        "--as", dest="as_user", help="the importing user's e-mail (default: an administrator)"
    )
    parser.add_argument("--mode", choices=store.MODES, default="create")
    parser.add_argument(
        "--key", help="the key field of update and upsert: id, an external id or a unique field"
    )
    parser.add_argument(
        "--mapping", help="a saved mapping's name (default: proposed from the header)"
    )
    parser.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="COLUMN=FIELD",
        help="map a column to a field (FIELD.KEY: a lookup matched on KEY; empty: skip it)",
    )
    parser.add_argument("--dry-run", action="store_true", help="try the rows, write nothing")
    parser.add_argument("--encoding", help="the CSV's encoding (default: detected)")
    parser.add_argument("--sheet", help="the .xlsx sheet (default: the first)")
    parser.add_argument("--date-order", choices=store.DATE_ORDERS, default="ymd")
    parser.add_argument(
        "--time-zone", default="UTC", help="time zone of date-times written without one"
    )
    parser.add_argument(
        "--duplicates",
        choices=store.DUPLICATE_HANDLING,
        default="error",
        help="a row a duplicate rule refuses: an error, skipped, or saved anyway",
    )
    parser.add_argument(
        "--blank-cells",
        choices=store.BLANK_CELLS,
        default="keep",
        help="what a blank cell does to a record a row updates",
    )
    parser.add_argument("--limit", type=int, help="rows a dry run tries (default 1000)")
    common(parser)


def _mapping(proposed: list[dict[str, Any]], given: list[str]) -> list[dict[str, Any]]:
    """The proposed mapping with the --map COLUMN=FIELD[.KEY] overrides applied."""
    entries = {entry["column"]: dict(entry) for entry in proposed}
    for item in given:
        column, sep, target = item.partition("=")
        if not sep or column not in entries:
            raise RecordInvalid(
                f"--map {item!r} names no column of the file",
                [FieldError("--map", "unknown-column", f"columns: {', '.join(entries)[:500]}")],
            )
        field, _, key = target.partition(".")
        entries[column] |= {"field": field or None, "lookup_key": key or None}
    return list(entries.values())


class ProgressBar:
    """Rows done of the total and rows per second: one line redrawn on a terminal,
    a line every few seconds otherwise."""

    def __init__(self, out: IO[str], *, every: float = 5.0) -> None:
        self.out, self.every = out, every
        self.tty = out.isatty()
        self.started = self.shown = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if not self.tty and now - self.shown < self.every and done < total:
            return
        self.shown = now
        rate = done / max(now - self.started, 1e-6)
        share = f" ({100 * done // total}%)" if total else ""
        line = f"{done}/{total} rows{share}, {rate:.0f} rows/s"
        if self.tty:
            self.out.write(f"\r{line}")
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")


async def _actor(conn: AsyncConnection, email: str | None) -> Actor:
    """The user named by `email`, else the tenant's first administrator."""
    query = sa.select(users.c.id).where(users.c.is_active.is_(True))
    if email is not None:
        query = query.where(users.c.email == normalise_email(email))
    else:
        query = query.where(users.c.is_admin.is_(True)).order_by(users.c.created_at)
    user_id = await conn.scalar(query.limit(1))
    if user_id is None:
        raise NotFound(f"no active user is {email}" if email else "the tenant has no administrator")
    return await store.acting_user(conn, user_id)


def _read(path: Path) -> Iterator[bytes]:
    with path.open("rb") as raw:
        while piece := raw.read(files.CHUNK_SIZE):
            yield piece


async def run_import(db: Database, args: argparse.Namespace) -> int:
    """Run `metacrm import`; its exit code."""
    path = Path(args.file)
    if not path.is_file():
        print(f"error: no file {path}", file=sys.stderr)
        return 2
    tenant = await get_tenant(db, args.tenant)
    storage, cache = tenant.storage, TenantCache()
    async with db.tenant(storage) as conn:
        await create_tenant_tables(conn)

    @asynccontextmanager
    async def transact() -> AsyncIterator[tuple[AsyncConnection, CompiledTenant]]:
        async with db.tenant(storage) as conn:
            yield conn, await cache.compiled(conn, storage, await current_version(conn))

    options: dict[str, Any] = {
        "date_order": args.date_order,
        "time_zone": args.time_zone,
        "duplicates": args.duplicates,
        "blank_cells": args.blank_cells,
    }
    for name in ("encoding", "sheet", "limit"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    async with transact() as (conn, ct):
        actor = await _actor(conn, args.as_user)
        store.require_importer(ct, actor)
        stored = await files.save_file(
            conn,
            path.name,
            "application/octet-stream",
            _read(path),
            purpose="import",
            created_by=actor.user_id,
        )
        import_id = await store.create_import(
            conn,
            ct,
            actor,
            object=args.object,
            stored=stored,
            path=path,
            mode=args.mode,
            key_field=args.key,
            options=store.options_from_json(options),
            mapping_name=args.mapping,
        )
        if args.map:
            row = await store.import_row(conn, ct, actor, import_id)
            changes = {"mapping": _mapping(row.mapping, args.map)}
            await store.change_import(conn, ct, actor, import_id, changes)
        settings = await store.begin_run(conn, ct, actor, import_id, dry=args.dry_run)
    for entry in store.mapping_to_json(settings.mapping):
        if entry["field"]:
            key = f" (by {entry['lookup_key']})" if entry["lookup_key"] else ""
            print(f"  {entry['column']} -> {entry['field']}{key}")
    bar = ProgressBar(sys.stdout)
    if args.dry_run:
        await run_dry(transact, import_id, path, progress=bar)
    else:
        await run_real(transact, import_id, path, progress=bar)
    bar.close()
    return await _summary(transact, settings, path, dry=args.dry_run)


async def _summary(transact: Any, settings: store.ImportSettings, path: Path, *, dry: bool) -> int:
    async with transact() as (conn, _ct):
        row = (
            await conn.execute(sa.select(store.imports).where(store.imports.c.id == settings.id))
        ).one()
        if row.last_error:
            print(f"error: {row.last_error}", file=sys.stderr)
        what = "dry run" if dry else "import"
        print(
            f"{what} {row.id}: {row.status}; {row.done} rows: {row.created} created, "
            f"{row.updated} updated, {row.skipped} skipped, {row.failed} refused"
        )
        if row.failed:
            report = path.with_name(path.name + ".errors.csv")
            with report.open("w", encoding="utf-8-sig", newline="") as out:
                await write_error_report(conn, settings, out, "dry" if dry else "real")
            print(f"refused rows and their reasons: {report}")
    if row.status == "failed" or (dry and row.status != "checked"):
        return 2
    return 1 if row.failed else 0
