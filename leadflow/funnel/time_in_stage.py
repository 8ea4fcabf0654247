"""Time in stage: exact median and 90th percentile of the stays that ended in the period, and,
counted apart, the stays still open at the period's end with their age as of
:attr:`~leadflow.funnel.period.Period.as_of` and the stalls among them (open longer than the
stage's stall age).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, case, func, literal, or_, select

from leadflow.funnel.groups import deal_group_of, lead_group
from leadflow.funnel.history import recorded_stages, stays
from leadflow.funnel.period import ALL, NO_GROUP, Period
from leadflow.funnel.sql import instant, quantiles
from leadflow.store.types import days_between

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
    stages = recorded_stages(connection) if dialect == "sqlite" else None
    if stages == []:
        return []
    # Up to now (itself included) when the period ends later, not to its end: a stay left
    # after now is open now, and its age is never negative (one entered after now does not
    # exist yet).
    rows = stays(subject, period.cutoff, dialect, excluding=terminal)
    # The stays hold the entries made before the cutoff, each left (if it was) at the next of
    # them, so before it too: a stay ended in the period if it was left at or after
    # its start, and is open at the as-of instant if it was not left (a stay is one or the
    # other or neither). One pass: the ended ones and the open ones side by side, measured and
    # ranked together.
    ended = rows.c.left_at >= instant(period.start)
    still_open = rows.c.left_at.is_(None)
    # Grouped by week, an ended stay is in the week it ended, an open one in the week it began.
    grouping = _group(
        connection, period, subject, rows, case((ended, rows.c.left_at), else_=rows.c.entered)
    )
    # An open stay's days are its age as of now, or of the period's end if it is past: a period
    # that includes today ends at the next midnight, where a lead imported a minute ago would
    # be hours old and stalled.
    as_of = instant(period.as_of)
    days = days_between(dialect, func.coalesce(rows.c.left_at, as_of), rows.c.entered)
    # On SQLite the stage is measured as its number in ``stages``, which the percentiles sort
    # cheaper than its name: every stage a stay can be in is there, read in this transaction.
    stage: Any = rows.c.stage
    if stages is not None:
        stage = case({name: number for number, name in enumerate(stages)}, value=rows.c.stage)
    timed = select(
        case((still_open, literal(OPEN)), else_=literal(ENDED)).label("side"),
        *([grouping.label("grp")] if grouping is not None else []),
        rows.c.stage.label("name"),
        stage.label("stage"),
        days.label("days"),
    ).where(or_(ended, still_open))
    # Measured once: inlined, either store would work out the days again for the stall below.
    stay = timed.offset(0).subquery("timed")
    default = period.default_stall.total_seconds() / 86400
    named = [(stay.c.name == name, days) for name, days in _stalls(period).items()]
    threshold: Any = case(*named, else_=default) if named else literal(default)
    stalling = and_(stay.c.side == OPEN, stay.c.days > threshold)
    groups = ["side", *(["grp"] if grouping is not None else []), "stage"]
    measured = select(
        *(stay.c[name] for name in groups),
        stay.c.days,
        case((stalling, 1), else_=0).label("stalled"),
    ).subquery("measured")
    numbered = {"side": 2, "stage": len(stages)} if stages is not None else None
    query = quantiles(
        measured, groups, "days", [50, 90], sums=["stalled"], dialect=dialect, numbered=numbered
    )
    stats: dict[int, dict[tuple[str, str], Any]] = {ENDED: {}, OPEN: {}}
    for r in connection.execute(query):
        name = stages[r.stage] if stages is not None else r.stage
        stats[r.side][(r.grp if grouping is not None else ALL, name)] = r
    closed_stats, open_stats = stats[ENDED], stats[OPEN]
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
                stalled=int(still.stalled or 0) if still else 0,
            )
        )
    return found


def _stalls(period: Period) -> dict[str, float]:
    return {stage: period.stall_days(stage) for stage in period.stall_after}


def _group(connection: Connection, period: Period, subject: str, rows: Any, at: Any) -> Any:
    """The group of a stay (its event at ``at``), with nulls as :data:`NO_GROUP`; None when the
    report is not grouped (every stay is in :data:`ALL`)."""
    dialect = connection.dialect.name
    end = instant(period.cutoff)
    if subject == "lead":
        expression = lead_group(period.by, rows.c.subject_id, rows.c.owner_id, at, dialect, end)
    else:
        expression = deal_group_of(period.by, rows.c.subject_id, at, dialect, end)
    return None if expression is None else func.coalesce(expression, literal(NO_GROUP))
