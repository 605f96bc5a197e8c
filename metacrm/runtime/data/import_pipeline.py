"""The import pipeline: a file's rows converted, written through the write path, and reported.

Rows are read streamed from the file (`sources.open_table`) and processed in chunks of
`CHUNK_ROWS`. In a chunk, lookup cells are resolved together (`LookupResolver`, one query
per lookup column), the records a key names are found together, then each row is
converted (`convert_cell`) and written by `writes.create` or `writes.update` with an
`Intent` of origin IMPORT, in a savepoint of its own: a refused row leaves nothing
behind and the others go on. A row whose cells could not be converted still goes
through the write path (rolled back), so that it is reported with every problem at once.

The real run commits each chunk in its own transaction together with the import's
checkpoint (`done`, the rows of the file consumed) and the per-row report; the
checkpoint only moves from the value the run started the chunk at, so a run resumed
after a crash starts where the last committed chunk ended and no row is written twice,
even if two workers raced over the same import. The dry run is the same code in one
transaction: its writes are rolled back at the end (in-file effects such as a row
updating the record an earlier row created, unique clashes and auto-numbers behave as
in the real run) and only its report is kept. It tries the first `limit` rows (a big
file is tried on a sample).

A record a row's lookup names must exist before the chunk starts: a row naming a record
created by an earlier row of the same chunk and object (an account's parent account)
finds it only in a later chunk.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import itertools
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError, MetacrmError, NotFound, RecordInvalid
from metacrm.metadata.values import ValueProblem, coerce
from metacrm.runtime import files, writes
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.data.convert import CellProblem, LookupResolver, convert_cell, lookup_text
from metacrm.runtime.data.duplicates import active_rules, readable_matches
from metacrm.runtime.data.imports import (
    ImportSettings,
    acting_user,
    import_rows,
    imports,
    settings_of,
    zone_of,
)
from metacrm.runtime.data.mapping import ColumnMapping
from metacrm.runtime.data.sources import Cell, SourceProblem, open_table
from metacrm.runtime.hooks import Intent, Origin
from metacrm.runtime.records import fetch, utcnow
from metacrm.runtime.serialize import json_value

#: Rows per chunk: per chunk, one transaction, one lookup query per lookup column.
CHUNK_ROWS = 500
#: The codes of the problems duplicate rules report (block, and warn).
DUPLICATE_CODES = frozenset({"duplicate", "duplicate-warning"})
#: Whether a field holds a record id (its cells are matched by `LookupResolver`).
LINK_TYPES = frozenset({"lookup", "master_detail"})

#: A write transaction in the import's tenant with its compiled metadata.
Transact = Callable[[], AbstractAsyncContextManager[tuple[AsyncConnection, CompiledTenant]]]
#: Told the rows done and the total after each chunk (the CLI's progress bar).
Progress = Callable[[int, int], None]


class Superseded(Exception):
    """The import changed under this run (cancelled, or another worker went on): what the
    run did in its current transaction is rolled back and it stops."""


@dataclass
class RowOutcome:
    """What happened to one row: its action, record, values around it, and problems."""

    row_no: int
    action: str
    record_id: uuid.UUID | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] | None = None
    cells: list[Any] | None = None

    def as_row(self, import_id: uuid.UUID, run: str) -> dict[str, Any]:
        return {
            "import_id": import_id,
            "run": run,
            "row_no": self.row_no,
            "action": self.action,
            "record_id": self.record_id,
            "before": self.before,
            "after": self.after,
            "errors": storable(self.errors) or None,
            "duplicates": storable(self.duplicates),
            "cells": storable(self.cells),
            "revert": None,
            "revert_errors": None,
        }


def storable(value: Any) -> Any:
    """`value` with NUL characters replaced: a file's cells (and messages quoting them)
    may hold them, and PostgreSQL's jsonb cannot."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {k: storable(v) for k, v in value.items()}
    return value


class _Refused(Exception):
    """Rolls back the savepoint of a row whose cells were refused (after the write path
    reported its other problems)."""


@dataclass(frozen=True)
class _Column:
    """A mapped column: its place in the row and the field it fills."""

    mapping: ColumnMapping
    index: int
    name: str
    field: Any  # FieldDef, or None for the record id


def _blank(cell: Cell) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def _text(cell: Cell) -> str:
    return str(cell).strip()


def _problem(column: str | None, field_name: str, code: str, message: str) -> dict[str, Any]:
    return {"column": column, "field": field_name, "code": code, "message": message}


