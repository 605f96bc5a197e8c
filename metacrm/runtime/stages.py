"""Stage rules at run time: gates on every write, stage history, stage tasks and the funnel.

This module is a write hook (see `hooks.HOOK_MODULES`): `check` refuses an illegal move
or an unmet gate on every write path, listing every problem at once; `after` records the
move, opens the new stage's tasks and makes its field updates, in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from metacrm import formula
from metacrm.errors import FieldError, MetadataInvalid, NotFound, RecordInvalid
from metacrm.formula.types import FIELD_KINDS, NUMERIC
from metacrm.metadata.base import label_text
from metacrm.metadata.model import MetadataModel
from metacrm.metadata.process import Assignee, ProcessAction, StageRule
from metacrm.metadata.values import ValueProblem, coerce
from metacrm.runtime import records
from metacrm.runtime.actor import Actor
from metacrm.runtime.columns import NAMING_CONVENTION, build_table
from metacrm.runtime.compiler import CompiledObject, CompiledTenant
from metacrm.runtime.hooks import WriteContext
from metacrm.runtime.records import new_id, utcnow
from metacrm.runtime.tenant_tables import approvals, stage_history, stage_tasks, users
from metacrm.runtime.validation import load_paths


@dataclass(frozen=True)
class ProcessActor(Actor):
    """An actor writing through a process: carries the reason for a stage move, and
    `via` ("stage", "approval", "migration") so that hooks know the write's origin."""

    reason: str | None = None
    via: str | None = None


def as_process_actor(
    actor: Any, *, reason: str | None = None, via: str, system: bool = False
) -> ProcessActor:
    """`actor` writing through a process; `system` writes (flow actions, defined by
    administrators in metadata) are not limited by the actor's own permissions."""
    return ProcessActor(
        actor.user_id,
        is_admin=actor.is_admin or system,
        role=actor.role,
        manager_id=actor.manager_id,
        reason=reason,
        via=via,
    )


def rules_for(model: MetadataModel, object_name: str) -> list[StageRule]:
    return [r for r in model.stage_rules if r.object == object_name]


def blank(value: Any) -> bool:
    return value is None or value == "" or value == []


def checked(ct: CompiledTenant, co: CompiledObject, expression: str, context: str) -> Any:
    return ct.views.get_or_build(
        ("process", context, co.name, expression),
        lambda: formula.check(expression, co.obj, ct.model, context=context),
    )


async def condition_holds(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    expression: str,
    record: dict[str, Any],
    prior: dict[str, Any] | None = None,
) -> bool:
    """Whether a condition (context "validation") is true for `record`."""
    expr = checked(ct, co, expression, "validation")
    values = await load_paths(conn, ct, co, record, expr.paths)
    prior_values = await load_paths(conn, ct, co, prior, expr.paths) if prior else None
    result = formula.evaluate(expr, values, prior=prior_values, is_new=prior is None)
    return result is True


async def action_values(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    action: ProcessAction,
    record: dict[str, Any],
) -> dict[str, Any]:
    """The field values a `set` action writes, evaluated on `record` and coerced."""
    out: dict[str, Any] = {}
    for name, expression in (action.set or {}).items():
        expr = checked(ct, co, expression, "default")
        values = await load_paths(conn, ct, co, record, expr.paths)
        try:
            out[name] = coerce(co.fields[name], formula.evaluate(expr, values))
        except ValueProblem as problem:
            raise RecordInvalid(
                f"the action setting {co.name}.{name} gave no valid value",
                [FieldError(name, problem.code, problem.message)],
            ) from None
    return out


# ------------------------------------------------------------------ the write hook


def _moves(ctx: WriteContext) -> list[tuple[StageRule, Any, Any]]:
    """(rule, from, to) of every stage rule whose field this write changes."""
    if ctx.kind not in ("create", "update"):
        return []
    found = []
    for rule in rules_for(ctx.ct.model, ctx.co.name):
        new = ctx.after.get(rule.field)
        if ctx.kind == "create":
            if new is not None:
                found.append((rule, None, new))
        elif rule.field in ctx.changes and ctx.before is not None:
            old = ctx.before.get(rule.field)
            if old != new:
                found.append((rule, old, new))
    return found


