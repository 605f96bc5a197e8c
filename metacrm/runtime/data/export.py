"""Exports of record lists to CSV and Excel, streamed under the actor's record and field access.

An export is a list query (a list view, or `where`/`fields`/`order_by`) run through
`metacrm.runtime.listing` page by page on keyset cursors, so memory stays constant for any
number of rows and exactly the rules of `GET /api/v1/data/{object}` apply: a field the actor
may not read is refused in `fields`, `where` and `order_by` with the same errors.

Values are written in the form the import reads back: dates and datetimes in ISO 8601
(datetimes in UTC), numbers plain with a '.', picklists by value, multi-picklists joined
with ';', booleans `true`/`false`, JSON as JSON text, lookups as record ids with the target's
name in a column of its own (`account` and `account.name`).

A CSV text cell that a spreadsheet would run as a formula (it starts with = + - @, a tab or
a carriage return; a phone number like +86 138 0013 8000 is left alone) gets a leading
apostrophe, and so does a text that starts with an apostrophe itself (`csv_guard`); the
import's CSV reader takes it off again. Excel cells are typed and need no apostrophe.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import secrets
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Font
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import FieldError, PermissionDenied, QueryInvalid
from metacrm.metadata.base import label_text
from metacrm.metadata.layouts import ListView
from metacrm.metadata.model import FieldDef
from metacrm.runtime import audit
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.data.csv_guard import guard
from metacrm.runtime.listing import ListQuery, list_records
from metacrm.runtime.permissions import (
    has_platform_permission,
    linked,
    object_readable,
    path_readable,
    readable,
)

#: One exported value: text, a number, a boolean, a date or a datetime (None: empty).
Cell = str | int | Decimal | bool | dt.date | dt.datetime | None
Format = Literal["csv", "xlsx"]
Headers = Literal["api", "labels"]
FORMATS: tuple[Format, ...] = ("csv", "xlsx")
HEADERS: tuple[Headers, ...] = ("api", "labels")
MEDIA_TYPES: dict[Format, str] = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
#: Records per list query while streaming.
PAGE = 500
#: Bytes per chunk of a finished Excel file.
CHUNK = 64 * 1024

#: The columns every record has, after its fields, with their kinds and labels.
_SYSTEM: dict[str, tuple[str, dict[str, str]]] = {
    "id": ("text", {"en": "ID", "zh-CN": "ID"}),
    "owner_id": ("text", {"en": "Owner ID", "zh-CN": "负责人 ID"}),
    "created_at": ("datetime", {"en": "Created at", "zh-CN": "创建时间"}),
    "created_by": ("text", {"en": "Created by", "zh-CN": "创建人 ID"}),
    "updated_at": ("datetime", {"en": "Updated at", "zh-CN": "修改时间"}),
    "updated_by": ("text", {"en": "Updated by", "zh-CN": "修改人 ID"}),
    "version": ("number", {"en": "Version", "zh-CN": "版本"}),
}
_NUMBERS = ("number", "currency", "percent")


@dataclass(frozen=True)
class ExportColumn:
    """One column: its api name or lookup path, the kind of its values, its label."""

    name: str
    #: text, number, boolean, date, datetime, multi (a multi-picklist) or json.
    kind: str
    label: str


@dataclass(frozen=True)
class ExportPlan:
    """An export checked and resolved: which records, which columns, in which order."""

    object: str
    columns: tuple[ExportColumn, ...]
    where: str | None
    order_by: str | None
    limit: int | None
    view: str | None
    #: Whether the caller named the fields (else a view's or every readable one).
    explicit: bool = False
    #: Signs the keyset cursors of this export only (they never leave the process).
    cursor_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def describe(self) -> dict[str, Any]:
        """What was asked for, as the audit entry keeps it."""
        return {
            "view": self.view,
            "where": self.where,
            "order_by": self.order_by,
            "fields": [c.name for c in self.columns],
            "limit": self.limit,
        }


def _invalid(param: str, code: str, message: str) -> QueryInvalid:
    return QueryInvalid(message, [FieldError(param, code, message)])


def _kind(ct: CompiledTenant, f: FieldDef) -> str:
    """The kind of value a field holds as exported (a formula's is what it returns)."""
    kind = f.type
    if kind == "formula":
        kind = getattr(f, "returns", "text")
    elif kind == "rollup":
        child_name = getattr(f, "field", None)
        if getattr(f, "aggregate", "count") in ("count", "sum") or child_name is None:
            return "number"
        child = ct.object(getattr(f, "child_object", ""))
        child_field = child.fields.get(child_name)
        return _kind(ct, child_field) if child_field is not None else "text"
    if kind in _NUMBERS:
        return "number"
    if kind == "multi_picklist":
        return "multi"
    if kind in ("boolean", "date", "datetime", "json"):
        return kind
    return "text"


def _column(
    ct: CompiledTenant, co: CompiledObject, name: str, language: str, *, prefix: str = ""
) -> ExportColumn:
    """The column of a field or system field of `co`; `prefix` is the lookup's label."""
    if name in _SYSTEM:
        kind, labels = _SYSTEM[name]
        own = label_text(labels, language, name)
    else:
        f = co.fields[name]
        kind, own = _kind(ct, f), label_text(f.label, language, name)
    joiner = "" if language == "zh-CN" else " "
    return ExportColumn(name, kind, f"{prefix}{joiner}{own}" if prefix else own)


def _with_name(
    ct: CompiledTenant, co: CompiledObject, actor: Actor, name: str
) -> list[ExportColumn]:
    """A field's column and, for a lookup the actor may follow, its target's name beside it."""
    language = actor.language
    columns = [_column(ct, co, name, language)]
    target = linked(ct, co, name)
    if target is None or not object_readable(ct, actor, target):
        return columns
    name_field = target.obj.record_name_field
    path = f"{name}.{name_field}"
    if name_field and target.has(name_field) and path_readable(ct, actor, co, path):
        link_label = columns[0].label
        found = _column(ct, target, name_field, language, prefix=link_label)
        columns.append(ExportColumn(path, found.kind, found.label))
    return columns


def _columns(
    ct: CompiledTenant, co: CompiledObject, actor: Actor, view: ListView | None, fields: str | None
) -> tuple[ExportColumn, ...]:
    """The columns: the named fields as given, else a view's readable columns, else every
    readable field and the system fields; lookup names beside the ids unless fields were
    named. Only called once the list query accepted the same fields."""
    language = actor.language
    visible = readable(ct, actor, co)
    columns = [_column(ct, co, "id", language)]
    if fields:
        for name in dict.fromkeys(n.strip() for n in fields.split(",") if n.strip()):
            if name == "id":
                continue
            link, _, rest = name.partition(".")
            if rest:
                target = linked(ct, co, link)
                assert target is not None  # the list query refused any other path
                prefix = _column(ct, co, link, language).label
                found = _column(ct, target, rest, language, prefix=prefix)
                columns.append(ExportColumn(name, found.kind, found.label))
            else:
                columns.append(_column(ct, co, name, language))
        return tuple(columns)
    if view is not None:
        names = [n for n in view.columns if n in visible]
        name_field = co.obj.record_name_field
        if not names and name_field in visible:
            names = [name_field]
        for name in names:
            columns += _with_name(ct, co, actor, name)
        return tuple(columns)
    for name in visible:
        columns += _with_name(ct, co, actor, name)
    columns += [_column(ct, co, n, language) for n in _SYSTEM if n != "id"]
    return tuple(columns)


def require_export(ct: CompiledTenant, actor: Actor) -> None:
    """PermissionDenied unless the actor holds the `export_data` platform permission."""
    if not has_platform_permission(ct.model, actor, "export_data"):
        raise PermissionDenied("exporting records needs the export_data permission")


def _combined(view_filter: str | None, where: str | None) -> str | None:
    if view_filter and where:
        return f"({view_filter}) and ({where})"
    return view_filter or where or None


async def plan_export(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    actor: Actor,
    *,
    view: ListView | None = None,
    where: str | None = None,
    fields: str | None = None,
    order_by: str | None = None,
    limit: int | None = None,
) -> ExportPlan:
    """Check an export before anything is sent, and resolve its columns.

    Needs the `export_data` platform permission (PermissionDenied otherwise) and the
    object's read permission. `view` is a list view already chosen for the actor (its
    filter is combined with `where`; its sort applies unless `order_by` is given; its
    readable columns are exported unless `fields` is given). `where`, `fields` and
    `order_by` are refused exactly as the list API refuses them (QueryInvalid,
    FormulaError), by running the list query for one record."""
    require_export(ct, actor)
    if not object_readable(ct, actor, co):
        raise PermissionDenied(f"your role may not read {co.name} records")
    if limit is not None and limit < 1:
        raise _invalid("limit", "range", "limit must be at least 1")
    if view is not None and view.object != co.name:
        raise _invalid("view", "unknown-view", f"{view.api_name!r} is not a list of {co.name}")
    combined = _combined(view.filter if view else None, where)
    order_by = order_by or (view.sort if view else None)
    key = secrets.token_bytes(32)

    async def probe(names: str) -> None:
        query = ListQuery(where=combined, order_by=order_by, fields=names, limit=1)
        await list_records(conn, ct, co, query, actor=actor, cursor_key=key)

    if fields:
        await probe(fields)  # first: the columns below trust the names it accepted
        columns = _columns(ct, co, actor, view, fields)
    else:
        columns = _columns(ct, co, actor, view, None)
        await probe(",".join(c.name for c in columns))
    return ExportPlan(
        object=co.name,
        columns=columns,
        where=combined,
        order_by=order_by,
        limit=limit,
        view=view.api_name if view else None,
        explicit=bool(fields),
        cursor_key=key,
    )


def _number(value: Any) -> Cell:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return str(value)


def _cell(kind: str, value: Any) -> Cell:
    """One listed value (JSON-ready, as the list API answers it) as a typed cell."""
    if value is None:
        return None
    try:
        if kind == "number":
            return _number(value)
        if kind == "boolean":
            return bool(value)
        if kind == "date" and isinstance(value, str):
            return dt.date.fromisoformat(value[:10])
        if kind == "datetime" and isinstance(value, str):
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    except ValueError:
        return str(value)  # a computed value SQLite gave in another shape: shown as it is
    if kind == "multi" and isinstance(value, list):
        return ";".join(str(v) for v in value)
    if kind == "json" or isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value if isinstance(value, str | int | Decimal | dt.date) else str(value)


def export_cells(plan: ExportPlan, record: dict[str, Any]) -> list[Cell]:
    """One record as the row of cells it is exported as (the one place values are shaped
    for a file: masking of sensitive fields belongs here)."""
    return [_cell(c.kind, record.get(c.name)) for c in plan.columns]


async def plan_rows(
    conn: AsyncConnection, ct: CompiledTenant, plan: ExportPlan, actor: Actor
) -> AsyncIterator[list[Cell]]:
    """The rows of a checked export, one keyset page of PAGE records at a time."""
    co = ct.object(plan.object)
    fields = ",".join(c.name for c in plan.columns[1:]) or "id"
    cursor: str | None = None
    left = plan.limit
    while left is None or left > 0:
        size = PAGE if left is None else min(PAGE, left)
        query = ListQuery(
            where=plan.where, order_by=plan.order_by, fields=fields, limit=size, cursor=cursor
        )
        page = await list_records(conn, ct, co, query, actor=actor, cursor_key=plan.cursor_key)
        for record in page["records"]:
            yield export_cells(plan, record)
        if left is not None:
            left -= len(page["records"])
        cursor = page["next_cursor"]
        if cursor is None:
            break


async def export_rows(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    actor: Actor,
    *,
    view: ListView | None = None,
    where: str | None = None,
    fields: str | None = None,
    order_by: str | None = None,
    limit: int | None = None,
) -> AsyncIterator[list[Cell]]:
    """The rows of an export (see `plan_export` for what is checked), header row first."""
    plan = await plan_export(
        conn, ct, co, actor, view=view, where=where, fields=fields, order_by=order_by, limit=limit
    )
    header: list[Cell] = [c.name for c in plan.columns]
    yield header
    async for row in plan_rows(conn, ct, plan, actor):
        yield row


def header_row(plan: ExportPlan, headers: Headers = "api") -> list[str]:
    """The header row: api names (what the import maps back exactly) or labels in the
    language of the actor the plan was made for."""
    return [c.name if headers == "api" else c.label for c in plan.columns]


def csv_text(cell: Cell) -> str:
    """One cell as CSV text, as the import reads it back."""
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, Decimal):
        return format(cell, "f")
    if isinstance(cell, dt.datetime):
        return cell.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(cell, dt.date | int):
        return cell.isoformat() if isinstance(cell, dt.date) else str(cell)
    return guard(cell)


