"""The system tables shared by all tenants: the tenant registry (users live in each tenant)."""

from __future__ import annotations

import sqlalchemy as sa

from metacrm.types import NAMING_CONVENTION, UTCDateTime

system_metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

tenants = sa.Table(
    "tenants",
    system_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(41), nullable=False, unique=True),
    sa.Column("label", sa.String(255), nullable=False),
    sa.Column("storage", sa.String(63), nullable=False, unique=True),
    sa.Column("default_language", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)
