"""What each dashboard page shows, on SQLite and PostgreSQL: the exact rows of the queries
behind the pages, the timeline's pages across rows at the same instant, and the query plans
(the lead timeline, the SLA board and the search read by index, never a whole table).

Pins: a lead's timeline lists its activity, score change, audit rows, emails with delivery
status and SLA start in time order; paging with a small limit gives every event once; the SLA
board orders running timers by due time and filters by rep and pool; the outbox lists each
status; the search finds by external id and by the start of an email or company; the funnel
counts leads per configured stage; the rules page lists every rule with its file:line:col and
last run, and a refused reload's messages; the lead page links to the CRM record; the Funnel
page's charts are the report's drawings of the report's figures; the SLA board's business time
left or overdue is the SLA engine's count in the timer's calendar.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, update

from leadflow.clock import SettableClock
from leadflow.dashboard.funnel_page import funnel_numbers, period_days
from leadflow.dashboard.funnel_snapshots import funnel_snapshots
from leadflow.dashboard.lead_deals import lead_deals
from leadflow.dashboard.outbox_page import COUNTED, messages, status_counts
from leadflow.dashboard.rules_page import _actions_since, rules_view
from leadflow.dashboard.search import search_leads
from leadflow.dashboard.sla_board import business_time_left, sla_board
from leadflow.dashboard.timeline import Cursor, LeadHeader, lead_header, timeline
from leadflow.errors import UserInputError
from leadflow.store.audit_trail import audit_row
from leadflow.store.tables import (
    AUDIT,
    DEALS,
    LEADS,
    NURTURE,
    OUTBOX,
    RULE_RUNS,
    SCORE_CHANGES,
    SLA_TIMERS,
    STAGE_CHANGES,
)
from tests.conftest import T0
from tests.dashboard_support import HOUR, Browser, dashboard_settings, seed, seed_stage_history
from tests.http_support import build_app, runtime_for

L1_TIMELINE = [
    (T0 - 5 * HOUR, "activity pricing_visit"),
    (T0 - 4 * HOUR, "score 10 → 40 (activity: pricing_visit)"),
    (T0 - 3 * HOUR, "assign by rule mql-assign (v1)"),
    (T0 - 3 * HOUR, "start_sla by rule mql-assign (v1)"),
    (T0 - 3 * HOUR, "email “Welcome, Ada” to ada@analytical.test: failed"),
    (T0 - 3 * HOUR, "SLA first_touch started, due 2026-03-02 10:00 UTC (running)"),
    (T0 - 2 * HOUR, "set_stage"),
    (T0 - HOUR, "email “Following up” to ada@analytical.test: sent"),
]


L3_SLA = "SLA first_touch started, due 2026-03-02 04:00 UTC (breached)"


def _score_row(
    ident: int, at: Any, old: int, new: int, old_fit: int | None, model: str | None, **more: Any
) -> dict[str, Any]:
    return {
        "id": ident,
        "lead_id": 3,
        "at": at,
        "old_score": old,
        "new_score": new,
        "old_fit": old_fit,
        "new_fit": more.get("new_fit", 10 if model else old_fit),
        "old_engagement": more.get("old_engagement"),
        "new_engagement": more.get("new_engagement", 2 if model else None),
        "cause": more.get("cause", "fit"),
        "detail": more.get("detail"),
        "model_version": model,
    }


def _seed_nurture_and_scores(engine: Engine) -> None:
    """L3: a rule's adjustment before any model (8h ago), the model's first score (7h ago,
    cause ``fit``, as a pass writes it for a lead new since the last pass), a decay (6h ago);
    enrollments: drip completed 4h ago, welcome left for stream x 3h ago, x left on becoming
    an MQL 2h ago (and its audit row), and an active one in y."""
    enrollment = {"lead_id": 3, "rule_id": "nurture-new-leads", "next_step_at": None}
    with engine.begin() as connection:
        connection.execute(
            insert(SCORE_CHANGES),
            [
                _score_row(
                    2,
                    T0 - 8 * HOUR,
                    5,
                    8,
                    None,
                    None,
                    cause="rule",
                    detail="rule bump: adjust_score",
                ),
                _score_row(3, T0 - 7 * HOUR, 8, 12, None, "m1"),
                _score_row(
                    4,
                    T0 - 6 * HOUR,
                    12,
                    11,
                    10,
                    "m1",
                    old_engagement=2,
                    new_engagement=1,
                    cause="decay",
                ),
            ],
        )
        connection.execute(
            insert(NURTURE),
            [
                {
                    **enrollment,
                    "id": 1,
                    "stream": "drip",
                    "enrolled_at": T0 - 9 * HOUR,
                    "next_step": 2,
                    "status": "completed",
                    "exit_reason": "all steps sent",
                    "exited_at": T0 - 4 * HOUR,
                },
                {
                    **enrollment,
                    "id": 2,
                    "stream": "welcome",
                    "enrolled_at": T0 - 5 * HOUR,
                    "next_step": 1,
                    "status": "exited",
                    "exit_reason": "moved to stream x",
                    "exited_at": T0 - 3 * HOUR,
                },
                {
                    **enrollment,
                    "id": 3,
                    "stream": "x",
                    "enrolled_at": T0 - 3 * HOUR,
                    "next_step": 1,
                    "status": "exited",
                    "exit_reason": "became mql",
                    "exited_at": T0 - 2 * HOUR,
                },
                {
                    **enrollment,
                    "id": 4,
                    "stream": "y",
                    "enrolled_at": T0 - 2 * HOUR,
                    "next_step": 0,
                    "status": "active",
                    "next_step_at": T0 + HOUR,
                    "exit_reason": None,
                    "exited_at": None,
                },
            ],
        )
        connection.execute(
            insert(AUDIT),
            [
                {
                    "id": 5,
                    "at": T0 - 4 * HOUR,
                    "source": "nurture",
                    "action": "nurture_completed",
                    "lead_id": 3,
                    "rule_id": "nurture-new-leads",
                    "rule_version": "v1",
                    "params": {"stream": "drip", "reason": "all steps sent"},
                    "evidence": {},
                }
            ],
        )


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    seed(engine)
    return engine


def header(engine: Engine, external_id: str) -> LeadHeader:
    found = lead_header(engine, external_id)
    assert found is not None
    return found


class TestTimeline:
    def test_every_row_of_the_lead_in_time_order(self, seeded: Engine) -> None:
        """L1's eight events, oldest first; at one instant audit, email, then SLA."""
        events, more = timeline(seeded, header(seeded, "L1"))
        assert [(e.at, e.summary) for e in events] == L1_TIMELINE
        assert more is False
        failed = events[4]
        assert failed.detail["relay"] == "550 5.1.1 no such user"
        assert failed.detail["attempts"] == 3
        assert events[2].detail["evidence"] == {"score": 40}

    @pytest.mark.parametrize("limit", [1, 2, 3])
    def test_pages_give_every_event_once(self, seeded: Engine, limit: int) -> None:
        """Following the cursor page by page (four events share T0-3h) yields the same list."""
        lead = header(seeded, "L1")
        seen: list[tuple[Any, str]] = []
        after = None
        for _ in range(20):
            events, more = timeline(seeded, lead, after, limit)
            seen += [(e.at, e.summary) for e in events]
            if not more:
                break
            after = Cursor.parse(events[-1].cursor)
        assert seen == L1_TIMELINE

    def test_other_leads_rows_are_not_shown(self, seeded: Engine) -> None:
        """L2's timeline: its own SLA, escalation audit row and email, nothing of L1."""
        events, _ = timeline(seeded, header(seeded, "L2"))
        assert [e.summary for e in events] == [
            "SLA first_touch started, due 2026-03-02 08:00 UTC (running)",
            "sla_escalated",
            "email “Hello Bob” to bob@builder.test: pending",
        ]

    def test_nurture_exits_and_the_first_score(self, seeded: Engine) -> None:
        """L3's timeline says when it left each nurture stream and why (read from the
        enrollment: the exit a stage change makes writes no audit row; the audit's own
        ``nurture_exited`` row is not said twice), not the one it is still in; its first score
        from the model reads as such, not as a change caused by ``fit``, and a rule's
        adjustment of a lead the model never scored stays a change."""
        _seed_nurture_and_scores(seeded)
        events, more = timeline(seeded, header(seeded, "L3"))
        assert [(e.at, e.kind, e.summary) for e in events] == [
            (T0 - 9 * HOUR, "sla_started", L3_SLA),
            (T0 - 8 * HOUR, "score_change", "score 5 → 8 (rule: rule bump: adjust_score)"),
            (
                T0 - 7 * HOUR,
                "score_first",
                "first score 12 (fit 10, engagement 2; 8 before, set outside the model)",
            ),
            (T0 - 6 * HOUR, "score_change", "score 12 → 11 (decay)"),
            (T0 - 4 * HOUR, "nurture_completed", "completed nurture stream drip: all steps sent"),
            (T0 - 3 * HOUR, "nurture_exited", "left nurture stream welcome: moved to stream x"),
            (T0 - 2 * HOUR, "nurture_exited", "left nurture stream x: became mql"),
        ]
        assert more is False
        assert events[-1].detail == {
            "enrolled_by": "nurture-new-leads",
            "enrolled_at": (T0 - 3 * HOUR).isoformat(),
            "steps_done": 1,
        }
        lead = header(seeded, "L3")
        paged = [timeline(seeded, lead, Cursor.parse(e.cursor), 1)[0] for e in events[:-1]]
        assert [page[0].summary for page in paged] == [e.summary for e in events[1:]]

    @pytest.mark.parametrize(
        ("before", "said"),
        [
            (0, "first score 12 (fit 10, engagement 2)"),
            (30, "first score 12 (fit 10, engagement 2; 30 before, set outside the model)"),
        ],
    )
    def test_a_first_score_says_what_was_there(
        self, seeded: Engine, before: int, said: str
    ) -> None:
        """A lead new since the model's last pass (score 0), or whose score the CRM had set."""
        with seeded.begin() as connection:
            connection.execute(insert(SCORE_CHANGES), [_score_row(5, T0, before, 12, None, "m1")])
        events, _ = timeline(seeded, header(seeded, "L3"))
        assert (events[-1].kind, events[-1].summary) == ("score_first", said)

    def test_a_bad_cursor_is_no_cursor(self) -> None:
        assert Cursor.parse("garbage") is None
        assert Cursor.parse("2026-03-02T09:00:00~1~x") is None
        assert Cursor.parse("2026-03-02T09:00:00~1~2") is None  # no timezone


