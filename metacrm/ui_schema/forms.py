"""A layout, seen by one user, as a form document: JSON Schema + JSON Forms UI schema.

The JSON Schema (draft 2020-12) describes the record the form submits, with defaults
filled in (what JSON Forms' `useDefaults` does), under the rules the API enforces:
types and limits, object-level and layout-level required fields, and the field rules
as `if`/`then`. `readOnly` has its JSON Schema meaning: the server refuses a write of
that property. Fields hidden from the user are absent from both documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from metacrm.metadata.layouts import FieldPlacement, Layout
from metacrm.metadata.model import FieldDef, FieldRule, MetadataModel, ObjectDef, needs_value
from metacrm.runtime.permissions import field_access, object_permission
from metacrm.ui_schema.conditions import condition_schema
from metacrm.ui_schema.json_schema import field_schema
from metacrm.ui_schema.labels import text

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_PHONE = r"^\+?[0-9 ().\-/]{3,63}$"
_URL = r"^https?://[^\s/?#]+[^\s]*$"
# Real calendar dates only (leap years included), in ASCII digits, as the API reads them.
_DAY = (
    r"(?:(?!0000)[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
    r"|(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)-02-29)"
)
_CLOCK = r"(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
_OFFSET = r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_DATE = rf"^{_DAY}$"
_DATETIME = rf"^{_DAY}[Tt ]{_CLOCK}{_OFFSET}?$"
_WIDGET_OPTIONS: dict[str, dict[str, Any]] = {
    "text_area": {"multi": True},
    "radio": {"format": "radio"},
    "rich_text": {"multi": True, "x-widget": "rich_text"},
}
_TEXTUAL = ("text", "long_text", "email", "phone", "url")


def value_schema(
    field: FieldDef, languages: list[str], *, required: bool = False
) -> dict[str, Any]:
    """The JSON Schema of a submitted value of `field` (null allowed unless required)."""
    schema = field_schema(field, mode="create", language=languages[0])
    schema.pop("title", None)
    nullable = [] if required else [{"type": "null"}]
    match field.type:
        case "number" | "currency" | "percent":
            digits = field.precision - field.scale
            # What rounds (half up, at the field's scale) to 10**digits has a digit too many.
            limit = 10**digits - 5 / 10 ** (field.scale + 1)
            number: dict[str, Any] = {
                "type": "number",
                "exclusiveMaximum": limit,
                "exclusiveMinimum": -limit,
            }
            for key in ("minimum", "maximum"):
                if key in schema:
                    number[key] = schema.pop(key)
            decimal = {
                "type": "string",
                "pattern": rf"^\s*[+-]?(0*[0-9]{{1,{digits}}}(\.[0-9]*)?|\.[0-9]+)\s*$",
            }
            schema.pop("type", None)
            schema["anyOf"] = [number, decimal, *nullable]
        case "picklist" | "multi_picklist":
            choices = [
                {"const": v.value, "title": text(v.label, languages, v.value)}
                for v in field.values
                if v.active
            ]
            schema.pop("enum", None)
            if field.type == "picklist":
                schema.pop("type", None)
                schema["oneOf"] = choices + nullable
            else:
                schema["items"] = {"oneOf": choices}
                if required:
                    schema["minItems"] = 1
        case "phone":
            schema["pattern"] = _PHONE
        case "url":
            schema["pattern"] = _URL
        case "datetime":
            schema["pattern"] = _DATETIME
        case "date":
            schema["pattern"] = _DATE
    if field.type in _TEXTUAL and required:
        schema["minLength"] = 1
    if required and isinstance(schema.get("type"), list):
        kinds = [k for k in schema["type"] if k != "null"]
        schema["type"] = kinds[0] if len(kinds) == 1 else kinds
    return schema


def _placements(layout: Layout, obj: ObjectDef) -> list[tuple[Any, int, list[FieldPlacement]]]:
    """(section title, columns, placements) with stale and hidden placements left out, and any
    required field the layout lacks (added to the object after the layout) at the end."""
    sections = []
    placed: set[str] = set()
    for section in layout.sections:
        kept = [p for p in section.fields if obj.has_field(p.field) and p.field not in placed]
        placed |= {p.field for p in section.fields}
        sections.append((section, [p for p in kept if not p.hidden]))
    missing = [
        FieldPlacement(field=f.api_name)
        for f in obj.fields
        if needs_value(f) and f.api_name not in placed
    ]
    extra = [(None, 1, missing)] if missing else []
    return [(s.title, s.columns, p) for s, p in sections] + extra


def active_rules(obj: ObjectDef) -> list[FieldRule]:
    return [r for r in obj.field_rules if r.active]


def form_document(
    model: MetadataModel,
    obj: ObjectDef,
    layout: Layout,
    actor: Any,
    languages: list[str],
) -> dict[str, Any]:
    """The form of `layout` for `actor`, labels in the first of `languages` available."""
    access = {f.api_name: field_access(model, actor, obj.api_name, f.api_name) for f in obj.fields}
    properties: dict[str, Any] = {}
    required: list[str] = []
    ui_sections: list[dict[str, Any]] = []
    placement_of: dict[str, FieldPlacement] = {}
    for title, columns, placements in _placements(layout, obj):
        controls = []
        for placement in placements:
            field = obj.field(placement.field)
            if access[field.api_name] == "hidden":
                continue
            placement_of[field.api_name] = placement
            must = needs_value(field) or (placement.required and not _has_default(field))
            # A required field with a default may be left out, but not sent empty.
            non_null = (getattr(field, "required", False) or placement.required) and not (
                field.computed
            )
            value = value_schema(field, languages, required=non_null)
            value = {"title": text(field.label, languages, field.api_name), **value}
            help_text = placement.help_text or field.help_text
            if help_text:
                value["description"] = text(help_text, languages)
            read_only = field.computed or access[field.api_name] == "read" or placement.read_only
            if read_only:
                value["readOnly"] = True
            properties[field.api_name] = value
            if must and not field.computed:
                required.append(field.api_name)
            controls.append(_control(field, placement, read_only, languages))
        ui_sections.append(_section(title, controls, columns, languages))
    rules = _rules(obj, properties, access)
    for control in _walk_controls(ui_sections):
        name = control["scope"].rsplit("/", 1)[-1]
        if name in rules["ui"]:
            control["rule"] = rules["ui"][name]
    schema: dict[str, Any] = {
        "$schema": SCHEMA_DIALECT,
        "title": text(obj.label, languages, obj.api_name),
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    if rules["schema"]:
        schema["allOf"] = rules["schema"]
    return {
        "object": obj.api_name,
        "label": text(obj.label, languages, obj.api_name),
        "layout": {
            "api_name": layout.api_name,
            "label": text(layout.label, languages, layout.api_name),
            "generated": layout not in model.layouts,
        },
        "language": languages[0],
        "schema": schema,
        "uischema": {"type": "VerticalLayout", "elements": ui_sections},
        "compact": _columns(model, actor, obj, layout.compact, languages),
        "related_lists": _related(model, actor, layout, languages),
        "field_rules": rules["listed"],
    }


def _has_default(field: FieldDef) -> bool:
    return (
        getattr(field, "default", None) is not None
        or getattr(field, "default_expression", None) is not None
    )


def _control(
    field: FieldDef, placement: FieldPlacement, read_only: bool, languages: list[str]
) -> dict[str, Any]:
    control: dict[str, Any] = {
        "type": "Control",
        "scope": f"#/properties/{field.api_name}",
        "label": text(field.label, languages, field.api_name),
    }
    options: dict[str, Any] = {}
    if read_only:
        options["readonly"] = True
    if placement.widget:
        options |= _WIDGET_OPTIONS.get(placement.widget, {"x-widget": placement.widget})
    elif field.type == "long_text":
        options["multi"] = True
    if field.type in ("lookup", "master_detail"):
        options["x-lookup"] = {"object": field.target}
    if options:
        control["options"] = options
    return control


def _section(
    title: Any, controls: list[dict[str, Any]], columns: int, languages: list[str]
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    if columns <= 1:
        rows = controls
    else:
        for start in range(0, len(controls), columns):
            rows.append({"type": "HorizontalLayout", "elements": controls[start : start + columns]})
    if title is None:
        return {"type": "VerticalLayout", "elements": rows}
    return {"type": "Group", "label": text(title, languages), "elements": rows}


def _walk_controls(elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for element in elements:
        if element["type"] == "Control":
            found.append(element)
        else:
            found += _walk_controls(element.get("elements", []))
    return found


def _rules(obj: ObjectDef, properties: dict[str, Any], access: Mapping[str, str]) -> dict[str, Any]:
    """Field rules as JSON Schema `if`/`then`, JSON Forms rules, and a listing."""
    in_schema: list[dict[str, Any]] = []
    ui: dict[str, dict[str, Any]] = {}
    listed: list[dict[str, Any]] = []
    # A hidden field answers to its hidden rule alone (as the API has it): another rule's
    # `then` holds for it only while none of its hidden rules applies.
    hiding: dict[str, list[dict[str, Any] | None]] = {}
    for rule in active_rules(obj):
        if rule.effect == "hidden":
            for name in rule.fields:
                hiding.setdefault(name, []).append(condition_schema(rule.when, obj))
    for rule in active_rules(obj):
        condition = condition_schema(rule.when, obj)
        fields = [f for f in rule.fields if f in properties]
        listed.append(
            {
                "api_name": rule.api_name,
                "when": rule.when,
                "effect": rule.effect,
                "fields": [f for f in rule.fields if access.get(f, "hidden") != "hidden"],
                **({"values": rule.values} if rule.values is not None else {}),
                "condition": condition,
            }
        )
        if condition is None or not fields:
            continue
        shadowed = [f for f in fields if rule.effect != "hidden" and f in hiding]
        then = _then(obj, rule, [f for f in fields if f not in shadowed])
        if then:
            in_schema.append({"if": condition, "then": then})
        for name in shadowed:
            hidden_when = hiding[name]
            then = _then(obj, rule, [name])
            if then and None not in hidden_when:  # else only the server can tell
                unhidden = {"not": {"anyOf": hidden_when}}
                in_schema.append({"if": {"allOf": [condition, unhidden]}, "then": then})
        effect = {"hidden": "HIDE", "read_only": "DISABLE"}.get(rule.effect)
        for name in fields if effect else []:
            existing = ui.get(name)
            if existing is None:
                ui[name] = {"effect": effect, "condition": {"scope": "#", "schema": condition}}
            elif existing["effect"] == effect:
                previous = existing["condition"]["schema"]
                existing["condition"]["schema"] = {"anyOf": [previous, condition]}
            elif effect == "HIDE":  # hiding wins over disabling
                ui[name] = {"effect": effect, "condition": {"scope": "#", "schema": condition}}
    return {"schema": in_schema, "ui": ui, "listed": listed}


def _then(obj: ObjectDef, rule: FieldRule, fields: list[str]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name in fields:
        field = obj.field(name)
        if field.computed:
            continue
        if rule.effect == "required":
            required.append(name)
            properties[name] = {"not": {"enum": [None, "", []]}}
        elif rule.effect == "hidden":
            properties[name] = {"enum": [None, "", []]}  # blank, as the API counts it
        elif rule.effect == "read_only":
            # On create the API lets through a blank value or the field's default.
            properties[name] = {"enum": [None, "", [], *_default_forms(field)]}
        elif rule.effect == "allowed_values":
            values = list(rule.values or [])
            if field.type == "multi_picklist":
                properties[name] = {"anyOf": [{"type": "null"}, {"items": {"enum": values}}]}
            else:
                properties[name] = {"enum": [*values, None]}
    then: dict[str, Any] = {}
    if properties:
        then["properties"] = properties
    if required:
        then["required"] = required
    return then


def _default_forms(field: FieldDef) -> list[Any]:
    """The JSON values a client may send that the API reads as the field's default."""
    default = getattr(field, "default", None)
    if default is None:
        return []
    if isinstance(default, Decimal):
        number = int(default) if default == default.to_integral_value() else float(default)
        return [number, str(default)]
    if isinstance(default, bool | str | list | int):
        return [default]
    return [str(default)]


