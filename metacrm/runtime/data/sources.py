"""A CSV or Excel file's header and rows, streamed in constant memory.

`open_table` recognises the format from the bytes (an `.xlsx` is a zip; an old `.xls`
is refused), detects a CSV's encoding (BOM, UTF-8, else GB18030, the superset of GBK)
and delimiter (comma, semicolon or tab), and yields the rows one at a time, numbered
as a spreadsheet shows them (the header is row 1). Wholly blank rows are skipped;
empty cells are None. Every problem with the file itself is a `SourceProblem`.

Memory: a CSV is read a line at a time; an .xlsx sheet a row at a time, but openpyxl
keeps the workbook's shared-strings table (its distinct texts) in memory.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import re
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal

from openpyxl import load_workbook

from metacrm.runtime.data.csv_guard import unguard

Cell = str | int | float | Decimal | bool | dt.date | dt.datetime | None

#: At most this many columns in a header.
MAX_COLUMNS = 500
#: At most this many characters in one cell (a long text field holds up to a million).
MAX_CELL = 1_000_000
#: Bytes looked at to recognise the format, the encoding and the delimiter.
PREFIX = 64 * 1024
#: A CSV line longer than this (without a line break) is refused, so memory stays bounded.
MAX_LINE = 64 * 1024 * 1024

_ZIP = b"PK\x03\x04"
#: OLE2 compound files: old .xls workbooks, and password-protected .xlsx ones.
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_DELIMITERS = (",", ";", "\t")

# The csv module's cell limit is process-wide (128 KiB by default); only ever raised here.
csv.field_size_limit(max(csv.field_size_limit(), MAX_CELL))


class SourceProblem(Exception):
    """A file that cannot be read as a table; `code` names the rule, `row` the row if any."""

    def __init__(self, code: str, message: str, *, row: int | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.row = code, message, row


@dataclass
class Table:
    """A file's header and a way to stream its data rows."""

    columns: list[str]
    encoding: str | None
    format: Literal["csv", "xlsx"]
    _rows: Callable[[], Iterator[tuple[int, list[Cell]]]] = field(repr=False, compare=False)

    def rows(self) -> Iterator[tuple[int, list[Cell]]]:
        """(row number as the user sees it: the first data row is 2, cells padded to
        len(columns)); wholly blank rows are skipped. Each call starts from the top; one
        iteration at a time, as they share the open file."""
        return self._rows()


@contextmanager
def open_table(
    path: Path, *, name: str, encoding: str | None = None, sheet: str | None = None
) -> Iterator[Table]:
    """The table in the file at `path` (`name`: the file name the user gave); the file
    stays open, and `rows()` usable, inside the `with` block."""
    with path.open("rb") as raw:
        prefix = raw.read(PREFIX)
        kind = _format(prefix, name)
        if kind == "xlsx":
            with _xlsx(raw, sheet) as table:
                yield table
        else:
            yield _csv(raw, prefix, encoding)


def count_rows(
    path: Path, *, name: str, encoding: str | None = None, sheet: str | None = None
) -> int:
    """How many data rows `rows()` yields for this file (a streamed pass over it)."""
    with open_table(path, name=name, encoding=encoding, sheet=sheet) as table:
        return sum(1 for _ in table.rows())


def _format(prefix: bytes, name: str) -> Literal["csv", "xlsx"]:
    if prefix.startswith(_ZIP):
        return "xlsx"
    lowered = name.lower()
    if prefix.startswith(_OLE) or lowered.endswith(".xls"):
        raise SourceProblem(
            "xls",
            "old Excel .xls files (and password-protected workbooks) cannot be read: "
            "save the sheet as .xlsx or CSV (UTF-8)",
        )
    if lowered.endswith((".xlsx", ".xlsm")):
        raise SourceProblem("invalid-xlsx", f"{name} is not a valid .xlsx workbook")
    if not prefix.strip():
        raise SourceProblem("empty", "the file is empty")
    return "csv"


# ------------------------------------------------------------------ CSV


