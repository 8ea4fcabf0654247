"""Time in stage: exact median and 90th percentile of the stays that ended in the period, and,
counted apart, the stays still open at the period's end with their age and the stalls among
them (open longer than the stage's stall age).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, case, func, literal, or_, select

from leadflow.funnel.groups import deal_group, labelled, lead_group
from leadflow.funnel.history import stays
from leadflow.funnel.period import Period
from leadflow.funnel.sql import days_between, instant, quantiles
from leadflow.store.tables import DEALS


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
    closed_group = _group(connection, period, subject, rows, rows.c.left_at)
    ended = (
        select(
            closed_group,
            rows.c.stage,
            days_between(dialect, rows.c.left_at, rows.c.entered).label("days"),
        )
        .where(rows.c.left_at >= instant(period.start), rows.c.left_at < end)
        .subquery("ended")
    )
    open_group = _group(connection, period, subject, rows, rows.c.entered)
    age = days_between(dialect, end, rows.c.entered)
    default = period.default_stall.total_seconds() / 86400
    named = [(rows.c.stage == stage, days) for stage, days in _stalls(period).items()]
    threshold: Any = case(*named, else_=default) if named else literal(default)
    still_open = and_(rows.c.entered < end, or_(rows.c.left_at.is_(None), rows.c.left_at >= end))
    opened = (
        select(
            open_group,
            rows.c.stage,
            age.label("days"),
            case((age > threshold, 1), else_=0).label("stalled"),
        )
        .where(still_open)
        .subquery("opened")
    )
    closed_stats = {
        (r.grp, r.stage): r
        for r in connection.execute(quantiles(ended, ["grp", "stage"], "days", [50, 90]))
    }
    open_stats = {
        (r.grp, r.stage): r
        for r in connection.execute(quantiles(opened, ["grp", "stage"], "days", [50]))
    }
    stalled = {
        (r[0], r[1]): int(r[2] or 0)
        for r in connection.execute(
            select(opened.c.grp, opened.c.stage, func.sum(opened.c.stalled)).group_by(
                opened.c.grp, opened.c.stage
            )
        )
    }
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
