"""The versioned metadata store: every applied model, with its plan, author and source."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.metadata.model import MetadataModel
from metacrm.metadata.plan import Plan
from metacrm.types import NAMING_CONVENTION, JsonValue, UTCDateTime

#: The tables kept inside each tenant's storage (runtime.tenant_tables adds the rest).
tenant_metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

#: Every applied metadata change: the whole model after it, and the plan that made it.
metadata_versions = sa.Table(
    "mc_metadata_version",
    tenant_metadata,
    sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("author_id", sa.Uuid(), nullable=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("comment", sa.String(1000), nullable=True),
    sa.Column("document", JsonValue(), nullable=False),
    sa.Column("plan", JsonValue(), nullable=False),
)


@dataclass(frozen=True)
class VersionInfo:
    """One entry of a tenant's metadata history."""

    version: int
    created_at: dt.datetime
    author_id: uuid.UUID | None
    source: str
    comment: str | None
    plan: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "created_at": self.created_at.isoformat(),
            "author_id": str(self.author_id) if self.author_id else None,
            "source": self.source,
            "comment": self.comment,
            "plan": self.plan,
        }


async def current_version(conn: AsyncConnection) -> int:
    """The newest version number (0 for a tenant with no metadata yet)."""
    result = await conn.execute(sa.select(sa.func.max(metadata_versions.c.version)))
    return result.scalar() or 0


async def load_model(conn: AsyncConnection, version: int) -> MetadataModel:
    """The model as it was at `version` (the empty model at version 0)."""
    if version == 0:
        return MetadataModel()
    document: dict[str, Any] = (
        await conn.execute(
            sa.select(metadata_versions.c.document).where(metadata_versions.c.version == version)
        )
    ).scalar_one()
    return MetadataModel.model_validate(document)


async def record_version(
    conn: AsyncConnection,
    model: MetadataModel,
    plan: Plan,
    *,
    version: int,
    author_id: uuid.UUID | None,
    source: str,
    comment: str | None = None,
) -> None:
    """Store `model` as `version`; the primary key makes a concurrent apply fail cleanly."""
    await conn.execute(
        metadata_versions.insert().values(
            version=version,
            created_at=dt.datetime.now(dt.UTC),
            author_id=author_id,
            source=source,
            comment=comment,
            document=model.model_dump(mode="json", exclude_defaults=True),
            plan=plan.to_dict(),
        )
    )


async def list_versions(conn: AsyncConnection, *, limit: int = 100) -> list[VersionInfo]:
    """The newest versions first."""
    t = metadata_versions
    rows = await conn.execute(
        sa.select(t.c.version, t.c.created_at, t.c.author_id, t.c.source, t.c.comment, t.c.plan)
        .order_by(t.c.version.desc())
        .limit(limit)
    )
    return [
        VersionInfo(row.version, row.created_at, row.author_id, row.source, row.comment, row.plan)
        for row in rows
    ]
