"""The system tables shared by all tenants: tenants and their users."""

from __future__ import annotations

import sqlalchemy as sa

from metacrm.runtime.columns import NAMING_CONVENTION, UTCDateTime

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

users = sa.Table(
    "users",
    system_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column(
        "tenant_id", sa.Uuid(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("full_name", sa.String(255), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("is_admin", sa.Boolean(), nullable=False),
    sa.Column("is_active", sa.Boolean(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("password_changed_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("tenant_id", "email", name="uq_users_tenant_email"),
)
