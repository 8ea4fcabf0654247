"""The Funnel page's as-of stays before every write in flight, on SQLite and PostgreSQL.

t2report F1: the mql-assignment run stamped its 28 stage changes 00:36:51.094 and committed
them ~60 ms after the warmer read the store "as of 00:36:51.150": the page showed 0 MQLs in the
period while ``leadflow report --now 00:36:51.150`` counted 28. Pins: a snapshot computed while
a funnel tick's rows stamped at T are not yet committed is as of the instant just before T and
equals the report run at that instant after the commit (exact tables), and the page names that
instant in its ``leadflow report ... --now``; once the tick has committed what it did, the
daemon outdates the snapshots and computes the default period again, now with the MQL; a run
that starts at the snapshot's own instant while the report is read has it computed again.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert
from structlog.testing import capture_logs

from leadflow.clock import SettableClock
from leadflow.dashboard.funnel_page import PeriodFigures, period_figures
from leadflow.dashboard.funnel_snapshots import FunnelSnapshots, funnel_snapshots
from leadflow.engine.runtime import Runtime, StopSignal
from leadflow.rule_language.model import RuleSet
from leadflow.service.daemon import Daemon
from leadflow.service.daemon_ticks import Evaluator
from leadflow.store.tables import STAGE_CHANGES
from tests.conftest import T0
from tests.dashboard_support import Browser, dashboard_settings, seed, seed_stage_history
from tests.http_support import build_app, runtime_for

WEEK = (date(2026, 2, 24), date(2026, 3, 2))
"""The daemon's default period at T0 (the last seven days, today included)."""
MICRO = timedelta(microseconds=1)
WITHOUT = [("all", "lead", "1"), ("all", "mql", "2"), ("all", "sql", "1")]
WITH = [("all", "lead", "1"), ("all", "mql", "3"), ("all", "sql", "1")]
"""The period's stage entries without and with L3's MQL (tests.dashboard_support)."""


def _entries(figures: PeriodFigures) -> list[tuple[str, ...]]:
    return next(list(table.rows) for table in figures.tables if table.name == "stage_entries")


def _mql(connection: Any, at: datetime) -> None:
    connection.execute(
        insert(STAGE_CHANGES).values(
            lead_id=3, at=at, from_stage="lead", to_stage="mql", cause="rule"
        )
    )


class TestWritesInFlight:
    """A funnel tick's rows, stamped at its instant and committed after the read."""

    def test_snapshot_stays_before_the_tick_then_is_renewed(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """The tick stamps L3's MQL at 09:00 and holds its transaction open; the report read
        56 ms later is as of 08:59:59.999999 and equals the report run at that instant once the
        MQL is committed (mql 2); the page says ``--now 2026-03-02T08:59:59.999999Z``. The
        tick done, the daemon's renewal computes the week again as of 09:00:00.056: mql 3."""
        seed(engine)
        seed_stage_history(engine)
        settings = dashboard_settings(make_settings, **{"dashboard.funnel_wait": 0})
        runtime = runtime_for(engine, settings, clock)
        snapshots = funnel_snapshots(runtime)
        app, holder = build_app(runtime, funnel=snapshots)
        daemon = Daemon(runtime)
        daemon.funnel = snapshots
        stamped, go = threading.Event(), threading.Event()

        def assign(
            runtime: Runtime, rule_set: RuleSet, now: datetime, *, stop: StopSignal | None = None
        ) -> int:
            with engine.begin() as connection:
                _mql(connection, now)
                stamped.set()
                assert go.wait(60)  # committed once the snapshot has been read
            return 1

        evaluator = Evaluator(
            runtime, holder, steps=[("mql", assign)], on_written=daemon._renew_funnel
        )
        handled: list[dict[str, int]] = []
        tick = threading.Thread(target=lambda: handled.append(asyncio.run(evaluator.funnel_tick())))
        with capture_logs() as logs:
            tick.start()
            assert stamped.wait(60)
            clock.advance(timedelta(milliseconds=56))
            snapshots.look(*WEEK)
            assert snapshots.wait_idle(60)
            read = snapshots.kept(*WEEK)
            go.set()
            tick.join(60)
            assert snapshots.wait_idle(60)
        assert handled == [{"mql": 1}]
        assert read is not None
        assert read.as_of == T0 - MICRO
        assert read.started == T0 + timedelta(milliseconds=56)
        after_commit = period_figures(engine, runtime.settings, *WEEK, T0 - MICRO)
        assert read.figures == after_commit
        assert _entries(read.figures) == WITHOUT
        renewed = snapshots.kept(*WEEK)
        assert renewed is not None
        assert renewed.as_of == T0 + timedelta(milliseconds=56)
        assert renewed.figures == period_figures(engine, runtime.settings, *WEEK, renewed.as_of)
        assert _entries(renewed.figures) == WITH
        warming = [entry for entry in logs if entry["event"] == "funnel_report_warming"]
        assert warming == [
            {
                "event": "funnel_report_warming",
                "log_level": "info",
                "first": "2026-02-24",
                "last": "2026-03-02",
                "cause": "written",
            }
        ]
        ui = Browser(app)
        ui.login("vera")
        snapshots._entries[WEEK].snapshot = read  # the page as it was while the tick ran
        page = ui.get("/ui/funnel").text
        assert (
            "<code>leadflow report --from 2026-02-24 --to 2026-03-02 "
            "--now 2026-03-02T08:59:59.999999Z</code>"
        ) in page
        assert (
            "As of 2026-03-02T08:59:59.999999+00:00 (the period ends later): nothing after it "
            "is counted" in page
        )

    def test_a_run_at_the_snapshots_instant_has_it_computed_again(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """The clock held at 09:00: a run starts at 09:00 while the report as of 09:00 is read
        and commits after the read (mql 2). That reading is dropped and computed again: the
        snapshot as of 09:00 has the run's MQL, as ``leadflow report --now 09:00`` has."""
        seed(engine)
        seed_stage_history(engine)
        settings = dashboard_settings(make_settings)
        runtime = runtime_for(engine, settings, clock)
        calls: list[tuple[datetime, list[tuple[str, ...]]]] = []

        def compute(first: date, last: date, now: datetime) -> PeriodFigures:
            if calls:
                figures = period_figures(engine, runtime.settings, first, last, now)
            else:  # a run stamped at this very instant writes while the report is read
                with runtime.in_flight.writing() as at, engine.begin() as connection:
                    _mql(connection, at)
                    figures = period_figures(engine, runtime.settings, first, last, now)
            calls.append((now, _entries(figures)))
            return figures

        snapshots = FunnelSnapshots(
            compute, clock, timedelta(minutes=5), in_flight=runtime.in_flight
        )
        with capture_logs() as logs:
            snapshots.look(*WEEK)
            assert snapshots.wait_idle(60)
        assert calls == [(T0, WITHOUT), (T0, WITH)]
        snapshot = snapshots.kept(*WEEK)
        assert snapshot is not None
        assert snapshot.as_of == T0
        assert snapshot.figures == period_figures(engine, runtime.settings, *WEEK, T0)
        assert [entry["event"] for entry in logs] == [
            "funnel_report_overtaken",
            "funnel_report_computed",
        ]
