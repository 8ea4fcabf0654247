"""The funnel report's figures on a small hand-made funnel, against hand computations.

One week (Monday 2 March 2026, 7 days) of five leads' stage history, nine deals, eight SLA
timers and a few campaign touches, on SQLite and PostgreSQL. Every expected figure below is
worked out by hand in the comments next to it, from PRODUCT.md's definitions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, update

from leadflow.engine.sales_cycle import average_cycle
from leadflow.funnel.period import Grouping, Period
from leadflow.funnel.report import Report, build_report
from leadflow.funnel.sections import sections
from leadflow.rule_language.conditions import IdleBeyondAverageCycle
from leadflow.store.database import transaction
from leadflow.store.stage_history import change_row
from leadflow.store.tables import ACTIVITIES, AUDIT, DEALS, LEADS, REPS, SLA_TIMERS, STAGE_CHANGES

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # Monday 09:00 UTC
END = T0 + timedelta(days=7)
OLD = T0 - timedelta(days=100)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def seed(engine: Engine) -> None:
    rep = {"timezone": "UTC", "active": True, "capacity": None, "manager_id": None}
    lead = {"score": 0, "created_at": OLD, "updated_at": OLD, "stage_entered_at": OLD}
    with engine.begin() as connection:
        connection.execute(
            insert(REPS),
            [
                {**rep, "id": 1, "external_id": "r1", "name": "Rita", "email": "r@x.test",
                 "pools": ["east"], "created_at": OLD, "updated_at": OLD},
                {**rep, "id": 2, "external_id": "r2", "name": "Raj", "email": "j@x.test",
                 "pools": ["west"], "created_at": OLD, "updated_at": OLD},
            ],
        )  # fmt: skip
        sources = {1: "ads", 2: "ads", 3: "seo", 4: None, 5: "seo"}
        connection.execute(
            insert(LEADS),
            [
                {**lead, "id": n, "external_id": f"L{n}", "stage": "lead",
                 "attributes": {"source": s} if s else {}}
                for n, s in sources.items()
            ],
        )  # fmt: skip
        connection.execute(insert(STAGE_CHANGES), _history())
        connection.execute(insert(DEALS), _deals())
        connection.execute(insert(SLA_TIMERS), _timers())
        connection.execute(insert(AUDIT), _assignments())
        connection.execute(insert(ACTIVITIES), _touches())


def _history() -> list[dict[str, Any]]:
    def entry(lead: int, at: datetime, old: str | None, new: str, owner: int | None = None) -> Any:
        return change_row(
            lead_id=lead, at=at, from_stage=old, to_stage=new, cause="rule",
            from_owner_id=None, to_owner_id=owner,
        )  # fmt: skip

    return [
        entry(1, T0 - 10 * DAY, None, "lead"),
        entry(1, T0 + DAY, "lead", "mql"),
        entry(1, T0 + DAY, "mql", "mql", owner=1),  # an owner change: no entry, no new stay
        entry(1, T0 + 3 * DAY, "mql", "sql", owner=1),
        entry(2, T0, None, "lead"),
        entry(2, T0 + 2 * DAY, "lead", "mql"),
        entry(3, T0 + DAY, None, "lead"),
        entry(4, T0 - 5 * DAY, None, "mql"),
        entry(4, T0 + 4 * DAY, "mql", "recycled"),
        entry(4, T0 + 5 * DAY, "recycled", "mql"),
        entry(5, T0 + 2 * DAY, None, "lead"),
        entry(5, T0 + 6 * DAY, "lead", "mql"),
    ]


def _deals() -> list[dict[str, Any]]:
    base = {"attributes": {}, "created_at": OLD, "updated_at": OLD, "owner_id": 1}

    def deal(
        n: int,
        lead: int | None,
        product: str,
        amount: float,
        engaged: datetime | None,
        outcome: str | None,
        closed: datetime | None,
    ) -> dict[str, Any]:
        return {**base, "id": n, "external_id": f"D{n}", "lead_id": lead, "product": product,
                "amount": amount, "engaged_at": engaged, "outcome": outcome, "closed_at": closed,
                "stage": outcome.title() if outcome else "Engaging"}  # fmt: skip

    return [
        deal(1, 1, "A", 100, T0 - 20 * DAY, "won", T0 + DAY),  # cycle 21 days
        deal(2, 2, "A", 300, T0 - 10 * DAY, "won", T0 + 2 * DAY),  # cycle 12 days
        deal(3, 3, "A", 50, T0 - 5 * DAY, "lost", T0 + 3 * DAY),
        deal(4, None, "B", 1000, T0 - 30 * DAY, "won", T0 + 6 * DAY),  # cycle 36 days
        deal(5, None, "A", 500, T0 - DAY, None, None),  # open at the end
        deal(6, None, "A", 700, T0 + 2 * DAY, "won", T0 + 8 * DAY),  # won after: open at end
        deal(7, None, "B", 80, None, None, None),  # never engaged: not an opportunity
        deal(8, None, "A", 900, T0 - 9 * DAY, "won", T0 - DAY),  # won before the period
        deal(9, None, "B", 40, T0 - 40 * DAY, "recycled", T0 + 2 * DAY),  # neither won nor lost
    ]


def _timers() -> list[dict[str, Any]]:
    def timer(
        n: int,
        lead: int,
        owner: int,
        start: datetime,
        status: str,
        closed: datetime | None,
        reason: str | None,
    ) -> dict[str, Any]:
        return {"id": n, "lead_id": lead, "name": "first_touch", "rule_id": "mql",
                "rule_version": "v1", "owner_id": owner, "started_at": start,
                "due_at": start + 4 * HOUR, "calendar": "default", "ladder": [], "met_by": {},
                "level": 0, "status": status, "closed_at": closed, "close_reason": reason}  # fmt: skip

    mon, tue, wed, thu = T0, T0 + DAY, T0 + 2 * DAY, T0 + 3 * DAY
    return [
        timer(1, 1, 1, mon, "met", mon + 2 * HOUR, "the owner acted"),  # 2 business hours
        timer(2, 2, 1, tue, "met_late", tue + 7 * HOUR, "the owner acted after the due time"),
        timer(3, 3, 2, mon + HOUR, "reassigned", mon + 5 * HOUR, "reassigned to r2"),
        timer(4, 4, 2, mon + 5 * HOUR, "running", None, None),
        timer(5, 5, 2, wed, "cancelled", wed + HOUR, "lead is disqualified"),
        timer(6, 1, 1, mon - 2 * DAY, "met", mon, "the owner acted"),  # started before
        timer(7, 2, 1, thu, "met", T0 + 8 * DAY, "the owner acted"),  # ended after the end
        timer(8, 3, 2, tue, "breached", tue + 8 * HOUR, "escalation ladder done"),
    ]


def _assignments() -> list[dict[str, Any]]:
    def audit(lead: int, at: datetime, action: str, pool: str) -> dict[str, Any]:
        return {"at": at, "source": "rule", "rule_id": "mql", "rule_version": "v1",
                "lead_id": lead, "deal_id": None, "action": action,
                "params": {"pool": pool}, "evidence": {}}  # fmt: skip

    return [
        audit(1, T0, "assigned", "east"),
        audit(2, T0 + DAY, "assigned", "east"),
        audit(3, T0 + HOUR, "assigned", "west"),
        audit(4, T0 + 5 * HOUR, "reassigned", "west"),
        audit(5, T0 + 2 * DAY, "assigned", "west"),
    ]


def _touches() -> list[dict[str, Any]]:
    def activity(n: int, lead: int, at: datetime, properties: dict[str, str]) -> Any:
        return {"id": n, "external_id": f"a{n}", "lead_id": lead, "type": "visit",
                "occurred_at": at, "properties": properties, "created_at": OLD}  # fmt: skip

    return [
        activity(1, 1, T0 - 3 * DAY, {"campaign": "spring"}),
        activity(2, 1, T0 + 12 * HOUR, {"source": "webinar"}),
        activity(3, 2, T0 + DAY, {"campaign": "spring"}),
        activity(4, 2, T0 + 3 * DAY, {"campaign": "summer"}),  # after both L2 conversions
        activity(5, 1, T0 + HOUR, {}),  # not a touch: no campaign, no source
    ]


@pytest.fixture
def report_for(engine: Engine, make_settings: Any) -> Any:
    settings = make_settings(**{"calendar.timezone": "UTC"})
    seed(engine)

    def build(by: Grouping = Grouping.none) -> Report:
        period = Period(T0, END, by, {"mql": timedelta(days=3)})
        return build_report(engine, settings, period, END)

    return build


class TestStages:
    """Entries per stage and conversions, period and cohort, from the stage history."""

    def test_entries_and_conversions(self, report_for: Any) -> None:
        """Entries in the week: lead L2 L3 L5; mql L1 L2 L4 L5; sql L1; recycled L4 (L1's
        lead entry and L4's first mql are before the week). Cohort lead->mql: of L2 L3 L5, L2
        and L5 became MQLs; mql->sql: of L1 L2 L4 L5, L1."""
        report = report_for()
        assert report.entries == {
            ("all", "lead"): 3,
            ("all", "mql"): 4,
            ("all", "sql"): 1,
            ("all", "recycled"): 1,
        }
        found = {
            (c.kind, c.from_stage, c.to_stage): (c.base, c.converted) for c in report.conversions
        }
        assert found == {
            ("period", "subscriber", "lead"): (0, 3),
            ("period", "lead", "mql"): (3, 4),
            ("period", "mql", "sql"): (4, 1),
            ("period", "sql", "opportunity"): (1, 0),
            ("period", "opportunity", "customer"): (0, 0),
            ("cohort", "lead", "mql"): (3, 2),
            ("cohort", "mql", "sql"): (4, 1),
            ("cohort", "sql", "opportunity"): (1, 0),
        }
        assert [(c.base, c.converted, c.rate) for c in report.requalified] == [(1, 1, 1.0)]

    def test_grouped_by_source_and_week(self, report_for: Any) -> None:
        """By source: lead entries L2 (ads), L3 L5 (seo); MQLs L1 L2 (ads), L5 (seo), L4 (no
        source). By week: every entry of the period falls in the week of Monday 2 March."""
        by_source = report_for(Grouping.source).entries
        assert by_source == {
            ("ads", "lead"): 1,
            ("seo", "lead"): 2,
            ("ads", "mql"): 2,
            ("seo", "mql"): 1,
            ("(none)", "mql"): 1,
            ("ads", "sql"): 1,
            ("(none)", "recycled"): 1,
        }
        by_week = report_for(Grouping.week).entries
        assert by_week == {
            ("2026-03-02", "lead"): 3,
            ("2026-03-02", "mql"): 4,
            ("2026-03-02", "sql"): 1,
            ("2026-03-02", "recycled"): 1,
        }


class TestOtherGroups:
    """Rep, pool and product groupings."""

    def test_by_rep_pool_and_product(self, report_for: Any) -> None:
        """By rep: entries carry the owner on entry (only L1's sql entry had one: Rita); the
        pipeline groups by the deal's owner (all Rita's). By pool: L1 and L2 were assigned from
        east, L3 L4 L5 from west (their latest assignment before the end). By product: the
        entries are not grouped (all)."""
        by_rep = report_for(Grouping.rep)
        assert by_rep.entries[("Rita", "sql")] == 1
        assert by_rep.entries[("(none)", "mql")] == 4
        assert [(p.group, p.won, p.lost) for p in by_rep.pipeline] == [("Rita", 3, 1)]
        by_pool = report_for(Grouping.pool).entries
        assert (by_pool[("east", "mql")], by_pool[("west", "mql")]) == (2, 2)
        assert (by_pool[("east", "lead")], by_pool[("west", "lead")]) == (1, 2)
        assert report_for(Grouping.product).entries[("all", "mql")] == 4


class TestTimeInStage:
    """Exact median and p90 (percentile_cont) of the ended stays; open stays apart."""

    def test_leads(self, report_for: Any) -> None:
        """Ended in the week: lead stays 11 (L1), 2 (L2), 4 (L5) days: median 4, p90 = 4 x 0.2
        + 11 x 0.8 = 9.6; mql stays 2 (L1), 9 (L4): median 5.5, p90 = 2 x 0.1 + 9 x 0.9 = 8.3;
        recycled 1 (L4). Open at the end: lead L3 (6 days); mql L2 (5), L4 (2), L5 (1): median
        2, one past the 3-day mql stall age (L2); sql L1 (4)."""
        times = {t.stage: t for t in report_for().lead_times}
        shown = {
            stage: (t.left, t.median_days, t.p90_days, t.open, t.open_median_age_days, t.stalled)
            for stage, t in times.items()
        }
        assert shown == {
            "lead": (3, pytest.approx(4.0), pytest.approx(9.6), 1, pytest.approx(6.0), 0),
            "mql": (2, pytest.approx(5.5), pytest.approx(8.3), 3, pytest.approx(2.0), 1),
            "recycled": (1, pytest.approx(1.0), pytest.approx(1.0), 0, None, 0),
            "sql": (0, None, None, 1, pytest.approx(4.0), 0),
        }


class TestPipeline:
    """Win rate, average won cycle and amount, open opportunities, velocity."""

    def test_overall_and_by_product(self, report_for: Any, engine: Engine) -> None:
        """Won in the week D1 D2 D4 (100, 300, 1000; cycles 21, 12, 36 days), lost D3; D9
        recycled counts neither way; D8 won before. Open at the end: D5 and D6 (won after),
        not D7 (never engaged); their value D5's 500 alone: D6's 700 is what it was won at,
        after the end, not what it was worth open. Velocity = 2 x 0.75 x 466.67 / 23 = 700 /
        23."""
        report = report_for()
        (line,) = report.pipeline
        assert (line.won, line.lost, line.win_rate) == (3, 1, 0.75)
        assert line.average_won_amount == pytest.approx(1400 / 3)
        assert line.average_won_cycle_days == pytest.approx(23.0)
        assert (line.open_opportunities, line.open_value) == (2, 500.0)
        assert line.velocity_per_day == pytest.approx(700 / 23)
        by_product = {p.group: p for p in report.pipeline_by_product}
        a, b = by_product["A"], by_product["B"]
        assert (a.won, a.lost, a.average_won_cycle_days, a.open_opportunities) == (2, 1, 16.5, 2)
        assert a.velocity_per_day == pytest.approx(2 * (2 / 3) * 200 / 16.5)
        assert (b.won, b.lost, b.average_won_cycle_days, b.velocity_per_day) == (1, 0, 36.0, 0.0)

    def test_open_deals_without_an_amount_have_no_value_not_zero(
        self, report_for: Any, engine: Engine
    ) -> None:
        """A CRM that values a deal only when it closes (the Maven export: 1,589 deals open
        at the end of 2017, none with an amount) showed an open value of 0.00, a pipeline
        worth nothing. Now: empty when no amount is known (D5 has none, D6's is its close
        value, after the end), and 0 only where nothing is open (product B). D6 has no stage
        history here, and was not Won then: its stage at the end is not known."""
        with engine.begin() as connection:
            connection.execute(update(DEALS).where(DEALS.c.id == 5).values(amount=None))
        report = report_for()
        assert [(p.open_opportunities, p.open_value) for p in report.pipeline] == [(2, None)]
        by_product = {
            p.group: (p.open_opportunities, p.open_value) for p in report.pipeline_by_product
        }
        assert by_product == {"A": (2, None), "B": (0, 0.0)}
        assert report.open_by_stage == {"(none)": (1, None), "Engaging": (1, None)}
        rows = sections(report)
        assert rows["open_value_by_stage"] == [
            {"stage": "(none)", "open_deals": 1, "open_value": None},
            {"stage": "Engaging", "open_deals": 1, "open_value": None},
        ]

    def test_average_cycle_is_the_recycling_rules(self, report_for: Any, engine: Engine) -> None:
        """Over the same window, the report's average won cycle is the recycling rule's."""
        report = report_for()
        condition = IdleBeyondAverageCycle(
            factor=2, window=timedelta(days=7), min_deals=1, group_by=None, idle=None
        )  # the average reads neither group_by nor idle
        with transaction(engine) as session:
            rule = average_cycle(session, condition, END - timedelta(microseconds=1))
        assert rule.overall_deals == report.pipeline[0].won
        assert rule.overall_days == pytest.approx(report.pipeline[0].average_won_cycle_days)


class TestSla:
    """SLA compliance by rep and by pool, with median business hours to the first touch."""

    def test_by_rep_and_pool(self, report_for: Any) -> None:
        """Rita: met (2 business hours), met late (7), one still running at the end (ended
        after it); Raj: reassigned, running, cancelled, breached. Pools from the assignment at
        each timer's start: east S1 S2; west S3 S4 S5; none for S7 S8 (no assignment then)."""
        lines = {(s.by, s.group): s for s in report_for().sla}
        shown = {
            key: (line.started, line.ended, line.running, line.median_business_hours_to_touch)
            for key, line in lines.items()
        }
        none = dict.fromkeys(("met", "met_late", "breached", "reassigned", "cancelled"), 0)
        assert shown == {
            ("rep", "Raj"): (4, {**none, "breached": 1, "reassigned": 1, "cancelled": 1}, 1, None),
            ("rep", "Rita"): (3, {**none, "met": 1, "met_late": 1}, 1, 4.5),
            ("pool", "(none)"): (2, {**none, "breached": 1}, 1, None),
            ("pool", "east"): (2, {**none, "met": 1, "met_late": 1}, 0, 4.5),
            ("pool", "west"): (3, {**none, "reassigned": 1, "cancelled": 1}, 1, None),
        }
        assert lines[("rep", "Rita")].rate("met") == 0.5


class TestAttribution:
    """First touch (the lead's source), last touch and linear over campaign touches."""

    def test_mqls_and_won(self, report_for: Any) -> None:
        """MQLs L1 L2 L4 L5; won D1 (L1, 100), D2 (L2, 300), D4 (no lead, 1000). L1's touches
        before its MQL: spring, webinar; before D1 the same; L2's: spring (summer comes after)."""
        found = {
            (a.model, a.kind, a.group): (a.conversions, a.amount) for a in report_for().attribution
        }
        assert found == {
            ("first_touch", "mql", "ads"): (2.0, None),
            ("first_touch", "mql", "seo"): (1.0, None),
            ("first_touch", "mql", "(none)"): (1.0, None),
            ("first_touch", "won", "ads"): (2.0, 400.0),
            ("first_touch", "won", "(none)"): (1.0, 1000.0),
            ("last_touch", "mql", "webinar"): (1.0, None),
            ("last_touch", "mql", "spring"): (1.0, None),
            ("last_touch", "mql", "(none)"): (2.0, None),
            ("last_touch", "won", "webinar"): (1.0, 100.0),
            ("last_touch", "won", "spring"): (1.0, 300.0),
            ("last_touch", "won", "(none)"): (1.0, 1000.0),
            ("linear", "mql", "spring"): (1.5, None),
            ("linear", "mql", "webinar"): (0.5, None),
            ("linear", "mql", "(none)"): (2.0, None),
            ("linear", "won", "spring"): (1.5, 350.0),
            ("linear", "won", "webinar"): (0.5, 50.0),
            ("linear", "won", "(none)"): (1.0, 1000.0),
        }


class TestSections:
    """Every rendering reads the same sections."""

    def test_sections_name_every_family(self, report_for: Any) -> None:
        """The sections, in the order the report shows them."""
        assert list(sections(report_for())) == [
            "stage_entries",
            "deal_stage_entries",
            "conversion",
            "requalified",
            "time_in_stage",
            "pipeline",
            "pipeline_by_product",
            "open_value_by_stage",
            "sla",
            "attribution",
            "weekly_conversion",
        ]
