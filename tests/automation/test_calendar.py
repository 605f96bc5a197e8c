"""Working-time arithmetic on business calendars: weekends, lunch, holidays, make-up days, DST."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metacrm.metadata.sla import BusinessCalendar
from metacrm.runtime.automation.calendar import (
    ALWAYS,
    Calendar,
    add_working_time,
    working_time_between,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = [["09:00", "12:00"], ["13:00", "18:00"]]
CHINA = Calendar.of(
    BusinessCalendar.model_validate(
        {
            "api_name": "china",
            "timezone": "Asia/Shanghai",
            "hours": {d: DAY for d in ("mon", "tue", "wed", "thu", "fri")},
            # Spring festival 2030: the week off, a Saturday and a Sunday worked instead.
            "holidays": ["2030-02-04", "2030-02-05", "2030-02-06", "2030-02-07", "2030-02-08"],
            "working_days": ["2030-02-02", "2030-02-10"],
        }
    )
)
BERLIN = Calendar.of(
    BusinessCalendar.model_validate(
        {
            "api_name": "berlin",
            "timezone": "Europe/Berlin",
            "hours": {d: [["00:00", "24:00"]] for d in ("sat", "sun")}
            | {"mon": [["01:00", "04:00"]]},
        }
    )
)


def sh(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=SHANGHAI)


def test_friday_afternoon_plus_four_hours_is_monday_noon() -> None:
    friday = sh(2030, 1, 4, 17)  # a Friday
    assert add_working_time(friday, 4, CHINA) == sh(2030, 1, 7, 12)
    assert add_working_time(friday, 1, CHINA) == sh(2030, 1, 4, 18)  # the day's end
    assert add_working_time(friday, 4.5, CHINA) == sh(2030, 1, 7, 13, 30)  # after lunch
    assert add_working_time(sh(2030, 1, 5, 10), 1, CHINA) == sh(2030, 1, 7, 10)  # Saturday


def test_holidays_are_skipped_and_make_up_days_count() -> None:
    # Friday 1 Feb 17:00 + 4h: 1h Friday, 3h on the make-up Saturday 2 Feb.
    assert add_working_time(sh(2030, 2, 1, 17), 4, CHINA) == sh(2030, 2, 2, 12)
    # Saturday evening + 4h: the festival week is off, Sunday 10 Feb is worked.
    assert add_working_time(sh(2030, 2, 2, 19), 4, CHINA) == sh(2030, 2, 10, 14)
    assert working_time_between(sh(2030, 2, 3), sh(2030, 2, 9), CHINA) == dt.timedelta(0)


def test_going_back_and_measuring() -> None:
    assert add_working_time(sh(2030, 1, 7, 12), -4, CHINA) == sh(2030, 1, 4, 17)
    assert working_time_between(sh(2030, 1, 4, 17), sh(2030, 1, 7, 12), CHINA) == dt.timedelta(
        hours=4
    )
    assert working_time_between(sh(2030, 1, 7, 12), sh(2030, 1, 4, 17), CHINA) == -dt.timedelta(
        hours=4
    )


def test_no_calendar_counts_every_hour() -> None:
    start = dt.datetime(2030, 3, 9, 22, 30, tzinfo=dt.UTC)
    assert add_working_time(start, 50, ALWAYS) == start + dt.timedelta(hours=50)


def test_daylight_saving_days_count_the_hours_that_pass() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 31 March 2030: clocks go 02:00 -> 03:00, the Sunday has 23 hours.
    spring = dt.datetime(2030, 3, 31, tzinfo=berlin)
    assert working_time_between(spring, spring + dt.timedelta(days=1), BERLIN) == dt.timedelta(
        hours=23
    )
    # 27 October 2030: clocks go 03:00 -> 02:00, the Sunday has 25 hours.
    autumn = dt.datetime(2030, 10, 27, tzinfo=berlin)
    end = dt.datetime(2030, 10, 28, tzinfo=berlin)
    assert working_time_between(autumn, end, BERLIN) == dt.timedelta(hours=25)
    assert add_working_time(autumn, 25, BERLIN) == end.astimezone(dt.UTC)
    # Sunday's last hour then Monday 01:00-04:00.
    late = dt.datetime(2030, 10, 27, 23, tzinfo=berlin)
    assert add_working_time(late, 2, BERLIN) == dt.datetime(2030, 10, 28, 2, tzinfo=berlin)


def test_a_calendar_without_working_time_is_refused() -> None:
    empty = Calendar.of(BusinessCalendar(api_name="never"))
    with pytest.raises(ValueError, match="no working time"):
        add_working_time(sh(2030, 1, 1), 1, empty)


moments = st.datetimes(
    min_value=dt.datetime(2029, 1, 1),
    max_value=dt.datetime(2031, 12, 31),
    timezones=st.just(dt.UTC),
)
hours = st.integers(min_value=0, max_value=200 * 60).map(lambda m: m / 60)


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(start=moments, hours=hours, calendar=st.sampled_from([CHINA, BERLIN, ALWAYS]))
def test_adding_then_measuring_gives_the_hours_back(
    start: dt.datetime, hours: float, calendar: Calendar
) -> None:
    due = add_working_time(start, hours, calendar)
    assert due >= start
    assert working_time_between(start, due, calendar) == dt.timedelta(hours=hours)
    assert working_time_between(add_working_time(due, -hours, calendar), due, calendar) == (
        dt.timedelta(hours=hours)
    )
