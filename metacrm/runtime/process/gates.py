"""Stage gates, a write hook: a record moves between stages only as its stage rules allow.

`check` refuses an illegal move or an unmet gate on every write path, listing every
problem at once, and gives the write the stage's probability and on-entry field
updates; `after` records the move in the stage history and opens the new stage's tasks,
in the same transaction. A stage's `requires_approval` applies only while the named
flow accepts the record (no entry condition, or one that holds): a stage no flow could
ever approve the record for is not closed to it.
"""

from __future__ import annotations

from typing import Any

from metacrm.errors import FieldError
from metacrm.metadata.base import label_text
from metacrm.metadata.process import Stage, StageRule
from metacrm.metadata.values import coerce
from metacrm.runtime.hooks import Write
from metacrm.runtime.process.expressions import action_values, blank, condition_holds
from metacrm.runtime.process.history import record_move
from metacrm.runtime.process.tasks import open_required, open_tasks
from metacrm.runtime.process.work import latest_status
from metacrm.runtime.records import utcnow


def moves(write: Write) -> list[tuple[StageRule, Any, Any]]:
    """(rule, from, to) of every stage rule whose field this write changes."""
    if write.kind not in ("create", "update"):
        return []
    found = []
    for rule in write.co.stage_rules:
        new = write.after.get(rule.field)
        if write.kind == "create":
            if new is not None:
                found.append((rule, None, new))
        elif write.before is not None and write.changed(rule.field):
            found.append((rule, write.before.get(rule.field), new))
    return found


class StageGates:
    """The write hook of stage rules."""

    blocking = False

    async def check(self, write: Write) -> list[FieldError]:
        errors: list[FieldError] = []
        for rule, old, new in moves(write):
            errors += await gate_errors(write, rule, old, new)
            target = rule.stage(new)
            if target is None or errors:
                continue
            if rule.probability_field and target.probability is not None:
                field = write.co.fields[rule.probability_field]
                write.derived[rule.probability_field] = coerce(field, target.probability)
            for action in target.on_entry:
                record = write.after | write.derived
                write.derived |= await action_values(write.conn, write.ct, write.co, action, record)
        return errors

    async def after(self, write: Write) -> None:
        found = moves(write)
        if not found:
            return
        now = utcnow()
        record_id = write.after["id"]
        for rule, old, new in found:
            await record_move(
                write.conn,
                write.co.name,
                record_id,
                rule,
                old,
                new,
                actor_id=write.actor.user_id,
                reason=write.intent.reason,
                now=now,
                entered_at=(write.before or write.after).get("created_at"),
            )
            target = rule.stage(new)
            if target is not None:
                await open_tasks(write.conn, write.co, rule, target, write.after, now)


STAGE_GATES = StageGates()


async def gate_errors(write: Write, rule: StageRule, old: Any, new: Any) -> list[FieldError]:
    """Every reason the record may not move from `old` to `new` under `rule`."""
    field = write.prefix + rule.field
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
        following = rule.allowed_next(old)
        if new not in following and not (backward and source.allow_back):
            shown = ", ".join(following) or "nothing (it is closed)"
            errors.append(
                FieldError(field, "illegal-move", f"{old!r} may move to {shown}, not to {new!r}")
            )
    # (A record in a value that is not a stage of the rule may enter any stage.)
    for name in target.required_fields:
        if blank(write.after.get(name)):
            label = label_text(write.co.fields[name].label, fallback=name)
            errors.append(
                FieldError(
                    write.prefix + name,
                    "required-for-stage",
                    f"{label} is required to enter {new!r}",
                )
            )
    if target.entry_condition and not await condition_holds(
        write.conn, write.ct, write.co, target.entry_condition, write.after, write.before
    ):
        message = label_text(target.entry_message) or (
            f"the record does not meet the entry condition of {new!r}: {target.entry_condition}"
        )
        errors.append(FieldError(field, "entry-condition", message))
    if (target.reason_required or (backward and rule.reason_on_back)) and not write.intent.reason:
        why = "a backward move" if backward and rule.reason_on_back else f"entering {new!r}"
        errors.append(
            FieldError(
                "reason",
                "reason-required",
                f"{why} needs a reason: use POST .../stage with a reason",
            )
        )
    errors += await _approval_errors(write, target, field)
    if source is not None and write.before is not None:
        for task, subject in await open_required(
            write.conn, write.co, write.before["id"], rule, old
        ):
            errors.append(
                FieldError(
                    f"tasks/{task}",
                    "task-open",
                    f"the task {subject!r} must be done before leaving {old!r}",
                )
            )
    return errors


async def _approval_errors(write: Write, target: Stage, field: str) -> list[FieldError]:
    """The stage's required approval, when its flow accepts the record as it will be."""
    name = target.requires_approval
    if name is None or not await _flow_accepts(write, name):
        return []
    status = None
    if write.before is not None:
        status = await latest_status(write.conn, write.co.name, write.before["id"], name)
    if status == "approved":
        return []
    latest = f" (latest: {status or 'none'})" if write.before is not None else ""
    return [
        FieldError(
            field,
            "approval-required",
            f"entering {target.value!r} needs an approved {name!r} approval{latest}",
        )
    ]


async def _flow_accepts(write: Write, name: str) -> bool:
    """Whether the flow would take the record: it has no entry condition, or it holds.
    A flow the metadata no longer has still demands its approval."""
    flow = next((f for f in write.co.approval_flows if f.api_name == name), None)
    if flow is None or not flow.entry_condition:
        return True
    return await condition_holds(write.conn, write.ct, write.co, flow.entry_condition, write.after)