class ChunkWriter:
    """Processes the chunks of one run of one import, with what every chunk shares."""

    def __init__(self, settings: ImportSettings, actor: Actor, *, candidates: bool = False) -> None:
        self.settings, self.actor, self.candidates = settings, actor, candidates
        allow = settings.options.duplicates == "allow"
        self.intent = Intent(actor, origin=Origin.IMPORT, allow_duplicates=allow)
        index = {name: i for i, name in enumerate(settings.columns)}
        self.column_of = {m.field: m.column for m in settings.mapping if m.field}
        self.mapped = [
            (m, index[m.column]) for m in settings.mapping if m.field and m.column in index
        ]

    def columns(self, co: CompiledObject) -> list[_Column]:
        return [
            _Column(m, i, m.field, None if m.field == "id" else co.fields[m.field])
            for m, i in self.mapped
            if m.field is not None and (m.field == "id" or m.field in co.fields)
        ]

    async def chunk(
        self,
        conn: AsyncConnection,
        ct: CompiledTenant,
        co: CompiledObject,
        rows: list[tuple[int, list[Cell]]],
    ) -> list[RowOutcome]:
        """Write one chunk's rows (each in a savepoint); their outcomes in file order."""
        columns = self.columns(co)
        lookups: dict[str, dict[str, uuid.UUID | CellProblem]] = {}
        for column in columns:
            if column.field is not None and column.field.type in LINK_TYPES:
                resolver = LookupResolver(
                    conn,
                    ct,
                    ct.object(column.field.target),
                    self.actor,
                    key=column.mapping.lookup_key,
                )
                lookups[column.name] = await resolver.resolve(
                    cells[column.index] for _, cells in rows if not _blank(cells[column.index])
                )
        existing = await self._existing(conn, co, columns, rows)
        return [
            await self._row(conn, ct, co, columns, lookups, existing, row_no, cells)
            for row_no, cells in rows
        ]

    def _key_column(self, columns: list[_Column]) -> _Column | None:
        if self.settings.mode == "create":
            return None
        return next((c for c in columns if c.name == self.settings.key_field), None)

    def _key_value(self, column: _Column, cell: Cell) -> Any:
        """The stored value of a key cell; ValueProblem or CellProblem when it is none."""
        if column.field is None:
            try:
                return uuid.UUID(_text(cell))
            except ValueError:
                raise ValueProblem(
                    "invalid-id", f"{_text(cell)[:64]!r} is not a record id"
                ) from None
        return coerce(
            column.field, convert_cell(column.field, cell, date_order=self._order, zone=self._zone)
        )

    @property
    def _order(self) -> Any:
        return self.settings.options.date_order

    @functools.cached_property
    def _zone(self) -> dt.tzinfo:
        return zone_of(self.settings.options.time_zone) or dt.UTC

    async def _existing(
        self,
        conn: AsyncConnection,
        co: CompiledObject,
        columns: list[_Column],
        rows: list[tuple[int, list[Cell]]],
    ) -> dict[Any, uuid.UUID]:
        """The live records the chunk's keys name (key value -> id), in one query. Records
        the importer cannot see are found too: the write path then refuses the row."""
        key = self._key_column(columns)
        if key is None:
            return {}
        values = set()
        for _, cells in rows:
            if not _blank(cells[key.index]):
                try:
                    values.add(self._key_value(key, cells[key.index]))
                except (CellProblem, ValueProblem):
                    continue  # reported with the row
        if not values:
            return {}
        t = co.table
        column = t.c.id if key.field is None else t.c[key.name]
        found = await conn.execute(
            sa.select(column, t.c.id.label("mc_id")).where(
                column.in_(sorted(values, key=str)), t.c.deleted_at.is_(None)
            )
        )
        return {row[0]: row.mc_id for row in found}

    async def _row(
        self,
        conn: AsyncConnection,
        ct: CompiledTenant,
        co: CompiledObject,
        columns: list[_Column],
        lookups: dict[str, dict[str, uuid.UUID | CellProblem]],
        existing: dict[Any, uuid.UUID],
        row_no: int,
        cells: list[Cell],
    ) -> RowOutcome:
        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        key = self._key_column(columns)
        #: Fields an update empties (option blank_cells "clear"); a create leaves them out,
        #: so their defaults apply.
        cleared: list[str] = []
        for column in columns:
            cell = cells[column.index]
            if column.field is None:
                continue  # a record id only finds the record
            if _blank(cell):
                if self.settings.options.blank_cells == "clear" and column is not key:
                    cleared.append(column.name)
                continue  # by default, blank cells write nothing
            if column.field.type in LINK_TYPES:
                found = lookups[column.name].get(lookup_text(cell))
                if isinstance(found, CellProblem):
                    errors.append(
                        _problem(column.mapping.column, column.name, found.code, found.message)
                    )
                elif found is not None:
                    data[column.name] = str(found)
                continue
            try:
                data[column.name] = convert_cell(
                    column.field, cell, date_order=self._order, zone=self._zone
                )
            except CellProblem as problem:
                errors.append(
                    _problem(column.mapping.column, column.name, problem.code, problem.message)
                )
        target: uuid.UUID | None = None
        if key is not None:
            cell = cells[key.index]
            missing = _blank(cell)
            key_value = None
            if not missing:
                try:
                    key_value = self._key_value(key, cell)
                except (CellProblem, ValueProblem) as problem:
                    if key.field is None:  # the id column's problem is reported here
                        errors.append(
                            _problem(key.mapping.column, key.name, problem.code, problem.message)
                        )
                    missing = True
            target = existing.get(key_value) if key_value is not None else None
            if target is None and self.settings.mode == "update":
                # Update only: a row whose key finds no record is refused, never created.
                if not any(e["field"] == key.name for e in errors):
                    code = "required" if missing else "not-found"
                    message = f"the row gives no {key.name} to find the {co.name} record by"
                    if not missing:
                        message = f"no {co.name} record has {key.name} {_text(cell)[:100]!r}"
                    errors.append(_problem(key.mapping.column, key.name, code, message))
                return self._refused(row_no, cells, errors)
        if target is not None:
            data |= dict.fromkeys(cleared)
        if not data and not errors:
            return RowOutcome(row_no, "skip")
        refused = {e["field"] for e in errors}
        before: dict[str, Any] | None = None
        before_version: int | None = None
        record: dict[str, Any] | None = None
        try:
            async with conn.begin_nested():
                if target is not None:
                    stored = await fetch(conn, co, target)
                    before = {name: json_value(stored.get(name)) for name in data}
                    before_version = stored["version"]
                    record = await writes.update(conn, ct, co, target, data, self.intent)
                else:
                    record = await writes.create(conn, ct, co, data, self.intent)
                if errors:
                    raise _Refused
        except _Refused:
            pass
        except RecordInvalid as invalid:
            errors += [
                self._field_problem(e)
                for e in invalid.errors
                # A field whose cell was refused is not missing as well.
                if not (e.field in refused and e.code == "required")
            ]
        except NotFound as gone:
            # A record the importer cannot see holds the key: no more than a clash is said.
            where = key.mapping.column if key is not None else None
            errors.append(_problem(where, key.name if key else "", "not-found", gone.detail))
        except MetacrmError as error:
            errors += [self._field_problem(e) for e in error.errors] or [
                _problem(None, "", error.code, error.detail)
            ]
        if errors:
            return self._refused(row_no, cells, errors)
        assert record is not None
        record_id = uuid.UUID(str(record["id"]))
        after = {name: record.get(name) for name in data}
        if target is None:
            if key is not None and key.field is not None and key.name in data:
                existing[coerce(key.field, data[key.name])] = record_id
            outcome = RowOutcome(row_no, "create", record_id, after=after)
        elif record.get("version") == before_version:
            return RowOutcome(row_no, "skip", record_id)
        else:
            outcome = RowOutcome(row_no, "update", record_id, before=before, after=after)
        if self.candidates:
            outcome.duplicates = await self._candidates(conn, ct, co, record_id) or None
        return outcome

    async def _candidates(
        self, conn: AsyncConnection, ct: CompiledTenant, co: CompiledObject, record_id: uuid.UUID
    ) -> list[dict[str, Any]]:
        """The records a written row duplicates under the object's rules (those the
        importer may read), for the dry run's report."""
        if not active_rules(ct, co.name):
            return []
        values = await fetch(conn, co, record_id)
        matches, _ = await readable_matches(conn, ct, co, self.actor, values, exclude_id=record_id)
        return [m.as_json("record_id") for m in matches]

    def _field_problem(self, error: FieldError) -> dict[str, Any]:
        name = error.field.split("/", 1)[0]
        return _problem(self.column_of.get(name), error.field, error.code, error.message)

    def _refused(self, row_no: int, cells: list[Cell], errors: list[dict[str, Any]]) -> RowOutcome:
        """A refused row; one refused only by duplicate rules is skipped when the import
        says so (its duplicates are reported)."""
        if self.settings.options.duplicates == "skip" and all(
            e["code"] in DUPLICATE_CODES for e in errors
        ):
            return RowOutcome(row_no, "skip", duplicates=errors)
        return RowOutcome(row_no, "error", errors=errors, cells=[json_value(c) for c in cells])


