"""An object's definition as an actor may know it: no hidden field, and no condition naming one."""

from __future__ import annotations

import ast
from typing import Any

from metacrm.errors import FormulaError
from metacrm.formula.parser import Source, parse
from metacrm.metadata.expressions import walk
from metacrm.metadata.model import ObjectDef
from metacrm.metadata.names import SYSTEM_FIELDS
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.permissions import (
    has_platform_permission,
    object_readable,
    path_readable,
    readable,
    visible_definition,
)


def describe_object(ct: CompiledTenant, actor: Actor, obj: ObjectDef) -> dict[str, Any] | None:
    """`obj` as a document for `actor`; None when they may not read the object.

    Besides hidden fields, everything that names one is left out: validation rules
    (their condition or their field), field rules (their condition; hidden fields leave
    their list), and a field's default expression, formula or roll-up filter.
    """
    shown = visible_definition(ct, actor, obj)
    if shown is None:
        return None
    document = shown.model_dump(mode="json", exclude_defaults=True)
    if actor.is_admin:
        return document
    co = ct.object(obj.api_name)

    def names_hidden(expression: str | None, on: CompiledObject = co) -> bool:
        return expression is not None and not _expression_readable(ct, actor, on, expression)

    visible = {f["api_name"] for f in document.get("fields", [])}
    for field in document.get("fields", []):
        for key in ("default_expression", "expression"):
            if names_hidden(field.get(key)):
                del field[key]
        if field.get("type") == "rollup" and field["child_object"] in ct.objects:
            child = ct.object(field["child_object"])
            for key in ("field", "filter"):
                if names_hidden(field.get(key), child):
                    del field[key]
    if "validation_rules" in document:
        document["validation_rules"] = [
            rule
            for rule in document["validation_rules"]
            if not names_hidden(rule["condition"])
            and (rule.get("field") is None or rule["field"] in visible)
        ]
    if "field_rules" in document:
        rules = []
        for rule in document["field_rules"]:
            fields = [name for name in rule["fields"] if name in visible]
            if fields and not names_hidden(rule["when"]):
                rules.append(rule | {"fields": fields})
        document["field_rules"] = rules
    return document


def describe_document(
    ct: CompiledTenant, actor: Actor, attribute: str, doc: Any
) -> dict[str, Any] | None:
    """A layout, list view, stage rule or approval flow as `actor` may know it.

    Metadata administrators see every document whole. Anyone else sees a document only
    when they may read its object and it names no field hidden from them, in a field
    list or in an expression; otherwise None, answered like an unknown document.
    """
    document: dict[str, Any] = doc.model_dump(mode="json", exclude_defaults=True)
    if has_platform_permission(ct.model, actor, "manage_metadata"):
        return document
    co = ct.objects.get(getattr(doc, "object", None) or "")
    if co is None or not object_readable(ct, actor, co):
        return None
    shown = ct.views.get_or_build(
        ("describe_document", attribute, doc.api_name, actor.role),
        lambda: _document_readable(ct, actor, co, attribute, doc.api_name, document),
    )
    return document if shown else None


def _document_readable(
    ct: CompiledTenant,
    actor: Actor,
    co: CompiledObject,
    attribute: str,
    api_name: str,
    document: dict[str, Any],
) -> bool:
    hidden = set(co.fields) - set(readable(ct, actor, co))
    if hidden and _mentions(document, hidden):
        return False
    prefix = f"{attribute}/{api_name}/"
    return all(
        _expression_readable(ct, actor, ct.object(site.object), site.text)
        for site in walk(ct.model)
        if site.path.startswith(prefix) and site.object in ct.objects
    )


def _mentions(node: Any, names: set[str]) -> bool:
    """Whether a JSON document names one of `names` as a value or key (`-amount` too).

    Deliberately broad: a label that happens to equal a hidden field's name hides the
    document as well, which errs on the side of saying less."""
    if isinstance(node, str):
        return node.lstrip("+-") in names
    if isinstance(node, dict):
        return any(k in names or _mentions(v, names) for k, v in node.items())
    if isinstance(node, list):
        return any(_mentions(item, names) for item in node)
    return False


def _expression_readable(
    ct: CompiledTenant, actor: Actor, co: CompiledObject, expression: str
) -> bool:
    """Whether every field path `expression` names is one the actor may read on `co`."""
    try:
        tree = parse(Source(expression))
    except FormulaError:
        return False
    for path in _named_paths(tree):
        head = path.split(".")[0]
        if head not in co.fields and head not in SYSTEM_FIELDS:
            continue  # a constant or function name, not a field
        if not path_readable(ct, actor, co, path):
            return False
    return True


def _named_paths(tree: ast.expr) -> set[str]:
    """The dotted names an expression mentions as written (`account.industry`, `amount`)."""
    inner: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            inner.add(id(node.func))
    paths: set[str] = set()
    for node in ast.walk(tree):  # breadth first: an outer attribute before its inner parts
        if id(node) in inner:
            continue
        parts: list[str] = []
        current: ast.AST = node
        while isinstance(current, ast.Attribute):
            parts.append(current.attr)
            inner.add(id(current.value))
            current = current.value
        if isinstance(current, ast.Name):
            parts.append(current.id)
            paths.add(".".join(reversed(parts)))
    return paths
