"""The SLA pass: business calendars are valid time, SLAs name fields and calendars that exist.

A calendar's time zone is an IANA zone, some weekday has working hours, intervals are in
order and do not overlap, no date is both a holiday and a working day; an SLA's object,
its due (datetime), breached (boolean) and start (date or datetime) fields, its calendar,
its conditions (validation-style, like a rule's) and its warning and breach actions (as
an automation rule's actions are checked).
"""

from __future__ import annotations

from metacrm.checks import automation
from metacrm.checks.context import Context
from metacrm.metadata.automation import Action, AutomationRule, Trigger
from metacrm.metadata.model import ObjectDef
from metacrm.metadata.sla import Interval, Sla, minutes


def run(ctx: Context) -> None:
    calendars = {c.api_name for c in ctx.model.business_calendars}
    for cal in ctx.model.business_calendars:
        base = f"business_calendars/{cal.api_name}"
        if not automation._zone_ok(cal.timezone):
            ctx.error(
                f"{base}/timezone",
                "unknown-timezone",
                f"{cal.timezone!r} is not an IANA time zone (like 'Asia/Shanghai')",
            )
        if not any(cal.hours.values()):
            ctx.error(f"{base}/hours", "no-working-time", "no weekday has working hours")
        for day, intervals in cal.hours.items():
            _intervals(ctx, f"{base}/hours/{day}", intervals)
        if cal.working_day_hours is not None:
            _intervals(ctx, f"{base}/working_day_hours", cal.working_day_hours)
        for i, date in enumerate(cal.working_days):
            if date in cal.holidays:
                ctx.error(
                    f"{base}/working_days/{i}", "holiday", f"{date} is also one of the holidays"
                )
    for sla in ctx.model.slas:
        base = f"slas/{sla.api_name}"
        if sla.calendar is not None and sla.calendar not in calendars:
            ctx.error(
                f"{base}/calendar",
                "unknown-calendar",
                f"business calendar {sla.calendar!r} does not exist",
            )
        obj = ctx.need_object(f"{base}/object", sla.object)
        if obj is not None:
            _fields(ctx, base, sla, obj)


def _intervals(ctx: Context, path: str, intervals: list[Interval]) -> None:
    """Each interval starts before it ends and after the one before it ended."""
    end = -1
    for i, (start, stop) in enumerate(intervals):
        if minutes(start) >= minutes(stop):
            ctx.error(f"{path}/{i}", "empty-interval", f"{start}-{stop} ends before it starts")
        elif minutes(start) < end:
            ctx.error(
                f"{path}/{i}", "overlapping-interval", f"{start}-{stop} overlaps the one before"
            )
        end = max(end, minutes(stop))


def _fields(ctx: Context, base: str, sla: Sla, obj: ObjectDef) -> None:
    ctx.need_field(f"{base}/due_field", obj, sla.due_field, "datetime")
    if sla.breached_field is not None:
        ctx.need_field(f"{base}/breached_field", obj, sla.breached_field, "boolean")
    if sla.start_field is not None:
        ctx.need_field(f"{base}/start_field", obj, sla.start_field, "date", "datetime")
    others = [s for s in ctx.model.slas if s.object == sla.object and s is not sla]
    if any(sla.due_field in (s.due_field, s.breached_field) for s in others):
        ctx.error(
            f"{base}/due_field",
            "shared-field",
            f"{sla.object}.{sla.due_field} already belongs to another SLA",
        )
    conditions = {"start_condition": sla.start_condition, "met_condition": sla.met_condition}
    conditions |= {f"targets/{i}/condition": t.condition for i, t in enumerate(sla.targets)}
    for where, text in conditions.items():
        if text is not None:
            automation._expression(ctx, f"{base}/{where}", text, obj, "validation")
    for part, actions in (("on_warning", sla.on_warning), ("on_breach", sla.on_breach)):
        for i, action in enumerate(actions):
            automation._action(ctx, f"{base}/{part}/{i}", _as_rule(sla, action), obj, action)


def _as_rule(sla: Sla, action: Action) -> AutomationRule:
    """The action as an update rule's on the SLA's object: checked the same way."""
    return AutomationRule(
        api_name=sla.api_name, object=sla.object, trigger=Trigger(on="updated"), actions=[action]
    )
