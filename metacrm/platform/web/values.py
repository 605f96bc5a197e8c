"""A field's value drawn for people: currency with its symbol, dates in the user's language,
picklist labels, lookups as links. Everything is escaped; nothing here decides access."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from markupsafe import Markup, escape

from metacrm.metadata.model import FieldDef, FormulaField
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.permissions import linked, object_readable, path_readable
from metacrm.ui_schema.labels import text

#: Symbols of common ISO 4217 codes; any other code is shown as the code.
SYMBOLS = {"CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "HKD": "HK$"}
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_EMPTY = Markup('<span class="empty" aria-label="—">—</span>')


def kind_of(field: FieldDef) -> str:
    """The type a value is shown as (a formula shows as the type it returns)."""
    if isinstance(field, FormulaField):
        return field.returns
    return field.type


def currency_symbol(tenant_language: str) -> str:
    """The symbol of the tenant's currency (its default language's: ¥ for zh-CN, else $)."""
    return SYMBOLS["CNY"] if tenant_language == "zh-CN" else SYMBOLS["USD"]


def number_text(value: Any, *, scale: int | None = None) -> str:
    """A number with thousands separators, at `scale` decimals when given."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if scale is not None:
        return f"{number:,.{scale}f}"
    return f"{number:,f}".rstrip("0").rstrip(".") if "." in f"{number:f}" else f"{number:,f}"


def date_text(value: Any, language: str) -> str:
    """A calendar date as people of `language` write it."""
    try:
        day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return str(value)
    if language == "zh-CN":
        return f"{day.year}年{day.month}月{day.day}日"
    return f"{_MONTHS_EN[day.month - 1]} {day.day}, {day.year}"


def instant(value: Any) -> Markup:
    """A moment (ISO 8601) as a <time>: UTC here, the reader's time zone once app.js ran."""
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.UTC).isoformat()
    shown = str(value).replace("T", " ")[:16] + " UTC"
    return Markup('<time datetime="{}" data-local>{}</time>').format(value, shown)


def choice_label(field: FieldDef, value: Any, language: str) -> str:
    """A picklist value's label in `language` (the value itself when it has none)."""
    for choice in getattr(field, "values", ()):
        if choice.value == value:
            return text(choice.label, [language, "en"], choice.value)
    return str(value)


def display(
    field: FieldDef,
    value: Any,
    *,
    language: str,
    currency: str = "$",
    link_name: Any = None,
) -> Markup:
    """`value` of `field` as HTML. `link_name` is a lookup target's name when it was read."""
    if value is None or value == "" or value == []:
        return _EMPTY
    kind = kind_of(field)
    scale = getattr(field, "scale", None)
    match kind:
        case "currency":
            return Markup('<span class="number">{}{}</span>').format(
                currency, number_text(value, scale=2 if scale is None else scale)
            )
        case "number":
            return Markup('<span class="number">{}</span>').format(number_text(value, scale=scale))
        case "percent":
            return Markup('<span class="number">{}%</span>').format(number_text(value, scale=scale))
        case "boolean":
            word = {"en": ("Yes", "No"), "zh-CN": ("是", "否")}.get(language, ("Yes", "No"))
            return Markup('<span class="bool">{}</span>').format(word[0] if value else word[1])
        case "date":
            return Markup('<time datetime="{}">{}</time>').format(value, date_text(value, language))
        case "datetime":
            return instant(value)
        case "picklist":
            return Markup('<span class="pill" data-value="{}">{}</span>').format(
                value, choice_label(field, value, language)
            )
        case "multi_picklist":
            return Markup(" ").join(
                Markup('<span class="pill" data-value="{}">{}</span>').format(
                    v, choice_label(field, v, language)
                )
                for v in value
            )
        case "lookup" | "master_detail":
            target = getattr(field, "target", "")
            name = link_name if link_name not in (None, "") else str(value)[:8]
            return Markup('<a href="/app/o/{}/{}">{}</a>').format(target, value, name)
        case "email":
            return Markup('<a href="mailto:{}">{}</a>').format(value, value)
        case "phone":
            return Markup('<a href="tel:{}">{}</a>').format(str(value).replace(" ", ""), value)
        case "url":
            if str(value).lower().startswith(("http://", "https://")):
                return Markup(
                    '<a href="{}" rel="noopener noreferrer" target="_blank">{}</a>'
                ).format(value, value)
            return escape(str(value))
        case "long_text":
            return Markup('<span class="long-text">{}</span>').format(value)
        case "json":
            return Markup("<code>{}</code>").format(json.dumps(value, ensure_ascii=False)[:500])
        case _:
            return escape(str(value))


def link_name_paths(
    ct: CompiledTenant, co: CompiledObject, actor: Actor, fields: list[str]
) -> list[str]:
    """`lookup.name` paths to read beside `fields`, so lookups show their target's name
    (only where the actor may read the target and its name field)."""
    paths = []
    for name in fields:
        target = linked(ct, co, name) if name in co.fields else None
        if target is None or not object_readable(ct, actor, target):
            continue
        name_field = target.obj.record_name_field
        path = f"{name}.{name_field}"
        if name_field and target.has(name_field) and path_readable(ct, actor, co, path):
            paths.append(path)
    return paths