def _csv_line(values: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue().encode()


async def csv_chunks(
    plan: ExportPlan, rows: AsyncIterator[list[Cell]], headers: Headers = "api"
) -> AsyncIterator[bytes]:
    """UTF-8 with a byte-order mark (so Excel reads Chinese right), RFC 4180 quoting,
    CRLF line ends: the header, then one chunk per page of rows."""
    yield b"\xef\xbb\xbf" + _csv_line([guard(h) for h in header_row(plan, headers)])
    chunk: list[bytes] = []
    async for row in rows:
        chunk.append(_csv_line([csv_text(c) for c in row]))
        if len(chunk) >= PAGE:
            yield b"".join(chunk)
            chunk = []
    if chunk:
        yield b"".join(chunk)


def _xlsx_cell(sheet: Any, cell: Cell) -> Any:
    if isinstance(cell, dt.datetime):
        # Excel has no time zones: a datetime is written in UTC.
        value = WriteOnlyCell(sheet, cell.astimezone(dt.UTC).replace(tzinfo=None))
        value.number_format = "yyyy-mm-dd hh:mm:ss"
        return value
    if isinstance(cell, dt.date):
        value = WriteOnlyCell(sheet)
        value.value, value.number_format = cell, "yyyy-mm-dd"
        return value
    if isinstance(cell, str):
        # Characters XML cannot carry are dropped; a text is text, never a formula.
        value = WriteOnlyCell(sheet, ILLEGAL_CHARACTERS_RE.sub("", cell))
        value.data_type = "s"
        return value
    value = WriteOnlyCell(sheet)
    value.value = cell  # numbers (Decimal too) and booleans keep their type
    return value


async def xlsx_chunks(
    plan: ExportPlan, rows: AsyncIterator[list[Cell]], headers: Headers = "api"
) -> AsyncIterator[bytes]:
    """An Excel workbook of one sheet with typed cells (numbers, dates, booleans) and a
    bold, frozen header row. openpyxl's write-only mode keeps rows in a temporary file,
    so memory stays constant; the file is sent once every row is written."""
    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=plan.object[:31])
    sheet.freeze_panes = "A2"
    bold = Font(bold=True)
    header = []
    for text in header_row(plan, headers):
        cell = WriteOnlyCell(sheet, text)
        cell.data_type, cell.font = "s", bold
        header.append(cell)
    sheet.append(header)
    async for row in rows:
        sheet.append([_xlsx_cell(sheet, c) for c in row])
    with tempfile.TemporaryFile() as file:
        await asyncio.to_thread(book.save, file)
        file.seek(0)
        while chunk := file.read(CHUNK):
            yield chunk


def file_chunks(
    plan: ExportPlan, rows: AsyncIterator[list[Cell]], format: Format, headers: Headers = "api"
) -> AsyncIterator[bytes]:
    """The bytes of the export file in `format`."""
    encode = csv_chunks if format == "csv" else xlsx_chunks
    return encode(plan, rows, headers)


async def record_export(
    conn: AsyncConnection,
    actor: Actor,
    plan: ExportPlan,
    *,
    format: Format,
    headers: Headers,
    rows: int,
    error: str | None = None,
) -> None:
    """The audit entry of one export: who, which object, what was asked, how many rows
    were sent (and, for an export that failed midway, why it stopped)."""
    detail = {**plan.describe(), "format": format, "headers": headers, "rows": rows}
    if error is not None:
        detail["error"] = error
    await audit.record(conn, "export", actor=actor, object_name=plan.object, detail=detail)
