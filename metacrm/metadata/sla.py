"""SLA metadata: business calendars (hours, holidays) and service targets per record.

A business calendar (`/api/v1/metadata/business-calendars`) says when work happens: a
time zone, working intervals per weekday, holidays, and extra working days (weekend days
worked to make up for a holiday, China's 调休). An SLA (`/api/v1/metadata/slas`) starts a
clock on a record when its start condition holds, writes the due time (start plus the
first matching target's working hours on the calendar) into a datetime field, warns
before it, and when the met condition still does not hold at the due time marks a boolean
field breached and runs its escalation actions (the automation rule's actions).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from metacrm.metadata.automation import Action
from metacrm.metadata.base import ApiName, Expression, Label, Strict

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: A wall-clock time "HH:MM"; "24:00" ends a day.
ClockTime = Annotated[str, StringConstraints(pattern=r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$")]
#: One working interval of a day, start before end: ["09:00", "12:00"].
Interval = tuple[ClockTime, ClockTime]
Intervals = Annotated[list[Interval], Field(max_length=12)]


def minutes(clock: str) -> int:
    """Minutes since midnight of an "HH:MM" clock time."""
    hours, mins = clock.split(":")
    return int(hours) * 60 + int(mins)


class BusinessCalendar(Strict):
    """When work happens: working intervals per weekday in a time zone, minus holidays,
    plus extra working days."""

    api_name: ApiName
    label: Label | None = None
    #: An IANA time zone ("Asia/Shanghai", "Europe/Berlin"); the intervals are read in it.
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "UTC"
    #: Working intervals per weekday, in order and not overlapping; a day not named is off.
    hours: dict[Weekday, Intervals] = {}
    #: Dates with no work, whatever their weekday.
    holidays: Annotated[list[dt.date], Field(max_length=2000)] = []
    #: Dates worked although their weekday is off (make-up days for a holiday).
    working_days: Annotated[list[dt.date], Field(max_length=2000)] = []
    #: The intervals of an extra working day (default: Monday's).
    working_day_hours: Intervals | None = None


class SlaTarget(Strict):
    """A service target: the working hours a record has, when `condition` holds."""

    #: An expression (context "validation") on the record; none: every record.
    condition: Expression | None = None
    #: Working hours on the calendar from the start to the due time.
    hours: Annotated[float, Field(gt=0, le=10_000)]


class Sla(Strict):
    """A clock on the records of `object`: started, met, warned about and breached."""

    api_name: ApiName
    object: ApiName
    label: Label | None = None
    active: bool = True
    #: When it holds on a save (and the clock has not run yet) the clock starts; none:
    #: on every new record. An expression (context "validation").
    start_condition: Expression | None = None
    #: The date or datetime field the clock starts from (a case's reported time); none:
    #: the save that starts it.
    start_field: ApiName | None = None
    #: When it holds the SLA is met and the clock stops (`status != 'new'`).
    met_condition: Expression
    #: Tried in order; the first whose condition holds gives the working hours. When the
    #: record changes so that another target applies, the due time moves.
    targets: Annotated[list[SlaTarget], Field(min_length=1, max_length=50)]
    #: The business calendar the hours are counted on; none: every hour counts (UTC).
    calendar: ApiName | None = None
    #: A datetime field of the object that receives the due time.
    due_field: ApiName
    #: A boolean field of the object set true when the SLA is breached.
    breached_field: ApiName | None = None
    #: Working minutes before the due time when `on_warning` runs.
    warn_before_minutes: Annotated[int, Field(ge=1, le=100_000)] | None = None
    on_warning: Annotated[list[Action], Field(max_length=20)] = []
    #: What runs at the due time when the SLA is not met (reassign, notify the manager...).
    on_breach: Annotated[list[Action], Field(max_length=20)] = []

    @model_validator(mode="after")
    def _warning(self) -> Sla:
        if self.on_warning and self.warn_before_minutes is None:
            raise ValueError("'on_warning' needs 'warn_before_minutes'")
        return self
