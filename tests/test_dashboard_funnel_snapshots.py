"""The Funnel page served from snapshots of its period's report, on SQLite and PostgreSQL.

Pins: the first request for a period starts its computation and shows the stage counts, a
"being computed" note and a self-reload (``<meta http-equiv="refresh">``, no script); once the
computation is done the page shows the figures with their as-of time and computing time, and
they equal ``leadflow report`` run at that instant; its chart images are served; a snapshot
younger than ``dashboard.funnel_refresh`` is served without computing again, even when the
store has changed; an older one is served with a note while one computation renews it; a
failed computation is shown on the page, and tried again once as old as a stale snapshot;
the store keeps a bounded number of periods and refuses a new one while every kept one is
being computed; the daemon warms the default period at start-up
and again when it is stale, and starts nothing after its stop.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Engine, insert, text
from structlog.testing import capture_logs

from leadflow.clock import SettableClock
from leadflow.dashboard.funnel_page import PeriodFigures, period_figures
from leadflow.dashboard.funnel_snapshots import FunnelSnapshots, funnel_snapshots
from leadflow.engine.runtime import Runtime
from leadflow.service.daemon import Daemon
from leadflow.settings import Settings
from leadflow.store.tables import STAGE_CHANGES
from tests.conftest import T0
from tests.dashboard_support import HOUR, Browser, dashboard_settings, seed, seed_stage_history
from tests.http_support import build_app, runtime_for
from tests.mail_support import free_port

FIRST, LAST = date(2026, 3, 1), date(2026, 3, 2)
PERIOD = "/ui/funnel?from=2026-03-01&to=2026-03-02"
RELOAD = '<meta http-equiv="refresh" content="3">'
COMPUTING = "The report for this period is being computed"
AS_OF = re.compile(r"Figures as of (\S+ \S+ UTC), computed in ([0-9.]+ s):")
REPORT_TABLE = re.compile(r'<table class="report" id="([a-z_]+)">(.*?)</table>', re.S)


def _page(
    engine: Engine, make_settings: Any, clock: SettableClock, **overrides: Any
) -> tuple[Browser, FunnelSnapshots, Settings]:
    """A signed-in viewer on an app whose Funnel page never waits (unless told otherwise)."""
    seed(engine)
    seed_stage_history(engine)
    values = {"dashboard.funnel_wait": 0, **overrides}
    settings = dashboard_settings(make_settings, **values)
    runtime = runtime_for(engine, settings, clock)
    snapshots = funnel_snapshots(runtime)
    app, _holder = build_app(runtime, funnel=snapshots)
    ui = Browser(app)
    ui.login("vera")
    return ui, snapshots, runtime.settings


def _tables(page: str) -> dict[str, str]:
    return dict(REPORT_TABLE.findall(page))


def _expected_tables(figures: PeriodFigures) -> dict[str, list[tuple[str, ...]]]:
    return {table.name: list(table.rows) for table in figures.tables}


def _shown_rows(page: str) -> dict[str, list[tuple[str, ...]]]:
    """Each report table's body rows as the page shows them (cells unescaped)."""
    from html import unescape

    shown = {}
    for name, body in _tables(page).items():
        rows = re.findall(r"<tr>((?:<td[^>]*>.*?</td>)+)</tr>", body)
        shown[name] = [
            tuple(unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", r)) for r in rows
        ]
        if shown[name] == [("Nothing in the period.",)]:
            shown[name] = []
    return shown


def _add_mql(engine: Engine, lead: int, at: Any) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(STAGE_CHANGES).values(
                lead_id=lead, at=at, from_stage="lead", to_stage="mql", cause="rule"
            )
        )


