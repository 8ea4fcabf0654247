"""SLA compliance per rep and per pool (docs/report.md).

Of the SLA timers started in the period and ended by its end: met on time (``met``), met late
(``met_late``), ``breached`` (the ladder ran out), ``reassigned``, ``cancelled``; the timers
started in the period still running at its end are counted apart. Counted in SQL.

The median business hours to the owner's first touch is over the timers the owner's activity
closed (``met``/``met_late`` with ``close_reason`` "the owner acted...", not a stage change),
measured with the timer's own calendar as :func:`~leadflow.engine.business_hours.
business_time_between` does (by a :class:`~leadflow.engine.business_hours.BusinessTimeline`): business hours are not SQL arithmetic, so these timers (one row each,
a period's first touches) are the one thing the report reads into Python. The rep is the
timer's owner; the pool is the one the lead was assigned from when the timer started (its first
``assigned``/``reassigned`` audit row at or after the start).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from statistics import median
from typing import Any

from sqlalchemy import Connection, and_, case, func, or_, select

from leadflow.engine.business_hours import BusinessCalendar, BusinessTimeline
from leadflow.funnel.groups import pool_of
from leadflow.funnel.period import NO_GROUP, Period
from leadflow.funnel.sql import instant, share
from leadflow.store.tables import REPS, SLA_TIMERS

ENDINGS = ("met", "met_late", "breached", "reassigned", "cancelled")
TOUCHED = ("the owner acted", "the owner acted after the due time")


@dataclass(frozen=True)
class SlaLine:
    """The SLA timers of one rep or pool."""

    by: str
    """``rep`` or ``pool``."""
    group: str
    started: int
    ended: dict[str, int]
    """How many ended each way, for each of :data:`ENDINGS`."""
    running: int
    median_business_hours_to_touch: float | None

    @property
    def ended_total(self) -> int:
        return sum(self.ended.values())

    def rate(self, ending: str) -> float | None:
        return share(self.ended[ending], self.ended_total)


def sla_compliance(
    connection: Connection, period: Period, calendar: Callable[[str], BusinessCalendar]
) -> list[SlaLine]:
    """Lines by rep, then by pool; ``calendar`` gives a timer's calendar by name."""
    timers = SLA_TIMERS.c
    cutoff = instant(period.cutoff)
    # Started and ended up to now when the period ends later: a timer started or ended after
    # now has not (a store of historical data read with an earlier --now holds such timers).
    started = and_(timers.started_at >= instant(period.start), timers.started_at < cutoff)
    ended = and_(timers.status != "running", timers.closed_at < cutoff)
    groups = {
        "rep": select(REPS.c.name).where(REPS.c.id == timers.owner_id).scalar_subquery(),
        "pool": pool_of(timers.lead_id, cutoff, since=timers.started_at),
    }
    labelled = {by: func.coalesce(expression, NO_GROUP) for by, expression in groups.items()}
    hours = _touch_hours(connection, labelled, started, ended, calendar)
    lines: list[SlaLine] = []
    for by, expression in labelled.items():
        grp = expression.label("grp")
        counted = [
            func.sum(case((and_(ended, timers.status == ending), 1), else_=0)) for ending in ENDINGS
        ]
        query = (
            select(grp, func.count(), *counted, func.sum(case((ended, 0), else_=1)))
            .where(started)
            .group_by(grp)
            .order_by(grp)
        )
        for row in connection.execute(query):
            touches = hours[by].get(row[0])
            lines.append(
                SlaLine(
                    by=by,
                    group=row[0],
                    started=int(row[1]),
                    ended={e: int(row[2 + i] or 0) for i, e in enumerate(ENDINGS)},
                    running=int(row[2 + len(ENDINGS)] or 0),
                    median_business_hours_to_touch=median(touches) if touches else None,
                )
            )
    return lines


def _touch_hours(
    connection: Connection,
    groups: dict[str, Any],
    started: Any,
    ended: Any,
    calendar: Callable[[str], BusinessCalendar],
) -> dict[str, dict[str, list[float]]]:
    """Grouping (``rep``, ``pool``) -> group -> the business hours to the owner's touch of each
    timer it closed: each timer's hours worked out once, for every grouping."""
    timers = SLA_TIMERS.c
    query = select(*groups.values(), timers.calendar, timers.started_at, timers.closed_at).where(
        started,
        ended,
        or_(*(timers.close_reason == reason for reason in TOUCHED)),
    )
    hours: dict[str, dict[str, list[float]]] = {by: defaultdict(list) for by in groups}
    by_calendar: dict[str, list[Any]] = defaultdict(list)
    for row in connection.execute(query):
        by_calendar[row[-3]].append(row)
    for name, rows in by_calendar.items():
        # The calendar's intervals over all its timers' dates once, not a walk per timer.
        instants = [at for row in rows for at in row[-2:]]
        timeline = BusinessTimeline(calendar(name), min(instants), max(instants))
        for *named, _, start, touched in rows:
            spent = timeline.between(start, touched).total_seconds() / 3600
            for by, group in zip(groups, named, strict=True):
                hours[by][group].append(spent)
    return hours
