"""The `metacrm` command line: serve, worker, db upgrade, tenant create, metadata, packs, backup."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from metacrm.errors import MetacrmError
from metacrm.platform.db import Database
from metacrm.platform.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    """Flags first, then METACRM_* variables, then defaults."""
    overrides = {
        key: value
        for key in ("host", "port", "data_dir", "database_url", "workers", "demo")
        if (value := getattr(args, key, None)) not in (None, False)
    }
    return Settings(**overrides)


def _database(settings: Settings) -> Database:
    return Database(database_url=settings.database_url, data_dir=settings.data_dir)


async def _with_db(settings: Settings, work: Any) -> Any:
    from metacrm.platform.migrate import upgrade_system

    db = _database(settings)
    try:
        await upgrade_system(db)
        return await work(db)
    finally:
        await db.dispose()


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = _settings(args)
    # Workers are separate processes: hand them the settings through the environment.
    for key, value in settings.model_dump(exclude_none=True).items():
        os.environ[f"METACRM_{key.upper()}"] = str(value)
    if settings.workers > 1 and settings.demo:
        asyncio.run(_prepare_demo(settings))
        os.environ["METACRM_DEMO"] = "false"
    uvicorn.run(
        "metacrm.platform.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="info",
    )
    return 0


async def _prepare_demo(settings: Settings) -> None:
    from metacrm.platform.demo import ensure_demo
    from metacrm.platform.state import AppState

    async def work(db: Database) -> None:
        await ensure_demo(AppState(settings=settings, db=db, signing_key=settings.signing_key()))

    await _with_db(settings, work)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    async def work(db: Database) -> None:
        print("system tables are up to date")

    asyncio.run(_with_db(_settings(args), work))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run job workers apart from the web processes until interrupted (or, with --once,
    run what is due now and stop)."""
    import datetime as dt
    import signal

    from metacrm.platform.worker import Worker
    from metacrm.runtime.cache import TenantCache

    settings = _settings(args)

    async def work(db: Database) -> int:
        worker = Worker(
            db,
            TenantCache(),
            settings.outbound(),
            lease=dt.timedelta(seconds=settings.job_lease_seconds),
            poll_seconds=settings.job_poll_seconds,
            backups=settings.backup_schedule(),
        )
        if args.once:
            print(f"{await worker.run_once()} job(s) run")
            return 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        loops = [worker.run_forever(stop) for _ in range(args.concurrency)]
        print(f"worker {worker.name} running {args.concurrency} loop(s); Ctrl+C stops it")
        await asyncio.gather(*loops)
        return 0

    return int(asyncio.run(_with_db(settings, work)))


def _admin_password(args: argparse.Namespace) -> str:
    if args.password:
        return args.password
    if os.environ.get("METACRM_ADMIN_PASSWORD"):
        return os.environ["METACRM_ADMIN_PASSWORD"]
    if not sys.stdin.isatty():
        raise SystemExit("give --password or METACRM_ADMIN_PASSWORD (no terminal to prompt on)")
    return getpass.getpass(f"Password for {args.admin}: ")


def cmd_tenant_create(args: argparse.Namespace) -> int:
    from metacrm.platform.tenancy import check_password, create_tenant, create_user, normalise_email

    password = _admin_password(args)
    check_password(password, login=args.admin)
    email = normalise_email(args.admin)

    async def work(db: Database) -> None:
        tenant = await create_tenant(db, args.name, label=args.label)
        await create_user(db, tenant, email, password, is_admin=True)
        print(f"tenant {tenant.name} created; administrator {email}")

    asyncio.run(_with_db(_settings(args), work))
    return 0


