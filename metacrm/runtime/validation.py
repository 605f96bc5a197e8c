"""Checks a record's values against its object: conversion, required, lookups and rules.

Two write hooks live here: `FIELD_CHECKS` (required fields, lookup targets) and
`VALIDATION_RULES` (the object's validation rules, checked once per metadata version).
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm import formula
from metacrm.errors import FieldError, RecordInvalid
from metacrm.i18n import Language
from metacrm.metadata.model import label_text
from metacrm.metadata.names import SYSTEM_FIELDS
from metacrm.metadata.values import ValueProblem, coerce
from metacrm.runtime.actor import Actor
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.hooks import Write
from metacrm.runtime.permissions import reachable_ids


def coerce_input(
    co: CompiledObject, data: dict[str, Any], *, prefix: str = ""
) -> tuple[dict[str, Any], list[FieldError]]:
    """Stored values for the writable fields in `data`; every problem in one list."""
    values: dict[str, Any] = {}
    errors: list[FieldError] = []
    for name, raw in data.items():
        field = co.writable.get(name)
        if field is None:
            if name in SYSTEM_FIELDS or name in co.fields:
                errors.append(
                    FieldError(prefix + name, "read-only", f"{_safe(name)} cannot be written")
                )
            else:
                errors.append(
                    FieldError(
                        prefix + _safe(name),
                        "unknown-field",
                        f"{co.name} has no field {_safe(name)}",
                    )
                )
            continue
        try:
            values[name] = coerce(field, raw)
        except ValueProblem as problem:
            errors.append(FieldError(prefix + name, problem.code, problem.message))
    return values, errors


def apply_defaults(co: CompiledObject, values: dict[str, Any], *, skip: set[str]) -> None:
    """Fill fields absent from a new record with their default (constant or expression)."""
    for name, field in co.writable.items():
        if name in values or name in skip:
            continue
        default = getattr(field, "default", None)  # not every field type has one
        if default is not None:
            values[name] = coerce(field, default)
        elif name in co.default_expressions:
            checked = co.default_expressions[name]
            try:
                values[name] = coerce(field, formula.evaluate(checked, values, is_new=True))
            except ValueProblem as problem:  # the expression gave no valid value of the field
                raise RecordInvalid(
                    f"the default of {co.name}.{name} is not a valid value",
                    [FieldError(name, problem.code, f"the default: {problem.message}")],
                ) from None


def required_errors(
    co: CompiledObject, record: dict[str, Any], *, only: set[str] | None = None, prefix: str = ""
) -> list[FieldError]:
    """A `required` error for each required field that is empty in `record`."""
    errors = []
    for name, field in co.writable.items():
        if only is not None and name not in only:
            continue
        if getattr(field, "required", False) and record.get(name) in (None, "", []):
            errors.append(
                FieldError(
                    prefix + name,
                    "required",
                    f"{label_text(field.label, fallback=name)} is required",
                )
            )
    return errors


async def reference_errors(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    values: dict[str, Any],
    actor: Actor,
    *,
    system: bool = False,
    prefix: str = "",
) -> list[FieldError]:
    """A `lookup-target` error for each lookup naming no live record the actor can see
    (any live record, for a write with system rights)."""
    errors = []
    for name, field in co.references.items():
        target_id = values.get(name)
        if target_id is None:
            continue
        target_co = ct.object(field.target)
        target = target_co.table
        # A detail is written under its master: that takes edit access to the master.
        master = field.type == "master_detail"
        if system:
            query = sa.select(target.c.id).where(target.c.deleted_at.is_(None))
        else:
            query = reachable_ids(ct, actor, target_co, "edit" if master else "read")
        found = await conn.scalar(query.where(target.c.id == target_id))
        if found is None:
            record = "record you may edit" if master and not system else "record"
            errors.append(
                FieldError(
                    prefix + name,
                    "lookup-target",
                    f"no {field.target} {record} has id {target_id}",
                )
            )
    return errors


async def rule_errors(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record: dict[str, Any],
    *,
    prior: dict[str, Any] | None,
    prefix: str = "",
    language: Language = "en",
) -> list[FieldError]:
    """An error for every active validation rule whose condition holds for `record`,
    with the rule's message in `language`."""
    errors = []
    for rule, checked in co.validation_rules:
        values = await load_paths(conn, ct, co, record, checked.paths)
        prior_values = None
        if prior is not None:
            prior_values = await load_paths(conn, ct, co, prior, checked.paths)
        if formula.evaluate(checked, values, prior=prior_values, is_new=prior is None) is True:
            errors.append(
                FieldError(
                    prefix + (rule.field or rule.api_name),
                    rule.api_name,
                    label_text(rule.message, language),
                )
            )
    return errors


async def load_paths(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record: dict[str, Any],
    paths: frozenset[str],
) -> dict[str, Any]:
    """`record`'s values plus the values of dotted lookup paths an expression needs."""
    values = dict(record)
    for path in paths:
        if "." not in path:
            continue
        current: CompiledObject = co
        value: dict[str, Any] | None = record
        parts = path.split(".")
        for part in parts[:-1]:
            link = current.references.get(part)
            target_id = value.get(part) if value else None
            if link is None or target_id is None:
                value = None
                break
            current = ct.object(link.target)
            row = await conn.execute(
                sa.select(*[current.sql(n).label(n) for n in (*current.fields, "id")]).where(
                    current.table.c.id == _uuid(target_id)
                )
            )
            hit = row.mappings().first()
            value = dict(hit) if hit else None
        values[path] = value.get(parts[-1]) if value else None
    return values


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _safe(name: str) -> str:
    """A field name from input, made safe to echo in an error."""
    cleaned = "".join(c if c.isprintable() else "?" for c in name[:64])
    return cleaned + ("…" if len(name) > 64 else "")


# ------------------------------------------------------------------ the write hooks


class FieldChecks:
    """Required fields hold a value and lookups name live records the writer can see."""

    blocking = True

    async def check(self, write: Write) -> list[FieldError]:
        if write.kind == "create":
            # Fields whose input was refused are not also reported as missing.
            names = set(write.co.writable) - write.refused
            errors = required_errors(write.co, write.after, only=names, prefix=write.prefix)
            looked_up = write.changes
        elif write.kind == "update":
            errors = required_errors(
                write.co, write.after, only=set(write.changes), prefix=write.prefix
            )
            looked_up = {k: v for k, v in write.changes.items() if write.changed(k)}
        else:
            return []
        if looked_up.keys() & write.co.references.keys():
            errors += await reference_errors(
                write.conn,
                write.ct,
                write.co,
                looked_up,
                write.actor,
                system=write.intent.system,
                prefix=write.prefix,
            )
        return errors

    async def after(self, write: Write) -> None:
        return None


class ValidationRules:
    """The object's validation rules: an error for each whose condition holds."""

    blocking = False

    async def check(self, write: Write) -> list[FieldError]:
        if write.kind not in ("create", "update") or not write.co.validation_rules:
            return []
        return await rule_errors(
            write.conn,
            write.ct,
            write.co,
            write.after,
            prior=write.before,
            prefix=write.prefix,
            language=write.actor.language,
        )

    async def after(self, write: Write) -> None:
        return None


FIELD_CHECKS = FieldChecks()
VALIDATION_RULES = ValidationRules()
