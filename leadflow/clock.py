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
