"""Files kept in the tenant's own storage, in chunks: uploads to import, reports to download.

A file lives in the tenant's database rather than on a disk of one machine, so a
worker in another process (or on another host, on PostgreSQL) reads the upload the
web process received, a backup holds the tenant's files with its records, and erasing
a tenant erases its files. Content is stored in chunks of `CHUNK_SIZE` bytes and read
back one chunk per query, so neither writing nor reading holds a whole file in memory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import IO

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import NotFound
from metacrm.metadata.store import tenant_metadata
from metacrm.runtime.records import new_id, utcnow
from metacrm.types import UTCDateTime

#: Bytes per stored chunk: large enough for few rows, small enough for constant memory.
CHUNK_SIZE = 1 << 20

files = sa.Table(
    "mc_file",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("content_type", sa.String(127), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    #: What the file is for ("import", "import-errors", "export", ...).
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("created_by", sa.Uuid(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

file_chunks = sa.Table(
    "mc_file_chunk",
    tenant_metadata,
    sa.Column("file_id", sa.Uuid(), primary_key=True),
    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("data", sa.LargeBinary(), nullable=False),
)


@dataclass(frozen=True)
class StoredFile:
    """A stored file's description (its content is read with `read_file`)."""

    id: uuid.UUID
    name: str
    content_type: str
    size: int
    sha256: str
    purpose: str
    created_by: uuid.UUID | None
    created_at: dt.datetime


async def save_file(
    conn: AsyncConnection,
    name: str,
    content_type: str,
    content: AsyncIterable[bytes] | Iterable[bytes],
    *,
    purpose: str,
    created_by: uuid.UUID | None = None,
) -> StoredFile:
    """Store `content` (pieces of any size) as a new file, in the caller's transaction."""
    file_id, digest, size, seq = new_id(), hashlib.sha256(), 0, 0
    pending = bytearray()

    async def flush(final: bool) -> None:
        nonlocal seq
        while len(pending) >= CHUNK_SIZE or (final and pending):
            piece = bytes(pending[:CHUNK_SIZE])
            del pending[:CHUNK_SIZE]
            await conn.execute(
                file_chunks.insert(), {"file_id": file_id, "seq": seq, "data": piece}
            )
            seq += 1

    async for piece in _pieces(content):
        digest.update(piece)
        size += len(piece)
        pending += piece
        await flush(final=False)
    await flush(final=True)
    stored = StoredFile(
        id=file_id,
        name=name[:255],
        content_type=content_type[:127],
        size=size,
        sha256=digest.hexdigest(),
        purpose=purpose,
        created_by=created_by,
        created_at=utcnow(),
    )
    await conn.execute(files.insert(), [stored.__dict__])
    return stored


async def _pieces(content: AsyncIterable[bytes] | Iterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(content, AsyncIterable):
        async for piece in content:
            yield piece
    else:
        for piece in content:
            yield piece


async def file_info(conn: AsyncConnection, file_id: uuid.UUID) -> StoredFile:
    """A stored file's description; NotFound when there is none."""
    row = (await conn.execute(sa.select(files).where(files.c.id == file_id))).mappings().first()
    if row is None:
        raise NotFound(f"no file has id {file_id}")
    return StoredFile(**row)


async def read_file(conn: AsyncConnection, file_id: uuid.UUID) -> AsyncIterator[bytes]:
    """A stored file's content, one chunk per query (constant memory)."""
    seq = 0
    while True:
        piece = await conn.scalar(
            sa.select(file_chunks.c.data).where(
                file_chunks.c.file_id == file_id, file_chunks.c.seq == seq
            )
        )
        if piece is None:
            return
        yield bytes(piece)
        seq += 1


async def copy_to(conn: AsyncConnection, file_id: uuid.UUID, target: IO[bytes]) -> int:
    """Write a stored file into an open binary file (a temporary file for a reader that
    needs to seek, such as openpyxl's); the bytes written."""
    written = 0
    async for piece in read_file(conn, file_id):
        target.write(piece)
        written += len(piece)
    target.flush()
    return written


async def delete_file(conn: AsyncConnection, file_id: uuid.UUID) -> None:
    """Remove a stored file and its content (nothing when it is already gone)."""
    await conn.execute(file_chunks.delete().where(file_chunks.c.file_id == file_id))
    await conn.execute(files.delete().where(files.c.id == file_id))
