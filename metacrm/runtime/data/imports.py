"""File imports: their tables, their settings (mapping, mode, key, options) and their lifecycle.

An import is a row of `mc_import` naming an uploaded file (kept with `runtime.files`),
the object it goes into, a mapping of the file's columns to fields, a mode (create only,
update only, or upsert by a key field) and options. It moves through statuses:

    uploaded -> dry-running -> checked -> running -> done | failed | cancelled
                                         (reverting -> reverted)

A dry run is allowed while the import is `uploaded` or `checked`, and so are changes to
its settings (which drop the last dry run's report: it no longer describes the import).
The rows are processed by `runtime.data.import_pipeline` (in jobs, see
`runtime.data.import_jobs`, or in the CLI's own process); each row's outcome is a row
of `mc_import_row`, per run ("dry" or "real"). Saved mappings live in
`mc_import_mapping`, per object, for reuse by name.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import (
    BadRequest,
    Conflict,
    FieldError,
    NotFound,
    PermissionDenied,
    RecordInvalid,
)
from metacrm.metadata.store import tenant_metadata
from metacrm.metadata.values import ValueProblem, check_text
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.data.mapping import ColumnMapping, check_mapping, propose_mapping
from metacrm.runtime.data.sources import SourceProblem, count_rows, open_table
from metacrm.runtime.files import StoredFile
from metacrm.runtime.permissions import has_platform_permission
from metacrm.runtime.records import new_id, utcnow
from metacrm.runtime.tenant_tables import users
from metacrm.types import JsonValue, UTCDateTime

Mode = Literal["create", "update", "upsert"]
MODES: tuple[Mode, ...] = ("create", "update", "upsert")
DateOrder = Literal["ymd", "dmy", "mdy"]
DATE_ORDERS: tuple[DateOrder, ...] = ("ymd", "dmy", "mdy")
#: What happens to a row a duplicate rule refuses: reported as an error, skipped (its
#: duplicates reported), or written anyway past rules that only warn (allow_duplicates).
DUPLICATE_HANDLING = ("error", "skip", "allow")
BLANK_CELLS = ("keep", "clear")
Status = Literal[
    "uploaded",
    "dry-running",
    "checked",
    "running",
    "done",
    "failed",
    "reverting",
    "reverted",
    "cancelled",
]
#: Statuses in which the settings may change and a run may start.
PREPARING: tuple[Status, ...] = ("uploaded", "checked")
#: Statuses of an import whose real run wrote rows that a revert can take back.
REVERTIBLE: tuple[Status, ...] = ("done", "failed", "cancelled")
#: Rows a dry run tries by default: a dry run is one transaction rolled back at its end,
#: so a big file is tried on a sample (its first rows); `limit` changes it.
DRY_RUN_LIMIT = 1_000
DRY_RUN_LIMIT_MAX = 50_000
#: The longest header cell taken as a column name.
MAX_COLUMN_NAME = 1000

imports = sa.Table(
    "mc_import",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("mode", sa.String(8), nullable=False),
    sa.Column("key_field", sa.String(63), nullable=True),
    #: [{"column", "field", "lookup_key"}], one entry per column of the file.
    sa.Column("mapping", JsonValue(), nullable=False),
    #: {"date_order", "time_zone", "encoding", "sheet", "duplicates", "blank_cells", "limit"}.
    sa.Column("options", JsonValue(), nullable=False),
    sa.Column("file_id", sa.Uuid(), nullable=False),
    sa.Column("file_name", sa.String(255), nullable=False),
    sa.Column("columns", JsonValue(), nullable=False),
    sa.Column("format", sa.String(8), nullable=False),
    #: The encoding the file was read in (CSV), as detected or given.
    sa.Column("encoding", sa.String(32), nullable=True),
    sa.Column("error_file_id", sa.Uuid(), nullable=True),
    sa.Column("total", sa.Integer(), nullable=False),
    #: Rows of the file consumed by the last run: the checkpoint a resumed run starts at.
    sa.Column("done", sa.Integer(), nullable=False),
    sa.Column("created", sa.Integer(), nullable=False),
    sa.Column("updated", sa.Integer(), nullable=False),
    sa.Column("skipped", sa.Integer(), nullable=False),
    sa.Column("failed", sa.Integer(), nullable=False),
    #: Whether the counts are those of a dry run.
    sa.Column("dry_run", sa.Boolean(), nullable=False),
    sa.Column("reverted", sa.Integer(), nullable=False),
    sa.Column("revert_skipped", sa.Integer(), nullable=False),
    sa.Column("job_id", sa.Uuid(), nullable=True),
    sa.Column("created_by", sa.Uuid(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Index("ix_mc_import_created_by", "created_by", "id"),
)

import_rows = sa.Table(
    "mc_import_row",
    tenant_metadata,
    sa.Column("import_id", sa.Uuid(), primary_key=True),
    #: "dry" or "real".
    sa.Column("run", sa.String(4), primary_key=True),
    #: The row number as the user sees it in the file (the first data row is 2).
    sa.Column("row_no", sa.Integer(), primary_key=True, autoincrement=False),
    #: create, update, skip or error.
    sa.Column("action", sa.String(8), nullable=False),
    sa.Column("record_id", sa.Uuid(), nullable=True),
    #: Of an update: the values the row's fields held before it (what a revert restores).
    sa.Column("before", JsonValue(), nullable=True),
    #: The values the row wrote (a revert leaves a record changed since alone).
    sa.Column("after", JsonValue(), nullable=True),
    #: [{"column", "field", "code", "message"}].
    sa.Column("errors", JsonValue(), nullable=True),
    sa.Column("duplicates", JsonValue(), nullable=True),
    #: The row's cells, kept for refused rows only (the error report holds them).
    sa.Column("cells", JsonValue(), nullable=True),
    #: What a revert did with the row: reverted, changed (left alone), gone or error.
    sa.Column("revert", sa.String(8), nullable=True),
    sa.Column("revert_errors", JsonValue(), nullable=True),
    sa.Index("ix_mc_import_row_action", "import_id", "run", "action", "row_no"),
)

saved_mappings = sa.Table(
    "mc_import_mapping",
    tenant_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("object", sa.String(63), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("mapping", JsonValue(), nullable=False),
    sa.Column("created_by", sa.Uuid(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("object", "name"),
)


@dataclass(frozen=True)
class ImportOptions:
    """How a file is read and what happens to a row a duplicate rule refuses."""

    date_order: DateOrder = "ymd"
    #: The IANA time zone of date-times written without one ("Asia/Shanghai").
    time_zone: str = "UTC"
    encoding: str | None = None
    sheet: str | None = None
    duplicates: str = "error"
    #: What a blank cell does to a record a row updates: "keep" its value, or "clear" it.
    blank_cells: str = "keep"
    #: Rows a dry run tries (its sample).
    limit: int = DRY_RUN_LIMIT

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ImportSettings:
    """Everything a run needs to know about an import (a row of `mc_import`)."""

    id: uuid.UUID
    object: str
    status: str
    mode: Mode
    key_field: str | None
    mapping: list[ColumnMapping]
    options: ImportOptions
    file_id: uuid.UUID
    file_name: str
    columns: list[str]
    created_by: uuid.UUID
    done: int
    total: int


def require_importer(ct: CompiledTenant, actor: Actor) -> None:
    """Imports need the `import_data` platform permission (administrators hold it)."""
    if not has_platform_permission(ct.model, actor, "import_data"):
        raise PermissionDenied("your role may not import data (import_data)")


def import_object(ct: CompiledTenant, name: str, field: str = "object") -> CompiledObject:
    """The object an import goes into; a 422 naming `field` when there is none."""
    co = ct.objects.get(name)
    if co is None:
        raise BadRequest(
            f"no object {name[:63]!r}",
            [FieldError(field, "unknown-object", f"there is no object {name[:63]!r}")],
        )
    return co


def mapping_from_json(value: Any, field: str = "mapping") -> list[ColumnMapping]:
    """Column mappings from their JSON form; a 400 naming the entry that is malformed."""
    if not isinstance(value, list) or len(value) > 1000:
        raise BadRequest(
            "the mapping is malformed",
            [FieldError(field, "type", "a list of {column, field, lookup_key} objects")],
        )
    found = []
    for index, entry in enumerate(value):
        where = f"{field}/{index}"
        if not isinstance(entry, dict) or not isinstance(entry.get("column"), str):
            raise BadRequest(
                "the mapping is malformed",
                [FieldError(where, "type", "an object with a text `column`")],
            )
        unknown = set(entry) - {"column", "field", "lookup_key"}
        if unknown:
            raise BadRequest(
                "the mapping is malformed",
                [FieldError(where, "unknown-key", f"unknown keys: {sorted(unknown)[:5]}")],
            )
        target, key = entry.get("field"), entry.get("lookup_key")
        for name, item in (("column", entry["column"]), ("field", target), ("lookup_key", key)):
            if item is not None and (not _clean(item) or len(item) > 1000):
                raise BadRequest(
                    "the mapping is malformed",
                    [FieldError(f"{where}/{name}", "type", f"`{name}` is a clean text")],
                )
        found.append(ColumnMapping(entry["column"][:1000], target, key))
    return found


def _clean(value: Any) -> bool:
    """Whether `value` is a text every database stores as it is."""
    try:
        return isinstance(value, str) and bool(check_text(value))
    except ValueProblem:
        return False


def mapping_to_json(mapping: list[ColumnMapping]) -> list[dict[str, Any]]:
    return [{"column": m.column, "field": m.field, "lookup_key": m.lookup_key} for m in mapping]


def options_from_json(value: Any, base: ImportOptions | None = None) -> ImportOptions:
    """Options from their JSON form over `base`; a 422 naming the option and its rule."""
    if not isinstance(value, dict):
        raise BadRequest("options is not an object", [FieldError("options", "type", "an object")])
    options = base or ImportOptions()
    changes: dict[str, Any] = {}
    for name, item in value.items():
        where = f"options/{str(name)[:63]}"
        if name == "date_order":
            if item not in DATE_ORDERS:
                raise _invalid(where, "choice", f"one of {', '.join(DATE_ORDERS)}")
        elif name == "time_zone":
            if not isinstance(item, str) or zone_of(item) is None:
                raise _invalid(where, "time-zone", "an IANA time zone such as Asia/Shanghai")
        elif name == "duplicates":
            if item not in DUPLICATE_HANDLING:
                raise _invalid(where, "choice", f"one of {', '.join(DUPLICATE_HANDLING)}")
        elif name == "blank_cells":
            if item not in BLANK_CELLS:
                raise _invalid(where, "choice", f"one of {', '.join(BLANK_CELLS)}")
        elif name in ("encoding", "sheet"):
            if item is not None and (not isinstance(item, str) or not 0 < len(item) <= 100):
                raise _invalid(where, "type", "a text of at most 100 characters")
        elif name == "limit":
            if not isinstance(item, int) or isinstance(item, bool):
                raise _invalid(where, "type", "a whole number")
            if not 1 <= item <= DRY_RUN_LIMIT_MAX:
                raise _invalid(where, "range", f"between 1 and {DRY_RUN_LIMIT_MAX}")
        else:
            raise _invalid(where, "unknown-option", f"{str(name)[:63]!r} is not an option")
        changes[name] = item
    return dataclasses.replace(options, **changes)


def zone_of(name: str) -> zoneinfo.ZoneInfo | None:
    """The IANA time zone `name` names, or None."""
    if not 0 < len(name) <= 64 or "\x00" in name:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def _invalid(field: str, code: str, rule: str) -> RecordInvalid:
    return RecordInvalid(
        f"{field} is invalid", [FieldError(field, code, f"{field} must be {rule}")]
    )


def key_problems(co: CompiledObject, mode: str, key_field: str | None) -> list[FieldError]:
    """What is wrong with a mode and key field: updates find their records by `id`, an
    external id or a unique field."""
    if mode not in MODES:
        return [FieldError("mode", "choice", f"mode must be one of {', '.join(MODES)}")]
    if mode == "create":
        return []
    if key_field is None:
        return [FieldError("key_field", "required", f"mode {mode} needs a key_field")]
    if key_field == "id":
        return []
    field = co.fields.get(key_field)
    if field is None:
        return [FieldError("key_field", "unknown-field", f"{co.name} has no field {key_field!r}")]
    if key_field not in co.external_ids and not getattr(field, "unique", False):
        return [
            FieldError(
                "key_field",
                "not-unique",
                f"{key_field} is neither an external id nor a unique field of {co.name}",
            )
        ]
    return []


def settings_problems(
    ct: CompiledTenant, co: CompiledObject, actor: Actor, settings: ImportSettings
) -> list[FieldError]:
    """Every problem with an import's settings: its mapping (`check_mapping`), its mode
    and key field, and a key field no column is mapped to."""
    # The record id is no writable field: a column mapped to it only finds records.
    mapping = [m for m in settings.mapping if m.field != "id"]
    problems = check_mapping(ct, co, actor, mapping, settings.columns)
    problems += key_problems(co, settings.mode, settings.key_field)
    key = settings.key_field
    unmapped = not any(m.field == key for m in settings.mapping)
    if settings.mode != "create" and key is not None and not problems and unmapped:
        problems.append(
            FieldError("key_field", "unmapped", f"no column is mapped to the key {key}")
        )
    mapped_ids = [m for m in settings.mapping if m.field == "id"]
    if mapped_ids and key != "id":
        problems.append(
            FieldError("mapping", "read-only", "a column mapped to id needs key_field id")
        )
    return problems


def settings_of(row: Any) -> ImportSettings:
    """An import's settings from its row."""
    options = row.options or {}
    return ImportSettings(
        id=row.id,
        object=row.object,
        status=row.status,
        mode=cast(Mode, row.mode),
        key_field=row.key_field,
        mapping=mapping_from_json(row.mapping),
        options=ImportOptions(**{k: v for k, v in options.items() if k in _OPTION_NAMES}),
        file_id=row.file_id,
        file_name=row.file_name,
        columns=list(row.columns),
        created_by=row.created_by,
        done=row.done,
        total=row.total,
    )


