"""Business-hours arithmetic for SLA timers: pure functions of a calendar and instants.

Business hours are *local wall-clock* hours of the calendar's timezone: "09:00-17:00" means
from when clocks there show 09:00 until they show 17:00, whatever the UTC offset that day.

Two decisions make this exact across daylight-saving transitions (see docs/sla-calendar.md):

- A boundary (opening or closing time) is **the first instant at which local clocks show that
  time or later**. A time that happens twice on a fall-back night is therefore its first
  occurrence (``fold=0``); a time that never happens on a spring-forward night (02:30 in
  Berlin) is the instant of the jump itself (03:00 CEST).
- Business time between two boundaries is **real elapsed time**. Hours of 01:00-04:00 count
  4 hours on a fall-back night (the repeated hour is worked twice) and 2 hours on a
  spring-forward night (the skipped hour is not worked). Hours away from the transition, like
  09:00-17:00, are 8 hours on both days.

Every function takes and returns timezone-aware datetimes; results are in UTC. Nothing here
reads the clock.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from leadflow.errors import ConfigError, UnknownCalendarError
from leadflow.setting_types import WEEKDAYS
from leadflow.settings import DEFAULT_CALENDAR, END_OF_DAY, CalendarSettings, Settings
from leadflow.suggestions import did_you_mean

_ONE_DAY = timedelta(days=1)
_ZERO = timedelta(0)
_MICROSECOND = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class BusinessCalendar:
    """When a calendar's business hours run: local hours on weekdays, minus holidays.

    ``weekdays`` uses :meth:`datetime.date.weekday` numbers (Monday is 0); ``start`` and
    ``end`` are naive local times; ``holidays`` are local dates.
    """

    name: str
    zone: ZoneInfo
    weekdays: frozenset[int]
    start: time
    end: time
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        if not self.weekdays:
            msg = f"calendar {self.name!r}: no weekdays; list at least one of {', '.join(WEEKDAYS)}"
            raise ConfigError(msg)
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            msg = (
                f"calendar {self.name!r}: write start and end as local times without an offset; "
                f"the calendar's timezone {self.zone.key} applies"
            )
            raise ConfigError(msg)
        if self.end != END_OF_DAY and self.end <= self.start:
            msg = f"calendar {self.name!r}: end {self.end} must be after start {self.start}"
            raise ConfigError(msg)

    @classmethod
    def from_settings(
        cls, settings: CalendarSettings, name: str = DEFAULT_CALENDAR
    ) -> BusinessCalendar:
        """The calendar that a ``calendar:`` (or ``calendars.NAME:``) section describes."""
        return cls(
            name=name,
            zone=ZoneInfo(settings.timezone),
            weekdays=frozenset(WEEKDAYS.index(day) for day in settings.weekdays),
            start=settings.start,
            end=settings.end,
            holidays=frozenset(settings.holidays),
        )


def calendar_named(settings: Settings, name: str) -> BusinessCalendar:
    """The calendar a rule refers to by name: ``default`` is the ``calendar:`` section."""
    if name == DEFAULT_CALENDAR:
        return _calendar(settings.calendar, DEFAULT_CALENDAR)
    section = settings.calendars.get(name)
    if section is None:
        known = [DEFAULT_CALENDAR, *sorted(settings.calendars)]
        hint = did_you_mean(name, known, suffix=" ")
        msg = (
            f"unknown calendar {name!r}; {hint}known calendars: {', '.join(known)} "
            "(define more under calendars: in config.yaml)"
        )
        raise UnknownCalendarError(msg)
    return _calendar(section, name)


@lru_cache(maxsize=64)
def _calendar(section: CalendarSettings, name: str) -> BusinessCalendar:
    """A calendar made once per (frozen) settings section: a batch starts thousands of timers."""
    return BusinessCalendar.from_settings(section, name)


def opening_hours(calendar: BusinessCalendar, day: date) -> tuple[datetime, datetime] | None:
    """The (opening, closing) instants in UTC of a local date, or None when closed all day.

    The interval is half-open: open at the opening instant, closed at the closing instant.
    Hours that fall entirely inside a skipped spring-forward hour are no hours at all.
    """
    if day.weekday() not in calendar.weekdays or day in calendar.holidays:
        return None
    opens = _first_instant_showing(calendar.zone, datetime.combine(day, calendar.start))
    closing_day = day + _ONE_DAY if calendar.end == END_OF_DAY else day
    closes = _first_instant_showing(calendar.zone, datetime.combine(closing_day, calendar.end))
    if closes <= opens:
        return None
    return opens, closes


def add_business_time(calendar: BusinessCalendar, start: datetime, duration: timedelta) -> datetime:
    """The instant (UTC) when ``duration`` of business time has elapsed since ``start``.

    Counting begins at ``start`` if the calendar is open then, else at the next opening. A
    result that lands exactly on a closing time is that closing time, not the next opening.
    """
    begin = _as_utc(start, "start")
    if duration < _ZERO:
        msg = f"duration must not be negative, got {duration}"
        raise ValueError(msg)
    remaining = duration
    hours = _hours_from(calendar, _local_date(calendar, begin) - _ONE_DAY)
    while True:
        opens, closes = next(hours)
        if closes <= begin:
            continue
        counted_from = max(opens, begin)
        available = closes - counted_from
        if remaining <= available:
            return counted_from + remaining
        remaining -= available


def business_time_between(calendar: BusinessCalendar, start: datetime, end: datetime) -> timedelta:
    """How much business time lies between two instants (negative when ``end`` is earlier)."""
    first = _as_utc(start, "start")
    last = _as_utc(end, "end")
    if last < first:
        return -business_time_between(calendar, last, first)
    total = _ZERO
    day = _local_date(calendar, first) - _ONE_DAY
    final_day = _local_date(calendar, last) + _ONE_DAY
    while day <= final_day:
        hours = opening_hours(calendar, day)
        if hours is not None:
            overlap = min(hours[1], last) - max(hours[0], first)
            total += max(overlap, _ZERO)
        day += _ONE_DAY
    return total


class BusinessTimeline:
    """Business time between many pairs of instants from ``first`` to ``last``, each exactly
    as :func:`business_time_between` gives it: the calendar's intervals over those dates are
    worked out once, with the business time before each, so a measure is two binary searches
    instead of a walk over its days (the report measures a period's first touches, 200,000
    at a million leads). Instants are whole microseconds since the epoch, so the sums are
    exact integers like the ``timedelta`` sums. Pairs outside the span, or a calendar whose
    intervals overlap (where the difference of two sums would count an overlap twice), are
    measured by :func:`business_time_between` itself."""

    def __init__(self, calendar: BusinessCalendar, first: datetime, last: datetime) -> None:
        self._calendar = calendar
        self._first = _micros(_as_utc(first, "first"))
        self._last = _micros(_as_utc(last, "last"))
        self._opens: list[int] = []
        self._closes: list[int] = []
        self._before: list[int] = []
        total = 0
        # The same days around the span as business_time_between walks around a pair.
        day = _local_date(calendar, first) - _ONE_DAY
        while day <= _local_date(calendar, last) + _ONE_DAY:
            hours = opening_hours(calendar, day)
            if hours is not None:
                opens, closes = _micros(hours[0]), _micros(hours[1])
                self._opens.append(opens)
                self._closes.append(closes)
                self._before.append(total)
                total += closes - opens
            day += _ONE_DAY
        self._apart = all(
            closes <= opens for closes, opens in zip(self._closes, self._opens[1:], strict=False)
        )

    def between(self, start: datetime, end: datetime) -> timedelta:
        """:func:`business_time_between` of ``start`` and ``end``."""
        first = _micros(_as_utc(start, "start"))
        last = _micros(_as_utc(end, "end"))
        inside = self._first <= min(first, last) and max(first, last) <= self._last
        if not (self._apart and inside):
            return business_time_between(self._calendar, start, end)
        return timedelta(microseconds=self._until(last) - self._until(first))

    def _until(self, at: int) -> int:
        """Business microseconds of the span's intervals before ``at``."""
        index = bisect_right(self._opens, at) - 1
        if index < 0:
            return 0
        return self._before[index] + min(at, self._closes[index]) - self._opens[index]