async def check(ctx: WriteContext) -> list[FieldError]:
    errors: list[FieldError] = []
    for rule, old, new in _moves(ctx):
        errors += await gate_errors(ctx, rule, old, new)
    return errors


async def gate_errors(ctx: WriteContext, rule: StageRule, old: Any, new: Any) -> list[FieldError]:
    """Every reason the record may not move from `old` to `new` under `rule`."""
    field = ctx.prefix + rule.field
    target = rule.stage(new)
    if target is None:
        allowed = ", ".join(s.value for s in rule.stages)
        return [
            FieldError(
                field,
                "not-a-stage",
                f"{new!r} is not a stage of {rule.api_name}; the stages are {allowed}",
            )
        ]
    errors: list[FieldError] = []
    source = rule.stage(old)
    backward = False
    if old is None:
        if new not in rule.initial_stages():
            errors.append(
                FieldError(
                    field,
                    "illegal-move",
                    f"a record starts in {' or '.join(rule.initial_stages())}, not {new!r}",
                )
            )
    elif source is not None:
        backward = rule.index(new) < rule.index(old)
        allowed = rule.allowed_next(old)
        if new not in allowed and not (backward and source.allow_back):
            shown = ", ".join(allowed) or "nothing (it is closed)"
            errors.append(
                FieldError(
                    field,
                    "illegal-move",
                    f"{old!r} may move to {shown}, not to {new!r}",
                )
            )
    # (A record in a value that is not a stage of the rule may enter any stage.)
    for name in target.required_fields:
        if blank(ctx.after.get(name)):
            label = label_text(ctx.co.fields[name].label, fallback=name)
            errors.append(
                FieldError(
                    ctx.prefix + name,
                    "required-for-stage",
                    f"{label} is required to enter {new!r}",
                )
            )
    if target.entry_condition and not await condition_holds(
        ctx.conn, ctx.ct, ctx.co, target.entry_condition, ctx.after, ctx.before
    ):
        message = label_text(target.entry_message) or (
            f"the record does not meet the entry condition of {new!r}: {target.entry_condition}"
        )
        errors.append(FieldError(field, "entry-condition", message))
    reason = getattr(ctx.actor, "reason", None)
    if (target.reason_required or (backward and rule.reason_on_back)) and not reason:
        why = "a backward move" if backward and rule.reason_on_back else f"entering {new!r}"
        errors.append(
            FieldError(
                "reason",
                "reason-required",
                f"{why} needs a reason: use POST .../stage with a reason",
            )
        )
    if target.requires_approval and ctx.before is not None:
        status = await latest_approval_status(
            ctx.conn, ctx.co.name, ctx.before["id"], target.requires_approval
        )
        if status != "approved":
            errors.append(
                FieldError(
                    field,
                    "approval-required",
                    f"entering {new!r} needs an approved {target.requires_approval!r} "
                    f"approval (latest: {status or 'none'})",
                )
            )
    elif target.requires_approval:
        errors.append(
            FieldError(
                field,
                "approval-required",
                f"entering {new!r} needs an approved {target.requires_approval!r} approval",
            )
        )
    if source is not None and ctx.before is not None:
        t = stage_tasks
        open_tasks = await ctx.conn.execute(
            sa.select(t.c.task, t.c.subject).where(
                t.c.object == ctx.co.name,
                t.c.record_id == ctx.before["id"],
                t.c.rule == rule.api_name,
                t.c.stage == old,
                t.c.status == "open",
                t.c.optional.is_(False),
            )
        )
        for task, subject in open_tasks:
            errors.append(
                FieldError(
                    f"tasks/{task}",
                    "task-open",
                    f"the task {subject!r} must be done before leaving {old!r}",
                )
            )
    return errors


