"""Business-hours arithmetic: exact SLA due instants across weekends, holidays and DST days.

Expected instants are worked out by hand from the 2026 transition dates, written as UTC with the
local reading in a comment:
- Europe/Berlin: spring forward Sun 29 Mar 02:00 CET -> 03:00 CEST (01:00 UTC),
  fall back Sun 25 Oct 03:00 CEST -> 02:00 CET (01:00 UTC).
- America/New_York: spring forward Sun 8 Mar 02:00 EST -> 03:00 EDT (07:00 UTC),
  fall back Sun 1 Nov 02:00 EDT -> 01:00 EST (06:00 UTC).
- Australia/Sydney: fall back Sun 5 Apr 03:00 AEDT -> 02:00 AEST (16:00 UTC on 4 Apr),
  spring forward Sun 4 Oct 02:00 AEST -> 03:00 AEDT (16:00 UTC on 3 Oct).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.config import load_settings
from leadflow.engine.business_hours import (
    BusinessCalendar,
    BusinessTimeline,
    add_business_time,
    business_time_between,
    calendar_named,
    is_open,
    next_opening,
    opening_hours,
)
from leadflow.errors import ConfigError, UnknownCalendarError
from leadflow.settings import CalendarSettings

EVERY_DAY = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def hours(amount: float) -> timedelta:
    return timedelta(hours=amount)


def calendar(
    timezone: str, start: str = "09:00", end: str = "17:00", **fields: Any
) -> BusinessCalendar:
    section = CalendarSettings.model_validate(
        {"timezone": timezone, "start": start, "end": end, **fields}
    )
    return BusinessCalendar.from_settings(section, name=timezone)


BERLIN = calendar("Europe/Berlin")
NEW_YORK = calendar("America/New_York")
SYDNEY = calendar("Australia/Sydney", holidays=["2026-04-03", "2026-04-06"])


class TestOfficeHoursAcrossDst:
    """Mon-Fri 09:00-17:00 stays 09:00-17:00 local: the UTC due instant moves with the offset."""

    @pytest.mark.parametrize(
        ("cal", "start", "expected"),
        [
            # Fri 27 Mar 16:00 CET; 1h Friday, 1h from Mon 30 Mar 09:00 CEST -> 10:00 CEST.
            (BERLIN, utc(2026, 3, 27, 15), utc(2026, 3, 30, 8)),
            # Fri 23 Oct 16:00 CEST -> Mon 26 Oct 10:00 CET.
            (BERLIN, utc(2026, 10, 23, 14), utc(2026, 10, 26, 9)),
            # Fri 6 Mar 16:00 EST -> Mon 9 Mar 10:00 EDT.
            (NEW_YORK, utc(2026, 3, 6, 21), utc(2026, 3, 9, 14)),
            # Fri 30 Oct 16:00 EDT -> Mon 2 Nov 10:00 EST.
            (NEW_YORK, utc(2026, 10, 30, 20), utc(2026, 11, 2, 15)),
            # Thu 2 Apr 16:00 AEDT; Good Friday, the weekend and Easter Monday are closed;
            # Tue 7 Apr 09:00 AEST + 1h -> 10:00 AEST.
            (SYDNEY, utc(2026, 4, 2, 5), utc(2026, 4, 7, 0)),
            # Fri 2 Oct 16:00 AEST -> Mon 5 Oct 10:00 AEDT.
            (SYDNEY, utc(2026, 10, 2, 6), utc(2026, 10, 4, 23)),
        ],
    )
    def test_two_hours_over_the_transition_weekend(
        self, cal: BusinessCalendar, start: datetime, expected: datetime
    ) -> None:
        assert add_business_time(cal, start, hours(2)) == expected
        assert business_time_between(cal, start, expected) == hours(2)

    @pytest.mark.parametrize(
        ("timezone", "day", "opens", "closes"),
        [
            ("Europe/Berlin", date(2026, 3, 28), utc(2026, 3, 28, 8), utc(2026, 3, 28, 16)),
            ("Europe/Berlin", date(2026, 3, 29), utc(2026, 3, 29, 7), utc(2026, 3, 29, 15)),
            ("Europe/Berlin", date(2026, 10, 25), utc(2026, 10, 25, 8), utc(2026, 10, 25, 16)),
            ("America/New_York", date(2026, 3, 8), utc(2026, 3, 8, 13), utc(2026, 3, 8, 21)),
            ("America/New_York", date(2026, 11, 1), utc(2026, 11, 1, 14), utc(2026, 11, 1, 22)),
            ("Australia/Sydney", date(2026, 4, 5), utc(2026, 4, 4, 23), utc(2026, 4, 5, 7)),
            ("Australia/Sydney", date(2026, 10, 4), utc(2026, 10, 3, 22), utc(2026, 10, 4, 6)),
        ],
    )
    def test_the_transition_day_itself_has_eight_hours(
        self, timezone: str, day: date, opens: datetime, closes: datetime
    ) -> None:
        cal = calendar(timezone, weekdays=EVERY_DAY)
        assert opening_hours(cal, day) == (opens, closes)
        assert add_business_time(cal, opens, hours(8)) == closes


class TestHoursStraddlingTheTransition:
    """Night hours that contain the jump count real elapsed time: a skipped hour is not worked,
    a repeated hour is worked twice; a boundary is the first instant clocks show that time."""

    @pytest.mark.parametrize(
        ("timezone", "start", "end", "day", "opens", "closes"),
        [
            # 01:00 CET .. 04:00 CEST: 2 hours.
            ("Europe/Berlin", "01:00", "04:00", date(2026, 3, 29), utc(2026, 3, 29, 0), utc(2026, 3, 29, 2)),
            # 01:00 CEST .. 04:00 CET: 4 hours.
            ("Europe/Berlin", "01:00", "04:00", date(2026, 10, 25), utc(2026, 10, 24, 23), utc(2026, 10, 25, 3)),
            # 00:00 EST .. 05:00 EDT: 4 hours.
            ("America/New_York", "00:00", "05:00", date(2026, 3, 8), utc(2026, 3, 8, 5), utc(2026, 3, 8, 9)),
            # 00:00 EDT .. 05:00 EST: 6 hours.
            ("America/New_York", "00:00", "05:00", date(2026, 11, 1), utc(2026, 11, 1, 4), utc(2026, 11, 1, 10)),
            # 01:00 AEDT .. 04:00 AEST: 4 hours.
            ("Australia/Sydney", "01:00", "04:00", date(2026, 4, 5), utc(2026, 4, 4, 14), utc(2026, 4, 4, 18)),
            # 01:00 AEST .. 04:00 AEDT: 2 hours.
            ("Australia/Sydney", "01:00", "04:00", date(2026, 10, 4), utc(2026, 10, 3, 15), utc(2026, 10, 3, 17)),
            # 02:30 does not exist in Berlin on 29 Mar: open from the jump, 03:00 CEST.
            ("Europe/Berlin", "02:30", "05:00", date(2026, 3, 29), utc(2026, 3, 29, 1), utc(2026, 3, 29, 3)),
            # 01:30 happens twice in New York on 1 Nov: open from the first, 01:30 EDT.
            ("America/New_York", "01:30", "03:00", date(2026, 11, 1), utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 8)),
            # ... and close at the first: the office does not reopen at 01:00 EST.
            ("America/New_York", "00:00", "01:30", date(2026, 11, 1), utc(2026, 11, 1, 4), utc(2026, 11, 1, 5, 30)),
        ],
    )  # fmt: skip
    def test_opening_and_closing_instants(
        self, timezone: str, start: str, end: str, day: date, opens: datetime, closes: datetime
    ) -> None:
        cal = calendar(timezone, start, end, weekdays=EVERY_DAY)
        assert opening_hours(cal, day) == (opens, closes)
        assert business_time_between(cal, opens - hours(1), closes + hours(1)) == closes - opens

    def test_counting_through_the_skipped_hour(self) -> None:
        night = calendar("Europe/Berlin", "01:00", "04:00", weekdays=EVERY_DAY)
        opens = utc(2026, 3, 29, 0)  # 01:00 CET
        assert add_business_time(night, opens, hours(1.5)) == utc(2026, 3, 29, 1, 30)  # 03:30 CEST
        assert add_business_time(night, opens, hours(2)) == utc(2026, 3, 29, 2)  # closing, 04:00
        # The remaining half hour runs from 30 Mar 01:00 CEST.
        assert add_business_time(night, opens, hours(2.5)) == utc(2026, 3, 29, 23, 30)

    def test_the_repeated_hour_counts_twice(self) -> None:
        night = calendar("Europe/Berlin", "01:00", "04:00", weekdays=EVERY_DAY)
        opens = utc(2026, 10, 24, 23)  # 01:00 CEST
        assert add_business_time(night, opens, hours(3)) == utc(2026, 10, 25, 2)  # 03:00 CET
        first_0230, second_0230 = utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30)
        assert is_open(night, first_0230)
        assert is_open(night, second_0230)
        assert business_time_between(night, first_0230, second_0230) == hours(1)

    def test_closed_after_an_ambiguous_closing_time_although_clocks_show_it_again(self) -> None:
        early = calendar("America/New_York", "00:00", "01:30", weekdays=EVERY_DAY)
        assert is_open(early, utc(2026, 11, 1, 5, 29))  # 01:29 EDT
        assert not is_open(early, utc(2026, 11, 1, 6, 15))  # 01:15 EST, after closing

    def test_opening_inside_the_skipped_hour_opens_at_the_jump(self) -> None:
        late = calendar("Europe/Berlin", "02:30", "05:00", weekdays=EVERY_DAY)
        assert not is_open(late, utc(2026, 3, 29, 0, 59, 59))  # 01:59:59 CET
        assert is_open(late, utc(2026, 3, 29, 1))  # 03:00 CEST
        assert next_opening(late, utc(2026, 3, 28, 22)) == utc(2026, 3, 29, 1)

    def test_hours_entirely_inside_the_skipped_hour_do_not_happen_that_night(self) -> None:
        ghost = calendar("America/New_York", "02:15", "02:45", weekdays=EVERY_DAY)
        assert opening_hours(ghost, date(2026, 3, 8)) is None
        # 01:00 EST on 8 Mar + 10 minutes: 9 Mar 02:15 EDT + 10 minutes.
        assert add_business_time(ghost, utc(2026, 3, 8, 6), timedelta(minutes=10)) == utc(
            2026, 3, 9, 6, 25
        )


class TestWeekendsHolidaysAndStartsOutsideHours:
    """A start outside hours counts from the next opening; weekends and holidays are skipped."""

    EASTER = calendar("Europe/Berlin", holidays=["2026-04-03", "2026-04-06"])

    @pytest.mark.parametrize(
        ("start", "duration", "expected"),
        [
            (utc(2026, 3, 7, 12), hours(1), utc(2026, 3, 9, 9)),  # Sat -> Mon 10:00 CET
            (utc(2026, 3, 10, 6), hours(1), utc(2026, 3, 10, 9)),  # Tue 07:00 -> 10:00 CET
            (utc(2026, 3, 10, 17), hours(1), utc(2026, 3, 11, 9)),  # Tue 18:00 -> Wed 10:00
            (utc(2026, 3, 10, 16), timedelta(minutes=30), utc(2026, 3, 11, 8, 30)),  # at closing
            (utc(2026, 3, 10, 10, 7), timedelta(0), utc(2026, 3, 10, 10, 7)),  # open: itself
            (utc(2026, 3, 10, 8), hours(8), utc(2026, 3, 10, 16)),  # a full day ends at closing
            (utc(2026, 4, 2, 14), hours(2), utc(2026, 4, 7, 8)),  # Thu 16:00 CEST over Easter
        ],
    )
    def test_due_instants(self, start: datetime, duration: timedelta, expected: datetime) -> None:
        assert add_business_time(self.EASTER, start, duration) == expected

    def test_next_opening(self) -> None:
        assert next_opening(self.EASTER, utc(2026, 3, 10, 10)) == utc(2026, 3, 10, 10)
        assert next_opening(self.EASTER, utc(2026, 3, 13, 16)) == utc(2026, 3, 16, 8)  # Fri 17:00
        assert next_opening(self.EASTER, utc(2026, 4, 2, 15)) == utc(2026, 4, 7, 7)  # Easter

    def test_is_open_includes_opening_and_excludes_closing(self) -> None:
        assert is_open(self.EASTER, utc(2026, 3, 10, 8))  # 09:00 CET
        assert not is_open(self.EASTER, utc(2026, 3, 10, 7, 59, 59))
        assert not is_open(self.EASTER, utc(2026, 3, 10, 16))  # 17:00 CET
        assert not is_open(self.EASTER, utc(2026, 4, 6, 10))  # Easter Monday
        assert not is_open(self.EASTER, utc(2026, 3, 14, 10))  # Saturday

    def test_time_between_skips_nights_weekends_and_holidays(self) -> None:
        # Thu 2 Apr 16:00 CEST to Tue 7 Apr 10:00 CEST: 1h + 1h.
        start, end = utc(2026, 4, 2, 14), utc(2026, 4, 7, 8)
        assert business_time_between(self.EASTER, start, end) == hours(2)
        assert business_time_between(self.EASTER, end, start) == -hours(2)
        assert business_time_between(self.EASTER, start, start) == timedelta(0)

    def test_aware_non_utc_inputs_are_accepted_and_results_are_utc(self) -> None:
        tokyo = datetime(2026, 3, 10, 18, 0, tzinfo=calendar("Asia/Tokyo").zone)  # 09:00 UTC
        due = add_business_time(self.EASTER, tokyo, hours(1))
        assert (due, due.tzinfo) == (utc(2026, 3, 10, 10), UTC)


class TestLongDurations:
    """Durations of weeks and a whole year come out exact, day by day rather than minute by minute."""

    def test_two_weeks_of_hours_end_at_a_closing_time(self) -> None:
        monday = utc(2026, 3, 2, 8)  # Mon 09:00 CET
        assert add_business_time(BERLIN, monday, hours(80)) == utc(2026, 3, 13, 16)  # Fri 17:00

    def test_five_weeks_across_spring_forward_and_easter(self) -> None:
        easter = calendar("Europe/Berlin", holidays=["2026-04-03", "2026-04-06"])
        monday = utc(2026, 3, 2, 8)
        assert add_business_time(BERLIN, monday, hours(200)) == utc(
            2026, 4, 3, 15
        )  # Fri 17:00 CEST
        assert add_business_time(easter, monday, hours(200)) == utc(2026, 4, 7, 15)  # Tue 17:00

    def test_a_year_of_office_hours_is_261_days_of_eight_hours_despite_dst(self) -> None:
        new_year = datetime(2026, 1, 1, tzinfo=BERLIN.zone)
        next_year = datetime(2027, 1, 1, tzinfo=BERLIN.zone)
        # 2026 starts on a Thursday: 52 weeks of 5 weekdays and one extra Thursday.
        assert business_time_between(BERLIN, new_year, next_year) == hours(261 * 8)
        assert add_business_time(BERLIN, new_year, hours(261 * 8)) == utc(2026, 12, 31, 16)


class TestCalendarsByName:
    """Rules name a calendar; ``default`` is the ``calendar:`` section, the others ``calendars:``."""

    def write(self, tmp_path: Path, text: str) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(text, encoding="utf-8")
        return path

    def test_default_and_named_calendars(self, tmp_path: Path) -> None:
        path = self.write(
            tmp_path,
            "calendar:\n  timezone: Europe/Berlin\n"
            "calendars:\n  us-east:\n    timezone: America/New_York\n    weekdays: [mon, tue]\n"
            "    start: '08:00'\n    end: '16:30'\n    holidays: [2026-07-03]\n",
        )
        settings = load_settings(path, env={}).settings
        assert calendar_named(settings, "default") == BusinessCalendar(
            "default", BERLIN.zone, frozenset(range(5)), time(9), time(17)
        )
        assert calendar_named(settings, "us-east") == BusinessCalendar(
            "us-east",
            NEW_YORK.zone,
            frozenset({0, 1}),
            time(8),
            time(16, 30),
            frozenset({date(2026, 7, 3)}),
        )

    def test_unknown_name_lists_the_known_ones(self, tmp_path: Path) -> None:
        path = self.write(tmp_path, "calendars:\n  us-east: {}\n  emea: {}\n")
        settings = load_settings(path, env={}).settings
        with pytest.raises(UnknownCalendarError) as caught:
            calendar_named(settings, "us-est")
        assert str(caught.value) == (
            "unknown calendar 'us-est'; did you mean 'us-east'? known calendars: "
            "default, emea, us-east (define more under calendars: in config.yaml)"
        )

    def test_a_second_default_is_refused(self, tmp_path: Path) -> None:
        path = self.write(tmp_path, "calendars:\n  default: {}\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env={})
        assert str(caught.value) == (
            f"{path}:2:3: calendars.default: the name 'default' belongs to the calendar: "
            "section; rename this calendar or move it to calendar:"
        )

    def test_a_calendar_without_weekdays_is_refused(self, tmp_path: Path) -> None:
        path = self.write(tmp_path, "calendars:\n  sales:\n    weekdays: []\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env={})
        assert str(caught.value) == (
            f"{path}:3:5: calendars.sales.weekdays: "
            "list at least one business day of mon, tue, wed, thu, fri, sat, sun"
        )

    def test_programming_mistakes_are_refused(self) -> None:
        with pytest.raises(ValueError, match="start must be a timezone-aware datetime"):
            add_business_time(BERLIN, datetime(2026, 3, 2, 9), hours(1))
        with pytest.raises(ValueError, match="duration must not be negative, got -1 day"):
            add_business_time(BERLIN, utc(2026, 3, 2, 9), -hours(1))
        with pytest.raises(ConfigError, match="calendar 'x': no weekdays"):
            BusinessCalendar("x", BERLIN.zone, frozenset(), time(9), time(17))


# Property tests: instants are drawn near the 2026 transitions as often as anywhere else.
CALENDARS = [
    BERLIN,
    SYDNEY,
    calendar("America/New_York", "00:00", "05:00", weekdays=EVERY_DAY),
    calendar("Europe/Berlin", "01:00", "04:00", weekdays=EVERY_DAY, holidays=["2026-03-30"]),
    calendar("Europe/Berlin", "02:30", "05:00", weekdays=("sun", "mon")),
    calendar("America/New_York", "01:30", "03:00", weekdays=EVERY_DAY),
]
TRANSITIONS = [utc(2026, 3, 29, 1), utc(2026, 10, 25, 1), utc(2026, 3, 8, 7), utc(2026, 11, 1, 6)]
TRANSITIONS += [utc(2026, 4, 4, 16), utc(2026, 10, 3, 16)]
near_transitions = st.builds(
    lambda at, minutes: at + timedelta(minutes=minutes),
    st.sampled_from(TRANSITIONS),
    st.integers(-48 * 60, 48 * 60),
)
anywhere = st.datetimes(datetime(2026, 1, 1), datetime(2026, 12, 31), timezones=st.just(UTC))
instants = st.one_of(near_transitions, anywhere)
durations = st.integers(0, 300 * 3600).map(lambda s: timedelta(seconds=s))
calendars = st.sampled_from(CALENDARS)


def is_closing(cal: BusinessCalendar, at: datetime) -> bool:
    local = at.astimezone(cal.zone).date()
    days = (local - timedelta(days=1), local, local + timedelta(days=1))
    return any((h := opening_hours(cal, day)) is not None and h[1] == at for day in days)


class TestProperties:
    """Adding and measuring business time are inverse, monotone, and land inside hours."""

    @given(calendars, instants, durations)
    @settings(deadline=None)  # a 300-hour walk on a cold cache can exceed 200 ms on a busy box
    def test_time_between_start_and_due_is_the_duration(
        self, cal: BusinessCalendar, start: datetime, duration: timedelta
    ) -> None:
        due = add_business_time(cal, start, duration)
        assert business_time_between(cal, start, due) == duration
        assert is_open(cal, due) or is_closing(cal, due)
        if duration:
            assert is_open(cal, due - timedelta(microseconds=1))

    @given(calendars, instants, durations, durations)
    @settings(deadline=None)
    def test_monotone_and_additive(
        self, cal: BusinessCalendar, start: datetime, first: timedelta, second: timedelta
    ) -> None:
        shorter, longer = sorted((first, second))
        assert add_business_time(cal, start, shorter) <= add_business_time(cal, start, longer)
        later_start = start + first
        assert add_business_time(cal, start, second) <= add_business_time(cal, later_start, second)
        if second:
            midway = add_business_time(cal, start, first)
            assert add_business_time(cal, midway, second) == add_business_time(
                cal, start, first + second
            )

    @given(calendars, instants, instants)
    @settings(deadline=None)
    def test_time_between_adds_up_and_next_opening_is_open(
        self, cal: BusinessCalendar, one: datetime, other: datetime
    ) -> None:
        early, late = sorted((one, other))
        middle = early + (late - early) / 3
        whole = business_time_between(cal, early, late)
        assert whole == business_time_between(cal, early, middle) + business_time_between(
            cal, middle, late
        )
        opening = next_opening(cal, early)
        assert is_open(cal, opening)
        assert business_time_between(cal, early, opening) == timedelta(0)
        assert (opening == early) == is_open(cal, early)

    @given(calendars, st.lists(instants, min_size=2, max_size=8), instants, instants)
    @settings(deadline=None)
    def test_timeline_measures_as_time_between(
        self, cal: BusinessCalendar, span: list[datetime], one: datetime, other: datetime
    ) -> None:
        # Pairs inside the span are measured from its intervals, the others apart: every one
        # the same as business_time_between, to the microsecond (the SLA median relies on it).
        timeline = BusinessTimeline(cal, min(span), max(span))
        for start, end in [*zip(span, reversed(span), strict=True), (one, other), (other, one)]:
            assert timeline.between(start, end) == business_time_between(cal, start, end)


class TestRoundTheClock:
    """``end: "24:00"`` closes at the midnight that ends the day: every day 00:00-24:00 is one
    unbroken stretch (``"23:59"`` was the only way to write it, and left a closed minute a day
    that delayed a 4-minute SLA started at 23:58 by a minute)."""

    ALWAYS = calendar("Europe/Berlin", start="00:00", end="24:00", weekdays=list(EVERY_DAY))

    def test_a_day_runs_to_the_next_midnight(self) -> None:
        # Fri 27 Mar 2026: midnight CET is 23:00 UTC the day before.
        assert opening_hours(self.ALWAYS, date(2026, 3, 27)) == (
            utc(2026, 3, 26, 23),
            utc(2026, 3, 27, 23),
        )
        # The spring-forward day has 23 hours: Sun 29 Mar 00:00 CET to Mon 00:00 CEST.
        assert opening_hours(self.ALWAYS, date(2026, 3, 29)) == (
            utc(2026, 3, 28, 23),
            utc(2026, 3, 29, 22),
        )

    def test_business_time_is_elapsed_time(self) -> None:
        # 4 minutes from 23:58 Berlin time end at 00:02, not at 00:03.
        assert add_business_time(self.ALWAYS, utc(2026, 3, 27, 22, 58), hours(1 / 15)) == utc(
            2026, 3, 27, 23, 2
        )
        # Three days across the spring-forward night are three days of real time.
        start = utc(2026, 3, 27, 10)
        assert add_business_time(self.ALWAYS, start, hours(72)) == start + hours(72)
        assert business_time_between(self.ALWAYS, start, start + hours(72)) == hours(72)
        assert is_open(self.ALWAYS, utc(2026, 3, 27, 22, 59, 59))
        assert is_open(self.ALWAYS, utc(2026, 3, 27, 23))

    def test_an_evening_shift_to_midnight(self) -> None:
        """``end: "24:00"`` after a later start: 18:00 to the midnight ending the day."""
        evening = calendar("UTC", start="18:00", end="24:00")
        assert opening_hours(evening, date(2026, 3, 27)) == (utc(2026, 3, 27, 18), utc(2026, 3, 28))
        # Fri 23:00 + 2h: one hour Friday, then Monday 18:00 + 1h.
        assert add_business_time(evening, utc(2026, 3, 27, 23), hours(2)) == utc(2026, 3, 30, 19)

    def test_the_setting_reads_24_00_and_still_refuses_an_end_before_the_start(self) -> None:
        assert CalendarSettings.model_validate({"end": "24:00"}).end == time(0, 0)
        with pytest.raises(ValueError, match="end 08:00:00 must be after start 09:00:00"):
            CalendarSettings.model_validate({"start": "09:00", "end": "08:00"})
        with pytest.raises(ValueError, match="end"):
            CalendarSettings.model_validate({"end": "25:00"})
