"""What a valid value of each field type is: coercion of API input, with a code per rule."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from metacrm.metadata.model import (
    CurrencyField,
    EmailField,
    FieldDef,
    LongTextField,
    MultiPicklistField,
    NumberField,
    PercentField,
    PhoneField,
    PicklistField,
    TextField,
    UrlField,
)

_Texts = TextField | LongTextField | EmailField | PhoneField | UrlField
_Numbers = NumberField | CurrencyField | PercentField

# re.ASCII: `\d` would otherwise match any script's digits ("１２", "١٢"), which Decimal reads.
_DECIMAL_TEXT = re.compile(r"^[+-]?(\d{1,40}(\.\d{0,40})?|\.\d{1,40})$", re.ASCII)
_PHONE = re.compile(r"^\+?[0-9 ().\-/]{3,63}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
#: RFC 3339 date-times (the offset may be left out: UTC), as the form's schema reads them.
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"
    r"(Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?$",
    re.ASCII,
)
#: Room for every digit a field may have (precision 38 and more) while rounding.
_WIDE = Context(prec=100)


class ValueProblem(Exception):
    """A value that breaks a rule of its field; `code` names the rule."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def check_text(value: str) -> str:
    """Refuse text no database stores the same way: NUL bytes and lone surrogates."""
    if "\x00" in value:
        raise ValueProblem("nul-byte", "text cannot contain NUL bytes")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueProblem("invalid-unicode", "text is not valid Unicode") from None
    return value


def _text(field: _Texts, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueProblem("type", f"expected text, got {_kind(value)}")
    check_text(value)
    if len(value) > field.max_length:
        raise ValueProblem(
            "max-length", f"at most {field.max_length} characters ({len(value)} given)"
        )
    return value


def _decimal(field: _Numbers, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float | str):
        raise ValueProblem("type", f"expected a number, got {_kind(value)}")
    if isinstance(value, str):
        if not _DECIMAL_TEXT.match(value.strip()):
            raise ValueProblem("type", "expected a number")
        value = value.strip()
    try:
        number = Decimal(value) if not isinstance(value, float) else Decimal(repr(value))
    except (InvalidOperation, ValueError):
        raise ValueProblem("type", "expected a number") from None
    if not number.is_finite():
        raise ValueProblem("type", "numbers must be finite")
    integer_digits = field.precision - field.scale
    too_long = ValueProblem(
        "precision", f"at most {integer_digits} digits before the decimal point"
    )
    if number.adjusted() >= integer_digits:
        raise too_long
    # Rounding can carry into a new digit (9999.6 at scale 0 is 10000): check again after.
    number = number.quantize(Decimal(1).scaleb(-field.scale), rounding=ROUND_HALF_UP, context=_WIDE)
    if number and number.adjusted() >= integer_digits:
        raise too_long
    if field.min is not None and number < field.min:
        raise ValueProblem("min", f"must be at least {field.min}")
    if field.max is not None and number > field.max:
        raise ValueProblem("max", f"must be at most {field.max}")
    return number


def _boolean(field: object, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueProblem("type", f"expected true or false, got {_kind(value)}")
    return value


def _date(field: object, value: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not _DATE.match(value):
        raise ValueProblem("type", "expected a date as YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueProblem("type", f"{value!r} is not a real date") from None


def _datetime(field: object, value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        moment = value
    else:
        if not isinstance(value, str) or len(value) > 40 or not _DATETIME.match(value):
            raise ValueProblem("type", "expected an ISO 8601 date-time, e.g. 2026-01-31T09:30:00Z")
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueProblem("type", f"{value!r} is not a real date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        raise ValueProblem("type", "date-time out of range") from None


def _email(field: _Texts, value: Any) -> str:
    text = _text(field, value)
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise ValueProblem("email", f"not a valid e-mail address: {error}") from None


def _phone(field: _Texts, value: Any) -> str:
    text = _text(field, value)
    if not _PHONE.match(text) or sum(c.isdigit() for c in text) < 3:
        raise ValueProblem("phone", "not a valid phone number")
    return text


def _url(field: _Texts, value: Any) -> str:
    text = _text(field, value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in text):
        raise ValueProblem("url", "not a valid http(s) URL")
    return text


def _picklist(field: PicklistField, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueProblem("type", f"expected text, got {_kind(value)}")
    if value not in field.value_names(active_only=True):
        raise ValueProblem(
            "picklist-value", f"{_short(value)} is not an active value of the picklist"
        )
    return value


def _multi_picklist(field: MultiPicklistField, value: Any) -> list[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueProblem("type", f"expected a list of values, got {_kind(value)}")
    active = field.value_names(active_only=True)
    for item in value:
        if item not in active:
            raise ValueProblem(
                "picklist-value", f"{_short(item)} is not an active value of the picklist"
            )
    if len(set(value)) != len(value):
        raise ValueProblem("duplicate-value", "a value is listed twice")
    return sorted(value, key=active.index) or None


def _reference(field: object, value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str) or len(value) > 36:
        raise ValueProblem("type", f"expected a record id, got {_kind(value)}")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValueProblem("type", f"{_short(value)} is not a record id") from None


def _json(field: object, value: Any) -> Any:
    _check_json_text(value, depth=0)
    return _plain_json(value)


def _plain_json(value: Any) -> Any:
    """JSON numbers parsed as Decimal become int or float again, as stored and read back."""
    if isinstance(value, Decimal):
        if value.is_finite() and abs(value.adjusted()) > 300:
            raise ValueProblem("too-large", "JSON numbers must lie within 1e-300 and 1e300")
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_json(v) for v in value]
    return value


def _check_json_text(value: Any, depth: int) -> None:
    if depth > 64:
        raise ValueProblem("too-deep", "JSON values nest at most 64 levels")
    if isinstance(value, str):
        check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key)
            _check_json_text(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json_text(item, depth + 1)


#: Field type -> coercer; each takes the field class of its type.
_COERCERS: dict[str, Callable[[Any, Any], Any]] = {
    "text": _text,
    "long_text": _text,
    "number": _decimal,
    "currency": _decimal,
    "percent": _decimal,
    "boolean": _boolean,
    "date": _date,
    "datetime": _datetime,
    "email": _email,
    "phone": _phone,
    "url": _url,
    "picklist": _picklist,
    "multi_picklist": _multi_picklist,
    "lookup": _reference,
    "master_detail": _reference,
    "json": _json,
}


def coerce(field: FieldDef, value: Any) -> Any:
    """The stored form of `value` for `field`, or ValueProblem; None stays None."""
    if value is None:
        return None
    coercer = _COERCERS.get(field.type)
    if coercer is None:
        raise ValueProblem("read-only", f"{field.type} fields are computed and cannot be written")
    return coercer(field, value)


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        Decimal: "a number",
        str: "text",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _short(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "…")