async def latest_approval_status(
    conn: AsyncConnection, object_name: str, record_id: uuid.UUID, flow: str
) -> str | None:
    a = approvals
    return await conn.scalar(
        sa.select(a.c.status)
        .where(a.c.object == object_name, a.c.record_id == record_id, a.c.flow == flow)
        .order_by(a.c.submitted_at.desc(), a.c.id.desc())
        .limit(1)
    )


async def after(ctx: WriteContext) -> None:
    moves = _moves(ctx)
    if not moves:
        return
    now = utcnow()
    record_id = ctx.after["id"]
    updates: dict[str, Any] = {}
    for rule, old, new in moves:
        await _record_move(
            ctx.conn,
            ctx.co.name,
            record_id,
            rule,
            old,
            new,
            actor_id=ctx.actor.user_id,
            reason=getattr(ctx.actor, "reason", None),
            now=now,
            entered_at=(ctx.before or ctx.after).get("created_at"),
        )
        target = rule.stage(new)
        if target is None:
            continue
        await _open_tasks(ctx, rule, target, record_id, now)
        if rule.probability_field and target.probability is not None:
            updates[rule.probability_field] = coerce(
                ctx.co.fields[rule.probability_field], target.probability
            )
        for action in target.on_entry:
            updates |= await action_values(ctx.conn, ctx.ct, ctx.co, action, ctx.after | updates)
    if updates:
        t = ctx.co.table
        await ctx.conn.execute(
            t.update().where(t.c.id == record_id).values(updates | {"version": t.c.version + 1})
        )


async def _record_move(
    conn: AsyncConnection,
    object_name: str,
    record_id: uuid.UUID,
    rule: StageRule,
    old: Any,
    new: Any,
    *,
    actor_id: uuid.UUID,
    reason: str | None,
    now: dt.datetime,
    entered_at: dt.datetime | None,
) -> None:
    h = stage_history
    last = await conn.scalar(
        sa.select(h.c.moved_at)
        .where(h.c.object == object_name, h.c.record_id == record_id, h.c.rule == rule.api_name)
        .order_by(h.c.moved_at.desc(), h.c.id.desc())
        .limit(1)
    )
    since = last or entered_at
    seconds = int((now - since).total_seconds()) if since is not None and old is not None else None
    await conn.execute(
        h.insert().values(
            id=new_id(),
            object=object_name,
            record_id=record_id,
            rule=rule.api_name,
            from_stage=old,
            to_stage=new,
            moved_at=now,
            moved_by=actor_id,
            reason=reason,
            seconds_in_from=seconds,
        )
    )
    if old is not None:  # optional tasks left undone are closed with the stage
        t = stage_tasks
        await conn.execute(
            t.update()
            .where(
                t.c.object == object_name,
                t.c.record_id == record_id,
                t.c.rule == rule.api_name,
                t.c.stage == old,
                t.c.status == "open",
            )
            .values(status="skipped", done_at=now)
        )


async def resolve_assignee(
    conn: AsyncConnection, assignee: Assignee, record: dict[str, Any]
) -> tuple[uuid.UUID | None, str | None]:
    """(user id, role) a stage task goes to."""
    if assignee.kind == "role":
        return None, assignee.role
    if assignee.kind == "user":
        return await find_user(conn, assignee.user or ""), None
    owner = record.get("owner_id")
    if assignee.kind == "owner":
        return owner, None
    manager = await conn.scalar(sa.select(users.c.manager_id).where(users.c.id == owner))
    return manager or owner, None


async def find_user(conn: AsyncConnection, ref: str) -> uuid.UUID | None:
    """An active user by id or e-mail."""
    try:
        condition = users.c.id == uuid.UUID(str(ref))
    except ValueError:
        condition = users.c.email == str(ref).strip().lower()
    return await conn.scalar(sa.select(users.c.id).where(condition, users.c.is_active.is_(True)))


