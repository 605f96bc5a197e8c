"""Working time on a business calendar: adding working hours to a moment, and measuring it.

Pure functions over `Calendar`, built once from a `BusinessCalendar` document. Intervals
are wall-clock times of the calendar's zone, turned into instants per date with zoneinfo,
so a working day across a daylight-saving change counts the hours that really pass (a
"09:00"-"18:00" day is 9 hours, whatever the offset; a wall time that does not exist
that day is read with the offset before the change).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from metacrm.metadata.sla import WEEKDAYS, BusinessCalendar, minutes

#: How far ahead a target is looked for before the calendar is taken to have no working
#: time at all (ten years).
HORIZON_DAYS = 3660

Spans = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Calendar:
    """A business calendar ready for arithmetic: intervals as minutes of the day."""

    zone: ZoneInfo
    #: Monday first.
    week: tuple[Spans, ...]
    holidays: frozenset[dt.date] = frozenset()
    working_days: frozenset[dt.date] = frozenset()
    working_day_spans: Spans = ()

    @classmethod
    def of(cls, doc: BusinessCalendar) -> Calendar:
        """The calendar of a document (its time zone checked by the metadata checks)."""

        def spans(intervals: list[tuple[str, str]]) -> Spans:
            return tuple((minutes(a), minutes(b)) for a, b in intervals)

        week = tuple(spans(doc.hours.get(day, [])) for day in WEEKDAYS)
        extra = doc.working_day_hours
        return cls(
            zone=ZoneInfo(doc.timezone),
            week=week,
            holidays=frozenset(doc.holidays),
            working_days=frozenset(doc.working_days),
            working_day_spans=spans(extra) if extra is not None else week[0],
        )

    def day_spans(self, day: dt.date) -> Spans:
        """The working intervals of a local date."""
        if day in self.holidays:
            return ()
        if day in self.working_days:
            return self.working_day_spans
        return self.week[day.weekday()]


#: No calendar named: every hour of every day counts, in UTC.
ALWAYS = Calendar(zone=ZoneInfo("UTC"), week=(((0, 24 * 60),),) * 7)


def _instant(day: dt.date, minute: int, zone: ZoneInfo) -> dt.datetime:
    if minute >= 24 * 60:  # "24:00": the next day's midnight
        day, minute = day + dt.timedelta(days=1), 0
    local = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), tzinfo=zone)
    return local.astimezone(dt.UTC)


def _working(day: dt.date, calendar: Calendar) -> list[tuple[dt.datetime, dt.datetime]]:
    """The working intervals of a local date as UTC instants (empty ones dropped)."""
    out = []
    for start, stop in calendar.day_spans(day):
        a, b = _instant(day, start, calendar.zone), _instant(day, stop, calendar.zone)
        if b > a:
            out.append((a, b))
    return out


def _local_date(moment: dt.datetime, calendar: Calendar) -> dt.date:
    return moment.astimezone(calendar.zone).date()


def add_working_time(start: dt.datetime, hours: float, calendar: Calendar) -> dt.datetime:
    """The moment `hours` working hours after `start` (before it, when negative), in UTC.

    Forward, a target that runs out exactly at the end of a working interval is that end
    (Friday 18:00, not Monday 09:00); backward, the start of one. ValueError when the
    calendar has no working time within `HORIZON_DAYS`.
    """
    if start.tzinfo is None:
        raise ValueError("start must be an aware datetime")
    start = start.astimezone(dt.UTC)
    if hours < 0:
        return _subtract(start, dt.timedelta(hours=-hours), calendar)
    remaining = dt.timedelta(hours=hours)
    if not remaining:
        return start
    day = _local_date(start, calendar)
    for _ in range(HORIZON_DAYS):
        for a, b in _working(day, calendar):
            a = max(a, start)
            if b <= a:
                continue
            if b - a >= remaining:
                return a + remaining
            remaining -= b - a
        day += dt.timedelta(days=1)
    raise ValueError(f"the calendar has no working time for {HORIZON_DAYS} days")


def _subtract(end: dt.datetime, remaining: dt.timedelta, calendar: Calendar) -> dt.datetime:
    day = _local_date(end, calendar)
    for _ in range(HORIZON_DAYS):
        for a, b in reversed(_working(day, calendar)):
            b = min(b, end)
            if b <= a:
                continue
            if b - a >= remaining:
                return b - remaining
            remaining -= b - a
        day -= dt.timedelta(days=1)
    raise ValueError(f"the calendar has no working time for {HORIZON_DAYS} days")


def working_time_between(a: dt.datetime, b: dt.datetime, calendar: Calendar) -> dt.timedelta:
    """The working time from `a` to `b` (negative when `b` is before `a`)."""
    if b < a:
        return -working_time_between(b, a, calendar)
    total = dt.timedelta(0)
    day, last = _local_date(a, calendar), _local_date(b, calendar)
    while day <= last:
        for start, stop in _working(day, calendar):
            start, stop = max(start, a), min(stop, b)
            if stop > start:
                total += stop - start
        day += dt.timedelta(days=1)
    return total
