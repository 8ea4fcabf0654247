"""A period that starts far back costs what its data costs, not what its length would.

The tester's case (t2report D1): on the Maven export (8,800 deals, 85 leads),
``leadflow report --from 0001-01-01 --to 2017-12-31`` took 62 s and 740 MB for three rows, and
the dashboard's ``/ui/funnel?from=0001-01-01&to=9998-12-31`` 89 s: the entries by week counted
every week from the year 1 (105,000 statements' worth of weeks), most of them empty.

Read on the fixture of :mod:`tests.test_report_now_in_past` (its history runs from 20 days
before T0 to 12 days after it; now is T0 + 7 days): the report from the year 1 is the report
from 100 days before T0, figure for figure, and runs the same statements.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, event

from leadflow.dashboard.funnel_page import period_figures
from leadflow.funnel.period import Grouping, Period
from leadflow.funnel.report import build_report
from tests.test_report_now_in_past import END, NOW, OLD, T0, seed

YEAR_ONE = datetime(1, 1, 1, tzinfo=UTC)


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements ``engine`` runs while the block runs (both readers' included), but
    the ``BEGIN`` SQLite's connections send."""
    ran: list[str] = []

    def record(*args: Any) -> None:
        if args[2] != "BEGIN":
            ran.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield ran
    finally:
        event.remove(engine, "before_cursor_execute", record)


def figures(report: Any) -> dict[str, Any]:
    """Every figure of a report: all but its period and when it was made."""
    kept = dataclasses.asdict(report)
    del kept["period"], kept["generated_at"]
    return kept


@pytest.fixture
def settings(engine: Engine, make_settings: Callable[..., Any]) -> Any:
    seed(engine)
    return make_settings(**{"calendar.timezone": "UTC"})


@pytest.mark.parametrize("by", [Grouping.none, Grouping.week, Grouping.rep])
def test_a_period_from_the_year_one_is_the_data_bounded_one(
    engine: Engine, settings: Any, by: Grouping
) -> None:
    """From the year 1 or from 100 days before T0 (before the history's first entry): the same
    figures, read by the same number of statements (before the fix: 1,056 more for the weeks
    from the year 1, a hundred weeks per statement, and about 25 s of SQLite's CPU here)."""
    with statements(engine) as bounded_ran:
        bounded = build_report(engine, settings, Period(OLD, END, by), NOW)
    with statements(engine) as far_ran:
        far = build_report(engine, settings, Period(YEAR_ONE, END, by), NOW)
    assert figures(far) == figures(bounded)
    assert len(far_ran) == len(bounded_ran)
    # The figures are the fixture's (tests/test_report_now_in_past.py): the entries by now.
    if by is Grouping.none:
        assert far.entries == {("all", "lead"): 2, ("all", "mql"): 1}
    if by is Grouping.week:
        assert far.entries == {("2026-03-02", "lead"): 2, ("2026-03-02", "mql"): 1}


def test_the_weeks_counted_are_those_of_the_entries(engine: Engine, settings: Any) -> None:
    """The entries by week, from the year 1 to the calendar's last usable day, read at now:
    the one week holding an entry by now (L1 and L2 into lead at T0 + 1 day, L1 into mql at
    T0 + 2), counted by one statement after the look-up of the first and last entries."""
    period = Period(YEAR_ONE, datetime(9998, 12, 31, tzinfo=UTC), Grouping.week, now=NOW)
    from leadflow.funnel.stages import entries_by_stage

    with engine.connect() as connection, statements(engine) as ran:
        found = entries_by_stage(connection, period)
    assert found == {("2026-03-02", "lead"): 2, ("2026-03-02", "mql"): 1}
    assert len(ran) == 2
    assert ran[1].count("UNION ALL") == 0  # the week of 2 March alone


def test_an_empty_far_back_period_reads_no_week(engine: Engine, settings: Any) -> None:
    """From the year 1 to the day before the first lead entry: no entry, so no week is read."""
    period = Period(YEAR_ONE, T0, Grouping.week, now=NOW)
    from leadflow.funnel.stages import entries_by_stage

    with engine.connect() as connection, statements(engine) as ran:
        assert entries_by_stage(connection, period) == {}
    assert len(ran) == 1


def test_the_dashboard_period_from_the_year_one(engine: Engine, settings: Any) -> None:
    """The dashboard's ``/ui/funnel?from=0001-01-01&to=9998-12-31`` at now: the tables and
    charts of the period from 100 days before T0, by the same number of statements."""
    with statements(engine) as bounded_ran:
        bounded = period_figures(engine, settings, OLD.date(), date(9998, 12, 31), NOW)
    with statements(engine) as far_ran:
        far = period_figures(engine, settings, date(1, 1, 1), date(9998, 12, 31), NOW)
    assert far == bounded
    assert len(far_ran) == len(bounded_ran)
    entered = next(table for table in far.tables if table.name == "stage_entries")
    assert entered.rows == (("all", "lead", "2"), ("all", "mql", "1"))