async def _open_tasks(
    ctx: WriteContext, rule: StageRule, target: Any, record_id: uuid.UUID, now: dt.datetime
) -> None:
    for task in target.tasks:
        user_id, role = await resolve_assignee(ctx.conn, task.assignee, ctx.after)
        await ctx.conn.execute(
            stage_tasks.insert().values(
                id=new_id(),
                object=ctx.co.name,
                record_id=record_id,
                rule=rule.api_name,
                stage=target.value,
                task=task.api_name,
                subject=label_text(task.subject),
                assignee_id=user_id,
                assignee_role=role,
                optional=task.optional,
                status="open",
                due_at=now + dt.timedelta(days=task.due_in_days)
                if task.due_in_days is not None
                else None,
                created_at=now,
            )
        )


# ------------------------------------------------------------------ services


def rule_for(ct: CompiledTenant, co: CompiledObject, name: str | None) -> StageRule:
    rules = rules_for(ct.model, co.name)
    if name is not None:
        rules = [r for r in rules if r.api_name == name]
    if not rules:
        raise NotFound(f"{co.name} has no stage rule" + (f" named {name!r}" if name else ""))
    if len(rules) > 1:
        raise RecordInvalid(
            f"{co.name} has several stage rules; name one",
            [FieldError("rule", "required", "name the stage rule")],
        )
    return rules[0]


async def move(
    conn: AsyncConnection,
    ct: CompiledTenant,
    co: CompiledObject,
    record_id: uuid.UUID,
    actor: Any,
    *,
    to: str,
    reason: str | None = None,
    fields: dict[str, Any] | None = None,
    rule: str | None = None,
    if_match: int | None = None,
    via: str = "stage",
) -> dict[str, Any]:
    """Move a record to stage `to` (with other field values and a reason), gates applied."""
    stage_rule = rule_for(ct, co, rule)
    data = dict(fields or {}) | {stage_rule.field: to}
    process_actor = as_process_actor(actor, reason=reason, via=via)
    return await records.update(conn, ct, co, record_id, data, process_actor, if_match=if_match)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


async def history(
    conn: AsyncConnection, ct: CompiledTenant, co: CompiledObject, record_id: uuid.UUID
) -> dict[str, Any]:
    """Every stage move of a record per rule, and the time it spent in each stage."""
    record = await records.fetch(conn, co, record_id)
    now = utcnow()
    out = []
    h = stage_history
    for rule in rules_for(ct.model, co.name):
        rows = (
            await conn.execute(
                sa.select(h)
                .where(h.c.object == co.name, h.c.record_id == record_id, h.c.rule == rule.api_name)
                .order_by(h.c.moved_at, h.c.id)
            )
        ).mappings()
        transitions, spent = [], {}
        entered = record["created_at"]
        for row in rows:
            entered = row["moved_at"]
            transitions.append(
                {
                    "from": row["from_stage"],
                    "to": row["to_stage"],
                    "by": str(row["moved_by"]),
                    "at": _iso(row["moved_at"]),
                    "reason": row["reason"],
                    "seconds_in_from": row["seconds_in_from"],
                }
            )
            if row["from_stage"] is not None and row["seconds_in_from"] is not None:
                spent[row["from_stage"]] = spent.get(row["from_stage"], 0) + row["seconds_in_from"]
        current = record.get(rule.field)
        if current is not None:
            spent[current] = spent.get(current, 0) + int((now - entered).total_seconds())
        out.append(
            {
                "rule": rule.api_name,
                "field": rule.field,
                "current": current,
                "entered_at": _iso(entered),
                "transitions": transitions,
                "time_in_stage": {
                    s: {"seconds": v, "days": round(v / 86400, 4)} for s, v in spent.items()
                },
            }
        )
    return {"record_id": str(record_id), "rules": out}


