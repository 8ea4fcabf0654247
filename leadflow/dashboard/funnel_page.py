"""The Funnel page's numbers: the stage counts now, and ``leadflow report`` for a period.

The stage counts are read on every request (:func:`stage_counts`, one indexed query); the
period's figures (:func:`period_figures`) are the page's costly part, served from a snapshot
(:mod:`leadflow.dashboard.funnel_snapshots`). The period's metrics are the report's
own (``leadflow.funnel``: :func:`~leadflow.funnel.report.build_report` and its
:func:`~leadflow.funnel.sections.sections`), so the page and ``leadflow report --from --to``
show the same figures from one implementation; the page formats them as the report's table does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from leadflow.dashboard.funnel_charts import ChartView, chart_views
from leadflow.errors import UserInputError
from leadflow.settings import Settings
from leadflow.store.status import leads_by_stage

DEFAULT_DAYS = 7
"""Without ``from``/``to`` the page shows the last seven days, today included."""
CHART_SECTIONS = ("weekly_conversion",)
"""Rows the report keeps for its charts: the page shows their chart, not their table."""


@dataclass(frozen=True)
class ReportTable:
    name: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    """Each value as the report's table shows it (rates as percentages to one decimal, other
    decimals to two places)."""
    figures: tuple[bool, ...] = ()
    """Per column: a figure (right-aligned) rather than a name."""
    notes: tuple[str, ...] = ()
    """What the table says under itself (the rows it leaves out, a rate above 100 %), as
    ``leadflow report``'s tables do."""


@dataclass(frozen=True)
class PeriodFigures:
    """``leadflow report --from --to`` of one period as the page shows it: what a snapshot
    keeps (:mod:`leadflow.dashboard.funnel_snapshots`)."""

    tables: tuple[ReportTable, ...] = ()
    """The report, section by section."""
    charts: tuple[ChartView, ...] = ()
    """The same report's charts (``--format html``'s four)."""


@dataclass(frozen=True)
class FunnelNumbers:
    stages: tuple[tuple[str, int], ...]
    """The progression's stages in order, then the side stages, then any other stored stage."""
    first_day: date
    last_day: date
    tables: tuple[ReportTable, ...] = ()
    """``leadflow report --from first_day --to last_day``, section by section."""
    charts: tuple[ChartView, ...] = ()
    """The same report's charts (``--format html``'s four)."""

    @classmethod
    def of(
        cls,
        stages: tuple[tuple[str, int], ...],
        first: date,
        last: date,
        figures: PeriodFigures | None,
    ) -> FunnelNumbers:
        """The page's numbers; without ``figures`` (not computed yet) the stage counts alone."""
        if figures is None:
            return cls(stages, first, last)
        return cls(stages, first, last, figures.tables, figures.charts)

    @property
    def total(self) -> int:
        return sum(count for _, count in self.stages)


def period_days(given_from: str | None, given_to: str | None, today: date) -> tuple[date, date]:
    """The page's period: ISO days, both included; UserInputError for anything else, and for a
    period starting after ``today`` (the clock's day), which ``leadflow report --now`` refuses
    too (its figures would all be empty: nothing of it has happened)."""
    try:
        last = date.fromisoformat(given_to) if given_to else today
        first = (
            date.fromisoformat(given_from)
            if given_from
            else last - timedelta(days=DEFAULT_DAYS - 1)
        )
    except ValueError:
        msg = "from and to are days like 2026-03-02"
        raise UserInputError(msg) from None
    if last < first:
        msg = f"to {last} is before from {first}"
        raise UserInputError(msg)
    if first > today:
        msg = f"from {first} is after today {today}: the period has not begun"
        raise UserInputError(msg)
    from leadflow.funnel.period import day_start

    day_start(last, after=True)  # refuses the calendar's last day, whose end no clock holds
    return first, last


def ends_later_note(first: date, last: date, computed_at: datetime) -> str | None:
    """The line ``leadflow report`` and its HTML print under their heading when the period
    ends after the instant it was read at ("As of ... (the period ends later): ..."), for
    ``first`` to ``last`` computed at ``computed_at``; None when the period had ended."""
    from leadflow.funnel.period import Period, day_start
    from leadflow.funnel.text import as_of_text

    period = Period(day_start(first), day_start(last, after=True), now=computed_at)
    return as_of_text(period) if period.ends_later else None


def funnel_numbers(
    engine: Engine, settings: Settings, first: date, last: date, now: datetime
) -> FunnelNumbers:
    """Leads per stage now, and the report of ``first`` to ``last`` (days, included)."""
    figures = period_figures(engine, settings, first, last, now)
    return FunnelNumbers.of(stage_counts(engine, settings), first, last, figures)


def stage_counts(engine: Engine, settings: Settings) -> tuple[tuple[str, int], ...]:
    """Leads per stage now: the progression in order, the side stages, then any other."""
    stages = settings.stages
    counts = leads_by_stage(engine)
    named = (*stages.progression, *stages.side)
    ordered = [(stage, counts.get(stage, 0)) for stage in named]
    ordered += sorted((stage, n) for stage, n in counts.items() if stage not in named)
    return tuple(ordered)


def period_figures(
    engine: Engine, settings: Settings, first: date, last: date, now: datetime
) -> PeriodFigures:
    """The report of ``first`` to ``last`` (days, included) run at ``now``, as the page shows
    it: the tables and the charts' figures."""
    from leadflow.funnel.period import Period, day_start
    from leadflow.funnel.report import build_report
    from leadflow.funnel.sections import sections
    from leadflow.funnel.text import TITLES

    period = Period(day_start(first), day_start(last, after=True))
    report = build_report(engine, settings, period, now)
    rows = sections(report)
    tables = tuple(
        _table(name, TITLES.get(name, name), section)
        for name, section in rows.items()
        if name not in CHART_SECTIONS
    )
    return PeriodFigures(tables, tuple(chart_views(report, rows)))


def _table(name: str, title: str, section: list[dict[str, Any]]) -> ReportTable:
    from leadflow.funnel.text import TEXT_COLUMNS, for_people, shown

    rows, notes = for_people(name, section)
    columns = tuple(section[0]) if section else ()
    return ReportTable(
        name,
        title,
        tuple(column.replace("_", " ") for column in columns),
        tuple(tuple(shown(row.get(column), column) for column in columns) for row in rows),
        tuple(column not in TEXT_COLUMNS for column in columns),
        tuple(notes),
    )
