"""How the report reads the store, beyond its figures (tests/test_report.py has those): the
period's entries counted once, and SQLite's file mapped for the report's readers alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event

from leadflow.funnel.period import Grouping, Period
from leadflow.funnel.report import build_report
from leadflow.funnel.snapshot import MAPPED_BYTES, report_read
from leadflow.funnel.stages import entries_by_stage
from tests.test_report import END, T0, seed

PERIOD_ENTRIES = "SELECT stage_changes.lead_id AS subject_id, stage_changes.to_stage AS stage,"
"""What a statement counting the period's entries in one range (not week by week) reads."""


@pytest.fixture
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every statement the engine's connections run, in order."""
    found: list[str] = []

    def record(*args: Any) -> None:
        found.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    yield found
    event.remove(engine, "before_cursor_execute", record)


EXPECTED = {
    Grouping.none: {
        ("all", "lead"): 3,
        ("all", "mql"): 5,
        ("all", "sql"): 1,
        ("all", "recycled"): 1,
    },
    Grouping.week: {
        ("2026-02-23", "mql"): 1,
        ("2026-03-02", "lead"): 3,
        ("2026-03-02", "mql"): 4,
        ("2026-03-02", "sql"): 1,
        ("2026-03-02", "recycled"): 1,
    },
    Grouping.source: {
        ("ads", "lead"): 1,
        ("seo", "lead"): 2,
        ("ads", "mql"): 2,
        ("seo", "mql"): 1,
        ("(none)", "mql"): 2,
        ("ads", "sql"): 1,
        ("(none)", "recycled"): 1,
    },
}
"""The entries of the two weeks from Monday 23 February 09:00: L4's first MQL entry in the
first, the others in the second (tests/test_report.py's history)."""


@pytest.mark.parametrize(
    ("by", "counted"), [(Grouping.none, 0), (Grouping.week, 0), (Grouping.source, 1)]
)
def test_the_periods_entries_are_its_weeks(
    engine: Engine, make_settings: Any, statements: list[str], by: Grouping, counted: int
) -> None:
    """Not grouped and by week, the report's entries are its weekly entries (added up, not
    grouped): the period is not counted again in one range; grouped otherwise (by source), it
    is, once. Either way they are what ``entries_by_stage`` counts."""
    seed(engine)
    period = Period(T0 - timedelta(days=7), END, by)
    report = build_report(engine, make_settings(), period, period.end)
    assert sum(PERIOD_ENTRIES in statement for statement in statements) == counted
    assert report.entries == EXPECTED[by]
    with report_read(engine) as connection:
        assert entries_by_stage(connection, period) == EXPECTED[by]


def test_the_families_split_between_the_two_connections(engine: Engine, make_settings: Any) -> None:
    """The SLA is read on the first connection (the calling thread), the deals' families
    (here: the open value by stage) on the second, with the times in stage: each connection's
    share about the same at a million leads."""
    seed(engine)
    by_thread: dict[bool, list[str]] = {True: [], False: []}

    def record(*args: Any) -> None:
        by_thread[threading.current_thread() is threading.main_thread()].append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        build_report(engine, make_settings(), Period(T0, END), END)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    first, second = (" ".join(by_thread[main]) for main in (True, False))
    assert "FROM sla_timers" in first
    assert "FROM sla_timers" not in second
    # The open value by stage reads each deal's stage as of the report (its history, else the
    # stage of a deal still open).
    assert "THEN deals.stage END" in second
    assert "THEN deals.stage END" not in first


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_sqlite_maps_the_file_for_the_report_only(engine: Engine) -> None:
    """A report's SQLite reader maps the file (``mmap_size``); the connection goes back to
    the pool unmapped, as the daemon's other work had it."""
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        unmapped = raw.execute("PRAGMA mmap_size").fetchone()[0]
    assert unmapped == 0
    with report_read(engine) as reading:
        assert reading.connection.driver_connection is raw  # the pool's one connection
        mapped = reading.exec_driver_sql("PRAGMA mmap_size").scalar_one()
        assert mapped == min(MAPPED_BYTES, _mapping_limit(raw))
        assert mapped > 0
    with engine.connect() as connection:
        assert connection.connection.driver_connection is raw
        assert raw.execute("PRAGMA mmap_size").fetchone()[0] == 0


def _mapping_limit(raw: Any) -> int:
    """The most this SQLite build maps (``SQLITE_MAX_MMAP_SIZE``): what it caps a larger
    ``mmap_size`` to."""
    options = [row[0] for row in raw.execute("PRAGMA compile_options")]
    for option in options:
        if option.startswith("MAX_MMAP_SIZE="):
            return int(option.split("=", 1)[1], 0)
    return 0x7FFF0000  # SQLite's default on Linux
