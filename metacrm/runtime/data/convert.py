"""A spreadsheet cell to the value the write path takes, per field type; lookups by name.

`convert_cell` reads what people type in spreadsheets (2024/3/1, 2024年3月1日,
¥1,234.50, 15%, 是/否, a picklist label in English or Chinese, full-width digits) and
returns the value as an API client would send it in JSON to POST /api/v1/data/{object}
(dates and numbers as text, booleans, lists for multi-picklists), or None for a blank
cell. Range, length and format rules stay with the write path (metadata/values.py).
`LookupResolver` turns lookup cells (a name, an external id, any unique text) into
record ids, in batches, under the acting user's read access.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
import uuid
import weakref
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.errors import BadRequest
from metacrm.metadata.model import FieldDef, MultiPicklistField, PicklistField, label_text
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.data.sources import Cell
from metacrm.runtime.permissions import field_access, lookup_filter

DateOrder = Literal["ymd", "dmy", "mdy"]

#: Field types whose values a lookup may be matched on (besides the record id).
KEY_TYPES = frozenset({"text", "email", "phone", "url", "auto_number", "number"})


def matchable(field: FieldDef) -> bool:
    """Whether lookups may match records on `field`: a text-like or number field, or a
    formula giving text (a contact's full name)."""
    return field.type in KEY_TYPES or (field.type == "formula" and field.returns == "text")


#: Distinct values looked up per query (under every database's bound-parameter limit).
_BATCH = 500


class CellProblem(Exception):
    """A cell its field cannot take; `code` names the rule, `message` the value and what
    is accepted."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def convert_cell(
    field: FieldDef, cell: Cell, *, date_order: DateOrder = "ymd", zone: dt.tzinfo = dt.UTC
) -> Any:
    """The JSON value of `cell` for `field` (None for a blank cell), or CellProblem.

    `date_order` reads dates written with the year last (01/03/2024): "dmy" or "mdy";
    with "ymd" such a date is taken only when it cannot be read two ways. `zone` is the
    time zone of a date-time written without one (spreadsheets hold local times).
    """
    if cell is None or (isinstance(cell, str) and not cell.strip()):
        return None
    kind = field.type
    if kind in ("text", "long_text"):
        return _text(cell)
    if kind in ("number", "currency", "percent"):
        return _number(cell, percent=kind == "percent")
    if kind == "boolean":
        return _boolean(cell)
    if kind == "date":
        return _date(cell, date_order).isoformat()
    if kind == "datetime":
        moment = _datetime(cell, date_order)
        return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).isoformat()
    if kind in ("email", "phone"):
        return _narrow(_text(cell))
    if kind == "url":
        return _url(_text(cell))
    if isinstance(field, PicklistField):
        return _choice(field, _text(cell))
    if isinstance(field, MultiPicklistField):
        return _choices(field, _text(cell))
    if kind in ("lookup", "master_detail"):
        return _record_id(cell)
    if kind == "json":
        return _json(cell)
    raise CellProblem("read-only", f"{kind} fields are computed and cannot be imported")


# ------------------------------------------------------------------ text


def _text(cell: Cell) -> str:
    """The text a spreadsheet shows for a cell, trimmed."""
    if isinstance(cell, bool):
        return "TRUE" if cell else "FALSE"
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    if isinstance(cell, dt.datetime):
        return cell.isoformat(sep=" ")
    if isinstance(cell, dt.date):
        return cell.isoformat()
    if isinstance(cell, Decimal):
        return f"{cell:f}"
    return str(cell).strip()


def _narrow(text: str) -> str:
    """Full-width letters, digits and signs as their ASCII forms (ｅ＠ｘ．ｃｎ, １３８)."""
    return unicodedata.normalize("NFKC", text).strip()


def _url(text: str) -> str:
    text = _narrow(text)
    # "www.example.com" as people write it: the write path wants a scheme.
    if "://" not in text and " " not in text and "." in text:
        return "https://" + text
    return text


def _short(cell: Cell) -> str:
    text = _text(cell)
    return repr(text if len(text) <= 40 else text[:40] + "…")


# ------------------------------------------------------------------ numbers

_CURRENCY = re.compile(r"^(?:[¥￥$€£]|rmb|cny|usd|eur|gbp)\s*|\s*(?:元|rmb|cny|usd|eur|gbp)$")
_PLAIN = re.compile(r"^\d+(\.\d*)?([eE][+-]?\d+)?$|^\.\d+([eE][+-]?\d+)?$", re.ASCII)
_GROUPED = re.compile(r"^\d{1,3}(,\d{3})+(\.\d*)?$", re.ASCII)


def _number(cell: Cell, *, percent: bool) -> str:
    """A plain decimal text; `percent`: the field holds 15 for 15%, else 15% is 0.15."""
    if not isinstance(cell, str | int | float | Decimal) or isinstance(cell, bool):
        raise CellProblem("invalid-number", f"{_short(cell)} is not a number")
    if isinstance(cell, int | Decimal):
        return _plain(Decimal(cell))
    if isinstance(cell, float):
        return _plain(Decimal(repr(cell)))
    number = _parse_number(cell)
    if number is None:
        raise CellProblem(
            "invalid-number",
            f"{_short(cell)} is not a number: write e.g. 1234.5, 1,234.50, -12, (12), "
            "¥1,234 or 15%",
        )
    value, has_percent = number
    if has_percent and not percent:
        value = value / 100
    return _plain(value)


def _parse_number(text: str) -> tuple[Decimal, bool] | None:
    """(value, whether it had a % sign), or None for text that is no number."""
    text = unicodedata.normalize("NFKC", text).strip().casefold().replace(" ", "")
    negative = False
    if text.startswith("(") and text.endswith(")"):
        negative, text = True, text[1:-1]
    signed = bool(text) and text[0] in "+-"
    if signed:
        negative, text = negative != (text[0] == "-"), text[1:]
    bare = _CURRENCY.sub("", text)
    if bare != text and not signed and bare[:1] in ("+", "-"):  # after the currency: $-5
        negative, bare = negative != (bare[0] == "-"), bare[1:]
    text = bare
    has_percent = text.endswith("%")
    if has_percent:
        text = text[:-1]
    if _GROUPED.match(text):
        text = text.replace(",", "")
    elif not _PLAIN.match(text):
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    return (-value if negative else value), has_percent


def _plain(value: Decimal) -> str:
    if not value.is_finite():
        raise CellProblem("invalid-number", "numbers must be finite")
    text = f"{value:f}"
    return "0" if text in ("-0", "0") else text


# ------------------------------------------------------------------ booleans

_TRUE = frozenset({"true", "t", "yes", "y", "1", "on", "是", "真", "对", "✓", "✔", "√"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "off", "否", "假", "错", "✗", "✘", "×"})


def _boolean(cell: Cell) -> bool:
    if isinstance(cell, bool):
        return cell
    if isinstance(cell, int | float | Decimal) and cell in (0, 1):
        return bool(cell)
    word = unicodedata.normalize("NFKC", _text(cell)).strip().casefold()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise CellProblem(
        "invalid-boolean",
        f"{_short(cell)} is not true or false: write true/false, yes/no, y/n, 1/0, 是/否, "
        "真/假, 对/错 or ✓",
    )


# ------------------------------------------------------------------ dates

_YMD = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$", re.ASCII)
_YMD_ZH = re.compile(r"^(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]?$", re.ASCII)
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$", re.ASCII)
_XYY = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})$", re.ASCII)
#: English month names: 1 Mar 2024, 1-Mar-2024, Mar 1, 2024, March 1 2024.
_NAMED = ("%d %b %Y", "%d-%b-%Y", "%b %d, %Y", "%b %d %Y", "%d %B %Y", "%B %d, %Y", "%B %d %Y")
_TIME = re.compile(
    r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?\s*(am|pm)?\s*"
    r"(z|[+-]\d{2}:?\d{2})?$",
    re.ASCII,
)
_MOMENT = re.compile(r"^(.*?[\d日号])(?:[Tt]|\s+)(\d{1,2}:\d{2}.*)$")
_DATE_HINT = "write e.g. 2024-03-01, 2024/3/1, 2024.3.1, 20240301 or 2024年3月1日"


def _date(cell: Cell, order: DateOrder) -> dt.date:
    if isinstance(cell, dt.datetime):
        if cell.time() != dt.time(0):
            raise CellProblem("invalid-date", f"{_short(cell)} has a time of day; expected a date")
        return cell.date()
    if isinstance(cell, dt.date):
        return cell
    if isinstance(cell, bool) or (isinstance(cell, float | Decimal) and cell != int(cell)):
        raise CellProblem("invalid-date", f"{_short(cell)} is not a date: {_DATE_HINT}")
    text = unicodedata.normalize("NFKC", _text(cell)).strip()
    day, time = _split_moment(text)
    if time is not None:
        moment = _datetime(cell, order)
        if moment.time() != dt.time(0):
            raise CellProblem("invalid-date", f"{_short(cell)} has a time of day; expected a date")
        return moment.date()
    return _parse_date(day, order, cell)


def _parse_date(text: str, order: DateOrder, cell: Cell) -> dt.date:
    match = _YMD.match(text) or _YMD_ZH.match(text) or _COMPACT.match(text)
    if match:
        return _real_date(int(match[1]), int(match[2]), int(match[3]), cell)
    match = _XYY.match(text)
    if match:
        first, second, year = int(match[1]), int(match[2]), int(match[3])
        if order == "dmy":
            return _real_date(year, second, first, cell)
        if order == "mdy":
            return _real_date(year, first, second, cell)
        if first != second and first <= 12 and second <= 12:
            raise CellProblem(
                "ambiguous-date",
                f"{_short(cell)} reads as day/month or month/day: choose the date order "
                "(dmy or mdy), or write 2024-03-01",
            )
        return _real_date(year, min(first, second), max(first, second), cell)
    for pattern in _NAMED:
        try:
            return dt.datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    raise CellProblem("invalid-date", f"{_short(cell)} is not a date: {_DATE_HINT}")


def _real_date(year: int, month: int, day: int, cell: Cell) -> dt.date:
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise CellProblem("invalid-date", f"{_short(cell)} is not a real date") from None


def _split_moment(text: str) -> tuple[str, str | None]:
    """A date-time text cut into its date and its time (None without one)."""
    match = _MOMENT.match(text)
    if match is None:
        return text, None
    return match[1].strip(), match[2].strip()


def _datetime(cell: Cell, order: DateOrder) -> dt.datetime:
    if isinstance(cell, dt.datetime):
        return cell
    if isinstance(cell, dt.date):
        return dt.datetime.combine(cell, dt.time(0))
    text = unicodedata.normalize("NFKC", _text(cell)).strip()
    day, time = _split_moment(text)
    not_a_moment = CellProblem(
        "invalid-datetime",
        f"{_short(cell)} is not a date and time: write e.g. 2024-03-01 09:30, "
        "2024/3/1 9:30:15 or 2024-03-01T09:30:00+08:00",
    )
    try:
        date = _parse_date(day, order, cell)
    except CellProblem as problem:
        raise (not_a_moment if problem.code == "invalid-date" else problem) from None
    if time is None:
        return dt.datetime.combine(date, dt.time(0))
    match = _TIME.match(time.casefold())
    if match is None:
        raise not_a_moment
    hour, minute = int(match[1]), int(match[2])
    second, fraction = int(match[3] or 0), int((match[4] or "0").ljust(6, "0"))
    if match[5]:
        if not 1 <= hour <= 12:
            raise CellProblem("invalid-datetime", f"{_short(cell)} has no such hour")
        hour = hour % 12 + (12 if match[5] == "pm" else 0)
    zone = None
    if match[6]:
        zone = dt.UTC
        if match[6] != "z":
            digits = match[6].replace(":", "")
            offset = dt.timedelta(hours=int(digits[1:3]), minutes=int(digits[3:5]))
            zone = dt.timezone(-offset if digits[0] == "-" else offset)
    try:
        return dt.datetime.combine(date, dt.time(hour, minute, second, fraction), zone)
    except ValueError:
        raise CellProblem("invalid-datetime", f"{_short(cell)} is not a real time") from None


# ------------------------------------------------------------------ picklists


def _fold(text: str) -> str:
    """Case- and width-insensitive form of a choice."""
    return unicodedata.normalize("NFKC", text).casefold().strip()


def _choice(field: PicklistField | MultiPicklistField, text: str) -> str:
    """The value a cell names, by value or by label in any language, active ones first."""
    exact, folded = _choice_table(field)
    value = exact.get(text) or folded.get(_fold(text))
    if value is not None:
        return value
    names = [
        v.value
        + (f" ({label_text(v.label)})" if v.label and label_text(v.label) != v.value else "")
        for v in field.values
        if v.active
    ]
    shown = ", ".join(names[:12]) + (", …" if len(names) > 12 else "")
    raise CellProblem(
        "unknown-choice",
        f"{_short(text)} is not a value of {label_text(field.label, fallback=field.api_name)}; "
        f"accepted (by value or label): {shown}",
    )


_ChoiceTable = tuple[dict[str, str], dict[str, str]]
#: id(field) -> (the field, its choice table): built once per picklist, not per cell.
_CHOICE_TABLES: dict[int, tuple[weakref.ref[Any], _ChoiceTable]] = {}


def _choice_table(field: PicklistField | MultiPicklistField) -> _ChoiceTable:
    """(exact value -> value, folded value or label -> value): among folded forms the
    first claim wins, values before labels, active values before inactive ones."""
    known = _CHOICE_TABLES.get(id(field))
    if known is not None and known[0]() is field:
        return known[1]
    exact = {v.value: v.value for v in field.values}
    folded: dict[str, str] = {}
    ranked = sorted(field.values, key=lambda v: not v.active)
    for item in ranked:
        folded.setdefault(_fold(item.value), item.value)
    for item in ranked:
        labels = [item.label] if isinstance(item.label, str) else list((item.label or {}).values())
        for label in labels:
            folded.setdefault(_fold(label), item.value)
    table = (exact, folded)
    if len(_CHOICE_TABLES) >= 1024:
        _CHOICE_TABLES.clear()  # fields of old metadata versions; rebuilt on demand
    _CHOICE_TABLES[id(field)] = (weakref.ref(field), table)
    return table


def _choices(field: MultiPicklistField, text: str) -> list[str]:
    try:
        return [_choice(field, text)]  # one value whose label holds a separator
    except CellProblem:
        pass
    items = [p.strip() for p in re.split(r"[;,、]", unicodedata.normalize("NFKC", text))]
    return list(dict.fromkeys(_choice(field, item) for item in items if item))


# ------------------------------------------------------------------ ids and JSON


def _record_id(cell: Cell) -> str:
    try:
        return str(uuid.UUID(_text(cell)))
    except ValueError:
        raise CellProblem(
            "invalid-id",
            f"{_short(cell)} is not a record id; map the column to the target's name or "
            "another unique field to match records by it",
        ) from None


def _json(cell: Cell) -> Any:
    if isinstance(cell, bool | int):
        return cell
    if isinstance(cell, float | Decimal):
        return int(cell) if cell == int(cell) else float(cell)
    if not isinstance(cell, str):
        return _text(cell)
    try:
        return json.loads(cell)
    except json.JSONDecodeError as error:
        raise CellProblem(
            "invalid-json",
            f"{_short(cell)} is not JSON: {error.msg} (line {error.lineno}, column {error.colno})",
        ) from None


# ------------------------------------------------------------------ lookups


def lookup_text(cell: Cell) -> str:
    """The normalised text of a lookup cell: the key of `LookupResolver.resolve`'s answer."""
    return str(cell).strip()


class LookupResolver:
    """Resolves lookup cells to record ids, in batches, under the acting user's read access.

    `key` names the target's field to match: None matches the record id or the target's
    name field; else an external-id, unique or any text field (text, e-mail, phone, URL,
    auto-number, number or a formula giving text). A text that is a UUID matches the id in every case. Names
    match case-insensitively with spaces trimmed. Only live records the actor may read
    match. Answers are cached, so a chunk naming the same account costs one lookup.
    """

    def __init__(
        self,
        conn: AsyncConnection,
        ct: CompiledTenant,
        target: CompiledObject,
        actor: Actor,
        *,
        key: str | None = None,
    ) -> None:
        def usable(name: str) -> bool:
            field = target.fields.get(name)
            readable = field_access(ct.model, actor, target.name, name) != "hidden"
            return field is not None and matchable(field) and readable

        if key is not None and not usable(key):
            raise BadRequest(
                f"lookups of {target.name} cannot be matched on {key!r}: name a readable "
                f"text, e-mail, phone, URL, auto-number, number or text formula field "
                f"of {target.name}"
            )
        name = key if key is not None else target.obj.record_name_field
        if name is not None and not usable(name):
            name = None  # a name the actor cannot see: match record ids only
        self.conn, self.ct, self.target, self.actor, self.key = conn, ct, target, actor, name
        self._cache: dict[str, uuid.UUID | CellProblem] = {}

    async def resolve(self, cells: Iterable[Cell]) -> dict[str, uuid.UUID | CellProblem]:
        """The record id (or the problem) of each non-blank cell, keyed by `lookup_text`."""
        wanted: dict[str, str] = {}
        for cell in cells:
            if cell is not None and (text := lookup_text(cell)):
                # Matched on the text a sheet shows: 1001.0 from Excel matches "1001".
                wanted.setdefault(text, _text(cell))
        missing = [(text, shown) for text, shown in wanted.items() if text not in self._cache]
        for start in range(0, len(missing), _BATCH):
            await self._look_up(missing[start : start + _BATCH])
        return {text: self._cache[text] for text in wanted}

    async def _look_up(self, texts: list[tuple[str, str]]) -> None:
        """One query for a batch of (cache key, text to match) pairs; answers cached."""
        co = self.target
        ids = {text: parsed for text, shown in texts if (parsed := _uuid(shown)) is not None}
        conditions: list[sa.ColumnElement[bool]] = []
        if ids:
            conditions.append(co.table.c.id.in_(set(ids.values())))
        key_sql: sa.ColumnElement[Any] | None = None
        wanted: dict[str, Any] = {}  # cache key -> the key value it names, as compared
        number_key = self.key is not None and co.fields[self.key].type == "number"
        if self.key is not None:
            key_sql = co.sql(self.key)
            if number_key:
                for text, shown in texts:
                    number = _parse_number(shown)
                    if number is not None and not number[1]:
                        wanted[text] = number[0]
                if wanted:
                    conditions.append(key_sql.in_(set(wanted.values())))
            else:
                wanted = {text: shown.lower() for text, shown in texts}
                # lower() on both sides, in SQL, so the database's idea of case applies.
                folded = [sa.func.lower(sa.literal(shown)) for _, shown in texts]
                conditions.append(sa.func.lower(sa.func.trim(key_sql)).in_(folded))
        found_ids: set[uuid.UUID] = set()
        by_key: dict[Any, list[uuid.UUID]] = {}
        if conditions:
            columns: list[sa.ColumnElement[Any]] = [co.table.c.id]
            if key_sql is not None:
                columns.append(key_sql.label("key"))
            reachable = lookup_filter(self.ct, self.actor)(co.name)
            query = sa.select(*columns).where(sa.or_(*conditions))
            if reachable is not None:
                query = query.where(reachable)
            for row in await self.conn.execute(query):
                found_ids.add(row[0])
                if key_sql is not None and row[1] is not None:
                    value = Decimal(row[1]) if number_key else str(row[1]).strip().lower()
                    by_key.setdefault(value, []).append(row[0])
        for text, _ in texts:
            as_id = ids.get(text)
            if as_id is not None and as_id in found_ids:
                self._cache[text] = as_id
            else:
                matches = by_key.get(wanted[text], []) if text in wanted else []
                self._cache[text] = self._answer(text, matches)

    def _answer(self, text: str, matches: list[uuid.UUID]) -> uuid.UUID | CellProblem:
        if len(matches) == 1:
            return matches[0]
        label = label_text(self.target.obj.label, self.actor.language, self.target.name)
        key = self.key or "id"
        if not matches:
            return CellProblem("lookup-not-found", f"no {label} you can see has {key} {text!r}")
        return CellProblem(
            "ambiguous-lookup",
            f"{len(matches)} {label} records have {key} {text!r}; map the column to a "
            "unique field instead",
        )


def _uuid(text: str) -> uuid.UUID | None:
    if len(text) > 36:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
