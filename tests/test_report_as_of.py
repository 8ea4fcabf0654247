"""A period that includes today ends at the next midnight, after now: what is still open (stays'
ages and stalls, open deals, running SLA timers) is measured at the clock's now, not at that
future midnight, and the report says so.

The tester's case: leads imported three minutes before ``leadflow report --from 2026-11-24
--to 2026-11-30 --stall lead=4h`` run at 18:17 showed an open median age of 0.24 days (their
age at midnight, 5 h 46 min away) and every one of them stalled.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert

from leadflow.clock import SettableClock
from leadflow.funnel.files import html_text, json_text
from leadflow.funnel.period import Period, day_start
from leadflow.funnel.report import build_report
from leadflow.funnel.sections import sections
from leadflow.store.stage_history import change_row
from leadflow.store.tables import DEALS, LEADS, STAGE_CHANGES

NOW = datetime(2026, 11, 30, 18, 17, tzinfo=UTC)
IMPORTED = NOW - timedelta(minutes=3)
MORNING = NOW - timedelta(hours=8)  # 10:17, past the 4 hours of --stall lead=4h by now
ENGAGED = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
OLD = datetime(2026, 1, 1, tzinfo=UTC)
MINUTE = 1 / 1440  # a minute, in days


def seed(engine: Engine) -> None:
    """L1-L3 imported three minutes ago, L4 this morning, all still leads; D1 (L4's) engaged on
    Wednesday 25 November at 12:00, still open."""
    lead = {"score": 0, "created_at": OLD, "updated_at": OLD, "stage_entered_at": OLD}
    entered = {1: IMPORTED, 2: IMPORTED, 3: IMPORTED, 4: MORNING}
    with engine.begin() as connection:
        connection.execute(
            insert(LEADS),
            [
                {**lead, "id": n, "external_id": f"L{n}", "stage": "lead", "attributes": {}}
                for n in entered
            ],
        )
        connection.execute(
            insert(DEALS),
            [
                {"id": 1, "external_id": "D1", "lead_id": 4, "attributes": {}, "product": "A",
                 "amount": 100.0, "stage": "Engaging", "engaged_at": ENGAGED,
                 "created_at": OLD, "updated_at": OLD},
            ],
        )  # fmt: skip
        history = [
            change_row(lead_id=n, at=at, from_stage=None, to_stage="lead", cause="import")
            for n, at in entered.items()
        ]
        history.append(
            change_row(deal_id=1, at=ENGAGED, from_stage=None, to_stage="Engaging", cause="api")
        )
        connection.execute(insert(STAGE_CHANGES), history)


def days(value: float) -> Any:
    return pytest.approx(value, rel=1e-9)


def _period() -> Period:
    """``--from 2026-11-24 --to 2026-11-30 --stall lead=4h``: it ends at midnight tonight."""
    return Period(
        day_start(datetime(2026, 11, 24).date()),
        day_start(NOW.date(), after=True),
        stall_after={"lead": timedelta(hours=4)},
    )


def test_open_stays_are_measured_now_when_the_period_ends_later(
    engine: Engine, make_settings: Any
) -> None:
    """Open leads: L1-L3 3 minutes old, L4 8 hours: median 3 minutes, one past 4 hours (L4);
    at midnight they were 5 h 46 min and 13 h 46 min old, all four stalled. D1 has been
    engaging 5 days 6 h 17 min, and is an open opportunity now."""
    seed(engine)
    clock = SettableClock(NOW)
    report = build_report(engine, make_settings(), _period(), clock.now())
    assert report.period.as_of == NOW
    lead_open = [
        (t.stage, t.open, t.open_median_age_days, t.stalled) for t in report.lead_times if t.open
    ]
    assert lead_open == [("lead", 4, days(3 * MINUTE), 1)]
    deal_open = [(t.stage, t.open, t.open_median_age_days, t.stalled) for t in report.deal_times]
    assert deal_open == [("Engaging", 1, days(5 + (6 * 60 + 17) * MINUTE), 0)]
    assert [(line.group, line.open_opportunities) for line in report.pipeline] == [("all", 1)]
    assert report.open_by_stage == {"Engaging": (1, 100.0)}

    rows = sections(report)
    document = json.loads(json_text(report, rows))
    assert document["period"] == {
        "from": "2026-11-24T00:00:00+00:00",
        "to": "2026-12-01T00:00:00+00:00",
        "by": "none",
        "as_of": "2026-11-30T18:17:00+00:00",
    }
    assert (
        "<p class=as-of>As of 2026-11-30T18:17:00+00:00 (the period ends later): nothing after "
        "it is counted; open stays, deals and SLA timers are those open then.</p>"
        in html_text(report, rows)
    )


def test_a_period_ended_before_now_is_measured_at_its_end(
    engine: Engine, make_settings: Any
) -> None:
    """The same period read a day later: the open ages at midnight, 5 h 46 min for L1-L3 and
    13 h 46 min for L4, all past 4 hours; no as-of sentence (it is the period's end)."""
    seed(engine)
    clock = SettableClock(NOW + timedelta(days=1))
    report = build_report(engine, make_settings(), _period(), clock.now())
    assert report.period.as_of == report.period.end
    lead_open = [
        (t.stage, t.open, t.open_median_age_days, t.stalled) for t in report.lead_times if t.open
    ]
    assert lead_open == [("lead", 4, days((5 * 60 + 46) * MINUTE), 4)]
    rows = sections(report)
    assert json.loads(json_text(report, rows))["period"]["as_of"] == "2026-12-01T00:00:00+00:00"
    assert "as-of" not in html_text(report, rows)