def is_open(calendar: BusinessCalendar, at: datetime) -> bool:
    """Whether ``at`` lies inside business hours (opening included, closing excluded)."""
    instant = _as_utc(at, "at")
    today = _local_date(calendar, instant)
    # Neighbouring dates too: where clocks jump across midnight an instant can belong to
    # the hours of the local date before or after its own.
    for day in (today - _ONE_DAY, today, today + _ONE_DAY):
        hours = opening_hours(calendar, day)
        if hours is not None and hours[0] <= instant < hours[1]:
            return True
    return False


def next_opening(calendar: BusinessCalendar, at: datetime) -> datetime:
    """The first instant at or after ``at`` when the calendar is open: ``at`` itself if open."""
    return add_business_time(calendar, at, _ZERO)


def _hours_from(calendar: BusinessCalendar, day: date) -> Iterator[tuple[datetime, datetime]]:
    """Every business interval from local date ``day`` on; endless, as weekdays are not empty."""
    while True:
        hours = opening_hours(calendar, day)
        if hours is not None:
            yield hours
        day += _ONE_DAY


def _first_instant_showing(zone: ZoneInfo, local: datetime) -> datetime:
    """The first instant (UTC) at which clocks in ``zone`` show ``local`` or a later time."""
    after = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall(zone, after) == local:
        return after  # the time exists; fold=0 is the first of two occurrences on fall-back
    # ``local`` lies in a spring-forward gap. fold=1 maps it with the offset after the jump,
    # i.e. to an instant before the jump; fold=0 to one after it. The jump itself is the
    # answer: search between them (a gap is at most a few hours, so ~33 halvings).
    before = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
    while after - before > _MICROSECOND:
        middle = before + (after - before) // 2
        if _wall(zone, middle) >= local:
            after = middle
        else:
            before = middle
    return after


def _wall(zone: ZoneInfo, instant: datetime) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def _local_date(calendar: BusinessCalendar, instant: datetime) -> date:
    return instant.astimezone(calendar.zone).date()


def _micros(instant: datetime) -> int:
    return (instant - _EPOCH) // _MICROSECOND


def _as_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        msg = f"{name} must be a timezone-aware datetime, got the naive {value.isoformat()}"
        raise ValueError(msg)
    return value.astimezone(UTC)
