"""The period a report covers and how it groups: what every metric family takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum

from leadflow.errors import UserInputError


class Grouping(StrEnum):
    """``--by``: what each row of a grouped metric stands for."""

    none = "none"
    source = "source"
    pool = "pool"
    rep = "rep"
    product = "product"
    segment = "segment"
    week = "week"


NOW_INCLUDED = timedelta(microseconds=1)
"""The stores' resolution: ``t < now + NOW_INCLUDED`` is ``t <= now``."""

ALL = "all"
"""The one group of an ungrouped metric."""

NO_GROUP = "(none)"
"""The group of a lead or deal that has no value for the grouping (no source, no owner)."""


@dataclass(frozen=True)
class Period:
    """``start <= t < end``, aware UTC; ``stall_after`` is the age past which an open stay in a
    stage is a stall (``default_stall`` for stages it does not name); ``now`` is the clock's
    instant the report is run at (the injected clock's, a simulation's own), None when unknown.
    """

    start: datetime
    end: datetime
    by: Grouping = Grouping.none
    stall_after: dict[str, timedelta] = field(default_factory=dict)
    default_stall: timedelta = timedelta(days=30)
    now: datetime | None = None

    @property
    def as_of(self) -> datetime:
        """The instant the report is read at: the period's end, or now when the period ends
        later. Every family counts what happened in the period up to it (before
        :attr:`cutoff`) and measures what was open at it (stays' ages, stalls, open deals,
        running SLA timers): nothing after now exists, though a store of historical data read
        with an earlier ``--now`` holds it. A period that includes today ends at the next midnight: measured there, a
        lead imported a minute ago was hours old and stalled."""
        return self.end if self.now is None else min(self.end, self.now)

    @property
    def cutoff(self) -> datetime:
        """The exclusive bound of what the report counts: the period's end, or, when the period
        ends later, the instant just after now (the stores keep microseconds): what happened at
        now itself has happened (a rule fired at the clock's instant, a deal closed at it is
        not open any more), what happened at the end is outside the period."""
        return self.as_of + NOW_INCLUDED if self.ends_later else self.end

    @property
    def ends_later(self) -> bool:
        """Whether the report measures before the period's end (its headings say so)."""
        return self.as_of != self.end

    def grouping_text(self) -> str:
        """How the report's heading says its grouping: ``by rep``, or ``not grouped``."""
        return "not grouped" if self.by is Grouping.none else f"by {self.by.value}"

    def stall_days(self, stage: str) -> float:
        return self.stall_after.get(stage, self.default_stall).total_seconds() / 86400


def day_start(day: date, *, after: bool = False) -> datetime:
    """``day``'s first instant in UTC; ``after``: the next day's, so a period ending there
    counts ``day`` whole (``--to 2017-12-31`` includes the 31st)."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    if not after:
        return start
    if day == date.max:
        msg = f"{day} is the calendar's last day: a period must end before it"
        raise UserInputError(msg)
    return start + timedelta(days=1)