class TestFirstRequest:
    """A period never computed: the stage counts now, the report when it is done."""

    def test_computing_then_the_reports_figures(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """First answer: counts, the note, the reload, no report table; then the figures as of
        09:00 UTC, equal to the report run then, and their chart images."""
        ui, snapshots, settings = _page(engine, make_settings, clock)
        first = ui.get(PERIOD)
        assert first.status_code == 200
        assert RELOAD in first.text
        assert f"{COMPUTING}; this page reloads itself." in first.text
        assert '<th scope="row">mql</th>' in first.text  # the stage counts, now
        assert _tables(first.text) == {}
        assert "<img" not in first.text
        assert snapshots.wait_idle(60)

        second = ui.get(PERIOD)
        assert RELOAD not in second.text
        assert COMPUTING not in second.text
        found = AS_OF.search(second.text)
        assert found is not None
        assert found.group(1) == "2026-03-02 09:00 UTC"
        look = snapshots.look(FIRST, LAST)
        assert look.snapshot is not None
        assert look.snapshot.as_of == T0
        assert look.fresh
        assert not look.computing
        report = period_figures(engine, settings, FIRST, LAST, T0)
        assert look.snapshot.figures == report
        assert _shown_rows(second.text) == _expected_tables(report)
        assert _shown_rows(second.text)["stage_entries"] == [
            ("all", "lead", "1"),
            ("all", "mql", "2"),
            ("all", "sql", "1"),
        ]
        images = re.findall(r'<img src="([^"]+)"', second.text)
        # The snapshot's four charts, each named by its own figures' digest.
        names = [re.search(r"/charts/([a-z-]+)\.svg", url) for url in images]
        assert [name.group(1) for name in names if name] == [chart.name for chart in report.charts]
        assert [chart.name for chart in report.charts] == [
            "funnel",
            "weekly-conversion",
            "sla-by-rep",
            "time-in-stage",
        ]
        for url in images:
            image = ui.get(url.replace("&amp;", "&"))
            assert image.status_code == 200
            assert image.headers["content-type"] == "image/svg+xml"

    def test_a_period_ending_later_says_so_as_the_report_does(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """The period runs to the end of today, after the snapshot's instant: the page carries
        the report's "As of ... (the period ends later)" line, which it left out; a period that
        ended before has none, as in the report."""
        ui, snapshots, _ = _page(engine, make_settings, clock)
        ended = "/ui/funnel?from=2026-02-20&to=2026-02-25"
        ui.get(PERIOD)
        ui.get(ended)
        assert snapshots.wait_idle(60)
        line = (
            '<p class="ends-later">As of 2026-03-02T09:00:00+00:00 (the period ends later): '
            "nothing after it is counted; open stays, deals and SLA timers are those open "
            "then.</p>"
        )
        assert line in ui.get(PERIOD).text
        page = ui.get(ended).text
        # The stage counts above the period are the store's today, not as of the period's
        # time: under `dashboard serve --now 2017-...` "by stage now" read as 2017's.
        assert (
            "by the stage each has in the store today (the counts <code>leadflow status</code>"
            " shows; the period below is read as of its figures' time)"
        ) in page
        assert AS_OF.search(page) is not None
        assert "the period ends later" not in page

    def test_a_quick_report_is_waited_for(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """Within ``dashboard.funnel_wait`` the first request shows the figures at once."""
        ui, _snapshots, settings = _page(
            engine, make_settings, clock, **{"dashboard.funnel_wait": "60s"}
        )
        page = ui.get(PERIOD).text
        assert RELOAD not in page
        assert _shown_rows(page) == _expected_tables(
            period_figures(engine, settings, FIRST, LAST, T0)
        )

    def test_the_reload_names_only_the_periods_own_computing_time(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """A period being computed for the first time names no time: it named the last
        computation's, another period's (t2report D4: "last took 0.1 s" on each reload of a
        period from the year 1 that took 160 s). Computed again after its failure, it names
        its own failed computation's time (at least 3 s here; the other period's took less,
        whatever the load: 2.4 s on PostgreSQL in a loaded CI run)."""
        seed(engine)
        seed_stage_history(engine)
        settings = dashboard_settings(make_settings, **{"dashboard.funnel_wait": 0})
        runtime = runtime_for(engine, settings, clock)
        other = date(2026, 2, 1)
        go = threading.Event()
        calls: list[date] = []

        def compute(first: date, last: date, now: Any) -> PeriodFigures:
            calls.append(first)
            if first == other and calls.count(other) == 1:
                time.sleep(3)
                raise RuntimeError("the store went away")
            if first == other:
                go.wait(60)  # held while the page is looked at
            return period_figures(engine, settings, first, last, now)

        snapshots = FunnelSnapshots(compute, clock, timedelta(minutes=5))
        app, _holder = build_app(runtime, funnel=snapshots)
        ui = Browser(app)
        ui.login("vera")
        ui.get(PERIOD)
        assert snapshots.wait_idle(60)
        assert snapshots.look(FIRST, LAST).took is not None
        first_look = ui.get("/ui/funnel?from=2026-02-01&to=2026-03-02").text
        assert f"{COMPUTING}; this page reloads itself." in first_look
        assert "last took" not in first_look
        assert RELOAD in first_look
        assert snapshots.wait_idle(60)
        failed = snapshots.look(other, LAST).failure
        assert failed is not None
        assert failed.took >= 3
        computed = snapshots.kept(FIRST, LAST)
        assert computed is not None
        shown = f"{failed.took:.1f} s"
        assert f"{computed.took:.1f} s" != shown  # the two times tell apart on the page
        clock.advance(timedelta(minutes=5))
        again = ui.get("/ui/funnel?from=2026-02-01&to=2026-03-02").text
        assert f"{COMPUTING} (last took {shown}); this page reloads itself." in again
        assert "The figures shown are from before" not in again  # it has none
        go.set()
        assert snapshots.wait_idle(60)  # done before the store goes away
        assert calls == [FIRST, other, other]


class TestFreshAndStale:
    """Served from the snapshot while fresh; served and renewed once stale."""

    def test_fresh_is_served_as_computed(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """Four minutes on, with a new MQL in the store: the same figures, nothing computing."""
        ui, snapshots, _ = _page(engine, make_settings, clock)
        ui.get(PERIOD)
        assert snapshots.wait_idle(60)
        before = ui.get(PERIOD).text
        _add_mql(engine, 3, T0 - HOUR / 2)
        clock.advance(timedelta(minutes=4))
        after = ui.get(PERIOD).text
        assert _shown_rows(after) == _shown_rows(before)
        assert "Figures as of 2026-03-02 09:00 UTC" in after
        assert not snapshots.look(FIRST, LAST).computing

    def test_stale_is_served_with_a_note_then_renewed(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """Six minutes on (refresh 5m): the 09:00 figures and the note, one computation; then
        the 09:06 figures, equal to the report run at 09:06 with the new MQL."""
        ui, snapshots, settings = _page(engine, make_settings, clock)
        ui.get(PERIOD)
        assert snapshots.wait_idle(60)
        old = ui.get(PERIOD).text
        _add_mql(engine, 3, T0 - HOUR / 2)
        clock.advance(timedelta(minutes=6))
        stale = ui.get(PERIOD).text
        assert "Figures as of 2026-03-02 09:00 UTC" in stale
        assert _shown_rows(stale) == _shown_rows(old)
        assert "These figures are older than 5m: newer ones are being computed" in stale
        assert RELOAD not in stale  # a person reading figures is not interrupted
        assert snapshots.wait_idle(60)
        renewed = ui.get(PERIOD).text
        assert "Figures as of 2026-03-02 09:06 UTC" in renewed
        report = period_figures(engine, settings, FIRST, LAST, T0 + timedelta(minutes=6))
        assert _shown_rows(renewed) == _expected_tables(report)
        assert ("all", "mql", "3") in _shown_rows(renewed)["stage_entries"]

    def test_the_day_is_said_today_too(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """A snapshot says its day, today's too: "Figures as of 09:00 UTC" alone read as
        today's while ``dashboard serve --now`` held the clock in 2017; the report says the
        date always."""
        later = {"dashboard.funnel_refresh": "2d", "dashboard.session_lifetime": "2d"}
        ui, snapshots, _ = _page(engine, make_settings, clock, **later)
        ui.get(PERIOD)
        assert snapshots.wait_idle(60)
        assert "Figures as of 2026-03-02 09:00 UTC" in ui.get(PERIOD).text
        clock.advance(timedelta(days=1))
        assert "Figures as of 2026-03-02 09:00 UTC" in ui.get(PERIOD).text


class TestFailure:
    """A computation that fails is on the page, not lost in its thread."""

    def test_failure_is_shown_then_tried_again(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """Without the stage history table the report fails: the page says so (no reload),
        the failure is logged; five minutes later the next request tries again (and, the
        table back, succeeds)."""
        ui, snapshots, _ = _page(engine, make_settings, clock)
        with engine.begin() as connection:  # put back below: PostgreSQL's schema is shared
            connection.execute(text("ALTER TABLE stage_changes RENAME TO stage_changes_away"))
        try:
            with capture_logs() as logs:
                ui.get(PERIOD)
                assert snapshots.wait_idle(60)
        finally:
            with engine.begin() as connection:
                connection.execute(text("ALTER TABLE stage_changes_away RENAME TO stage_changes"))
        failed = [entry for entry in logs if entry["event"] == "funnel_report_failed"]
        assert len(failed) == 1
        assert "stage_changes" in failed[0]["error"]
        page = ui.get(PERIOD).text
        assert "Computing the report for this period failed at 2026-03-02 09:00 UTC: " in page
        assert "stage_changes" in page
        assert "It is tried again 5m after the failure." in page
        assert RELOAD not in page
        assert not snapshots.look(FIRST, LAST).computing
        clock.advance(timedelta(minutes=5))
        assert snapshots.look(FIRST, LAST).computing
        assert snapshots.wait_idle(60)
        again = snapshots.look(FIRST, LAST)
        assert again.failure is None
        assert again.snapshot is not None
        assert "failed" not in ui.get(PERIOD).text


class TestBounds:
    """At most ``kept`` periods: the least recently looked at is forgotten first."""

    def test_least_recently_looked_at_is_forgotten(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        seed(engine)
        settings = dashboard_settings(make_settings)
        compute_calls: list[tuple[date, date]] = []

        def compute(first: date, last: date, now: Any) -> PeriodFigures:
            compute_calls.append((first, last))
            return period_figures(engine, settings, first, last, now)

        snapshots = FunnelSnapshots(compute, clock, timedelta(minutes=5), kept=2)
        days = [date(2026, 3, day) for day in (1, 2, 3)]
        for day in days[:2]:
            snapshots.look(day, day)
        assert snapshots.wait_idle(60)
        snapshots.look(days[0], days[0])  # the 1st looked at again: the 2nd is the oldest now
        snapshots.look(days[2], days[2])
        assert snapshots.wait_idle(60)
        assert snapshots.look(days[0], days[0]).snapshot is not None
        assert snapshots.look(days[1], days[1]).snapshot is None  # forgotten: computing again
        assert snapshots.wait_idle(60)
        # The first two ran side by side (in either order), then the 3rd, then the 2nd again.
        assert sorted(compute_calls[:2]) == [(days[0], days[0]), (days[1], days[1])]
        assert compute_calls[2:] == [(days[2], days[2]), (days[1], days[1])]

    def test_no_room_while_every_kept_period_computes(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """With one period kept and its report running, another period is refused as busy
        (nothing started for it); once the first is done, the second takes its place."""
        seed(engine)
        settings = dashboard_settings(make_settings)
        go = threading.Event()

        def compute(first: date, last: date, now: Any) -> PeriodFigures:
            go.wait(60)  # the report is held until the test has looked
            return period_figures(engine, settings, first, last, now)

        snapshots = FunnelSnapshots(compute, clock, timedelta(minutes=5), kept=1)
        assert snapshots.look(FIRST, FIRST).computing
        busy = snapshots.look(LAST, LAST)
        assert (busy.busy, busy.computing, busy.snapshot) == (True, False, None)
        assert snapshots.warm(LAST, LAST) is False
        go.set()
        assert snapshots.wait_idle(60)
        assert snapshots.look(LAST, LAST).computing
        assert snapshots.wait_idle(60)
        assert snapshots.kept(LAST, LAST) is not None
        assert snapshots.kept(FIRST, FIRST) is None


class TestDaemonWarmsTheDefaultPeriod:
    """The daemon computes the last seven days at start-up and again once stale."""

    def test_warm_at_start_and_when_stale(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        settings = dashboard_settings(
            make_settings,
            **{"http.port": free_port(), "dashboard.funnel_refresh": "1s"},
        )
        daemon = Daemon(Runtime.build(engine, settings, clock))
        week = (date(2026, 2, 24), date(2026, 3, 2))
        seen: list[Any] = []

        async def run() -> None:
            task = asyncio.create_task(daemon.run())
            try:
                seen.append(await _snapshot_at(daemon, week, T0))
                clock.advance(timedelta(seconds=2))
                seen.append(await _snapshot_at(daemon, week, T0 + timedelta(seconds=2)))
            finally:
                daemon.request_stop()
                await task

        asyncio.run(run())
        assert seen == [T0, T0 + timedelta(seconds=2)]
        assert daemon.funnel is not None
        clock.advance(timedelta(seconds=2))
        assert daemon.funnel.warm(*week) is False  # stopped: starts nothing


async def _snapshot_at(daemon: Daemon, week: tuple[date, date], at: Any) -> Any:
    """The instant the week's snapshot computed at ``at`` was computed. Its as-of is ``at``, or
    the microsecond before when the daemon's start-up tick (stamped ``at``, the clock held)
    was in flight as it was read (leadflow.engine.in_flight)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if daemon.funnel is not None:
            snapshot = daemon.funnel.kept(*week)
            if snapshot is not None and snapshot.started == at:
                assert snapshot.as_of in (at, at - timedelta(microseconds=1))
                return snapshot.started
        await asyncio.sleep(0.05)
    msg = f"no snapshot of {week} computed at {at} in 60 s"
    raise AssertionError(msg)
