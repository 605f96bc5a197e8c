"""Metadata changes end to end: check, plan, confirm, apply DDL and store the version atomically."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm.checks import check_metadata, impact
from metacrm.errors import (
    Conflict,
    DestructiveChange,
    FieldError,
    MetadataInvalid,
    SchemaBusy,
)
from metacrm.metadata.diff import diff
from metacrm.metadata.merge import Change
from metacrm.metadata.model import MetadataModel
from metacrm.metadata.plan import Plan
from metacrm.metadata.store import current_version, load_model, record_version
from metacrm.runtime import audit
from metacrm.runtime.automation.rules import arm_schedules
from metacrm.runtime.data.duplicates import arm_rules
from metacrm.runtime.ddl import apply_plan
from metacrm.runtime.process.migration import migrate_stage_rules

Transaction = Callable[[], AbstractAsyncContextManager[AsyncConnection]]

_LOCK_NOT_AVAILABLE = "55P03"


@dataclass(frozen=True)
class Applied:
    """The outcome of an applied change."""

    version: int
    plan: Plan


@dataclass(frozen=True)
class Proposal:
    """A checked change: the plan (with the pipeline's warnings), what it impacts, and the
    errors that refuse it (a dependent the change breaks is one error, not its symptoms)."""

    old: MetadataModel
    new: MetadataModel
    plan: Plan
    impacts: list[impact.Impact]
    errors: list[FieldError]

    def refuse(self, *, breaking: bool = True) -> None:
        """Raise MetadataInvalid listing every error; with `breaking=False`, dependents the
        change breaks are not refused (an impact analysis lists them instead)."""
        errors = [e for e in self.errors if breaking or e.code != "breaks-dependent"]
        if errors:
            raise MetadataInvalid(f"the metadata has {len(errors)} problem(s)", errors)


def propose(old: MetadataModel, new: MetadataModel) -> Proposal:
    """Check `new` as the successor of `old`, plan it, and analyse what it breaks.

    Errors inside a dependent the plan breaks (a formula reading a dropped field) are
    reported as that dependent breaking, so the impact lists the cause, not an
    "unknown field".
    """
    report = check_metadata(new, old=old)
    plan = replace(diff(old, new), warnings=report.warnings)
    impacts = impact.analyse(old, new, plan)
    broken = [i for i in impacts if i.broken]
    errors = [
        e
        for e in report.errors
        if not any(e.field == i.dependent or e.field.startswith(i.dependent + "/") for i in broken)
    ]
    errors += [
        FieldError(
            i.dependent, "breaks-dependent", f"{i.kind} uses {i.subject}; change or remove it too"
        )
        for i in broken
    ]
    return Proposal(old, new, plan, impacts, list(dict.fromkeys(errors)))


async def plan_change(conn: AsyncConnection, change: Change) -> tuple[MetadataModel, Plan]:
    """The proposed model and the plan reaching it, without applying anything."""
    proposal = await propose_change(conn, change)
    proposal.refuse()
    await migrate_stage_rules(conn, proposal.old, proposal.new, apply=False)
    return proposal.new, proposal.plan


async def propose_change(conn: AsyncConnection, change: Change) -> Proposal:
    """The proposal of `change` on the current model; refused by nothing yet."""
    old = await load_model(conn, await current_version(conn))
    return propose(old, change(old))


def _refuse_unconfirmed(plan: Plan) -> None:
    risky = [op for op in plan.ops if op.destructive]
    raise DestructiveChange(
        "the change destroys or narrows data; review the plan and confirm it",
        [FieldError(op.subject, "destructive", risk) for op in risky for risk in op.risks],
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
            sync = conn.sync_connection
            assert sync is not None  # an AsyncConnection in use has its sync connection
            schema = sync.get_execution_options()["schema_translate_map"][None]
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(schema))))
            await conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
        version = await current_version(conn)
        old = await load_model(conn, version)
        new = change(old)
        proposal = propose(old, new)
        proposal.refuse()
        plan = proposal.plan
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
        await arm_schedules(conn, old, new)
        await arm_rules(conn, old, new)
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