def _chunks(rows: Iterator[tuple[int, list[Cell]]]) -> Iterator[list[tuple[int, list[Cell]]]]:
    while chunk := list(itertools.islice(rows, CHUNK_ROWS)):
        yield chunk


def _counts(outcomes: list[RowOutcome]) -> dict[str, int]:
    actions = [o.action for o in outcomes]
    return {
        "created": actions.count("create"),
        "updated": actions.count("update"),
        "skipped": actions.count("skip"),
        "failed": actions.count("error"),
    }


async def _store(
    conn: AsyncConnection, import_id: uuid.UUID, run: str, outcomes: list[RowOutcome]
) -> None:
    if outcomes:
        await conn.execute(import_rows.insert(), [o.as_row(import_id, run) for o in outcomes])


async def _current(conn: AsyncConnection, import_id: uuid.UUID) -> Any:
    row = (await conn.execute(sa.select(imports).where(imports.c.id == import_id))).first()
    if row is None:
        raise Superseded("the import is gone")
    return row


async def _move(
    conn: AsyncConnection, import_id: uuid.UUID, status: str, values: dict[str, Any], **at: Any
) -> None:
    """Update the import if it is still `status` (and at the checkpoint `at`), else
    Superseded (the caller's transaction then rolls back)."""
    query = imports.update().where(imports.c.id == import_id, imports.c.status == status)
    for name, value in at.items():
        query = query.where(imports.c[name] == value)
    result = await conn.execute(query.values(values | {"updated_at": utcnow()}))
    if result.rowcount != 1:
        raise Superseded(f"the import is no longer {status}")


