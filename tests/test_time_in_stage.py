"""Time in stage on a hand-made history, against hand computations, on SQLite and PostgreSQL.

The cases the stays and their percentiles must get right: two entries at one instant (the
later id leaves the first at once), ids recorded out of time order, an owner change (no entry,
no new stay), a stay ended before the period (not measured) and one left after its end (open),
a final stage (not measured), a stage the settings do not name, an entry after the end, and
two open stays in one hour of age on either side of the stall age (one stalled, one not).
Every expected figure is worked out in the comment next to it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from leadflow.funnel.history import recorded_stages
from leadflow.funnel.period import Grouping, Period
from leadflow.funnel.report import DEAL_OUTCOMES
from leadflow.funnel.snapshot import report_read
from leadflow.funnel.time_in_stage import StageTime, stage_times
from leadflow.store.stage_history import change_row
from leadflow.store.tables import DEALS, LEADS, STAGE_CHANGES

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # Monday 09:00 UTC
END = T0 + timedelta(days=7)
OLD = T0 - timedelta(days=100)
DAY = timedelta(days=1)
LEAD_FINAL = ("customer", "disqualified")


def _entry(lead: int, at: datetime, old: str | None, new: str) -> dict[str, Any]:
    return change_row(lead_id=lead, at=at, from_stage=old, to_stage=new, cause="rule")


def _deal_entry(deal: int, at: datetime, old: str | None, new: str) -> dict[str, Any]:
    return change_row(deal_id=deal, at=at, from_stage=old, to_stage=new, cause="api")


def _history() -> list[dict[str, Any]]:
    """In the order recorded (the ids)."""
    return [
        _entry(1, T0 - 10 * DAY, None, "lead"),
        _entry(1, T0 + DAY, "lead", "mql"),
        _entry(1, T0 + DAY, "mql", "sql"),  # same instant, later id: the mql stay lasts 0 days
        _entry(1, T0 + 2 * DAY, "sql", "sql"),  # an owner change: the sql stay goes on
        _entry(1, T0 + 3 * DAY, "sql", "opportunity"),
        _entry(2, T0 + 2 * DAY, "lead", "mql"),  # recorded before the entry it follows
        _entry(2, T0 - DAY, None, "lead"),
        _entry(3, T0 - 30 * DAY, None, "lead"),  # left before the period: not measured
        _entry(3, T0 - 20 * DAY, "lead", "mql"),
        _entry(4, T0 + DAY, None, "lead"),
        _entry(4, T0 + 2 * DAY, "lead", "customer"),  # a final stage: not measured
        _entry(5, T0 + 8 * DAY, None, "lead"),  # after the end: not there yet
        _entry(6, T0 - 2 * DAY, None, "webinar"),  # a stage the settings do not name
        _entry(6, T0 + 4 * DAY, "webinar", "lead"),
        _entry(7, T0 - 5 * DAY, None, "lead"),
        _entry(7, T0 + 9 * DAY, "lead", "mql"),  # left after the end: open at the end
        _entry(8, T0 + 3 * DAY - timedelta(minutes=30), None, "lead"),  # 4 days 30 min old
        _entry(9, T0 + 3 * DAY, None, "lead"),  # exactly 4 days old: not past 4 days
        _deal_entry(1, T0 - 3 * DAY, None, "Engaging"),
        _deal_entry(1, T0 + 2 * DAY, "Engaging", "won"),
        _deal_entry(2, T0 + DAY, None, "Engaging"),
        _deal_entry(3, T0 - 40 * DAY, None, "Engaging"),
        _deal_entry(3, T0 - 35 * DAY, "Engaging", "lost"),
    ]


def seed(engine: Engine) -> None:
    lead = {"score": 0, "created_at": OLD, "updated_at": OLD, "stage_entered_at": OLD}
    deal = {"attributes": {}, "created_at": OLD, "updated_at": OLD, "product": "A",
            "amount": 100.0, "stage": "Engaging"}  # fmt: skip
    with engine.begin() as connection:
        connection.execute(
            insert(LEADS),
            [
                {**lead, "id": n, "external_id": f"L{n}", "stage": "lead", "attributes": {}}
                for n in range(1, 10)
            ],
        )
        connection.execute(
            insert(DEALS),
            [{**deal, "id": n, "external_id": f"D{n}", "lead_id": n} for n in (1, 2, 3)],
        )
        connection.execute(insert(STAGE_CHANGES), _history())


def _times(engine: Engine, by: Grouping, subject: str = "lead") -> dict[tuple[str, str], Any]:
    # Stalls: mql past 10 days, every other stage past 4.
    period = Period(T0, END, by, {"mql": timedelta(days=10)}, timedelta(days=4))
    with report_read(engine) as connection:
        found = stage_times(
            connection, period, subject, LEAD_FINAL if subject == "lead" else DEAL_OUTCOMES
        )
    return {(t.group, t.stage): _shown(t) for t in found}


def _shown(t: StageTime) -> tuple[Any, ...]:
    return (t.left, t.median_days, t.p90_days, t.open, t.open_median_age_days, t.stalled)


def days(value: float) -> Any:
    return pytest.approx(value, rel=1e-9)


FOUR_AND_A_HALF_HOUR = 4 + 1 / 48  # L8's age: 4 days and 30 minutes


class TestStays:
    """Ended stays (left in the period) measured apart from the open ones (entered before
    the end, not left by it)."""

    def test_leads(self, engine: Engine) -> None:
        """Ended: lead L4 1, L2 3, L1 11 days: median 3, p90 = 3 x 0.2 + 11 x 0.8 = 9.4; mql
        L1 0 days; sql L1 2 days (from its entry to the opportunity, past the owner change);
        webinar L6 6 days. Open: lead L6 3, L9 4, L8 4 1/48, L7 12 days: median (4 + 4 1/48) /
        2, two past 4 days (L8, L7; L9 is not past); mql L2 5, L3 27 days: median 16, one past
        10 days; opportunity L1 4 days, not past 4."""
        seed(engine)
        assert _times(engine, Grouping.none) == {
            ("all", "lead"): (3, days(3), days(9.4), 4, days((4 + FOUR_AND_A_HALF_HOUR) / 2), 2),
            ("all", "mql"): (1, days(0), days(0), 2, days(16), 1),
            ("all", "opportunity"): (0, None, None, 1, days(4), 0),
            ("all", "sql"): (1, days(2), days(2), 0, None, 0),
            ("all", "webinar"): (1, days(6), days(6), 0, None, 0),
        }

    def test_leads_by_week(self, engine: Engine) -> None:
        """An ended stay is in the week it ended (all in the week of 2 March), an open one in
        the week it began: L3's mql on Tuesday 10 February, L7's lead on Wednesday 25 February,
        the others in the week of 2 March (lead L6 3, L9 4, L8 4 1/48 days: median 4)."""
        seed(engine)
        assert _times(engine, Grouping.week) == {
            ("2026-02-09", "mql"): (0, None, None, 1, days(27), 1),
            ("2026-02-23", "lead"): (0, None, None, 1, days(12), 1),
            ("2026-03-02", "lead"): (3, days(3), days(9.4), 3, days(4), 1),
            ("2026-03-02", "mql"): (1, days(0), days(0), 1, days(5), 0),
            ("2026-03-02", "opportunity"): (0, None, None, 1, days(4), 0),
            ("2026-03-02", "sql"): (1, days(2), days(2), 0, None, 0),
            ("2026-03-02", "webinar"): (1, days(6), days(6), 0, None, 0),
        }

    def test_deals(self, engine: Engine) -> None:
        """D1 engaged 5 days before it was won in the period; D2 open 6 days (past 4); D3 left
        Engaging before the period; won and lost are final."""
        seed(engine)
        assert _times(engine, Grouping.none, "deal") == {
            ("all", "Engaging"): (1, days(5), days(5), 1, days(6), 1),
        }

    def test_no_history(self, engine: Engine) -> None:
        """A store without history has no stays."""
        assert _times(engine, Grouping.none) == {}
        assert _times(engine, Grouping.week, "deal") == {}


def test_recorded_stages(engine: Engine) -> None:
    """Every stage the history enters, leads' and deals' alike, each once."""
    seed(engine)
    with report_read(engine) as connection:
        found = recorded_stages(connection)
    assert sorted(found) == sorted(
        ["lead", "mql", "sql", "opportunity", "customer", "webinar", "Engaging", "won", "lost"]
    )


def test_a_percentile_between_two_equal_stays_is_that_stay_exactly(engine: Engine) -> None:
    """Ten leads left ``lead`` in the period after 1 to 8, then 13 and 13 days: the p90 lies
    0.1 of the way from the 9th stay (13) to the 10th (13), so it is 13. Added as 13 x 0.9 +
    13 x 0.1 it was 13.000000000000002 (a report printed ``107.00000000000001``); it is now
    interpolated as PostgreSQL's percentile_cont does, 13 + (13 - 13) x 0.1, on both stores."""
    lead = {"score": 0, "created_at": OLD, "updated_at": OLD, "stage_entered_at": OLD}
    stays = [1, 2, 3, 4, 5, 6, 7, 8, 13, 13]
    left = T0 + DAY
    with engine.begin() as connection:
        connection.execute(
            insert(LEADS),
            [
                {**lead, "id": n, "external_id": f"L{n}", "stage": "mql", "attributes": {}}
                for n in range(1, 11)
            ],
        )
        connection.execute(
            insert(STAGE_CHANGES),
            [
                row
                for n, stay in enumerate(stays, start=1)
                for row in (
                    _entry(n, left - stay * DAY, None, "lead"),
                    _entry(n, left, "lead", "mql"),
                )
            ],
        )
    (left_, median, p90, *_rest) = _times(engine, Grouping.none)[("all", "lead")]
    assert (left_, median, p90) == (10, 5.5, 13.0)
    assert repr(p90) == "13.0"
