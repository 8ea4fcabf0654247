"""Time in stage: exact median and 90th percentile of the stays that ended in the period, and,
counted apart, the stays still open at the period's end with their age and the stalls among
them (open longer than the stage's stall age).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, case, literal, or_, select

from leadflow.funnel.groups import deal_group, labelled, lead_group
from leadflow.funnel.history import stays
from leadflow.funnel.period import Period
from leadflow.funnel.sql import days_between, instant, quantiles
from leadflow.store.tables import DEALS

ENDED, OPEN = 0, 1
"""The side of a measured stay, as numbers: the percentiles sort by it, and numbers sort
cheaper than words."""


@dataclass(frozen=True)
class StageTime:
    """One stage of leads or deals, in one group."""

    subject: str
    group: str
    stage: str
    left: int
    """Stays in the stage that ended in the period (the median and p90 are theirs)."""
    median_days: float | None
    p90_days: float | None
    open: int
    """Stays still open at the period's end (entered before it, not left by it)."""
    open_median_age_days: float | None
    stalled: int
    """Open stays older than the stage's stall age."""


def stage_times(
    connection: Connection, period: Period, subject: str, terminal: tuple[str, ...]
) -> list[StageTime]:
    """Per (group, stage): the ended stays' median and p90 days, the open ones apart. A stage of
    ``terminal`` (a customer, a won deal) is where a stay ends for good: no time, no stall."""
    dialect = connection.dialect.name
    end = instant(period.end)
    every = stays(subject, period.end)
    rows = select(every).where(every.c.stage.not_in(terminal)).subquery("stays")
    # One pass over the stays: the ended ones and the open ones side by side (a stay is one or
    # the other or neither), measured and ranked together.
    ended = and_(rows.c.left_at >= instant(period.start), rows.c.left_at < end)
    still_open = and_(rows.c.entered < end, or_(rows.c.left_at.is_(None), rows.c.left_at >= end))
    # Grouped by week, an ended stay is in the week it ended, an open one in the week it began.
    event_at = case((ended, rows.c.left_at), else_=rows.c.entered)
    timed = select(
        case((ended, literal(ENDED)), else_=literal(OPEN)).label("side"),
        _group(connection, period, subject, rows, event_at),
        rows.c.stage,
        case(
            (ended, days_between(dialect, rows.c.left_at, rows.c.entered)),
            else_=days_between(dialect, end, rows.c.entered),
        ).label("days"),
    ).where(or_(ended, still_open))
    if dialect == "postgresql":
        # Measured once: inlined, PostgreSQL would work out an open stay's age (a numeric
        # EXTRACT) again for the stall below.
        timed = timed.offset(0)
    stay = timed.subquery("timed")
    # An open stay's days are its age (a stay is ended or open, never both).
    default = period.default_stall.total_seconds() / 86400
    named = [(stay.c.stage == stage, days) for stage, days in _stalls(period).items()]
    threshold: Any = case(*named, else_=default) if named else literal(default)
    stalling = and_(stay.c.side == OPEN, stay.c.days > threshold)
    measured = select(
        stay.c.side,
        stay.c.grp,
        stay.c.stage,
        stay.c.days,
        case((stalling, 1), else_=0).label("stalled"),
    ).subquery("measured")
    stats: dict[int, dict[tuple[str, str], Any]] = {ENDED: {}, OPEN: {}}
    query = quantiles(
        measured, ["side", "grp", "stage"], "days", [50, 90], sums=["stalled"], dialect=dialect
    )
    for r in connection.execute(query):
        stats[r.side][(r.grp, r.stage)] = r
    closed_stats, open_stats = stats[ENDED], stats[OPEN]
    stalled = {key: int(r.stalled or 0) for key, r in open_stats.items()}
    found = []
    for key in sorted(set(closed_stats) | set(open_stats)):
        done, still = closed_stats.get(key), open_stats.get(key)
        found.append(
            StageTime(
                subject=subject,
                group=key[0],
                stage=key[1],
                left=int(done.size) if done else 0,
                median_days=float(done.q50) if done else None,
                p90_days=float(done.q90) if done else None,
                open=int(still.size) if still else 0,
                open_median_age_days=float(still.q50) if still else None,
                stalled=stalled.get(key, 0),
            )
        )
    return found


def _stalls(period: Period) -> dict[str, float]:
    return {stage: period.stall_days(stage) for stage in period.stall_after}


def _group(connection: Connection, period: Period, subject: str, rows: Any, at: Any) -> Any:
    dialect = connection.dialect.name
    end = instant(period.end)
    if subject == "lead":
        return labelled(lead_group(period.by, rows.c.subject_id, rows.c.owner_id, at, dialect, end))
    deal = DEALS.alias("grouped_deal")
    expression = deal_group(period.by, deal, at, dialect, end)
    if expression is None:
        return labelled(None)
    return labelled(select(expression).where(deal.c.id == rows.c.subject_id).scalar_subquery())
