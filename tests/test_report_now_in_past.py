"""A report read with ``--now`` before the period's end, over a store that holds what came later
(historical data: a CRM export of a whole year read as of its middle): every family counts only
what happened by now and measures what was open then. Nothing after now exists.

The tester's case: the Maven export (2017) read with ``--now 2017-06-30`` showed 4,238 won (the
whole year's; 1,769 had closed by then), 959 of the 1,673 open opportunities also counted won
or lost, the open value summed the close values of deals closed later, Won and Lost listed as
open stages, and an open median age of -19 days.

The fixture, worked by hand: the period is two weeks from Monday 2 March 2026 09:00 UTC (T0);
now is a week in (T0 + 7 days).

- Leads: L1 enters lead at +1 day, mql at +2, sql at +9 (after now); L2 lead at +1, mql at +8
  (after now); L3 lead at +10 (after now: not there yet).
- Deals, with the history an import writes (Engaging at the engage date, the outcome at the
  close): D1 engaged -10, won at +3 (100); D2 engaged -5, won at +10 (700, after now); D3
  engaged -2, lost at +12 (0, after now); D4 engaged +1, Negotiating at +8 (after now), still
  open (400); D5 engaged at +9 (after now); D6 engaged -20, lost at +4 (0).
- SLA timers of Rita: S1 started +1, met 2 hours later; S2 started +2, met at +8 (after now);
  S3 started at +8 (after now).
- L1 and L2 came from ``ads``; L1 was touched by the campaign ``spring`` at +1.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from leadflow.funnel.period import Grouping, Period
from leadflow.funnel.report import Report, build_report
from leadflow.store.stage_history import change_row
from leadflow.store.tables import ACTIVITIES, DEALS, LEADS, REPS, SLA_TIMERS, STAGE_CHANGES

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # Monday 09:00 UTC
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
END = T0 + 14 * DAY
NOW = T0 + 7 * DAY
OLD = T0 - 100 * DAY


def seed(engine: Engine) -> None:
    lead = {"score": 0, "created_at": OLD, "updated_at": OLD, "stage_entered_at": OLD}
    with engine.begin() as connection:
        connection.execute(
            insert(REPS),
            [
                {"id": 1, "external_id": "r1", "name": "Rita", "email": "r@x.test",
                 "timezone": "UTC", "active": True, "capacity": None, "manager_id": None,
                 "pools": ["east"], "created_at": OLD, "updated_at": OLD},
            ],
        )  # fmt: skip
        connection.execute(
            insert(LEADS),
            [
                {**lead, "id": n, "external_id": f"L{n}", "stage": stage,
                 "attributes": {"source": "ads"}, "first_source": "ads"}
                for n, stage in ((1, "sql"), (2, "mql"), (3, "lead"))
            ],
        )  # fmt: skip
        connection.execute(insert(STAGE_CHANGES), _history())
        connection.execute(insert(DEALS), _deals())
        connection.execute(insert(STAGE_CHANGES), _deal_history())
        connection.execute(insert(SLA_TIMERS), _timers())
        connection.execute(
            insert(ACTIVITIES),
            [
                {"id": 1, "external_id": "a1", "lead_id": 1, "type": "visit",
                 "occurred_at": T0 + DAY, "properties": {"campaign": "spring"},
                 "created_at": OLD},
            ],
        )  # fmt: skip


def _history() -> list[dict[str, Any]]:
    def entry(lead: int, days: int, old: str | None, new: str) -> dict[str, Any]:
        return change_row(
            lead_id=lead, at=T0 + days * DAY, from_stage=old, to_stage=new, cause="import"
        )

    return [
        entry(1, 1, None, "lead"),
        entry(1, 2, "lead", "mql"),
        entry(1, 9, "mql", "sql"),
        entry(2, 1, None, "lead"),
        entry(2, 8, "lead", "mql"),
        entry(3, 10, None, "lead"),
    ]


DEALS_GIVEN = [
    # id, stage now, amount, engaged (days from T0), outcome, closed (days from T0)
    (1, "Won", 100.0, -10, "won", 3),
    (2, "Won", 700.0, -5, "won", 10),
    (3, "Lost", 0.0, -2, "lost", 12),
    (4, "Negotiating", 400.0, 1, None, None),
    (5, "Engaging", 50.0, 9, None, None),
    (6, "Lost", 0.0, -20, "lost", 4),
]


def _deals() -> list[dict[str, Any]]:
    return [
        {"id": n, "external_id": f"D{n}", "lead_id": None, "product": "A", "owner_id": 1,
         "stage": stage, "amount": amount, "engaged_at": T0 + engaged * DAY, "outcome": outcome,
         "closed_at": None if closed is None else T0 + closed * DAY, "attributes": {},
         "created_at": OLD, "updated_at": OLD}
        for n, stage, amount, engaged, outcome, closed in DEALS_GIVEN
    ]  # fmt: skip


def _deal_history() -> list[dict[str, Any]]:
    rows = []
    for n, _stage, _amount, engaged, outcome, closed in DEALS_GIVEN:
        rows.append(
            change_row(
                deal_id=n,
                at=T0 + engaged * DAY,
                from_stage=None,
                to_stage="Engaging",
                cause="import",
            )
        )
        if closed is not None:
            rows.append(
                change_row(
                    deal_id=n,
                    at=T0 + closed * DAY,
                    from_stage="Engaging",
                    to_stage=outcome,
                    cause="import",
                )
            )
    rows.append(
        change_row(
            deal_id=4, at=T0 + 8 * DAY, from_stage="Engaging", to_stage="Negotiating", cause="api"
        )
    )
    return rows


def _timers() -> list[dict[str, Any]]:
    def timer(n: int, start: datetime, closed: datetime | None) -> dict[str, Any]:
        return {"id": n, "lead_id": 1, "name": "first_touch", "rule_id": "mql",
                "rule_version": "v1", "owner_id": 1, "started_at": start,
                "due_at": start + 4 * HOUR, "calendar": "default", "ladder": [], "met_by": {},
                "level": 0, "status": "met" if closed else "running", "closed_at": closed,
                "close_reason": "the owner acted" if closed else None}  # fmt: skip

    return [
        timer(1, T0 + DAY, T0 + DAY + 2 * HOUR),
        timer(2, T0 + 2 * DAY, T0 + 8 * DAY),
        timer(3, T0 + 8 * DAY, None),
    ]


@pytest.fixture
def report_now(engine: Engine, make_settings: Any) -> Any:
    settings = make_settings(**{"calendar.timezone": "UTC"})
    seed(engine)

    def build(by: Grouping = Grouping.none, now: datetime = NOW) -> Report:
        return build_report(engine, settings, Period(T0, END, by), now)

    return build


def days(value: float) -> Any:
    return pytest.approx(value, rel=1e-9)


class TestNothingAfterNowExists:
    """Each family, read a week into a two-week period whose second week is in the store."""

    def test_stage_entries_and_conversions(self, report_now: Any) -> None:
        """Lead entries by now: L1 and L2 into lead, L1 into mql (L2's mql, L1's sql, L3's lead
        come later). Cohort lead -> mql: of L1 L2, L1; mql -> sql: of L1, none by now. The deals: D4 engaged (D5's engagement
        comes later), D1 won, D6 lost (D2's win and D3's loss come later)."""
        report = report_now()
        assert report.entries == {("all", "lead"): 2, ("all", "mql"): 1}
        cohorts = [
            (c.from_stage, c.to_stage, c.base, c.converted)
            for c in report.conversions
            if c.kind == "cohort"
        ]
        assert cohorts == [("lead", "mql", 2, 1), ("mql", "sql", 1, 0)]
        assert report.deal_entries == {
            ("all", "Engaging"): 1,
            ("all", "won"): 1,
            ("all", "lost"): 1,
        }

    def test_weeks_after_now_are_not_listed(self, report_now: Any) -> None:
        """By week: the week of 2 March alone (the week of 9 March has not begun by now)."""
        report = report_now(Grouping.week)
        weekly = {
            (c.group, c.from_stage, c.to_stage): (c.base, c.converted)
            for c in report.weekly_conversions
            if c.base or c.converted
        }
        assert weekly == {
            ("2026-03-02", "subscriber", "lead"): (0, 2),
            ("2026-03-02", "lead", "mql"): (2, 1),
            ("2026-03-02", "mql", "sql"): (1, 0),
        }

    def test_pipeline(self, report_now: Any) -> None:
        """Won D1 (100, cycle 13 days), lost D6; open now D2 D3 (closed later) and D4 (D5 was
        not engaged yet). The open value is D4's 400 alone: D2's 700 and D3's 0 are what they
        closed at, later, not what they were worth open. Velocity 3 x 0.5 x 100 / 13."""
        (line,) = report_now().pipeline
        assert (line.won, line.lost, line.won_amount) == (1, 1, 100.0)
        assert line.average_won_cycle_days == days(13.0)
        assert (line.open_opportunities, line.open_value) == (3, 400.0)
        assert line.velocity_per_day == days(3 * 0.5 * 100 / 13)

    def test_open_value_by_stage_is_the_stage_then(self, report_now: Any) -> None:
        """D2 D3 D4 were all Engaging now (D4 became Negotiating, D2 and D3 Won and Lost,
        later); only D4's amount is known as an open one."""
        assert report_now().open_by_stage == {"Engaging": (3, 400.0)}

    def test_pipeline_by_week_puts_deals_open_now_in_no_week(self, report_now: Any) -> None:
        """By week of the close: D1 and D6 in the week of 2 March; D2 D3 D4, open now, in
        none (D2 and D3 were put in the weeks of their later closes)."""
        found = {
            line.group: (line.won, line.lost, line.open_opportunities)
            for line in report_now(Grouping.week).pipeline
        }
        assert found == {"2026-03-02": (1, 1, 0), "(none)": (0, 0, 3)}

    def test_time_in_stage(self, report_now: Any) -> None:
        """Leads: L1 left lead after 1 day; L2 is in lead since +1 (6 days now), L1 in mql since
        +2 (5 days). Deals in Engaging: D1 left after 13 days, D6 after 24 (median 18.5, p90
        13 + 0.9 x 11 = 22.9); D2 D3 D4 open, 12, 9 and 6 days old (median 9). No age is
        negative."""
        report = report_now()
        leads = [
            (t.stage, t.left, t.median_days, t.open, t.open_median_age_days)
            for t in report.lead_times
        ]
        assert leads == [("lead", 1, days(1.0), 1, days(6.0)), ("mql", 0, None, 1, days(5.0))]
        deals = [
            (t.stage, t.left, t.median_days, t.p90_days, t.open, t.open_median_age_days)
            for t in report.deal_times
        ]
        assert deals == [("Engaging", 2, days(18.5), days(22.9), 3, days(9.0))]

    def test_sla(self, report_now: Any) -> None:
        """Rita's timers started by now: S1 met (2 business hours), S2 running now (met
        later); S3 starts later."""
        lines = {
            (s.by, s.group): (
                s.started,
                s.ended["met"],
                s.running,
                s.median_business_hours_to_touch,
            )
            for s in report_now().sla
        }
        assert lines == {("rep", "Rita"): (2, 1, 1, 2.0), ("pool", "(none)"): (2, 1, 1, 2.0)}

    def test_attribution(self, report_now: Any) -> None:
        """MQLs by now: L1 (ads; last touch spring). Won by now: D1 (no lead), 100."""
        found = {
            (a.model, a.kind, a.group): (a.conversions, a.amount)
            for a in report_now().attribution
            if a.model != "linear"
        }
        assert found == {
            ("first_touch", "mql", "ads"): (1.0, None),
            ("first_touch", "won", "(none)"): (1.0, 100.0),
            ("last_touch", "mql", "spring"): (1.0, None),
            ("last_touch", "won", "(none)"): (1.0, 100.0),
        }

    def test_what_happened_at_now_itself_has_happened(self, report_now: Any) -> None:
        """Read at D1's win (+3 days), not after it: D1 is won, not open (a rule that fired at
        the clock's instant is counted by a report read at that instant). Open: D2 D3 D4 D6."""
        report = report_now(now=T0 + 3 * DAY)
        (line,) = report.pipeline
        assert (line.won, line.lost, line.open_opportunities) == (1, 0, 4)
        assert report.deal_entries == {("all", "Engaging"): 1, ("all", "won"): 1}
        deals = [(t.stage, t.left, t.open) for t in report.deal_times]
        assert deals == [("Engaging", 1, 4)]

    def test_read_after_the_end_counts_the_whole_period(self, report_now: Any) -> None:
        """The same store read after the period: every entry and close of the two weeks, D4
        open in Negotiating with its 400 and D5 in Engaging with its 50."""
        report = report_now(now=END + DAY)
        assert report.entries == {("all", "lead"): 3, ("all", "mql"): 2, ("all", "sql"): 1}
        (line,) = report.pipeline
        assert (line.won, line.lost, line.open_opportunities, line.open_value) == (2, 2, 2, 450.0)
        assert report.open_by_stage == {"Engaging": (1, 50.0), "Negotiating": (1, 400.0)}