def _object(ct: CompiledTenant, settings: ImportSettings) -> CompiledObject:
    co = ct.objects.get(settings.object)
    if co is None:
        raise SourceProblem("object-gone", f"the object {settings.object} no longer exists")
    return co


async def run_dry(
    transact: Transact, import_id: uuid.UUID, path: Path, *, progress: Progress | None = None
) -> None:
    """The dry run of an import that is `dry-running`: its first `limit` rows written
    and rolled back in one transaction; their report kept, the import `checked` (or back
    to `uploaded` with `last_error` when the file cannot be read)."""
    async with transact() as (conn, ct):
        row = await _current(conn, import_id)
        if row.status != "dry-running":
            return
        settings = settings_of(row)
        outcomes: list[RowOutcome] = []
        sample = await conn.begin_nested()
        try:
            actor = await acting_user(conn, settings.created_by)
            writer = ChunkWriter(settings, actor, candidates=True)
            co = _object(ct, settings)
            with _table(path, settings) as table:
                rows = itertools.islice(table.rows(), settings.options.limit)
                for chunk in _chunks(rows):
                    outcomes += await writer.chunk(conn, ct, co, chunk)
                    if progress is not None:
                        progress(len(outcomes), min(settings.total, settings.options.limit))
        except (SourceProblem, NotFound) as problem:
            await sample.rollback()
            await _move(conn, import_id, "dry-running", {"status": "uploaded"} | _failure(problem))
            return
        await sample.rollback()
        await _store(conn, import_id, "dry", outcomes)
        await _move(
            conn,
            import_id,
            "dry-running",
            {"status": "checked", "done": len(outcomes), "finished_at": utcnow()}
            | _counts(outcomes),
        )


def _failure(problem: Exception) -> dict[str, Any]:
    message = getattr(problem, "message", None) or getattr(problem, "detail", None) or str(problem)
    return {"last_error": str(message)[:4000]}


def _table(path: Path, settings: ImportSettings) -> Any:
    options = settings.options
    return open_table(path, name=settings.file_name, encoding=options.encoding, sheet=options.sheet)


