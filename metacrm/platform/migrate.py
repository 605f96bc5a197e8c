"""Applies the alembic migrations of the system tables (`metacrm db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from metacrm.platform.db import SYSTEM_SCHEMA, Database

MIGRATIONS = Path(__file__).resolve().parent.parent / "_bundled" / "migrations"
_UPGRADE_LOCK = 0x6D657461  # any constant shared by every process of a deployment


def _upgrade(connection: Connection, schema: str | None) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    command.upgrade(config, "head")


async def upgrade_system(db: Database) -> None:
    """Bring the system tables to the newest revision; safe to run from many processes."""
    schema = None if db.is_sqlite else SYSTEM_SCHEMA
    async with db.system() as conn:
        if not db.is_sqlite:
            await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK})")
            await conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{SYSTEM_SCHEMA}"')
        await conn.run_sync(_upgrade, schema)
