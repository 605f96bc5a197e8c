"""A validator of JSON Forms UI schemas, following the format's published schema.

JSON Forms (jsonforms.io, `packages/core/src/models/uischema.ts` and its
`ui-schema.json`) defines: every element has a `type`; layouts (`VerticalLayout`,
`HorizontalLayout`, `Group`) have `elements`; a `Group` has a `label`; a `Control`
has a `scope` that is a JSON Pointer fragment into the data schema (`#/properties/x`),
and optional `label` (string or boolean), `options` (object) and `rule`; a rule has an
`effect` (HIDE, SHOW, ENABLE, DISABLE) and a `condition`, here a SchemaBasedCondition
(`scope` and `schema`, optional `failWhenUndefined`).
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

_SCOPE = r"^#(/properties/[A-Za-z_][A-Za-z0-9_]*)*$"

UI_SCHEMA_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$ref": "#/$defs/element",
    "$defs": {
        "element": {
            "oneOf": [
                {"$ref": "#/$defs/layout"},
                {"$ref": "#/$defs/group"},
                {"$ref": "#/$defs/control"},
            ]
        },
        "rule": {
            "type": "object",
            "required": ["effect", "condition"],
            "additionalProperties": False,
            "properties": {
                "effect": {"enum": ["HIDE", "SHOW", "ENABLE", "DISABLE"]},
                "condition": {
                    "type": "object",
                    "required": ["scope", "schema"],
                    "additionalProperties": False,
                    "properties": {
                        "scope": {"type": "string", "pattern": _SCOPE},
                        "schema": {"type": "object"},
                        "failWhenUndefined": {"type": "boolean"},
                    },
                },
            },
        },
        "layout": {
            "type": "object",
            "required": ["type", "elements"],
            "additionalProperties": False,
            "properties": {
                "type": {"enum": ["VerticalLayout", "HorizontalLayout"]},
                "elements": {"type": "array", "items": {"$ref": "#/$defs/element"}},
                "rule": {"$ref": "#/$defs/rule"},
                "options": {"type": "object"},
            },
        },
        "group": {
            "type": "object",
            "required": ["type", "elements", "label"],
            "additionalProperties": False,
            "properties": {
                "type": {"const": "Group"},
                "label": {"type": "string"},
                "elements": {"type": "array", "items": {"$ref": "#/$defs/element"}},
                "rule": {"$ref": "#/$defs/rule"},
                "options": {"type": "object"},
            },
        },
        "control": {
            "type": "object",
            "required": ["type", "scope"],
            "additionalProperties": False,
            "properties": {
                "type": {"const": "Control"},
                "scope": {"type": "string", "pattern": _SCOPE},
                "label": {"type": ["string", "boolean"]},
                "options": {"type": "object"},
                "rule": {"$ref": "#/$defs/rule"},
            },
        },
    },
}


def ui_schema_errors(uischema: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Structure errors, plus scopes that do not resolve in the data `schema`."""
    validator = Draft202012Validator(UI_SCHEMA_SCHEMA)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(uischema)]
    if errors:
        return errors
    for scope in scopes(uischema):
        node: Any = schema
        for part in scope.removeprefix("#/").split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            errors.append(f"scope {scope} does not resolve in the schema")
    for condition in conditions(uischema):
        Draft202012Validator.check_schema(condition)
    return errors


def scopes(element: dict[str, Any]) -> list[str]:
    found = [element["scope"]] if element.get("type") == "Control" else []
    for child in element.get("elements", []):
        found += scopes(child)
    return found


def conditions(element: dict[str, Any]) -> list[dict[str, Any]]:
    found = [element["rule"]["condition"]["schema"]] if "rule" in element else []
    for child in element.get("elements", []):
        found += conditions(child)
    return found


def controls(element: dict[str, Any]) -> list[dict[str, Any]]:
    found = [element] if element.get("type") == "Control" else []
    for child in element.get("elements", []):
        found += controls(child)
    return found