async def run_real(
    transact: Transact,
    import_id: uuid.UUID,
    path: Path,
    *,
    deadline: float | None = None,
    progress: Progress | None = None,
) -> bool:
    """Go on with the real run of a `running` import from its checkpoint, a chunk per
    transaction, until the file ends (True: the import is then `done`, or `failed` when
    the file could not be read to its end) or the monotonic `deadline` passes (False:
    call again to go on). Stops quietly (True) when the import is no longer running."""
    async with transact() as (conn, ct):
        row = await _current(conn, import_id)
        if row.status != "running":
            return True
        settings = settings_of(row)
        try:
            actor = await acting_user(conn, settings.created_by)
        except NotFound as gone:
            await _finish(conn, settings, _failure(gone) | {"status": "failed"})
            return True
    writer, done = ChunkWriter(settings, actor), settings.done
    try:
        with _table(path, settings) as table:
            rows = table.rows()
            for _ in itertools.islice(rows, done):  # rows the committed chunks consumed
                pass
            for chunk in _chunks(rows):
                async with transact() as (conn, ct):
                    outcomes = await writer.chunk(conn, ct, _object(ct, settings), chunk)
                    await _store(conn, import_id, "real", outcomes)
                    counts = {name: imports.c[name] + n for name, n in _counts(outcomes).items()}
                    await _move(
                        conn, import_id, "running", counts | {"done": done + len(chunk)}, done=done
                    )
                done += len(chunk)
                if progress is not None:
                    progress(done, settings.total)
                # A short chunk was the file's last: finish now rather than in another job.
                if (
                    deadline is not None
                    and time.monotonic() > deadline
                    and len(chunk) == CHUNK_ROWS
                ):
                    return False
    except SourceProblem as problem:
        async with transact() as (conn, ct):
            await _finish(conn, settings, _failure(problem) | {"status": "failed"})
        return True
    async with transact() as (conn, ct):
        await _finish(conn, settings, {"status": "done", "total": done})
    return True


async def _finish(conn: AsyncConnection, settings: ImportSettings, values: dict[str, Any]) -> None:
    """End a real run: its error report stored, its status and end time set."""
    report = await store_error_report(conn, settings)
    await _move(
        conn,
        settings.id,
        "running",
        values | {"finished_at": utcnow(), "error_file_id": report},
    )


async def error_rows(
    conn: AsyncConnection, import_id: uuid.UUID, run: str = "real"
) -> AsyncIterator[Any]:
    """The refused rows of a run in file order, a page per query."""
    after = 0
    while True:
        page = list(
            await conn.execute(
                sa.select(import_rows.c.row_no, import_rows.c.errors, import_rows.c.cells)
                .where(
                    import_rows.c.import_id == import_id,
                    import_rows.c.run == run,
                    import_rows.c.action == "error",
                    import_rows.c.row_no > after,
                )
                .order_by(import_rows.c.row_no)
                .limit(CHUNK_ROWS)
            )
        )
        for row in page:
            yield row
        if len(page) < CHUNK_ROWS:
            return
        after = page[-1].row_no


def _describe_errors(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors:
        where = error.get("column") or error.get("field") or ""
        if error.get("column") and error.get("field"):
            where = f"{error['column']} ({error['field']})"
        parts.append(
            f"{where}: {error['message']} [{error['code']}]" if where else error["message"]
        )
    return "; ".join(parts)


async def write_error_report(
    conn: AsyncConnection, settings: ImportSettings, target: IO[str], run: str = "real"
) -> int:
    """Write the refused rows as CSV (their cells, then `row` and `errors`) into `target`,
    opened with encoding utf-8-sig so that Excel reads it; how many rows."""
    out = csv.writer(target)
    out.writerow([*settings.columns, "row", "errors"])
    count = 0
    async for row in error_rows(conn, settings.id, run):
        cells = [("" if c is None else c) for c in (row.cells or [])]
        out.writerow([*cells, row.row_no, _describe_errors(row.errors or [])])
        count += 1
    return count


async def store_error_report(conn: AsyncConnection, settings: ImportSettings) -> uuid.UUID | None:
    """Keep the real run's error report as a file (purpose "import-errors"); None when
    no row was refused."""
    with tempfile.TemporaryFile("w+b") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        if not await write_error_report(conn, settings, text):
            return None
        text.flush()
        raw.seek(0)
        stem = Path(settings.file_name).stem or "import"
        stored = await files.save_file(
            conn,
            f"{stem}.errors.csv",
            "text/csv; charset=utf-8",
            iter(lambda: raw.read(files.CHUNK_SIZE), b""),
            purpose="import-errors",
            created_by=settings.created_by,
        )
        text.detach()
    return stored.id