def _columns(
    model: MetadataModel, actor: Any, obj: ObjectDef, names: list[str], languages: list[str]
) -> list[dict[str, Any]]:
    """Columns of `obj` the actor may read: field, label, type."""
    columns = []
    for name in names:
        if not obj.has_field(name):
            continue
        if field_access(model, actor, obj.api_name, name) == "hidden":
            continue
        field = obj.field(name)
        column = {
            "field": name,
            "label": text(field.label, languages, name),
            "type": field.type,
        }
        if field.type == "formula":
            column["returns"] = field.returns
        if field.type in ("lookup", "master_detail"):
            column["target"] = field.target
        columns.append(column)
    return columns


def _related(
    model: MetadataModel, actor: Any, layout: Layout, languages: list[str]
) -> list[dict[str, Any]]:
    related = []
    for item in layout.related_lists:
        if not model.has_object(item.object):
            continue
        child = model.object(item.object)
        permission = object_permission(model, actor, child.api_name)
        if not (permission.read or permission.view_all) or not child.has_field(item.field):
            continue
        if field_access(model, actor, child.api_name, item.field) == "hidden":
            continue
        related.append(
            {
                "object": child.api_name,
                "field": item.field,
                "label": text(
                    item.label or child.plural_label or child.label, languages, child.api_name
                ),
                "columns": _columns(model, actor, child, item.columns, languages),
                "sort": item.sort,
                "limit": item.limit,
            }
        )
    return related
