"""Days in stage and sales cycles are exact on SQLite too, as on PostgreSQL.

SQLite's ``julianday`` is a double near 2.46 million, good to about 20 microseconds: the
difference of two of them is off by up to 40 microseconds, so a stay of exactly 173 hours from
2026-03-01 00:00 came out 7.208333333488554 days (PostgreSQL: 7.208333333333333), counted as
older than a 173-hour stall age, and the same report differed between the stores in the tenth
digit (generated X Education leads: median 5.683333333116025 days against 5.683333333333334).
The difference is now rounded to whole milliseconds, which is what SQLite reads of a time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert

from leadflow.engine.sales_cycle import average_cycle
from leadflow.funnel.period import Grouping, Period
from leadflow.funnel.report import build_report
from leadflow.rule_language.conditions import IdleBeyondAverageCycle
from leadflow.store.database import transaction
from leadflow.store.stage_history import change_row
from leadflow.store.tables import DEALS, LEADS, STAGE_CHANGES

A = datetime(2026, 3, 1, tzinfo=UTC)
B = A + timedelta(hours=173)  # julianday(B) - julianday(A) is 7.208333333488554 on SQLite
EXACT = 173 / 24
OLD = A - timedelta(days=100)


def seed(engine: Engine) -> None:
    lead = {"score": 0, "created_at": OLD, "updated_at": OLD, "stage_entered_at": A}
    with engine.begin() as connection:
        connection.execute(
            insert(LEADS),
            [
                {**lead, "id": 1, "external_id": "L1", "stage": "mql", "attributes": {}},
                {**lead, "id": 2, "external_id": "L2", "stage": "lead", "attributes": {}},
            ],
        )
        connection.execute(
            insert(STAGE_CHANGES),
            [
                change_row(lead_id=1, at=A, from_stage=None, to_stage="lead", cause="import",
                           from_owner_id=None, to_owner_id=None),
                change_row(lead_id=1, at=B, from_stage="lead", to_stage="mql", cause="import",
                           from_owner_id=None, to_owner_id=None),
                change_row(lead_id=2, at=A, from_stage=None, to_stage="lead", cause="import",
                           from_owner_id=None, to_owner_id=None),
            ],
        )  # fmt: skip
        connection.execute(
            insert(DEALS),
            [
                {"id": 1, "external_id": "D1", "lead_id": 1, "product": "A", "amount": 10.0,
                 "engaged_at": A, "closed_at": B, "outcome": "won", "stage": "Won",
                 "attributes": {}, "created_at": OLD, "updated_at": OLD},
            ],
        )  # fmt: skip


def test_a_stay_of_exactly_the_stall_age_is_not_a_stall(engine: Engine, make_settings: Any) -> None:
    """Open at the period's end B for exactly 173 hours (L1 left at B, so its stay ended in
    the period; L2 still in ``lead``): not older than a 173-hour stall age, and its age is
    exactly 173/24 days, as is the ended stay."""
    seed(engine)
    settings = make_settings(**{"calendar.timezone": "UTC"})
    period = Period(A, B + timedelta(microseconds=1), Grouping.none, {"lead": timedelta(hours=173)})
    report = build_report(engine, settings, period, B + timedelta(hours=1))
    times = {t.stage: t for t in report.lead_times}
    lead = times["lead"]
    assert (lead.left, lead.median_days, lead.p90_days) == (1, EXACT, EXACT)
    open_period = Period(A, B, Grouping.none, {"lead": timedelta(hours=173)})
    report = build_report(engine, settings, open_period, B + timedelta(hours=1))
    lead = {t.stage: t for t in report.lead_times}["lead"]
    assert (lead.open, lead.open_median_age_days, lead.stalled) == (2, EXACT, 0)


def test_the_average_won_cycle_is_exact_in_the_report_and_the_rule(
    engine: Engine, make_settings: Any
) -> None:
    """A deal engaged at A and won at B: a cycle of exactly 173/24 days, in the report's
    pipeline and in the recycling rule's average over the same window."""
    seed(engine)
    settings = make_settings(**{"calendar.timezone": "UTC"})
    period = Period(A, B + timedelta(hours=1))
    report = build_report(engine, settings, period, B + timedelta(hours=1))
    assert report.pipeline[0].average_won_cycle_days == EXACT
    condition = IdleBeyondAverageCycle(
        factor=2, window=timedelta(days=30), min_deals=1, group_by=None, idle=None
    )
    with transaction(engine) as session:
        rule = average_cycle(session, condition, B + timedelta(hours=1))
    assert (rule.overall_deals, rule.overall_days) == (1, EXACT)
