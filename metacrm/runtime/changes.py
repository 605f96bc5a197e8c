"""Metadata changes end to end: check, plan, confirm, apply DDL and store the version atomically."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm import formula
from metacrm.errors import (
    Conflict,
    DestructiveChange,
    FieldError,
    FormulaError,
    MetadataInvalid,
    SchemaBusy,
)
from metacrm.metadata.checks import check_documents, check_references
from metacrm.metadata.diff import diff
from metacrm.metadata.merge import Change
from metacrm.metadata.model import MetadataModel
from metacrm.metadata.plan import Plan
from metacrm.metadata.store import current_version, load_model, record_version
from metacrm.runtime import audit
from metacrm.runtime.ddl import apply_plan
from metacrm.runtime.stages import migrate_stage_rules

Transaction = Callable[[], AbstractAsyncContextManager[AsyncConnection]]

_LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class Applied:
    """The outcome of an applied change."""

    version: int
    plan: Plan


def check_model(model: MetadataModel) -> None:
    """Raise MetadataInvalid listing every reference and formula problem of `model`."""
    problems = check_references(model) + check_documents(model)
    if not problems:
        problems = formula.check_model(model) + _expression_problems(model)
    if problems:
        raise MetadataInvalid(f"the metadata has {len(problems)} problem(s)", problems)


def _expressions(model: MetadataModel) -> list[tuple[str, str, str]]:
    """(object, path, expression) of every boolean condition outside the objects' formulas."""
    found = [
        (o.api_name, f"objects/{o.api_name}/field_rules/{r.api_name}/when", r.when)
        for o in model.objects
        for r in o.field_rules
    ]
    found += [
        (r.object, f"sharing_rules/{r.api_name}/criteria", r.criteria) for r in model.sharing_rules
    ]
    found += [
        (v.object, f"list_views/{v.api_name}/filter", v.filter)
        for v in model.list_views
        if v.filter
    ]
    for rule in model.stage_rules:
        found += [
            (
                rule.object,
                f"stage_rules/{rule.api_name}/stages/{s.value}/entry_condition",
                s.entry_condition,
            )
            for s in rule.stages
            if s.entry_condition
        ]
    for flow in model.approval_flows:
        if flow.entry_condition:
            found.append(
                (
                    flow.object,
                    f"approval_flows/{flow.api_name}/entry_condition",
                    flow.entry_condition,
                )
            )
        found += [
            (
                flow.object,
                f"approval_flows/{flow.api_name}/steps/{s.api_name}/condition",
                s.condition,
            )
            for s in flow.steps
            if s.condition
        ]
    return found


def _expression_problems(model: MetadataModel) -> list[FieldError]:
    """Each condition must type-check on its object (the "filter" context wants a boolean)."""
    problems = []
    for object_name, path, expression in _expressions(model):
        try:
            formula.check(
                expression, model.object(object_name), model, context="filter", field=path
            )
        except FormulaError as error:
            problems += error.errors
    return problems


async def plan_change(conn: AsyncConnection, change: Change) -> tuple[MetadataModel, Plan]:
    """The proposed model and the plan reaching it, without applying anything."""
    old = await load_model(conn, await current_version(conn))
    new = change(old)
    check_model(new)
    plan = diff(old, new)
    await migrate_stage_rules(conn, old, new, apply=False)  # records in removed stages
    return new, plan


def _refuse_unconfirmed(plan: Plan) -> None:
    risky = [op for op in plan.ops if op.destructive]
    raise DestructiveChange(
        "the change destroys or narrows data; review the plan and confirm it",
        [
            FieldError(op.to_dict().get("object", "") or "plan", "destructive", risk)
            for op in risky
            for risk in op.risks
        ],
    )


async def apply_change(
    transaction: Transaction,
    change: Change,
    *,
    confirm: bool = False,
    author_id: uuid.UUID | None = None,
    source: str = "api",
    comment: str | None = None,
    lock_timeout_ms: int = 2000,
    retries: int = 5,
) -> Applied:
    """Apply `change` to the current model: DDL and new version in one transaction.

    On PostgreSQL the DDL waits at most `lock_timeout_ms` for a busy table, then the
    whole transaction is retried, so that a schema change never queues traffic behind it.
    """
    for attempt in range(retries + 1):
        try:
            return await _apply_once(
                transaction,
                change,
                confirm=confirm,
                author_id=author_id,
                source=source,
                comment=comment,
                lock_timeout_ms=lock_timeout_ms,
            )
        except DBAPIError as error:
            if _sqlstate(error) != _LOCK_NOT_AVAILABLE or attempt == retries:
                if _sqlstate(error) == _LOCK_NOT_AVAILABLE:
                    raise SchemaBusy("the table stayed busy; try the change again") from None
                raise
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
    raise AssertionError("unreachable")


async def _apply_once(
    transaction: Transaction,
    change: Change,
    *,
    confirm: bool,
    author_id: uuid.UUID | None,
    source: str,
    comment: str | None,
    lock_timeout_ms: int,
) -> Applied:
    async with transaction() as conn:
        if conn.dialect.name == "postgresql":
            # One change at a time per tenant; SQLite's BEGIN IMMEDIATE already serialises.
            schema = conn.sync_connection.get_execution_options()["schema_translate_map"][None]
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(schema))))
            await conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
        version = await current_version(conn)
        old = await load_model(conn, version)
        new = change(old)
        check_model(new)
        plan = diff(old, new)
        if plan.destructive and not confirm:
            _refuse_unconfirmed(plan)
        if plan.empty:
            return Applied(version, plan)
        await migrate_stage_rules(conn, old, new, apply=True)  # refused unless mapped
        try:
            await conn.run_sync(apply_plan, plan, old)
        except DBAPIError as error:
            if _sqlstate(error) == _LOCK_NOT_AVAILABLE:
                raise
            raise MetadataInvalid(
                "the database refused the change; existing data does not allow it",
                [FieldError("plan", "database-refused", _first_line(error))],
            ) from None
        try:
            await record_version(
                conn,
                new,
                plan,
                version=version + 1,
                author_id=author_id,
                source=source,
                comment=comment,
            )
        except IntegrityError:
            raise Conflict("another metadata change was applied at the same time; retry") from None
        await audit.record(
            conn,
            "metadata.apply",
            user_id=author_id,
            detail={"version": version + 1, "source": source, "plan": plan.to_dict()["ops"]},
        )
        return Applied(version + 1, plan)


def _first_line(error: DBAPIError) -> str:
    text = str(error.orig).strip().splitlines()
    return (text[0] if text else "database error")[:300]


def _sqlstate(error: DBAPIError) -> str | None:
    orig = error.orig
    return getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "__cause__", None), "sqlstate", None
    )
