"""Alembic environment: runs the system-table migrations on the connection it is given."""

from __future__ import annotations

from alembic import context

from metacrm.platform.system_tables import system_metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=system_metadata,
    version_table_schema=context.config.attributes.get("schema"),
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