async def funnel(
    conn: AsyncConnection,
    ct: CompiledTenant,
    rule: StageRule,
    amount: str | None,
    access: sa.ColumnElement[bool] | None = None,
) -> dict[str, Any]:
    """Counts and amounts per stage, conversion between stages and average days in stage,
    over the records `access` lets the caller see (an aggregate is a read path too)."""
    co = ct.object(rule.object)
    amount = amount or rule.amount_field or ("amount" if "amount" in co.fields else None)
    if amount is not None and (
        amount not in co.fields or FIELD_KINDS.get(co.fields[amount].type) not in NUMERIC
    ):
        raise RecordInvalid(
            "the funnel needs a numeric amount field",
            [FieldError("amount", "wrong-type", f"{amount!r} is not a numeric field")],
        )
    t = co.table
    stage_col = t.c[rule.field]
    columns = [stage_col, sa.func.count()]
    if amount is not None:
        columns.append(sa.func.coalesce(sa.func.sum(t.c[amount]), 0))
    visible = (
        t.c.deleted_at.is_(None) if access is None else sa.and_(t.c.deleted_at.is_(None), access)
    )
    rows = await conn.execute(sa.select(*columns).where(visible).group_by(stage_col))
    current = {row[0]: (row[1], Decimal(row[2]) if amount else None) for row in rows}
    h = stage_history
    live = sa.select(t.c.id).where(visible)
    reached_rows = await conn.execute(
        sa.select(h.c.to_stage, sa.func.count(sa.distinct(h.c.record_id)))
        .where(h.c.object == rule.object, h.c.rule == rule.api_name, h.c.record_id.in_(live))
        .group_by(h.c.to_stage)
    )
    reached = {row[0]: row[1] for row in reached_rows}
    time_rows = await conn.execute(
        sa.select(h.c.from_stage, sa.func.avg(h.c.seconds_in_from), sa.func.count())
        .where(
            h.c.object == rule.object,
            h.c.rule == rule.api_name,
            h.c.seconds_in_from.is_not(None),
            h.c.record_id.in_(live),
        )
        .group_by(h.c.from_stage)
    )
    avg_seconds = {row[0]: float(row[1]) for row in time_rows}
    stages, previous_reached = [], None
    for stage in rule.stages:
        count, total = current.get(stage.value, (0, Decimal(0) if amount else None))
        reach = max(reached.get(stage.value, 0), count)
        entry: dict[str, Any] = {
            "stage": stage.value,
            "closed": stage.closed,
            "probability": stage.probability,
            "count": count,
            "reached": reach,
            "avg_days_in_stage": round(avg_seconds[stage.value] / 86400, 4)
            if stage.value in avg_seconds
            else None,
        }
        if amount is not None:
            entry["amount"] = str(total)
            if stage.probability is not None:
                entry["weighted_amount"] = str(
                    (total * stage.probability / 100).quantize(Decimal("0.01"))
                )
        if not stage.closed:
            entry["conversion_from_previous"] = (
                round(reach / previous_reached, 4) if previous_reached else None
            )
            previous_reached = reach
        stages.append(entry)
    return {
        "rule": rule.api_name,
        "object": rule.object,
        "field": rule.field,
        "amount_field": amount,
        "total": sum(current.get(s.value, (0, None))[0] for s in rule.stages),
        "stages": stages,
    }


async def list_tasks(
    conn: AsyncConnection, co: CompiledObject, record_id: uuid.UUID
) -> list[dict[str, Any]]:
    await records.fetch(conn, co, record_id)
    t = stage_tasks
    rows = await conn.execute(
        sa.select(t)
        .where(t.c.object == co.name, t.c.record_id == record_id)
        .order_by(t.c.created_at, t.c.task)
    )
    return [task_json(r) for r in rows.mappings()]


def task_json(row: Any) -> dict[str, Any]:
    out = {}
    for key, value in dict(row).items():
        if isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, dt.datetime):
            value = _iso(value)
        out[key] = value
    return out


