"""Engagement from one scan of the activities equals the criteria computed one by one.

``engagement_by_lead`` reads a range's activities once, every criterion a ``SUM(CASE ...)``
column (a criterion capped per period groups the scan by its period; a second one with other
periods is a scan of its own). Pins, on SQLite and PostgreSQL, for any activities and any
``now``: each lead's engagement is the sum of ``criterion_points`` (what an explanation lists)
and of a plain Python computation of the model, and the rescoring pass stores it. Also pins
the floor SQLite computes without a Python call.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, cast, delete, literal, select, union_all
from sqlalchemy.types import Float
from test_scoring import T0, add_leads, model_of

from leadflow.rule_language.scoring_model import ScoringModel
from leadflow.scoring.rescoring import rescore
from leadflow.scoring.sql import criterion_points, engagement_by_lead, sql_floor
from leadflow.store.tables import ACTIVITIES, LEADS, SCORE_CHANGES, SCORING_RUNS

MODEL = """\
scoring:
  engagement:
    - id: pricing
      activity: page_view
      when: {field: properties.url, contains: /pricing}
      points: 10
      half_life: 7d
      cap: 15
    - id: views
      activity: page_view
      points: 2
      half_life: 14d
      cap: {points: 3, per: 1d}
    - id: opens
      activity: [email_open, email_click]
      points: 2
      half_life: 10d
      cap: {points: 5, per: 7d}
    - id: webinar
      activity: webinar
      points: 8
      window: 30d
    - id: download
      activity: download
      points: 4
      cap: 10
    - id: unsubscribe
      activity: unsubscribe
      points: -20
      cap: 30
"""
"""Every kind of criterion: a condition, half-lives, two per-period caps with different
periods (the second is its own scan), a window, no decay, a negative one."""

TYPES = ["page_view", "email_open", "email_click", "webinar", "download", "unsubscribe", "call"]
URLS = ["/pricing", "/pricing?plan=pro", "/blog", "/docs"]
DAY = timedelta(days=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

activity = st.tuples(
    st.integers(1, 3),
    st.sampled_from(TYPES),
    # Minutes and 7 seconds: never a whole number of days or half-lives, where a value sits
    # exactly on a rounding boundary and the last bit of a float decides.
    st.integers(-3 * 24 * 60, 60 * 24 * 60).map(lambda minutes: minutes * 60 + 7),
    st.sampled_from(URLS),
    st.booleans(),
)


def half_up(value: float) -> int:
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


def python_engagement(
    model: ScoringModel, items: list[tuple[int, str, datetime, str, bool]], now: datetime
) -> dict[int, int]:
    """The model applied in Python, one activity at a time: the reference."""
    totals: dict[int, int] = defaultdict(int)
    for criterion in model.engagement:
        sums: dict[tuple[int, int], float] = defaultdict(float)
        for lead_id, kind, at, url, machine in items:
            if machine or kind not in criterion.activity_types or at > now:
                continue
            if criterion.window is not None and at <= now - criterion.window:
                continue
            if criterion.id == "pricing" and "/pricing" not in url:
                continue
            value = float(criterion.points)
            if criterion.half_life is not None:
                value *= 0.5 ** ((now - at) / criterion.half_life)
            # Weeks start on Mondays: the first after the epoch is 1970-01-05.
            start = EPOCH + timedelta(days=4) if criterion.weekly_periods else EPOCH
            period = (
                0 if criterion.cap_per is None else math.floor((at - start) / criterion.cap_per)
            )
            sums[lead_id, period] += value
        per_lead: dict[int, float] = defaultdict(float)
        for (lead_id, _period), value in sums.items():
            per_lead[lead_id] += capped(value, criterion.cap) if criterion.cap_per else value
        for lead_id, value in per_lead.items():
            totals[lead_id] += half_up(value if criterion.cap_per else capped(value, criterion.cap))
    return dict(totals)


def capped(value: float, cap: int | None) -> float:
    if cap is None:
        return value
    return max(value, -cap) if value < 0 else min(value, cap)


class TestOneScanEngagement:
    """For any activities and any ``now``: one scan = criteria one by one = Python."""

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(items=st.lists(activity, max_size=25), later=st.integers(0, 40 * 24 * 60))
    def test_matches_criteria_and_python(
        self, engine: Engine, tmp_path: Path, items: list[Any], later: int
    ) -> None:
        model = model_of(tmp_path, MODEL)
        now = T0 + timedelta(minutes=later)
        dialect = engine.dialect.name
        rows = [
            (lead_id, kind, T0 - timedelta(seconds=age), url, machine)
            for lead_id, kind, age, url, machine in items
        ]
        with engine.begin() as connection:
            for table in (SCORE_CHANGES, SCORING_RUNS, ACTIVITIES, LEADS):
                connection.execute(delete(table))
        add_leads(engine, {}, {}, {})
        if rows:
            with engine.begin() as connection:
                connection.execute(
                    ACTIVITIES.insert(),
                    [
                        {
                            "external_id": f"A{index}",
                            "lead_id": lead_id,
                            "type": kind,
                            "occurred_at": at,
                            "properties": {"url": url} if kind == "page_view" else {},
                            "machine": machine,
                            "created_at": at,
                        }
                        for index, (lead_id, kind, at, url, machine) in enumerate(rows)
                    ],
                )
        expected = python_engagement(model, rows, now)
        scan = engagement_by_lead(model, now, dialect)
        assert scan is not None
        by_criterion: dict[int, int] = defaultdict(int)
        with engine.connect() as connection:
            scanned = {
                row.lead_id: int(row.engagement)
                for row in connection.execute(scan)
                if row.engagement
            }
            for criterion in model.engagement:
                for row in connection.execute(criterion_points(criterion, now, dialect)):
                    by_criterion[row.lead_id] += row.points
        assert scanned == {lead: points for lead, points in expected.items() if points}
        assert {lead: points for lead, points in by_criterion.items() if points} == scanned
        rescore(engine, model, now)
        with engine.connect() as connection:
            stored = {
                row.id: row.score_engagement
                for row in connection.execute(select(LEADS.c.id, LEADS.c.score_engagement))
            }
        assert stored == {lead: expected.get(lead, 0) for lead in (1, 2, 3)}


class TestSqlFloor:
    """``sql_floor`` is floor on both stores, below zero and for NULL too."""

    def test_values(self, engine: Engine) -> None:
        inputs = [-1.5, -1.0, -0.2, 0.0, 0.7, 2.0, None]
        numbers = union_all(
            *(
                select(literal(index).label("n"), cast(literal(value), Float).label("x"))
                for index, value in enumerate(inputs)
            )
        ).subquery("numbers")
        floor = sql_floor(numbers.c.x, engine.dialect.name)
        with engine.connect() as connection:
            floors = connection.execute(select(floor).order_by(numbers.c.n)).scalars().all()
        assert [None if value is None else int(value) for value in floors] == [
            -2,
            -1,
            -1,
            0,
            0,
            2,
            None,
        ]
