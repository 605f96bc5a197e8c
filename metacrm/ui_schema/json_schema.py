"""JSON Schema (draft 2020-12) of an object's records, read and write forms, per field type."""

from __future__ import annotations

from typing import Any, Literal

from metacrm.metadata.model import FieldDef, ObjectDef, label_text

Mode = Literal["read", "create", "update"]
_DECIMAL_PATTERN = r"^-?\d+(\.\d+)?$"

_SYSTEM_SCHEMAS: dict[str, dict[str, Any]] = {
    "id": {"type": "string", "format": "uuid", "readOnly": True},
    "owner_id": {"type": "string", "format": "uuid", "readOnly": True},
    "created_at": {"type": "string", "format": "date-time", "readOnly": True},
    "created_by": {"type": "string", "format": "uuid", "readOnly": True},
    "updated_at": {"type": "string", "format": "date-time", "readOnly": True},
    "updated_by": {"type": "string", "format": "uuid", "readOnly": True},
    "version": {"type": "integer", "minimum": 1, "readOnly": True},
    "deleted_at": {"type": ["string", "null"], "format": "date-time", "readOnly": True},
}


def _value_schema(field: FieldDef, mode: Mode) -> dict[str, Any]:
    """The schema of a non-null value of `field`."""
    match field.type:
        case "text" | "long_text" | "phone":
            return {"type": "string", "maxLength": field.max_length}
        case "email":
            return {"type": "string", "format": "email", "maxLength": field.max_length}
        case "url":
            return {"type": "string", "format": "uri", "maxLength": field.max_length}
        case "number" | "currency" | "percent":
            schema: dict[str, Any] = {
                "format": "decimal",
                "x-precision": field.precision,
                "x-scale": field.scale,
            }
            if mode == "read":
                return {"type": "string", "pattern": _DECIMAL_PATTERN, **schema}
            bounds = {}
            if field.min is not None:
                bounds["minimum"] = float(field.min)
            if field.max is not None:
                bounds["maximum"] = float(field.max)
            return {"type": ["number", "string"], **schema, **bounds}
        case "boolean":
            return {"type": "boolean"}
        case "date":
            return {"type": "string", "format": "date"}
        case "datetime":
            return {"type": "string", "format": "date-time"}
        case "picklist":
            values = field.value_names(active_only=mode != "read")
            return {"type": "string", "enum": values}
        case "multi_picklist":
            values = field.value_names(active_only=mode != "read")
            return {
                "type": "array",
                "items": {"type": "string", "enum": values},
                "uniqueItems": True,
            }
        case "lookup" | "master_detail":
            return {"type": "string", "format": "uuid", "x-target": field.target}
        case "json":
            return {}
        case "auto_number":
            return {"type": "string", "readOnly": True}
        case "formula":
            if field.returns in ("number", "currency", "percent"):
                return {
                    "type": "string",
                    "pattern": _DECIMAL_PATTERN,
                    "format": "decimal",
                    "readOnly": True,
                }
            kinds = {
                "text": {"type": "string"},
                "boolean": {"type": "boolean"},
                "date": {"type": "string", "format": "date"},
                "datetime": {"type": "string", "format": "date-time"},
            }
            return {**kinds[field.returns], "readOnly": True}
        case "rollup":
            if field.aggregate == "count":
                return {"type": "integer", "readOnly": True}
            return {"type": "string", "readOnly": True}
    raise ValueError(field.type)


def field_schema(field: FieldDef, *, mode: Mode = "read", language: str = "en") -> dict[str, Any]:
    """The schema of `field`'s value (null allowed unless required on create)."""
    schema = _value_schema(field, mode)
    nullable = not (mode != "read" and getattr(field, "required", False))
    if nullable and schema:
        kind = schema.get("type")
        if isinstance(kind, str):
            schema["type"] = [kind, "null"]
        elif isinstance(kind, list):
            schema["type"] = [*kind, "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    title = label_text(field.label, language, field.api_name)
    schema = {"title": title, **schema}
    if field.help_text:
        schema["description"] = label_text(field.help_text, language)
    default = getattr(field, "default", None)
    if default is not None and mode == "create":
        schema["default"] = default if isinstance(default, str | bool | list) else str(default)
    return schema


def object_schema(obj: ObjectDef, *, mode: Mode = "read", language: str = "en") -> dict[str, Any]:
    """The schema of a record of `obj` as read, or as sent on create or update."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    if mode == "read":
        properties |= {n: dict(s) for n, s in _SYSTEM_SCHEMAS.items() if n != "deleted_at"}
        required = ["id", "version"]
    for field in obj.fields:
        if mode != "read" and field.computed:
            continue
        properties[field.api_name] = field_schema(field, mode=mode, language=language)
        if (
            mode == "create"
            and getattr(field, "required", False)
            and getattr(field, "default", None) is None
        ):
            required.append(field.api_name)
    schema: dict[str, Any] = {
        "title": label_text(obj.label, language, obj.api_name),
        "type": "object",
        "properties": properties,
        "additionalProperties": mode == "read",
    }
    if required:
        schema["required"] = required
    return schema