_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(ImportOptions))


async def create_import(
    conn: AsyncConnection,
    ct: CompiledTenant,
    actor: Actor,
    *,
    object: str,
    stored: StoredFile,
    path: Path,
    mode: str = "create",
    key_field: str | None = None,
    options: ImportOptions | None = None,
    mapping_name: str | None = None,
) -> uuid.UUID:
    """Register an uploaded file (already stored as `stored`, and at `path` on this
    machine) as a new import: read its header and count its rows, and propose a mapping
    (or take the saved mapping `mapping_name`). A file that cannot be read is a 422."""
    require_importer(ct, actor)
    co = import_object(ct, object)
    problems = key_problems(co, mode, key_field)
    if problems:
        raise RecordInvalid("the import's mode or key field is invalid", problems)
    options = options or ImportOptions()
    try:
        with open_table(
            path, name=stored.name, encoding=options.encoding, sheet=options.sheet
        ) as t:
            columns, encoding, file_format = list(t.columns), t.encoding, t.format
        total = count_rows(path, name=stored.name, encoding=options.encoding, sheet=options.sheet)
    except SourceProblem as problem:
        raise unreadable(problem) from None
    for number, column in enumerate(columns, start=1):
        if not _clean(column) or len(column) > MAX_COLUMN_NAME:
            rule = f"a column name is a text of at most {MAX_COLUMN_NAME} characters, no NUL"
            raise RecordInvalid(
                f"column {number} of the header cannot be a column name",
                [FieldError(f"file/columns/{number}", "column-name", rule)],
            )
    if mapping_name is not None:
        mapping = await saved_mapping(conn, co.name, mapping_name)
    else:
        mapping = propose_mapping(ct, co, actor, columns)
        if key_field == "id":  # the record id is no writable field: propose_mapping skips it
            mapping = [
                ColumnMapping(m.column, "id") if m.column.strip().casefold() == "id" else m
                for m in mapping
            ]
    now, import_id = utcnow(), new_id()
    await conn.execute(
        imports.insert().values(
            id=import_id,
            object=co.name,
            status="uploaded",
            mode=mode,
            key_field=key_field,
            mapping=mapping_to_json(mapping),
            options=options.as_json(),
            file_id=stored.id,
            file_name=stored.name,
            columns=columns,
            format=file_format,
            encoding=encoding,
            total=total,
            done=0,
            created=0,
            updated=0,
            skipped=0,
            failed=0,
            dry_run=False,
            reverted=0,
            revert_skipped=0,
            created_by=actor.user_id,
            created_at=now,
            updated_at=now,
        )
    )
    return import_id