class TestSlaBoard:
    def test_running_timers_soonest_due_first(self, seeded: Engine) -> None:
        """The overdue, escalated L2 first, then L1; the breached L3 on its own list."""
        timers, more = sla_board(seeded, "running")
        assert [(t.lead, t.owner, t.level, t.overdue(T0)) for t in timers] == [
            ("L2", "Sam Seller", 1, True),
            ("L1", "Rita Rep", 0, False),
        ]
        assert more is False
        breached, _ = sla_board(seeded, "breached")
        assert [(t.lead, t.owner, t.close_reason) for t in breached] == [
            ("L3", None, "no escalation level left")
        ]

    def test_filters_by_rep_and_pool(self, seeded: Engine) -> None:
        assert [t.lead for t in sla_board(seeded, "running", rep="r1")[0]] == ["L1"]
        assert [t.lead for t in sla_board(seeded, "running", pool="west")[0]] == ["L2"]
        assert sla_board(seeded, "running", rep="r1", pool="west")[0] == []
        assert sla_board(seeded, "running", pool="nowhere")[0] == []


LEFT = re.compile(r'<td class="num">([^<]*(?:left|overdue))</td>')
SVG_TEXT = re.compile(r"<text[^>]*>([^<]*)</text>")


class TestFunnelCharts:
    """The Funnel page shows the report's four charts as images of its own URLs, each with
    its figures in words; the images are the report's drawings of the report's figures."""

    def test_chart_figures_are_the_reports(
        self, seeded: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """Each chart's words and drawn labels are the figures of `leadflow report`'s sections
        for the page's period; its SVG is the one the HTML report inlines."""
        from leadflow.funnel.charts import CHARTS
        from leadflow.funnel.period import Period
        from leadflow.funnel.report import build_report
        from leadflow.funnel.sections import sections

        seed_stage_history(seeded)
        settings = dashboard_settings(make_settings)
        numbers = funnel_numbers(seeded, settings, (T0 - 24 * HOUR).date(), T0.date(), T0)
        texts = {chart.name: chart.text for chart in numbers.charts}
        assert texts == {
            "funnel": "Entries in the period: lead 1, mql 2, sql 1",
            # Sunday's lead entry is in the week of 23 February, the MQLs and SQL in 2 March's.
            "weekly-conversion": "Period conversion by week (Monday): "
            "lead → mql: 2026-02-23 0.0%; mql → sql: 2026-03-02 50.0%; "
            "sql → opportunity: 2026-03-02 0.0%",
            # L3's unowned timer breached; Rita's and Sam's still run (counted, not ended).
            "sla-by-rep": "SLA timers ended, by rep: "
            "(none): met 0, met late 0, breached 1, reassigned 0, cancelled 0; "
            "Rita Rep: met 0, met late 0, breached 0, reassigned 0, cancelled 0; "
            "Sam Seller: met 0, met late 0, breached 0, reassigned 0, cancelled 0",
            "time-in-stage": "Days in stage, leads (group all): mql median 0.04, p90 0.04",
        }
        day = T0.replace(hour=0) - 24 * HOUR
        report = build_report(seeded, settings, Period(day, day + 48 * HOUR), T0)
        rows = sections(report)
        assert [c.data for c in numbers.charts] == [c.data(report, rows) for c in CHARTS]
        funnel_svg = CHARTS[0].svg(numbers.charts[0].data)
        labels = SVG_TEXT.findall(funnel_svg)
        assert [label for label in labels if label in {"lead", "mql", "sql"}] == [
            "sql",
            "mql",
            "lead",
        ]
        entered = {row["stage"]: str(row["entered"]) for row in rows["stage_entries"]}
        assert entered == {"lead": "1", "mql": "2", "sql": "1"}
        assert labels[-3:] == [entered["sql"], entered["mql"], entered["lead"]]

    def test_page_names_each_chart_by_its_figures(
        self, seeded: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """Four figures, each an image of /ui/funnel/charts/NAME.svg with the period and the
        figures' digest, described by its words; the image is the report's SVG of those
        figures, served with a policy of its own; drawn once, then kept; a digest no longer
        kept is drawn from the period's snapshot; a signed-out request goes to the login."""
        from html import escape

        from leadflow.funnel.charts import CHARTS

        seed_stage_history(seeded)
        settings = dashboard_settings(make_settings, **{"dashboard.funnel_wait": 0})
        runtime = runtime_for(seeded, settings, clock)
        snapshots = funnel_snapshots(runtime)
        app, _holder = build_app(runtime, funnel=snapshots)
        ui = Browser(app)
        assert ui.get("/ui/funnel/charts/funnel.svg?v=x").status_code == 303
        ui.login("vera")
        # The first request starts the period's report (and reloads itself); the next one,
        # once it is computed, shows it.
        computing = ui.get("/ui/funnel?from=2026-03-01&to=2026-03-02").text
        assert '<meta http-equiv="refresh" content="3">' in computing
        assert "<img" not in computing
        assert snapshots.wait_idle(60)
        page = ui.get("/ui/funnel?from=2026-03-01&to=2026-03-02").text
        numbers = funnel_numbers(seeded, settings, (T0 - 24 * HOUR).date(), T0.date(), T0)
        found = re.findall(r'<img src="([^"]+)" alt="([^"]+)" aria-describedby="([^"]+)">', page)
        assert found == [
            (
                f"/ui/funnel/charts/{c.name}.svg?from=2026-03-01&amp;to=2026-03-02&amp;v={c.digest}",
                f"{c.title}, chart",
                f"chart-{c.name}-figures",
            )
            for c in numbers.charts
        ]
        for chart in numbers.charts:
            assert f'<p id="chart-{chart.name}-figures">{escape(chart.text)}</p>' in page
        for chart, view in zip(CHARTS, numbers.charts, strict=True):
            url = f"/ui/funnel/charts/{view.name}.svg?from=2026-03-01&to=2026-03-02&v={view.digest}"
            image = ui.get(url)
            assert image.status_code == 200
            assert image.headers["content-type"] == "image/svg+xml"
            assert image.headers["cache-control"] == "private, max-age=3600"
            assert image.headers["content-security-policy"] == (
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
            )
            assert image.text == chart.svg(view.data)
            assert ui.get(url).text == image.text
        again = ui.get("/ui/funnel/charts/funnel.svg?from=2026-03-01&to=2026-03-02&v=gone")
        assert again.status_code == 200
        assert again.headers["cache-control"] == "no-store"
        assert again.text == CHARTS[0].svg(numbers.charts[0].data)
        assert ui.get("/ui/funnel/charts/pie.svg?v=x").status_code == 404


class TestPeriodTables:
    def test_tables_read_as_the_reports_tables(
        self, seeded: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """The period's tables leave out the conversion pairs with no entry on either side and
        say how many, as `leadflow report`'s tables do; names are left-aligned, figures
        right-aligned (class num) in the page."""
        from leadflow.funnel.period import Period
        from leadflow.funnel.report import build_report
        from leadflow.funnel.sections import sections
        from leadflow.funnel.text import OVER_ONE, left_out_note, shown

        seed_stage_history(seeded)
        settings = dashboard_settings(make_settings, **{"dashboard.funnel_wait": 0})
        numbers = funnel_numbers(seeded, settings, (T0 - 24 * HOUR).date(), T0.date(), T0)
        conversion = {table.name: table for table in numbers.tables}["conversion"]
        day = T0.replace(hour=0) - 24 * HOUR
        every = sections(build_report(seeded, settings, Period(day, day + 48 * HOUR), T0))
        kept = [r for r in every["conversion"] if r["base"] or r["converted"]]
        assert 0 < len(kept) < len(every["conversion"])
        assert conversion.rows == tuple(
            tuple(shown(r[c], c) for c in every["conversion"][0]) for r in kept
        )
        # Period lead -> mql is 2 of 1 (200 %): the note says why a rate passes 100 %.
        assert conversion.notes == (left_out_note(len(every["conversion"]) - len(kept)), OVER_ONE)
        assert conversion.columns[:4] == ("kind", "group", "from stage", "to stage")
        assert conversion.figures[:4] == (False, False, False, False)
        assert all(conversion.figures[4:])
        runtime = runtime_for(seeded, settings, clock)
        snapshots = funnel_snapshots(runtime)
        app, _holder = build_app(runtime, funnel=snapshots)
        ui = Browser(app)
        ui.login("vera")
        ui.get("/ui/funnel?from=2026-03-01&to=2026-03-02")
        assert snapshots.wait_idle(60)
        page = ui.get("/ui/funnel?from=2026-03-01&to=2026-03-02").text
        table = page[page.index('<table class="report" id="conversion">') :]
        table = table[: table.index("</table>")]
        first = re.search(r"<tbody>\s*<tr>(.*?)</tr>", table, re.S)
        assert first is not None
        cells = re.findall(r"<td( class=\"num\")?>([^<]*)</td>", first.group(1))
        assert cells == [
            ("" if not numeric else ' class="num"', value)
            for numeric, value in zip(conversion.figures, conversion.rows[0], strict=True)
        ]
        assert all(f'<p class="note">{note}</p>' in page for note in conversion.notes)
        snapshots.close()


class TestSlaBusinessHours:
    """The SLA board shows each running timer's business time to its due time, or past it,
    in the timer's own calendar, as the SLA engine counts it."""

    def test_time_left_and_overdue_in_business_hours(
        self, seeded: Engine, make_settings: Any
    ) -> None:
        """Berlin hours 09:00-17:00 (08:00-16:00 UTC in March). At T0 (Monday 09:00 UTC, 10:00
        in Berlin), L1 due 10:00 UTC has 1h left and L2, due 08:00 UTC, is 1h overdue. On the
        Friday before at 15:30 UTC (16:30 in Berlin), L1 has the Friday's last 30 minutes and
        Monday's first two hours left: 2h 30m, though it is 66h 30m away."""
        settings = dashboard_settings(make_settings, **{"calendar.timezone": "Europe/Berlin"})
        timers, _ = sla_board(seeded, "running")
        assert [(t.lead, t.calendar) for t in timers] == [("L2", "default"), ("L1", "default")]
        left = business_time_left(timers, settings, T0)
        assert left == {2: -HOUR, 1: HOUR}
        friday = T0 - 3 * 24 * HOUR + 6.5 * HOUR
        assert business_time_left(timers, settings, friday)[1] == 2.5 * HOUR

    def test_the_board_shows_them(
        self, seeded: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """The running list's column reads them in hours and minutes; other lists have none."""
        settings = dashboard_settings(make_settings, **{"calendar.timezone": "Europe/Berlin"})
        app, _holder = build_app(runtime_for(seeded, settings, clock))
        ui = Browser(app)
        ui.login("vera")
        page = ui.get("/ui/sla").text
        cells = re.findall(LEFT, page)
        assert cells == ["1h 00m overdue", "1h 00m left"]
        assert "Business hours left" in page
        assert "Business hours left" not in ui.get("/ui/sla?status=breached").text
        clock.set(T0 + 20 * HOUR)  # Tuesday 05:00 UTC: before Berlin opens, 7h after closing
        ui.login("vera")  # the session of yesterday has ended
        cells = re.findall(LEFT, ui.get("/ui/sla").text)
        assert cells == ["8h 00m overdue", "6h 00m overdue"]

    def test_met_late_and_reassigned_timers_have_their_lists(
        self, seeded: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """The board offered running, breached, met and cancelled: a timer that ended met late
        or reassigned (in the demo, 364 of 522 timers) was on no list at all."""
        with seeded.begin() as connection:
            connection.execute(
                update(SLA_TIMERS)
                .where(SLA_TIMERS.c.status == "breached")
                .values(status="reassigned", close_reason="reassigned to r2")
            )
            connection.execute(
                update(SLA_TIMERS)
                .where(SLA_TIMERS.c.owner_id.is_not(None), SLA_TIMERS.c.level == 0)
                .values(status="met_late", closed_at=T0, close_reason="the owner acted late")
            )
        settings = dashboard_settings(make_settings)
        app, _holder = build_app(runtime_for(seeded, settings, clock))
        ui = Browser(app)
        ui.login("vera")
        page = ui.get("/ui/sla").text
        assert re.findall(r"<option(?: selected)?>([a-z_]+)</option>", page)[:6] == [
            "running",
            "breached",
            "met",
            "met_late",
            "reassigned",
            "cancelled",
        ]
        listed = {
            status: re.findall(
                r'<a href="/ui/leads/(L\d)"', ui.get(f"/ui/sla?status={status}").text
            )
            for status in ("running", "met_late", "reassigned")
        }
        assert listed == {"running": ["L2"], "met_late": ["L1"], "reassigned": ["L3"]}
        assert "reassigned to r2" in ui.get("/ui/sla?status=reassigned").text

    def test_hand_edited_numbers_give_the_first_page(
        self, seeded: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """A page number that is not one is the first page, not a JSON validation error."""
        settings = dashboard_settings(make_settings, **{"calendar.timezone": "Europe/Berlin"})
        app, _holder = build_app(runtime_for(seeded, settings, clock))
        ui = Browser(app)
        ui.login("vera")
        first_page = ["1h 00m overdue", "1h 00m left"]
        expected = {"abc": first_page, "-3": first_page, "99999999999999999999": []}
        for given, cells in expected.items():
            response = ui.get(f"/ui/sla?page={given}")
            assert response.status_code == 200, given
            assert re.findall(LEFT, response.text) == cells, given
        outbox = ui.get("/ui/outbox?status=failed&page=zz&retried=%00")
        assert outbox.status_code == 200
        assert "is queued again" not in outbox.text


class TestOtherPages:
    def test_outbox_by_status(self, seeded: Engine) -> None:
        """Each status lists its own messages, with the relay's answer on the failed one."""
        failed, _ = messages(seeded, "failed")
        assert [(m.id, m.lead, m.relay_answer) for m in failed] == [
            (1, "L1", "550 5.1.1 no such user")
        ]
        assert [m.id for m in messages(seeded, "pending")[0]] == [2]
        assert [m.id for m in messages(seeded, "sent")[0]] == [3]
        assert messages(seeded, "suppressed")[0] == []
        assert status_counts(seeded) == {
            "pending": "1",
            "sending": "0",
            "sent": "1",
            "failed": "1",
            "suppressed": "0",
        }

    def test_a_tab_counts_up_to_its_cap(self, engine: Engine) -> None:
        """Past 10,000 messages a tab says 10,000+ instead of counting them all."""
        rows = [
            {
                "idempotency_key": f"k{n}",
                "message_id": f"<m{n}@leadflow.test>",
                "category": "nurture",
                "recipient": f"r{n}@example.test",
                "subject": "s",
                "body_text": "b",
                "headers": {},
                "status": "sent" if n <= COUNTED + 1 else "pending",
                "created_at": T0,
                "next_attempt_at": T0,
            }
            for n in range(1, COUNTED + 3)
        ]
        with engine.begin() as connection:
            connection.execute(insert(OUTBOX), rows)
        counts = status_counts(engine)
        assert (counts["sent"], counts["pending"], counts["failed"]) == ("10,000+", "1", "0")

    @pytest.mark.parametrize(
        ("text", "found"),
        [
            ("L2", ["L2"]),
            ("Analytical", ["L1", "L3"]),
            ("Analytical E", ["L1"]),
            ("ada@", ["L1"]),
            ("cy@analytical.test", ["L3"]),
            ("bob", ["L2"]),
            ("analytical", []),  # case-sensitive, as stored
            ("Analytical%", []),  # no wildcards
            ("   ", []),
        ],
    )
    def test_search(self, seeded: Engine, text: str, found: list[str]) -> None:
        assert [f.external_id for f in search_leads(seeded, text)] == found

    def test_funnel_counts_in_stage_order(self, seeded: Engine) -> None:
        """Leads per stage now, progression then side stages; below them the period's tables
        are `leadflow report`'s sections, value for value and row for row as its table prints
        them (conversion pairs with no entry on either side left out)."""
        from leadflow.funnel.period import Period
        from leadflow.funnel.report import build_report
        from leadflow.funnel.sections import sections
        from leadflow.funnel.text import for_people, shown
        from leadflow.settings import Settings

        settings = Settings()
        with seeded.begin() as connection:  # L1 became an MQL two hours before T0
            connection.execute(
                insert(STAGE_CHANGES).values(
                    lead_id=1, at=T0 - 2 * HOUR, from_stage="lead", to_stage="mql", cause="rule"
                )
            )
        first = (T0 - 6 * 24 * HOUR).date()
        numbers = funnel_numbers(seeded, settings, first, T0.date(), T0)
        assert numbers.stages == (
            ("subscriber", 0),
            ("lead", 1),
            ("mql", 1),
            ("sql", 1),
            ("opportunity", 0),
            ("customer", 0),
            ("nurture", 0),
            ("recycled", 0),
            ("disqualified", 0),
        )
        assert numbers.total == 3
        start = T0.replace(hour=0) - 6 * 24 * HOUR
        report = sections(build_report(seeded, settings, Period(start, start + 7 * 24 * HOUR), T0))
        shown_tables = {table.name: table.rows for table in numbers.tables}
        assert set(shown_tables) == set(report) - {"weekly_conversion"}
        for name, rows in report.items():
            if name in shown_tables:
                kept, _notes = for_people(name, rows)
                expected = tuple(tuple(shown(v, c) for c, v in row.items()) for row in kept)
                assert shown_tables[name] == expected, name
        assert shown_tables["stage_entries"] == (("all", "mql", "1"),)


class TestRulesPage:
    def test_every_rule_with_its_place_and_last_run(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """The repository's rules in order with file:line:col; a recorded run shows."""
        runtime = runtime_for(engine, dashboard_settings(make_settings), clock)
        rule_set = runtime.load_rules()
        first = rule_set.rules[0]
        with engine.begin() as connection:
            connection.execute(
                insert(RULE_RUNS).values(
                    rule_id=first.id,
                    rule_version=rule_set.version,
                    last_started_at=T0 - HOUR,
                    last_finished_at=T0 - HOUR,
                    last_status="failed",
                    last_error="boom",
                    matched=7,
                )
            )
            connection.execute(
                insert(AUDIT),
                [
                    audit_row(at=T0 - 2 * HOUR, source="rule", action="notify", rule_id=first.id),
                    audit_row(at=T0 - HOUR, source="rule", action="notify", rule_id=first.id),
                    audit_row(at=T0 - HOUR, source="rule", action="notify", rule_id=first.id),
                    audit_row(at=T0 - HOUR, source="rule", action="assign", rule_id=first.id),
                ],
            )
        view = rules_view(engine, rule_set, T0)
        assert [line.id for line in view.rules] == [rule.id for rule in rule_set.rules]
        assert [line.location for line in view.rules] == [
            str(rule.location) for rule in rule_set.rules
        ]
        line = view.rules[0]
        assert (line.last_run_at, line.last_status, line.matched, line.error) == (
            T0 - HOUR,
            "failed",
            7,
            "boom",
        )
        assert line.next_run_at == first.schedule.upcoming(T0 - HOUR, T0)
        # The last run's actions only: the notify two hours ago was an earlier run's.
        assert line.last_actions == (("assign", 1), ("notify", 2))
        assert view.scoring is not None
        assert view.scoring.location.startswith("rules/scoring.yaml:")
        assert view.scoring.enabled is False

    def test_a_rule_that_never_ran_reads_as_leadflow_status_says(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """A rule that never ran (only its first sighting recorded, or no row at all) showed
        Matched ``0`` and Status ``never`` here, ``-`` and ``-`` in ``leadflow status``: both now
        say last run ``never``, status ``-``, matched ``-`` (``0`` read as a run that matched no
        one); a rule that ran shows its run alike in both."""
        from rich.console import Console

        from leadflow.cli.status_command import render_rules
        from leadflow.cli.status_command import rules_view as status_view
        from leadflow.store.status import collect_status

        runtime = runtime_for(engine, dashboard_settings(make_settings), clock)
        ran, seen, unseen = runtime.load_rules().enabled_rules[:3]
        with engine.begin() as connection:
            connection.execute(
                insert(RULE_RUNS),
                [
                    {
                        "rule_id": ran.id,
                        "rule_version": "v1",
                        "last_started_at": T0 - HOUR,
                        "last_finished_at": T0 - HOUR,
                        "last_status": "ok",
                        "matched": 7,
                    },
                ],
            )
            # What the daemon records of a rule it has seen but not run yet (engine/rule_runs).
            connection.execute(
                insert(RULE_RUNS).values(
                    rule_id=seen.id, rule_version="v1", last_status="never", first_seen_at=T0
                )
            )
        app, _holder = build_app(runtime)
        ui = Browser(app)
        ui.login("vera")
        page = ui.get("/ui/rules").text

        def cells(rule_id: str) -> list[str]:
            """Last run, status, matched, as the page shows them."""
            row = re.search(rf'<th scope="row">{rule_id}\b.*?</th>(.*?)</tr>', page, re.S)
            assert row is not None, rule_id
            shown = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
            return [re.sub(r"<.*", "", cell, flags=re.S) for cell in shown[2:5]]

        console = Console(width=250, record=True)
        render_rules(status_view(runtime, collect_status(engine)), console)
        lines = console.export_text().splitlines()
        header = next(line for line in lines if line.startswith("rule "))
        status_at, matched_at = header.index("status"), header.index("matched")

        def status_cells(rule_id: str) -> list[str]:
            """Status and matched, as ``leadflow status`` prints them."""
            line = next(line for line in lines if line.startswith(f"{rule_id} "))
            return line[status_at:].split()[:2]

        assert [cells(rule.id) for rule in (ran, seen, unseen)] == [
            ["2026-03-02 08:00:00 UTC", "ok", "7"],
            ["never", "-", "-"],
            ["never", "-", "-"],
        ]
        assert matched_at > status_at
        assert [status_cells(rule.id) for rule in (ran, seen, unseen)] == [
            ["ok", "7"],
            ["-", "-"],
            ["-", "-"],
        ]

    def test_a_refused_reload_shows_its_messages(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """The Rules page lists each FILE:LINE:COL line and says the old set still runs."""
        runtime = runtime_for(engine, dashboard_settings(make_settings), clock)
        app, holder = build_app(runtime)
        holder.record_failure(["rules/mql.yaml:3:7: unknown field 'wen'; did you mean 'when'?"])
        ui = Browser(app)
        ui.login("vera")
        page = ui.get("/ui/rules").text
        assert "The last change to the rules was refused" in page
        assert (
            "rules/mql.yaml:3:7: unknown field &#39;wen&#39;; did you mean &#39;when&#39;?" in page
        )
        assert "the set below is still running" in page

    def test_the_running_sets_warnings_are_shown(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """A reload's warnings (marketing email with no unsubscribe address) are listed above
        the rules for as long as the running set earns them, a refused change included."""
        runtime = runtime_for(engine, dashboard_settings(make_settings), clock)
        app, holder = build_app(runtime)
        ui = Browser(app)
        ui.login("vera")
        assert "Warnings about the running rules" not in ui.get("/ui/rules").text
        holder.record_success(holder.current(), ["set mail.tracking.base_url <now>"])
        holder.record_failure(["rules/mql.yaml:3:7: unknown field 'wen'"])
        page = ui.get("/ui/rules").text
        assert (
            '<h2 id="warnings-title">Warnings about the running rules</h2>\n'
            '  <ul class="problems"><li>set mail.tracking.base_url &lt;now&gt;</li></ul>'
        ) in page


@pytest.mark.slow
def test_lead_page_links_to_the_crm_and_explains_the_score(
    seeded: Engine, make_settings: Any, clock: SettableClock
) -> None:
    """The lead page shows the timeline's rows, the CRM link and the score's contributions."""
    runtime = runtime_for(seeded, dashboard_settings(make_settings), clock)
    app, _holder = build_app(runtime)
    ui = Browser(app)
    ui.login("vera")
    page = ui.get("/ui/leads/L1").text
    assert 'href="https://crm.example.com/leads/L1"' in page
    for _, summary in L1_TIMELINE:
        assert summary.replace("“", "&#8220;") in page or summary in page
    assert "Why the score is 40" in page
    # The repository's model is not enabled: no pass will come to bring the score to its total.
    assert "next scoring pass" not in page
    assert (
        '<p class="note">The model is not enabled, so no scoring pass changes the stored score'
        " (40): 10 is what the score would be with the model on.</p>"
    ) in page
    assert ui.get("/ui/leads/nobody").status_code == 404


def test_lead_page_shows_audit_lists_and_mappings_as_written(
    seeded: Engine, make_settings: Any, clock: SettableClock
) -> None:
    """A list or mapping among an audit row's parameters reads as JSON with its quotes and
    accents (Jinja's tojson, meant for scripts, showed \\u0027inbound\\u0027), escaped for HTML."""
    with seeded.begin() as connection:
        connection.execute(
            insert(AUDIT),
            [
                {
                    "id": 900,  # the seeded rows take their ids without a sequence
                    **audit_row(
                        at=T0 - HOUR,
                        source="api",
                        action="update_lead",
                        lead_id=1,
                        params={"pools": ["inbound", "O'Brien <east>", "Zürich"]},
                    ),
                }
            ],
        )
    runtime = runtime_for(seeded, dashboard_settings(make_settings), clock)
    app, _holder = build_app(runtime)
    ui = Browser(app)
    ui.login("vera")
    page = ui.get("/ui/leads/L1").text
    assert (
        '<span class="k">params</span> <code>{&#34;pools&#34;: '
        "[&#34;inbound&#34;, &#34;O&#39;Brien &lt;east&gt;&#34;, &#34;Zürich&#34;]}</code>" in page
    )
    assert "\\u00" not in page


def test_missing_part_scores_read_as_a_dash(seeded: Engine) -> None:
    """A score change without a fit or engagement part (a score set before any model ran)
    shows ``-`` as the rest of the dashboard writes a missing value, never ``None``; being the
    model's first score of the lead, it reads as that (it read ``score 0 → 75 (fit)``)."""
    with seeded.begin() as connection:
        connection.execute(
            update(SCORE_CHANGES)
            .where(SCORE_CHANGES.c.id == 1)
            .values(
                old_score=0,
                new_score=75,
                old_fit=None,
                new_fit=75,
                old_engagement=None,
                new_engagement=0,
                cause="fit",
                detail=None,
            )
        )
    events, _ = timeline(seeded, header(seeded, "L1"))
    score = next(e for e in events if e.source == "score")
    assert (score.summary, score.detail["fit"], score.detail["engagement"]) == (
        "first score 75 (fit 75, engagement 0)",
        "- → 75",
        "- → 0",
    )


def test_lead_page_lists_the_leads_attributes(
    seeded: Engine, make_settings: Any, clock: SettableClock
) -> None:
    """The lead page lists the declared attributes in config order (``-`` without a value),
    then the others the lead holds, by name; values are escaped."""
    with seeded.begin() as connection:
        connection.execute(
            update(LEADS)
            .where(LEADS.c.id == 1)
            .values(attributes={"sector": "<b>Retail</b>", "employees": 120, "abc": ["x", "y"]})
        )
    assert header(seeded, "L1").attribute_rows(["region", "employees"]) == [
        ("region", None),
        ("employees", 120),
        ("abc", ["x", "y"]),
        ("sector", "<b>Retail</b>"),
    ]
    runtime = runtime_for(seeded, dashboard_settings(make_settings), clock)
    app, _holder = build_app(runtime)
    ui = Browser(app)
    ui.login("vera")
    page = ui.get("/ui/leads/L1").text
    rows = re.findall(r"<dt>([^<]*)</dt><dd>([^<]*)</dd>", page.split("<h2>Attributes</h2>")[1])
    assert rows == [
        ("region", "-"),
        ("employees", "120"),
        ("abc", "[&#34;x&#34;, &#34;y&#34;]"),
        ("sector", "&lt;b&gt;Retail&lt;/b&gt;"),
    ]
    page = ui.get("/ui/leads/L2").text
    rows = re.findall(r"<dt>([^<]*)</dt><dd>([^<]*)</dd>", page.split("<h2>Attributes</h2>")[1])
    assert rows == [("region", "-"), ("employees", "-")]


def test_lead_page_lists_the_leads_deals(
    seeded: Engine, make_settings: Any, clock: SettableClock
) -> None:
    """The lead's deals, open first, then closed newest first, with product, outcome, amount
    and owner; another lead's deal is not among them; a lead with none says so."""
    deal = {"stage": "Engaging", "created_at": T0, "updated_at": T0, "attributes": {}}
    deal |= dict.fromkeys(("outcome", "amount", "owner_id", "product", "engaged_at", "closed_at"))
    with seeded.begin() as connection:
        connection.execute(
            insert(DEALS),
            [
                {
                    **deal,
                    "external_id": "D-old",
                    "lead_id": 1,
                    "stage": "Won",
                    "outcome": "won",
                    "amount": 1200.5,
                    "owner_id": 1,
                    "engaged_at": T0 - 90 * 24 * HOUR,
                    "closed_at": T0 - 60 * 24 * HOUR,
                },
                {
                    **deal,
                    "external_id": "D-lost",
                    "lead_id": 1,
                    "stage": "Lost",
                    "outcome": "lost",
                    "product": "GTX Pro",
                    "engaged_at": T0 - 40 * 24 * HOUR,
                    "closed_at": T0 - 30 * 24 * HOUR,
                },
                {
                    **deal,
                    "external_id": "D-open",
                    "lead_id": 1,
                    "product": "MG Special",
                    "owner_id": 2,
                    "engaged_at": T0 - 5 * 24 * HOUR,
                },
                {**deal, "external_id": "D-bob", "lead_id": 2},
            ],
        )
    found, more = lead_deals(seeded, 1)
    assert [(d.external_id, d.outcome, d.amount, d.owner) for d in found] == [
        ("D-open", None, None, "Sam Seller"),
        ("D-lost", "lost", None, None),
        ("D-old", "won", 1200.5, "Rita Rep"),
    ]
    assert not more
    runtime = runtime_for(seeded, dashboard_settings(make_settings), clock)
    app, _holder = build_app(runtime)
    ui = Browser(app)
    ui.login("vera")
    page = ui.get("/ui/leads/L1").text
    table = page[page.index('<table class="deals">') : page.index("</table>")]
    rows = [
        re.findall(r"<td[^>]*>([^<]*)</td>", row)[:6]
        for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)
        if "<td" in row
    ]
    assert rows == [
        ["D-open", "MG Special", "Engaging", "open", "-", "Sam Seller"],
        ["D-lost", "GTX Pro", "Lost", "lost", "-", "unowned"],
        ["D-old", "-", "Won", "won", "1,200.50", "Rita Rep"],
    ]
    assert "<p>No deal.</p>" in ui.get("/ui/leads/L3").text


def _last_run_actions(engine: Engine) -> object:
    with engine.connect() as connection:
        return _actions_since(connection, "mql-assign", T0 - HOUR)


def _captured(engine: Engine, run: Callable[[], object]) -> list[tuple[str, Any]]:
    statements: list[tuple[str, Any]] = []

    def remember(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", remember)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", remember)
    return statements


def _plans(engine: Engine, statements: list[tuple[str, Any]]) -> list[str]:
    plans = []
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            for statement, parameters in statements:
                rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
                plans.append("\n".join(str(row[-1]) for row in rows))
        else:
            # Tiny tables make a sequential scan cheapest; forbidding it shows whether an
            # index can answer at all, which is what holds at a million rows.
            connection.exec_driver_sql("SET enable_seqscan = off")
            for statement, parameters in statements:
                rows = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
                plans.append("\n".join(str(row[0]) for row in rows))
    return plans


def _scans(plan: str, tables: tuple[str, ...]) -> list[str]:
    """The plan's lines that read one of ``tables`` whole."""
    found = []
    for line in plan.splitlines():
        for table in tables:
            sqlite_scan = f"SCAN {table}" in line and "USING" not in line
            postgres_scan = f"Seq Scan on {table}" in line
            if sqlite_scan or postgres_scan:
                found.append(line.strip())
    return found


BIG = (
    "audit_log",
    "leads",
    "outbox",
    "activities",
    "score_changes",
    "sla_timers",
    "deals",
    "nurture_enrollments",
)


@pytest.mark.parametrize(
    "page",
    [
        "timeline",
        "timeline_after",
        "sla_running",
        "sla_breached",
        "search",
        "outbox_failed",
        "outbox_counts",
        "lead_deals",
        "rule_last_run",
    ],
)
def test_pages_read_by_index_not_by_scan(seeded: Engine, page: str) -> None:
    """EXPLAIN of every query a page runs shows no whole-table read of the big tables."""
    lead = header(seeded, "L1")
    cursor = Cursor(T0 - 3 * HOUR, 1, 1)
    runs: dict[str, Callable[[], object]] = {
        "timeline": lambda: timeline(seeded, lead),
        "timeline_after": lambda: timeline(seeded, lead, cursor),
        "sla_running": lambda: sla_board(seeded, "running"),
        "sla_breached": lambda: sla_board(seeded, "breached"),
        "search": lambda: search_leads(seeded, "Analytical"),
        "outbox_failed": lambda: messages(seeded, "failed"),
        "outbox_counts": lambda: status_counts(seeded),
        "lead_deals": lambda: lead_deals(seeded, 1),
        "rule_last_run": lambda: _last_run_actions(seeded),
    }
    statements = _captured(seeded, runs[page])
    assert statements
    plans = _plans(seeded, statements)
    assert [_scans(plan, BIG) for plan in plans] == [[] for _ in plans], plans


class TestPeriodOfTheFunnelPage:
    """A period the page cannot show is a message, never an error page."""

    @pytest.mark.parametrize(
        ("given_from", "given_to", "problem"),
        [
            ("March", "2026-03-09", "from and to are days like 2026-03-02"),
            ("2026-03-09", "2026-03-02", "to 2026-03-02 is before from 2026-03-09"),
            (
                "0001-01-01",
                "9999-12-31",
                "9999-12-31 is the calendar's last day: a period must end before it",
            ),
        ],
    )
    def test_refused(self, given_from: str, given_to: str, problem: str) -> None:
        with pytest.raises(UserInputError) as refused:
            period_days(given_from, given_to, T0.date())
        assert str(refused.value) == problem

    def test_earliest_and_latest_days(self) -> None:
        assert period_days("0001-01-01", "9999-12-30", T0.date()) == (
            date(1, 1, 1),
            date(9999, 12, 30),
        )

    def test_a_period_after_today_has_not_begun(self) -> None:
        """A period starting after the clock's day is refused, as `leadflow report --now`
        refuses one starting after its instant (t2report D3: under `dashboard serve --now
        2017-12-31T23:59:59Z`, 2018 showed "Nothing in the period." as the figures of a
        command that exits 1); one starting today has begun."""
        with pytest.raises(UserInputError) as refused:
            period_days("2026-03-03", "2026-03-09", T0.date())
        assert (
            str(refused.value)
            == "from 2026-03-03 is after today 2026-03-02: the period has not begun"
        )
        assert period_days("2026-03-02", "2026-03-09", T0.date()) == (
            date(2026, 3, 2),
            date(2026, 3, 9),
        )

    def test_the_page_shows_the_last_days_instead(
        self, seeded: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """The page says why, as for its other periods it cannot show, and shows the last 7
        days (their report, their command), never the refused period's."""
        settings = dashboard_settings(make_settings, **{"dashboard.funnel_wait": 0})
        runtime = runtime_for(seeded, settings, clock)
        snapshots = funnel_snapshots(runtime)
        app, _holder = build_app(runtime, funnel=snapshots)
        ui = Browser(app)
        ui.login("vera")
        ui.get("/ui/funnel?from=2026-03-03&to=2026-12-31")
        assert snapshots.wait_idle(60)
        page = ui.get("/ui/funnel?from=2026-03-03&to=2026-12-31").text
        assert re.findall(r'<p class="note" role="alert">([^<]*)</p>', page) == [
            "from 2026-03-03 is after today 2026-03-02: the period has not begun; "
            "showing the last days instead."
        ]
        assert re.findall(r'name="(from|to)" type="date" value="([^"]+)"', page) == [
            ("from", "2026-02-24"),
            ("to", "2026-03-02"),
        ]
        assert (
            "<code>leadflow report --from 2026-02-24 --to 2026-03-02 --now 2026-03-02T09:00:00Z"
            "</code>\n(definitions: docs/report.md)"
        ) in page
        assert page.count("2026-03-03") == 1  # in the message alone
        assert snapshots.kept(date(2026, 3, 3), date(2026, 12, 31)) is None
        snapshots.close()


def test_an_address_with_no_page_is_the_dashboards_404_page(
    seeded: Engine, make_settings: Any, clock: SettableClock
) -> None:
    """``/ui/<no such page>`` answered the API's raw ``{"detail":"Not Found"}``; it is an HTML
    404 page of the dashboard naming the address, with the pages' links once signed in."""
    runtime = runtime_for(seeded, dashboard_settings(make_settings), clock)
    app, _holder = build_app(runtime)
    ui = Browser(app)
    signed_out = ui.get("/ui/nonsense")
    assert (signed_out.status_code, signed_out.headers["content-type"]) == (
        404,
        "text/html; charset=utf-8",
    )
    assert "<title>Page not found · leadflow</title>" in signed_out.text
    assert "The dashboard has no page <code>/ui/nonsense</code>" in signed_out.text
    assert 'aria-label="Pages"' not in signed_out.text
    ui.login("vera")
    signed_in = ui.get("/ui/funnel/nope/deeper")
    assert signed_in.status_code == 404
    assert "The dashboard has no page <code>/ui/funnel/nope/deeper</code>" in signed_in.text
    assert 'aria-label="Pages"' in signed_in.text
    assert ui.get("/v1/nothing").json() == {"detail": "Not Found"}  # the API keeps its JSON