def cmd_metadata(args: argparse.Namespace) -> int:
    from metacrm.metadata.merge import merge_document
    from metacrm.metadata.store import current_version, load_model
    from metacrm.platform.tenancy import get_tenant
    from metacrm.runtime.changes import apply_change, plan_change

    document = json.loads(Path(args.file).read_text(encoding="utf-8"))
    change = merge_document(document)

    async def work(db: Database) -> None:
        tenant = await get_tenant(db, args.tenant)
        if args.action == "plan":
            async with db.tenant(tenant.storage, writes=False) as conn:
                _new, plan = await plan_change(conn, change)
            print(plan.describe())
            if plan.destructive:
                print("\nThis plan destroys or narrows data: apply it with --confirm.")
            return
        applied = await apply_change(
            lambda: db.tenant(tenant.storage), change, confirm=args.confirm, source="cli"
        )
        print(applied.plan.describe())
        print(f"applied as metadata version {applied.version}")
        async with db.tenant(tenant.storage, writes=False) as conn:
            await load_model(conn, await current_version(conn))

    asyncio.run(_with_db(_settings(args), work))
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    default = Settings.model_fields["data_dir"].default
    parser.add_argument(
        "--data-dir",
        type=Path,
        help=f"where SQLite files live (METACRM_DATA_DIR, default {default})",
    )
    parser.add_argument("--database-url", help="PostgreSQL URL (METACRM_DATABASE_URL)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metacrm", description="A metadata-driven CRM platform.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the web server")
    _common(serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--demo", action="store_true", help="create the demo tenant on start")
    serve.set_defaults(handler=cmd_serve)

    worker = commands.add_parser("worker", help="run job workers apart from the web server")
    _common(worker)
    worker.add_argument("--once", action="store_true", help="run the jobs due now, then stop")
    worker.add_argument("--concurrency", type=int, default=1, help="jobs run at once (default 1)")
    worker.set_defaults(handler=cmd_worker)

    db = commands.add_parser("db", help="system tables")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply the system-table migrations")
    _common(upgrade)
    upgrade.set_defaults(handler=cmd_db_upgrade)

    tenant = commands.add_parser("tenant", help="tenants")
    tenant_commands = tenant.add_subparsers(dest="tenant_command", required=True)
    create = tenant_commands.add_parser("create", help="create a tenant and its administrator")
    _common(create)
    create.add_argument("name")
    create.add_argument("--admin", required=True, help="the administrator's e-mail")
    create.add_argument("--password", help="else METACRM_ADMIN_PASSWORD, else a prompt")
    create.add_argument("--label")
    create.set_defaults(handler=cmd_tenant_create)

    metadata = commands.add_parser("metadata", help="plan or apply a metadata document")
    metadata.add_argument("action", choices=["plan", "apply"])
    metadata.add_argument("file", help='a JSON document {"objects": [...]}')
    metadata.add_argument("--tenant", required=True)
    metadata.add_argument("--confirm", action="store_true", help="allow a destructive plan")
    _common(metadata)
    metadata.set_defaults(handler=cmd_metadata)
    _pack_parser(commands)
    _import_parser(commands)
    _backup_parser(commands)
    return parser


# ---------------------------------------------------------------- packs (metacrm pack ...)


def _load_with_dependencies(reference: str) -> list[Any]:
    """The pack at `reference` and, first, the packs it depends on (found beside it or
    among the bundled examples)."""
    from metacrm.metadata.packs import find_pack, load_path

    path = find_pack(reference)
    pack = load_path(path)
    chain: list[Any] = []
    for name in pack.manifest.depends:
        sibling = path.parent / name
        chain += _load_with_dependencies(str(sibling) if sibling.is_dir() else name)
    unique: dict[str, Any] = {}
    for item in [*chain, pack]:
        unique.setdefault(item.name, item)
    return list(unique.values())


def cmd_pack(args: argparse.Namespace) -> int:
    from metacrm.metadata.packs import find_pack, load_path
    from metacrm.platform.tenancy import get_tenant
    from metacrm.runtime import packs
    from metacrm.runtime.tenant_tables import create_tenant_tables

    if args.action != "list" and not args.pack:
        raise SystemExit(f"metacrm pack {args.action} needs a PACK")
    if args.action == "test":
        return _pack_test(args)
    if not args.tenant:
        raise SystemExit(f"metacrm pack {args.action} needs --tenant")

    async def work(db: Database) -> int:
        tenant = await get_tenant(db, args.tenant)
        async with db.tenant(tenant.storage) as conn:
            await create_tenant_tables(conn)
        if args.action == "list":
            async with db.tenant(tenant.storage, writes=False) as conn:
                for item in (await packs.installed_packs(conn)).values():
                    print(f"{item.name} {item.version}  (metadata version {item.metadata_version})")
            return 0
        pack = None if args.action == "uninstall" else load_path(find_pack(args.pack), partial=True)
        name = args.pack if args.action == "uninstall" else None
        action = args.action
        if action == "plan":
            assert pack is not None  # only uninstall goes by name
            async with db.tenant(tenant.storage, writes=False) as conn:
                installed = await packs.installed_packs(conn)
                action = "upgrade" if pack.name in installed else "install"
                outcome = await packs.plan_pack(conn, action, pack)
            print(f"{action} {outcome.name} {outcome.version}:")
            print(outcome.describe())
            if outcome.plan.destructive:
                print("\nThis plan destroys or narrows data: apply it with --confirm.")
            return 0
        outcome = await packs.run_action(
            lambda: db.tenant(tenant.storage),
            action,
            pack,
            name=name,
            confirm=args.confirm,
            seed=not args.no_seed,
        )
        print(outcome.describe())
        seeded = ", ".join(f"{n} {c}" for n, c in outcome.seeded.items())
        print(f"{action} {outcome.name}: metadata version {outcome.metadata_version}")
        if seeded:
            print(f"seed records: {seeded}")
        return 0

    return asyncio.run(_with_db(_settings(args), work))


def _pack_test(args: argparse.Namespace) -> int:
    """Run a pack's tests in a throwaway tenant (a temporary SQLite directory unless
    --database-url names PostgreSQL, where a throwaway schema is dropped afterwards)."""
    import tempfile

    from metacrm.runtime.packs import run_pack_tests

    chain = _load_with_dependencies(args.pack)

    async def work(db: Database) -> int:
        results = await run_pack_tests(db, chain)
        for result in results:
            print(f"{'ok  ' if result.passed else 'FAIL'} {result.name}")
            for message in result.messages:
                print(f"       {message}")
        failed = sum(not r.passed for r in results)
        print(
            f"{len(results) - failed} passed, {failed} failed ({chain[-1].name} {chain[-1].version})"
        )
        return 1 if failed else 0

    with tempfile.TemporaryDirectory() as scratch:
        settings = _settings(args)
        if not settings.database_url:
            settings = settings.model_copy(update={"data_dir": Path(scratch)})
        return asyncio.run(_with_db(settings, work))


def _pack_parser(commands: Any) -> None:
    pack = commands.add_parser("pack", help="metadata packs: plan, install, upgrade, ...")
    pack.add_argument("action", choices=["plan", "install", "upgrade", "uninstall", "list", "test"])
    pack.add_argument(
        "pack", nargs="?", help="a folder, .zip or .json bundle, or a bundled example's name"
    )
    pack.add_argument("--tenant", help="the tenant (all actions but test)")
    pack.add_argument("--confirm", action="store_true", help="allow a destructive plan")
    pack.add_argument("--no-seed", action="store_true", help="install without seed records")
    _common(pack)
    pack.set_defaults(handler=cmd_pack)


# ---------------------------------------------------------------- backup and restore


def cmd_backup(args: argparse.Namespace) -> int:
    from metacrm.platform import backup

    if args.action == "verify":
        if not args.archive:
            raise SystemExit("metacrm backup verify needs an ARCHIVE")
        path = Path(args.archive)
        if not args.deep:
            verified = backup.verify_archive(path)
            print(_verified_line(verified))
            return 0

        async def deep(db: Database) -> int:
            print(f"{_verified_line(await backup.verify_deep(db, path))}, restored and compared")
            return 0

        return int(asyncio.run(_with_db(_settings(args), deep)))
    if args.archive:
        raise SystemExit("metacrm backup takes no ARCHIVE (did you mean backup verify?)")
    if not args.tenant:
        raise SystemExit("metacrm backup needs --tenant")

    async def work(db: Database) -> int:
        settings = _settings(args)
        written = await backup.backup_tenant(
            db, args.tenant, out=args.out, backup_dir=settings.backup_schedule().directory
        )
        tables = len(written.manifest["tables"])
        print(f"{written.path}: {tables} tables, {written.rows} rows (mode 0600: keep it secret)")
        return 0

    return int(asyncio.run(_with_db(_settings(args), work)))


def _verified_line(verified: Any) -> str:
    manifest = verified.manifest
    rows = sum(t["rows"] for t in manifest["tables"].values())
    return (
        f"{verified.path}: ok, tenant {manifest['tenant']['name']}, {len(manifest['tables'])}"
        f" tables, {rows} rows, metadata version {manifest['metadata_version']},"
        f" taken {manifest['created_at']} on {manifest['dialect']}"
    )


def cmd_restore(args: argparse.Namespace) -> int:
    from metacrm.platform import backup

    async def work(db: Database) -> int:
        verified = await backup.restore_tenant(
            db, Path(args.archive), args.tenant, replace=args.replace
        )
        print(f"{_verified_line(verified)}; restored as tenant {args.tenant}")
        return 0

    return int(asyncio.run(_with_db(_settings(args), work)))


def _backup_parser(commands: Any) -> None:
    backup = commands.add_parser(
        "backup", help="back up a tenant into one archive, or verify an archive"
    )
    backup.add_argument("action", nargs="?", choices=["verify"], help="verify ARCHIVE")
    backup.add_argument("archive", nargs="?", help="the archive to verify")
    backup.add_argument("--tenant", help="the tenant to back up")
    backup.add_argument(
        "--out", type=Path, help="the archive to write (default: backup_dir/TENANT-TIME.zip)"
    )
    backup.add_argument(
        "--deep", action="store_true", help="verify by restoring into a scratch tenant"
    )
    _common(backup)
    backup.set_defaults(handler=cmd_backup)

    restore = commands.add_parser("restore", help="load an archive as a new or emptied tenant")
    restore.add_argument("archive")
    restore.add_argument("--tenant", required=True, help="the tenant to create (or replace)")
    restore.add_argument(
        "--replace", action="store_true", help="empty an existing tenant and load the archive"
    )
    _common(restore)
    restore.set_defaults(handler=cmd_restore)


# ---------------------------------------------------------------- import (metacrm import FILE)


def cmd_import(args: argparse.Namespace) -> int:
    from metacrm.platform.import_command import run_import

    return int(asyncio.run(_with_db(_settings(args), lambda db: run_import(db, args))))


def _import_parser(commands: Any) -> None:
    from metacrm.platform.import_command import add_parser

    add_parser(commands, _common)
    commands.choices["import"].set_defaults(handler=cmd_import)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except MetacrmError as error:
        print(f"error: {error.detail}", file=sys.stderr)
        for item in error.errors:
            print(f"  {item.field}: {item.message} [{item.code}]", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
