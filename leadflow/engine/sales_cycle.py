"""The average sales cycle (docs/rules.md): mean of ``closed_at - engaged_at`` over deals won in a
trailing window, per group when asked, a group with too few deals falling back to the overall.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from leadflow.rule_language.conditions import CycleAverage, IdleBeyondAverageCycle
from leadflow.store.tables import DEALS
from leadflow.store.types import days_between


def _cycle_days(dialect: str) -> ColumnElement[Any]:
    return days_between(dialect, DEALS.c.closed_at, DEALS.c.engaged_at)


def average_cycle(
    session: Session, condition: IdleBeyondAverageCycle, now: datetime
) -> CycleAverage:
    """The averages ``condition`` compares against, as of ``now``."""
    dialect = session.get_bind().dialect.name
    days = _cycle_days(dialect)
    group = condition.group_by.sql(DEALS) if condition.group_by is not None else None
    won_in_window = and_(
        DEALS.c.outcome == "won",
        DEALS.c.engaged_at.is_not(None),
        DEALS.c.closed_at.is_not(None),
        DEALS.c.closed_at >= now - condition.window,
        DEALS.c.closed_at <= now,
    )
    columns = [func.sum(days), func.count()]
    query = select(*columns).where(won_in_window)
    if group is not None:
        query = select(group, *columns).where(won_in_window).group_by(group)
    total_days, total_deals = 0.0, 0
    groups: dict[str, tuple[float, int]] = {}
    for row in session.execute(query):
        summed, count = (row[1], row[2]) if group is not None else (row[0], row[1])
        if not count:
            continue
        total_days += float(summed)
        total_deals += int(count)
        if group is not None and row[0] is not None and count >= condition.min_deals:
            groups[str(row[0])] = (float(summed) / count, int(count))
    overall = total_days / total_deals if total_deals else None
    return CycleAverage(overall_days=overall, overall_deals=total_deals, groups=groups)


def averages_for(
    session: Session, conditions: list[IdleBeyondAverageCycle], now: datetime
) -> Mapping[IdleBeyondAverageCycle, CycleAverage]:
    return {condition: average_cycle(session, condition, now) for condition in conditions}