async def complete_task(
    conn: AsyncConnection, actor: Any, task_id: uuid.UUID, *, status: str = "done"
) -> dict[str, Any]:
    """Mark a stage task done: by its assignee, a user of its role, or an administrator."""
    t = stage_tasks
    row = (
        (await conn.execute(sa.select(t).where(t.c.id == task_id).with_for_update()))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound("no stage task has this id")
    allowed = actor.is_admin or row["assignee_id"] == actor.user_id
    allowed = allowed or (row["assignee_role"] is not None and row["assignee_role"] == actor.role)
    if not allowed:
        # Not yours: answer as if it did not exist, so task ids reveal nothing.
        raise NotFound("no stage task has this id")
    if row["status"] == "open":
        await conn.execute(
            t.update()
            .where(t.c.id == task_id, t.c.status == "open")
            .values(status=status, done_at=utcnow(), done_by=actor.user_id)
        )
    row = (await conn.execute(sa.select(t).where(t.c.id == task_id))).mappings().one()
    return task_json(row)


# ------------------------------------------------------------------ rule changes


async def migrate_stage_rules(
    conn: AsyncConnection, old: MetadataModel, new: MetadataModel, *, apply: bool
) -> None:
    """Records in stages a changed rule no longer has: refused unless `stage_mapping`
    maps each such stage; with `apply`, the records are moved (history kept)."""
    problems: list[FieldError] = []
    before = {r.api_name: r for r in old.stage_rules}
    now = utcnow()
    for rule in new.stage_rules:
        prior = before.get(rule.api_name)
        if prior is None or prior.object != rule.object or not new.has_object(rule.object):
            continue
        obj = new.object(rule.object)
        if not old.has_object(rule.object) or not obj.has_field(prior.field):
            continue
        kept = {s.value for s in rule.stages}
        removed = [s.value for s in prior.stages if s.value not in kept]
        if not removed:
            continue
        table = build_table(obj, sa.MetaData(naming_convention=NAMING_CONVENTION))
        column = table.c[prior.field]
        counts = dict(
            (
                await conn.execute(
                    sa.select(column, sa.func.count()).where(column.in_(removed)).group_by(column)
                )
            ).all()
        )
        for value in removed:
            count = counts.get(value, 0)
            if not count:
                continue
            target = rule.stage_mapping.get(value)
            if target is None:
                problems.append(
                    FieldError(
                        f"stage_rules/{rule.api_name}/stage_mapping/{value}",
                        "records-in-removed-stage",
                        f"{count} {rule.object} record(s) are in the removed stage {value!r}; "
                        f"map it to a kept stage in stage_mapping",
                    )
                )
            elif apply:
                await _map_records(conn, table, rule, prior.field, value, target, now)
    if problems:
        raise MetadataInvalid("records are in stages the change removes", problems)


async def _map_records(
    conn: AsyncConnection,
    table: Any,
    rule: StageRule,
    field: str,
    value: str,
    target: str,
    now: dt.datetime,
) -> None:
    column = table.c[field]
    ids = list((await conn.execute(sa.select(table.c.id).where(column == value))).scalars())
    await conn.execute(
        table.update()
        .where(column == value)
        .values({field: target, "version": table.c.version + 1})
    )
    system = uuid.UUID(int=0)
    for record_id in ids:
        await _record_move(
            conn,
            rule.object,
            record_id,
            rule,
            value,
            target,
            actor_id=system,
            reason=f"stage rule changed: {value!r} mapped to {target!r}",
            now=now,
            entered_at=None,
        )


# ------------------------------------------------------------------ definition warnings


def unreachable_stages(rule: StageRule) -> list[str]:
    """Stages no path from an initial stage reaches (a warning, not an error)."""
    seen: set[str] = set()
    stack = [s for s in rule.initial_stages() if rule.stage(s) is not None]
    while stack:
        value = stack.pop()
        if value in seen:
            continue
        seen.add(value)
        stage = rule.stage(value)
        following = [v for v in rule.allowed_next(value) if rule.stage(v) is not None]
        if stage is not None and stage.allow_back:
            following += [s.value for s in rule.stages[: rule.index(value)]]
        stack += following
    return [s.value for s in rule.stages if s.value not in seen]


def warnings(model: MetadataModel) -> list[FieldError]:
    return [
        FieldError(
            f"stage_rules/{rule.api_name}/stages/{value}",
            "unreachable",
            f"no allowed move reaches {value!r} from {', '.join(rule.initial_stages())}",
        )
        for rule in model.stage_rules
        for value in unreachable_stages(rule)
    ]