def _csv(raw: IO[bytes], prefix: bytes, encoding: str | None) -> Table:
    chosen = encoding or _detect_encoding(raw, prefix)
    try:
        codecs.lookup(chosen)
    except LookupError:
        raise SourceProblem("encoding", f"unknown encoding {chosen!r}") from None
    if "\x00" in prefix.decode(chosen, errors="replace") and not chosen.startswith("utf-16"):
        raise SourceProblem("binary", "the file is not text: is it a CSV or .xlsx file?")
    delimiter = _sniff_delimiter(prefix, chosen)

    def records() -> Iterator[tuple[int, list[str]]]:
        """(row number, cells) of every record, blank ones included, from the top."""
        raw.seek(0)
        reader = csv.reader(_lines(raw, chosen), delimiter=delimiter, strict=False)
        number = 0
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise SourceProblem(
                    "encoding",
                    f"row {number + 1} holds bytes that are not valid {chosen}: "
                    "save the file as UTF-8, or choose its encoding",
                    row=number + 1,
                ) from None
            except csv.Error as error:
                if "field limit" in str(error):
                    raise SourceProblem(
                        "cell-too-long",
                        f"row {number + 1} has a cell over {MAX_CELL} characters",
                        row=number + 1,
                    ) from None
                raise SourceProblem(
                    "invalid-csv", f"row {number + 1}: {error}", row=number + 1
                ) from None
            number += 1
            yield number, record

    header_at, columns = _header(records())
    width = len(columns)

    def rows() -> Iterator[tuple[int, list[Cell]]]:
        for number, record in records():
            if number <= header_at:
                continue
            cells: list[Cell] = [_csv_cell(c, number) for c in record]
            padded = _fit(cells, width, number)
            if padded is not None:
                yield number, padded

    return Table(columns=columns, encoding=chosen, format="csv", _rows=rows)


def _detect_encoding(raw: IO[bytes], prefix: bytes) -> str:
    """UTF-8 (with BOM), UTF-16 by its BOM, UTF-8, else GB18030, judged on the first
    non-ASCII bytes of the file: a sheet with English headers may hold Chinese names only
    from its 5,000th row on."""
    if prefix.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if prefix.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    sample = prefix
    if prefix.isascii() and len(prefix) == PREFIX:
        sample = _first_non_ascii(raw)
    try:
        # Not final: the sample may end inside a character.
        codecs.getincrementaldecoder("utf-8")("strict").decode(sample, final=False)
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8"


def _first_non_ascii(raw: IO[bytes]) -> bytes:
    """PREFIX bytes from the first non-ASCII byte on (b"" for an ASCII file), streamed."""
    raw.seek(0)
    while block := raw.read(PREFIX):
        if not block.isascii():
            start = next(i for i, byte in enumerate(block) if byte > 0x7F)
            return block[start:] + raw.read(start)
    return b""


