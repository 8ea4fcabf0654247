"""The pipeline: win rate, average won cycle and amount, open opportunities, sales velocity,
open value by stage (docs/report.md).

The average won cycle is the recycling rule's average sales cycle
(:mod:`leadflow.engine.sales_cycle`): the same ``closed_at - engaged_at`` arithmetic over won
deals with both times, here over the deals closed in the period instead of the rule's window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, case, func, or_, select

from leadflow.engine.sales_cycle import _cycle_days
from leadflow.funnel.groups import deal_group, labelled
from leadflow.funnel.history import is_entry
from leadflow.funnel.period import Period
from leadflow.funnel.sql import instant, share
from leadflow.store.tables import DEALS, STAGE_CHANGES


@dataclass(frozen=True)
class PipelineLine:
    """The pipeline of one group (product, segment, rep...)."""

    group: str
    won: int
    lost: int
    won_amount: float
    average_won_amount: float | None
    average_won_cycle_days: float | None
    cycle_deals: int
    """Won deals with an engaged time: what the average cycle is over."""
    open_opportunities: int
    open_value: float | None
    """The open opportunities' summed amount; None when some are open and none has an amount
    (a CRM export that values deals only once they close), not a pipeline worth 0."""

    @property
    def win_rate(self) -> float | None:
        return share(self.won, self.won + self.lost)

    @property
    def velocity_per_day(self) -> float | None:
        """open opportunities x win rate x average won amount / average won cycle (days)."""
        rate, amount, cycle = self.win_rate, self.average_won_amount, self.average_won_cycle_days
        if rate is None or amount is None or not cycle:
            return None
        return self.open_opportunities * rate * amount / cycle


def pipeline(connection: Connection, period: Period) -> list[PipelineLine]:
    """One line per group of the deals closed in the period or open at its end (as of now
    when it ends later: :attr:`~leadflow.funnel.period.Period.as_of`; a deal closed after now
    is open, its close not counted)."""
    dialect = connection.dialect.name
    start, cutoff = instant(period.start), instant(period.cutoff)
    deals = DEALS.c
    closed_in = and_(deals.closed_at >= start, deals.closed_at < cutoff)
    won = and_(closed_in, deals.outcome == "won")
    with_cycle = and_(won, deals.engaged_at.is_not(None))
    open_at_end = _open_at(cutoff)
    # By week, a deal is in the week of its close; one open at the as-of instant has none yet.
    closed = case((deals.closed_at < cutoff, deals.closed_at), else_=None)
    grp = labelled(deal_group(period.by, DEALS, closed, dialect, cutoff))
    query = (
        select(
            grp,
            func.sum(case((won, 1), else_=0)),
            func.sum(case((and_(closed_in, deals.outcome == "lost"), 1), else_=0)),
            func.sum(case((won, deals.amount), else_=None)),
            func.avg(case((won, deals.amount), else_=None)),
            func.avg(case((with_cycle, _cycle_days(dialect)), else_=None)),
            func.sum(case((with_cycle, 1), else_=0)),
            func.sum(case((open_at_end, 1), else_=0)),
            func.sum(case((open_at_end, _open_amount()), else_=None)),
        )
        .where(or_(closed_in, open_at_end))
        .group_by(grp)
        .order_by(grp)
    )
    return [
        PipelineLine(
            group=row[0],
            won=int(row[1] or 0),
            lost=int(row[2] or 0),
            won_amount=float(row[3] or 0),
            average_won_amount=_float(row[4]),
            average_won_cycle_days=_float(row[5]),
            cycle_deals=int(row[6] or 0),
            open_opportunities=int(row[7] or 0),
            open_value=_open_value(int(row[7] or 0), row[8]),
        )
        for row in connection.execute(query)
    ]


def _open_value(opportunities: int, summed: object) -> float | None:
    """0 with nothing open; the sum of the known amounts; None when none is known."""
    return 0.0 if opportunities == 0 else _float(summed)


def open_value_by_stage(
    connection: Connection, period: Period
) -> dict[str, tuple[int, float | None]]:
    """Stage -> (open deals, their known amounts summed, None if none is known) at the
    period's end (as of now if it ends later), by each deal's stage then (see
    :func:`_stage_at`)."""
    cutoff = instant(period.cutoff)
    stage = labelled(_stage_at(cutoff))
    query = (
        select(stage, func.count(), func.sum(_open_amount()))
        .where(_open_at(cutoff))
        .group_by(stage)
        .order_by(stage)
    )
    return {row[0]: (int(row[1]), _float(row[2])) for row in connection.execute(query)}


def _stage_at(cutoff: Any) -> ColumnElement[Any]:
    """A deal's stage as of the report (its :attr:`~leadflow.funnel.period.Period.cutoff`):
    its last entry before the cutoff in the history (a deal closed later was in its pipeline
    stage then, not its outcome); its stage now when the history has none and it is still open
    (a deal stored before the history was kept)."""
    changes = STAGE_CHANGES.c
    recorded = (
        select(changes.to_stage)
        .where(changes.deal_id == DEALS.c.id, is_entry(), changes.at < cutoff)
        .order_by(changes.at.desc(), changes.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return func.coalesce(recorded, case((DEALS.c.closed_at.is_(None), DEALS.c.stage)))


def _open_amount() -> ColumnElement[Any]:
    """A deal's amount as an open opportunity: the store keeps a deal's amount, not its history,
    and once the deal is closed that is what it closed at (a lost deal of the Maven export: 0),
    not what it was worth open. So a deal open at the as-of instant but closed since counts as
    an opportunity without a known amount."""
    return case((DEALS.c.closed_at.is_(None), DEALS.c.amount), else_=None)


def _open_at(cutoff: Any) -> ColumnElement[bool]:
    """A deal open as of the report: engaged before ``cutoff`` and not closed before it."""
    deals = DEALS.c
    return and_(
        deals.engaged_at.is_not(None),
        deals.engaged_at < cutoff,
        or_(deals.closed_at.is_(None), deals.closed_at >= cutoff),
    )


def _float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