def unreadable(problem: SourceProblem) -> RecordInvalid:
    """The 422 of a file that cannot be read, naming the reader's rule."""
    return RecordInvalid(
        f"the file cannot be read: {problem.message}",
        [FieldError("file", problem.code, problem.message)],
    )


async def import_row(
    conn: AsyncConnection, ct: CompiledTenant, actor: Actor, import_id: uuid.UUID
) -> Any:
    """An import its creator or an administrator may see (NotFound for anyone else)."""
    require_importer(ct, actor)
    query = sa.select(imports).where(imports.c.id == import_id)
    if not actor.is_admin:
        query = query.where(imports.c.created_by == actor.user_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound("no import has this id")
    return row


def describe(row: Any, problems: list[FieldError] | None = None) -> dict[str, Any]:
    """An import as the API shows it: settings, progress and counts."""

    def stamp(value: dt.datetime | None) -> str | None:
        return value.isoformat().replace("+00:00", "Z") if value is not None else None

    shown = {
        "id": str(row.id),
        "object": row.object,
        "status": row.status,
        "mode": row.mode,
        "key_field": row.key_field,
        "file": {"id": str(row.file_id), "name": row.file_name},
        "format": row.format,
        "encoding": row.encoding,
        "columns": row.columns,
        "mapping": row.mapping,
        "options": row.options,
        "total": row.total,
        "done": row.done,
        "dry_run": row.dry_run,
        "counts": {
            "created": row.created,
            "updated": row.updated,
            "skipped": row.skipped,
            "failed": row.failed,
        },
        "revert": {"reverted": row.reverted, "skipped": row.revert_skipped},
        "error_file_id": str(row.error_file_id) if row.error_file_id else None,
        "job_id": str(row.job_id) if row.job_id else None,
        "created_by": str(row.created_by),
        "created_at": stamp(row.created_at),
        "updated_at": stamp(row.updated_at),
        "started_at": stamp(row.started_at),
        "finished_at": stamp(row.finished_at),
        "last_error": row.last_error,
    }
    if problems is not None:
        shown["mapping_problems"] = [p.as_dict() for p in problems]
    return shown


async def list_imports(
    conn: AsyncConnection,
    ct: CompiledTenant,
    actor: Actor,
    *,
    limit: int = 50,
    before: uuid.UUID | None = None,
) -> list[Any]:
    """Imports newest first: the actor's own, or every one for an administrator."""
    require_importer(ct, actor)
    query = sa.select(imports).order_by(imports.c.id.desc()).limit(limit)
    if not actor.is_admin:
        query = query.where(imports.c.created_by == actor.user_id)
    if before is not None:
        query = query.where(imports.c.id < before)
    return list(await conn.execute(query))


async def change_import(
    conn: AsyncConnection,
    ct: CompiledTenant,
    actor: Actor,
    import_id: uuid.UUID,
    changes: dict[str, Any],
) -> None:
    """Change an import's mapping, mode, key field or options before its real run; the
    last dry run's report is dropped (it described other settings)."""
    row = await import_row(conn, ct, actor, import_id)
    if row.status not in PREPARING:
        raise Conflict(f"the import is {row.status}; only an import not yet run can change")
    unknown = set(changes) - {"mapping", "mode", "key_field", "options"}
    if unknown:
        raise BadRequest(
            "unknown settings",
            [
                FieldError(str(n)[:63], "unknown-field", "not a setting of an import")
                for n in unknown
            ],
        )
    values: dict[str, Any] = {}
    if "mapping" in changes:
        values["mapping"] = mapping_to_json(mapping_from_json(changes["mapping"]))
    if "options" in changes:
        current = settings_of(row).options
        values["options"] = options_from_json(changes["options"], current).as_json()
    mode = changes.get("mode", row.mode)
    key_field = changes.get("key_field", row.key_field)
    if "mode" in changes or "key_field" in changes:
        if not isinstance(mode, str) or not (key_field is None or isinstance(key_field, str)):
            raise BadRequest("mode and key_field are texts", [FieldError("mode", "type", "text")])
        problems = key_problems(import_object(ct, row.object), mode, key_field)
        if problems:
            raise RecordInvalid("the import's mode or key field is invalid", problems)
        values |= {"mode": mode, "key_field": key_field}
    await conn.execute(import_rows.delete().where(import_rows.c.import_id == import_id))
    await conn.execute(
        imports.update()
        .where(imports.c.id == import_id)
        .values(
            values
            | {"status": "uploaded", "updated_at": utcnow(), "done": 0, "dry_run": False}
            | _ZERO_COUNTS
        )
    )


_ZERO_COUNTS = {"created": 0, "updated": 0, "skipped": 0, "failed": 0}


async def begin_run(
    conn: AsyncConnection,
    ct: CompiledTenant,
    actor: Actor,
    import_id: uuid.UUID,
    *,
    dry: bool,
) -> ImportSettings:
    """Move an import to `dry-running` or `running` after checking its settings (a 422
    listing every problem); the rows are then processed by the pipeline."""
    row = await import_row(conn, ct, actor, import_id)
    if row.status not in PREPARING:
        raise Conflict(f"the import is {row.status}; it cannot run again")
    settings = settings_of(row)
    problems = settings_problems(ct, import_object(ct, row.object), actor, settings)
    if problems:
        raise RecordInvalid("the import's settings are invalid", problems)
    run = "dry" if dry else "real"
    await conn.execute(
        import_rows.delete().where(import_rows.c.import_id == import_id, import_rows.c.run == run)
    )
    now = utcnow()
    await conn.execute(
        imports.update()
        .where(imports.c.id == import_id)
        .values(
            status="dry-running" if dry else "running",
            done=0,
            dry_run=dry,
            started_at=now,
            finished_at=None,
            updated_at=now,
            last_error=None,
            error_file_id=None,
            **_ZERO_COUNTS,
        )
    )
    return dataclasses.replace(settings, status="dry-running" if dry else "running", done=0)


async def begin_revert(
    conn: AsyncConnection, ct: CompiledTenant, actor: Actor, import_id: uuid.UUID
) -> None:
    """Move a finished (or failed, or cancelled) import to `reverting`."""
    row = await import_row(conn, ct, actor, import_id)
    if row.status not in REVERTIBLE or row.dry_run:
        raise Conflict(f"the import is {row.status}; only a run import can be reverted")
    await conn.execute(
        imports.update()
        .where(imports.c.id == import_id)
        .values(status="reverting", updated_at=utcnow(), reverted=0, revert_skipped=0)
    )


async def cancel_import(
    conn: AsyncConnection, ct: CompiledTenant, actor: Actor, import_id: uuid.UUID
) -> None:
    """Stop an import: a running one stops after its current chunk (the rows written stay,
    and can be reverted); one not yet run is simply cancelled."""
    row = await import_row(conn, ct, actor, import_id)
    if row.status not in (*PREPARING, "dry-running", "running"):
        raise Conflict(f"the import is {row.status}; there is nothing to cancel")
    now = utcnow()
    await conn.execute(
        imports.update()
        .where(imports.c.id == import_id)
        .values(status="cancelled", updated_at=now, finished_at=now)
    )


async def set_job(conn: AsyncConnection, import_id: uuid.UUID, job_id: uuid.UUID) -> None:
    """Remember the job that runs an import (its progress is in the import itself)."""
    await conn.execute(imports.update().where(imports.c.id == import_id).values(job_id=job_id))


async def acting_user(conn: AsyncConnection, user_id: uuid.UUID) -> Actor:
    """The importer as an actor, with their current role; NotFound when no longer active."""
    row = (
        await conn.execute(
            sa.select(users.c.is_admin, users.c.role, users.c.manager_id).where(
                users.c.id == user_id, users.c.is_active.is_(True)
            )
        )
    ).first()
    if row is None:
        raise NotFound("the user who started the import is no longer active")
    return Actor(user_id, is_admin=row.is_admin, role=row.role, manager_id=row.manager_id)


# ----------------------------------------------------------------------- saved mappings


async def save_mapping(
    conn: AsyncConnection,
    ct: CompiledTenant,
    actor: Actor,
    *,
    object: str,
    name: str,
    mapping: list[ColumnMapping],
) -> uuid.UUID:
    """Keep a mapping under a name for the object (409 when the name is taken)."""
    require_importer(ct, actor)
    co = import_object(ct, object)
    if not name.strip() or len(name) > 100:
        raise BadRequest("the name is invalid", [FieldError("name", "length", "1 to 100 chars")])
    taken = await conn.scalar(
        sa.select(saved_mappings.c.id).where(
            saved_mappings.c.object == co.name, saved_mappings.c.name == name
        )
    )
    if taken is not None:
        raise Conflict(f"a mapping of {co.name} is already named {name!r}")
    mapping_id = new_id()
    await conn.execute(
        saved_mappings.insert().values(
            id=mapping_id,
            object=co.name,
            name=name,
            mapping=mapping_to_json(mapping),
            created_by=actor.user_id,
            created_at=utcnow(),
        )
    )
    return mapping_id


async def saved_mapping(conn: AsyncConnection, object: str, name: str) -> list[ColumnMapping]:
    """The mapping saved under `name` for `object`; a 400 naming it when there is none."""
    found = await conn.scalar(
        sa.select(saved_mappings.c.mapping).where(
            saved_mappings.c.object == object, saved_mappings.c.name == name
        )
    )
    if found is None:
        raise BadRequest(
            f"no saved mapping of {object} is named {name[:100]!r}",
            [FieldError("mapping", "unknown-mapping", f"no saved mapping {name[:100]!r}")],
        )
    return mapping_from_json(found)


async def list_mappings(
    conn: AsyncConnection, ct: CompiledTenant, actor: Actor, object: str | None = None
) -> list[dict[str, Any]]:
    """Saved mappings (of one object, or all), by object and name."""
    require_importer(ct, actor)
    query = sa.select(saved_mappings).order_by(saved_mappings.c.object, saved_mappings.c.name)
    if object is not None:
        query = query.where(saved_mappings.c.object == object)
    return [
        {
            "id": str(row.id),
            "object": row.object,
            "name": row.name,
            "mapping": row.mapping,
            "created_by": str(row.created_by),
        }
        for row in await conn.execute(query)
    ]


async def delete_mapping(
    conn: AsyncConnection, ct: CompiledTenant, actor: Actor, mapping_id: uuid.UUID
) -> None:
    """Remove a saved mapping: its author or an administrator may."""
    require_importer(ct, actor)
    query = saved_mappings.delete().where(saved_mappings.c.id == mapping_id)
    if not actor.is_admin:
        query = query.where(saved_mappings.c.created_by == actor.user_id)
    if (await conn.execute(query)).rowcount != 1:
        raise NotFound("no saved mapping of yours has this id")
