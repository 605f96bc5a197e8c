"""The canonical encoding of a tenant's tables in a backup archive, the same on every dialect.

Each table becomes JSON Lines: one object per row, keys sorted, no spaces, in primary-key
order (strings compared by code point on every dialect). Values are written by column
type: UUIDs as text, datetimes as ISO 8601 in UTC, dates as ISO dates, exact decimals as
plain strings, bytes as base64, JSON and multi-picklists as JSON. The sha256 of those
bytes is therefore the same for the same data on SQLite and on PostgreSQL, which is what
lets an archive taken on one restore on the other and be checked there, table by table.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from metacrm.errors import FieldError, MetacrmError
from metacrm.metadata.model import MetadataModel
from metacrm.metadata.store import metadata_versions, tenant_metadata
from metacrm.runtime.columns import build_table
from metacrm.types import NAMING_CONVENTION, ExactDecimal, UTCDateTime

#: What `manifest.json` says it is, and the layouts this code reads.
FORMAT = "metacrm-backup"
FORMAT_VERSION = 1
KNOWN_FORMAT_VERSIONS = frozenset({1})
MANIFEST = "manifest.json"


class BackupInvalid(MetacrmError):
    """An archive that cannot be trusted or loaded: nothing was touched."""

    status, code, title = 422, "backup-invalid", "The backup archive is invalid"


def refuse(check: str, message: str) -> BackupInvalid:
    """The error for one failed check (`check` names the table or the part checked)."""
    return BackupInvalid(
        f"the archive is refused: {message}", [FieldError(check, "backup", message)]
    )


def table_file(name: str) -> str:
    """The archive member holding a table's rows."""
    return f"tables/{name}.jsonl"


def internal_tables() -> list[sa.Table]:
    """The tables metacrm keeps in every tenant's storage beside the object tables (each
    module registers its own in tenant_metadata when imported: import them first)."""
    return list(tenant_metadata.sorted_tables)


def object_tables(model: MetadataModel) -> list[sa.Table]:
    """One table per object of `model`, as its metadata version creates it."""
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    return [build_table(obj, metadata) for obj in model.objects]


def storage_tables(model: MetadataModel) -> list[sa.Table]:
    """Every table of a tenant's storage at `model`: internal ones first, then objects."""
    return [*internal_tables(), *object_tables(model)]


def row_order(table: sa.Table, dialect: str) -> list[sa.ColumnElement[Any]]:
    """ORDER BY of a dump: the primary key, strings by code point (PostgreSQL's "C")."""
    columns = list(table.primary_key.columns) or list(table.columns)
    order: list[sa.ColumnElement[Any]] = []
    for column in columns:
        textual = isinstance(column.type, sa.String) and dialect == "postgresql"
        order.append(column.collate("C") if textual else column)
    return order


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str | float | dict | list):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"cannot archive a {type(value).__name__}")


def encode_row(table: sa.Table, row: Mapping[Any, Any]) -> bytes:
    """One row as its canonical JSON line (keys are the storage's column names)."""
    data = {column.name: _encode(row[column]) for column in table.columns}
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8") + b"\n"


def _decoder(type_: sa.types.TypeEngine[Any]) -> Callable[[Any], Any]:
    if isinstance(type_, UTCDateTime):
        return dt.datetime.fromisoformat
    if isinstance(type_, ExactDecimal):
        return Decimal
    if isinstance(type_, sa.Uuid):
        return uuid.UUID
    if isinstance(type_, sa.DateTime):
        return dt.datetime.fromisoformat
    if isinstance(type_, sa.Date):
        return dt.date.fromisoformat
    if isinstance(type_, sa.LargeBinary):
        return lambda text: base64.b64decode(text, validate=True)
    return lambda value: value


@dataclass
class RowDecoder:
    """Turns a table's JSON lines back into values ready to insert."""

    table: sa.Table
    _columns: list[tuple[str, str, Callable[[Any], Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._columns = [(c.name, c.key, _decoder(c.type)) for c in self.table.columns]

    def decode(self, line: bytes, number: int) -> dict[str, Any]:
        """The row of line `number` keyed by column key; BackupInvalid when malformed."""
        where = f"{self.table.name} line {number}"
        try:
            data = json.loads(line)
        except ValueError:
            raise refuse(self.table.name, f"{where} is not JSON") from None
        if not isinstance(data, dict) or set(data) != {name for name, _k, _d in self._columns}:
            raise refuse(self.table.name, f"{where} does not hold the table's columns")
        try:
            return {
                key: None if data[name] is None else decode(data[name])
                for name, key, decode in self._columns
            }
        except (TypeError, ValueError) as error:
            raise refuse(self.table.name, f"{where} holds a bad value: {error}") from None


@dataclass
class TableDigest:
    """Rows seen and the sha256 of their canonical lines, computed as they stream."""

    rows: int = 0
    _hash: Any = field(default_factory=hashlib.sha256)

    def add(self, line: bytes) -> None:
        self.rows += 1
        self._hash.update(line)

    @property
    def sha256(self) -> str:
        return str(self._hash.hexdigest())


def latest_model(manifest: Mapping[str, Any], documents: Mapping[int, Any]) -> MetadataModel:
    """The archived model at the manifest's metadata version (`documents`: version ->
    document of the archived mc_metadata_version rows)."""
    version = manifest.get("metadata_version")
    if not isinstance(version, int) or version < 0:
        raise refuse("manifest", "metadata_version is not a version number")
    if version == 0:
        return MetadataModel()
    if version not in documents:
        raise refuse(metadata_versions.name, f"metadata version {version} is missing")
    try:
        return MetadataModel.model_validate(documents[version])
    except ValueError as error:
        message = f"metadata version {version} is invalid: {error}"
        raise refuse(metadata_versions.name, message) from None
