"""Injected time. Every component reads a clock object; all stored times are UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Something that says what time it is, always timezone-aware UTC."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class SettableClock:
    """A clock that only moves when told to: for tests, simulations and ``--now``."""

    def __init__(self, start: datetime) -> None:
        self._now = as_utc(start)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = as_utc(when)

    def advance(self, by: timedelta) -> datetime:
        self._now += by
        return self._now


EARLIEST_NOW = datetime(1900, 1, 1, tzinfo=UTC)
"""No CRM history is older; far enough from year 1 for every look-back a rule can write."""
LATEST_NOW = datetime(9000, 1, 1, tzinfo=UTC)
"""The latest instant a run or a simulation may stand at. Rules and SLA deadlines look ahead
from now by up to 100 years (``LONGEST_DURATION``), which business hours stretch several times
over (8 of every 24 hours, 5 of 7 days: 420 calendar years): past here datetime's year 9999
ends before them, and a simulation's next step did (``OverflowError``)."""


def outside_the_calendar(when: datetime) -> str | None:
    """What to do when ``when`` is outside [:data:`EARLIEST_NOW`, :data:`LATEST_NOW`]; None
    inside."""
    if EARLIEST_NOW <= when <= LATEST_NOW:
        return None
    return f"give an instant from {EARLIEST_NOW.date()} to {LATEST_NOW.date()}"


def as_utc(when: datetime) -> datetime:
    """Return ``when`` in UTC; a naive datetime is taken to be UTC already."""
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def parse_instant(text: str) -> datetime:
    """Parse an ISO 8601 instant given on the command line (``--now 2017-12-31T09:00``)."""
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        msg = f"{text!r} is not an ISO 8601 time; write e.g. 2017-12-31T09:00:00Z"
        raise ValueError(msg) from None
    return as_utc(parsed)