def _lines(raw: IO[bytes], encoding: str) -> Iterator[str]:
    """The file's decoded lines, one at a time, so a bad byte is met on its own row."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    if encoding.startswith("utf-16"):
        # A line break is two bytes here: decode in blocks, then split into lines.
        pending = ""
        while block := raw.read(PREFIX):
            # The last piece waits for the next block: it may end inside a line break.
            *complete, pending = _split_lines(pending + decoder.decode(block)) or [""]
            yield from complete
            if len(pending) > MAX_LINE:
                raise SourceProblem("line-too-long", "a line of the file is too long")
        pending += decoder.decode(b"", final=True)
        if pending:
            yield pending
        return
    # UTF-8 and GB18030 never use the byte 0x0A inside a character.
    while line := raw.readline(MAX_LINE):
        if len(line) == MAX_LINE and not line.endswith(b"\n"):
            raise SourceProblem("line-too-long", "a line of the file is too long")
        text = decoder.decode(line)
        if "\r" in text.rstrip("\r\n"):  # old Mac line breaks
            yield from _split_lines(text)
        else:
            yield text
    decoder.decode(b"", final=True)


#: After a line break: CR LF, LF, or a CR alone (old Mac files); never other separators,
#: which are data inside a cell.
_LINE_BREAK = re.compile(r"(?<=\n)|(?<=\r)(?!\n)")


def _split_lines(text: str) -> list[str]:
    """`text` cut after each line break, the breaks kept (as the csv module reads lines)."""
    return [line for line in _LINE_BREAK.split(text) if line]


def _sniff_delimiter(prefix: bytes, encoding: str) -> str:
    """The candidate that splits the first lines into the same, largest number of cells."""
    text = prefix.decode(encoding, errors="replace")
    lines = [line.rstrip("\r\n") for line in _split_lines(text)]
    if len(prefix) == PREFIX and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut short
    sample = [line for line in lines[:20] if line.strip()]
    best, best_score = ",", (False, 0.0, 0)
    for delimiter in _DELIMITERS:
        try:
            counts = [len(r) for r in csv.reader(sample, delimiter=delimiter) if r]
        except csv.Error:
            continue
        if not counts:
            continue
        same = sum(1 for c in counts if c == counts[0]) / len(counts)
        score = (counts[0] > 1, same, counts[0])
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _csv_cell(text: str, row: int) -> Cell:
    if len(text) > MAX_CELL:
        raise SourceProblem(
            "cell-too-long", f"row {row} has a cell over {MAX_CELL} characters", row=row
        )
    # A cell our export guarded against formula injection reads back as it was stored.
    return unguard(text) if text.strip() else None


# ------------------------------------------------------------------ xlsx


@contextmanager
def _xlsx(raw: IO[bytes], sheet: str | None) -> Iterator[Table]:
    raw.seek(0)
    try:
        with warnings.catch_warnings():
            # openpyxl warns about workbook features it skips (styles, extensions).
            warnings.simplefilter("ignore")
            book = load_workbook(raw, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, TypeError) as error:
        raise SourceProblem(
            "invalid-xlsx", f"the file is not a valid .xlsx workbook ({error})"
        ) from None
    try:
        if sheet is None:
            worksheet = book.worksheets[0]
        elif sheet in book.sheetnames:
            worksheet = book[sheet]
        else:
            names = ", ".join(repr(n) for n in book.sheetnames)
            raise SourceProblem("unknown-sheet", f"no sheet {sheet!r}; the sheets are {names}")
        # The stored size may be wrong (some writers leave "A1"): read every row there is.
        worksheet.reset_dimensions()

        def records() -> Iterator[tuple[int, list[Cell]]]:
            try:
                for number, row in enumerate(worksheet.iter_rows(), start=1):
                    yield number, [_xlsx_cell(c, number) for c in row]
            except (zipfile.BadZipFile, KeyError, ValueError, OSError) as error:
                raise SourceProblem(
                    "invalid-xlsx", f"the workbook cannot be read ({error})"
                ) from None

        header_at, columns = _header(records())
        width = len(columns)

        def rows() -> Iterator[tuple[int, list[Cell]]]:
            for number, cells in records():
                if number <= header_at:
                    continue
                padded = _fit(cells, width, number)
                if padded is not None:
                    yield number, padded

        yield Table(columns=columns, encoding=None, format="xlsx", _rows=rows)
    finally:
        book.close()


def _xlsx_cell(cell: Any, row: int) -> Cell:
    value = cell.value
    if isinstance(value, int | float) and not isinstance(value, bool):
        # A cell shown as a percentage holds the fraction: give the text the user sees.
        if "%" in (getattr(cell, "number_format", None) or ""):
            return f"{(Decimal(repr(value)) * 100).normalize():f}%"
        return value
    if value is None or isinstance(value, bool | Decimal | dt.datetime | dt.date):
        return value
    text = str(value)  # times, durations and error values as their text
    if len(text) > MAX_CELL:
        raise SourceProblem(
            "cell-too-long", f"row {row} has a cell over {MAX_CELL} characters", row=row
        )
    return text if text.strip() else None


# ------------------------------------------------------------------ both


def _blank(cell: Cell) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def _header(records: Iterable[tuple[int, list[Any]]]) -> tuple[int, list[str]]:
    """The first non-blank row: its number and its column names."""
    for number, cells in records:
        if all(_blank(c) for c in cells):
            continue
        while cells and _blank(cells[-1]):
            cells = cells[:-1]
        if len(cells) > MAX_COLUMNS:
            raise SourceProblem(
                "too-many-columns", f"the header has {len(cells)} columns; at most {MAX_COLUMNS}"
            )
        columns = [
            f"column {i}" if _blank(c) else _header_text(c) for i, c in enumerate(cells, start=1)
        ]
        twice = [c for c in dict.fromkeys(columns) if columns.count(c) > 1]
        if twice:
            names = ", ".join(repr(c) for c in twice)
            raise SourceProblem(
                "duplicate-column", f"the header names a column twice: {names}", row=number
            )
        return number, columns
    raise SourceProblem("empty", "the file holds no header row")


def _header_text(cell: Cell) -> str:
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    if isinstance(cell, dt.datetime | dt.date):
        return cell.isoformat()
    return str(cell).strip()


def _fit(cells: list[Cell], width: int, row: int) -> list[Cell] | None:
    """`cells` padded with None to `width`; None for a wholly blank row."""
    if all(_blank(c) for c in cells):
        return None
    if len(cells) > width:
        extra = [c for c in cells[width:] if not _blank(c)]
        if extra:
            raise SourceProblem(
                "extra-cells",
                f"row {row} has a value beyond the last column of the header ({extra[0]!r}): "
                "quote cells that hold the delimiter",
                row=row,
            )
        return cells[:width]
    return cells + [None] * (width - len(cells))
