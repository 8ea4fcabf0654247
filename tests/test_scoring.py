"""The scoring model computed in the database: exact decay, caps, windows, history and causes.

Pins, on SQLite and PostgreSQL, with hand-computed expectations:
- fit is the sum of the points of the criteria the lead meets (negative ones included);
- an activity with a half-life is worth ``points x 0.5 ^ (age / half_life)`` at any ``now``;
  a window counts full points inside it and none after; a cap holds overall or per period;
  each criterion's sum is rounded half away from zero, and the parts add up to the score;
- machine engagement and activities after ``now`` earn nothing;
- a pass writes only what changed, with a ``score_changes`` row naming why (model, fit,
  activity, decay), and keeps what rules' ``adjust_score`` added.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from import_support import rows
from sqlalchemy import Engine, insert

from leadflow.rule_language.loader import load_rule_set
from leadflow.rule_language.model import content_digest
from leadflow.rule_language.scoring_model import ScoringModel
from leadflow.scoring.explain import explain_score
from leadflow.scoring.rescoring import rescore
from leadflow.settings import Settings
from leadflow.store.tables import ACTIVITIES, LEADS

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

MODEL = """\
scoring:
  fit:
    - id: software
      when: {field: attributes.industry, equals: software}
      points: 20
    - id: big
      when: {field: attributes.employees, at_least: 200}
      points: 15
    - id: free-mail
      when: {field: email, ends_with: "@gmail.com"}
      points: -10
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
    - id: webinar
      activity: webinar
      points: 8
      window: 30d
    - id: unsubscribe
      activity: unsubscribe
      points: -20
  grades:
    fit: {A: 30, B: 15, C: 1}
    engagement: {1: 20, 2: 10, 3: 1}
"""


def model_of(tmp_path: Path, text: str = MODEL) -> ScoringModel:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "scoring.yaml").write_text(text, encoding="utf-8")
    settings = Settings.model_validate(
        {"attributes": {"leads": {"industry": "string", "employees": "integer"}}}
    )
    model = load_rule_set(folder, settings).scoring
    assert isinstance(model, ScoringModel)
    return model


def add_leads(engine: Engine, *leads: dict[str, Any]) -> None:
    old = T0 - timedelta(days=90)
    with engine.begin() as connection:
        connection.execute(
            insert(LEADS),
            [
                {
                    "id": index,
                    "external_id": f"L{index}",
                    "email": lead.get("email", f"lead{index}@example.com"),
                    "score": lead.get("score", 0),
                    "stage": "lead",
                    "stage_entered_at": old,
                    "attributes": lead.get("attributes", {}),
                    "created_at": old,
                    "updated_at": old,
                }
                for index, lead in enumerate(leads, start=1)
            ],
        )


def add_activities(engine: Engine, *items: tuple[int, str, datetime, dict[str, Any], bool]) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(ACTIVITIES),
            [
                {
                    "external_id": f"A{index}",
                    "lead_id": lead_id,
                    "type": kind,
                    "occurred_at": at,
                    "properties": properties,
                    "machine": machine,
                    "created_at": at,
                }
                for index, (lead_id, kind, at, properties, machine) in enumerate(items, start=1)
            ],
        )


def scores(engine: Engine) -> list[tuple[Any, ...]]:
    return rows(
        engine, "leads", "external_id", "score", "score_fit", "score_engagement", "score_grade"
    )


def half_up(value: float) -> int:
    return math.floor(value + 0.5) if value >= 0 else -math.floor(-value + 0.5)


class TestFit:
    """Fit is the sum of the met criteria's points; unknown values meet nothing."""

    def test_fit_points_and_grades(self, engine: Engine, tmp_path: Path) -> None:
        add_leads(
            engine,
            {"attributes": {"industry": "software", "employees": 500}},
            {"attributes": {"industry": "software"}, "email": "a@gmail.com"},
            {"attributes": {"employees": 10}},
            {"attributes": {"industry": "Software", "employees": 200}, "email": "b@Gmail.com"},
        )
        outcome = rescore(engine, model_of(tmp_path), T0)
        assert outcome.changed == 4  # L3 too: its parts and grade are stored for the first time
        assert scores(engine) == [
            ("L1", 35, 35, 0, "A4"),
            ("L2", 10, 10, 0, "C4"),
            ("L3", 0, 0, 0, "D4"),
            ("L4", 15, 15, 0, "B4"),
        ]


class TestEngagementDecay:
    """Half-lives, windows, caps and rounding, checked against a hand computation."""

    def test_half_life_window_and_caps_at_arbitrary_times(
        self, engine: Engine, tmp_path: Path
    ) -> None:
        add_leads(engine, {}, {})
        day = timedelta(days=1)
        add_activities(
            engine,
            # Lead 1: two pricing views (3 and 10 days old at T0), each also a plain view.
            (1, "page_view", T0 - 3 * day, {"url": "/pricing"}, False),
            (1, "page_view", T0 - 10 * day, {"url": "/pricing?plan=pro"}, False),
            # Three plain views on one day: the per-day cap of 3 holds for that day.
            (1, "page_view", T0 - 5 * day, {"url": "/blog"}, False),
            (1, "page_view", T0 - 5 * day + timedelta(hours=1), {"url": "/blog/2"}, False),
            (1, "page_view", T0 - 5 * day + timedelta(hours=2), {"url": "/docs"}, False),
            (1, "webinar", T0 - 29 * day, {}, False),
            (1, "webinar", T0 - 31 * day, {}, False),
            # Lead 2: a machine's view, a view after now, and an unsubscribe.
            (2, "page_view", T0 - day, {"url": "/pricing"}, True),
            (2, "page_view", T0 + day, {"url": "/pricing"}, False),
            (2, "unsubscribe", T0 - 400 * day, {}, False),
        )
        model = model_of(tmp_path)
        for now in (T0, T0 + timedelta(days=2, hours=7, minutes=13)):
            rescore(engine, model, now)
            age = (now - T0) / day
            pricing = 10 * 0.5 ** ((age + 3) / 7) + 10 * 0.5 ** ((age + 10) / 7)
            views_day = sum(2 * 0.5 ** ((age + 5 - h / 24) / 14) for h in (0, 1, 2))
            plain = [2 * 0.5 ** ((age + 3) / 14), 2 * 0.5 ** ((age + 10) / 14)]
            views = min(views_day, 3) + sum(min(v, 3) for v in plain)
            webinar = 8 if age + 29 < 30 else 0
            expected = half_up(min(pricing, 15)) + half_up(views) + webinar
            lead_2 = -20
            if now > T0 + day:  # the view after T0 has happened by then
                later = (now - (T0 + day)) / day
                lead_2 += half_up(10 * 0.5 ** (later / 7)) + half_up(2 * 0.5 ** (later / 14))
            assert scores(engine) == [
                ("L1", expected, 0, expected, "D1" if expected >= 20 else "D2"),
                ("L2", lead_2, 0, lead_2, "D4"),
            ]
        assert (half_up(min(10 * 0.5 ** (3 / 7) + 10 * 0.5 ** (10 / 7), 15)), webinar) == (11, 0)


class TestTextOfJsonProperties:
    """An outside tester's find: a page view whose ``url`` property is a list or an object
    (``{"url": ["/pricing"]}``) earned the ``contains: /pricing`` criterion's points. A text
    operator matches text only (docs/rules.md), in the pass and in the explanation alike."""

    def test_a_list_or_an_object_earns_no_pricing_points(
        self, engine: Engine, tmp_path: Path
    ) -> None:
        add_leads(engine, {})
        viewed = T0 - timedelta(days=3)
        add_activities(
            engine,
            (1, "page_view", viewed, {"url": "/pricing"}, False),
            (1, "page_view", viewed, {"url": ["/pricing"]}, False),
            (1, "page_view", viewed, {"url": {"a": "/pricing"}}, False),
        )
        model = model_of(tmp_path)
        rescore(engine, model, T0)
        pricing = 10 * 0.5 ** (3 / 7)  # A1 alone: 7.43; all three were capped at 15
        views = min(3 * 2 * 0.5 ** (3 / 14), 3)  # every view is a view: the day's cap of 3
        assert (half_up(pricing), half_up(views)) == (7, 3)
        assert scores(engine) == [("L1", 10, 0, 10, "D2")]
        explained = explain_score(engine, model, "L1", T0)
        assert explained is not None
        assert [
            (item.criterion, item.points, sorted(a.external_id for a in item.activities))
            for item in explained.contributions
        ] == [("pricing", 7, ["A1"]), ("views", 3, ["A1", "A2", "A3"])]

    def test_a_text_search_of_a_property_or_attribute_changes_the_models_version(
        self, tmp_path: Path
    ) -> None:
        """The same text scores otherwise than before: a new version makes the first pass
        after the upgrade recompute every lead (a stored score may hold a list's points). A
        model searching no attribute or property text keeps its version."""
        raw = yaml.safe_load(MODEL)["scoring"]
        model = model_of(tmp_path)
        assert model.version != content_digest(raw)
        assert model.engagement_version != content_digest(raw["engagement"])
        fit_only = MODEL.replace("properties.url, contains", "properties.url, equals").replace(
            "attributes.industry, equals: software", "attributes.industry, ends_with: ware"
        )
        raw = yaml.safe_load(fit_only)["scoring"]
        model = model_of(tmp_path, fit_only)
        assert model.version != content_digest(raw)
        assert model.engagement_version == content_digest(raw["engagement"])
        plain = MODEL.replace("properties.url, contains", "properties.url, equals")
        raw = yaml.safe_load(plain)["scoring"]  # free-mail's ends_with reads a column
        model = model_of(tmp_path, plain)
        assert (model.version, model.engagement_version) == (
            content_digest(raw),
            content_digest(raw["engagement"]),
        )


WEEKLY = """\
scoring:
  engagement:
    - id: webinars
      activity: webinar
      points: 10
      cap: {points: 10, per: 7d}
"""


class TestWeeklyCaps:
    """A cap per 7d holds per ISO week, Monday 00:00 UTC to the next; it once held from
    Thursday to Thursday (weeks counted from 1970-01-01, a Thursday)."""

    def test_the_week_starts_on_monday(self, engine: Engine, tmp_path: Path) -> None:
        model = model_of(tmp_path, WEEKLY)
        add_leads(engine, {}, {})
        wednesday, thursday = (
            datetime(2026, 3, 4, 12, tzinfo=UTC),
            datetime(2026, 3, 5, 12, tzinfo=UTC),
        )
        sunday, monday = datetime(2026, 3, 8, 23, 59, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC)
        add_activities(
            engine,
            (1, "webinar", wednesday, {}, False),  # the same ISO week (10) as
            (1, "webinar", thursday, {}, False),  # this one: capped at 10 together
            (2, "webinar", sunday, {}, False),  # the last minute of a week (10)
            (2, "webinar", monday, {}, False),  # the first of the next (10)
        )
        rescore(engine, model, datetime(2026, 3, 10, tzinfo=UTC))
        assert [row[:4] for row in scores(engine)] == [("L1", 10, 0, 10), ("L2", 20, 0, 20)]
        explained = explain_score(engine, model, "L2", datetime(2026, 3, 10, tzinfo=UTC))
        assert explained is not None
        assert [item.points for item in explained.contributions] == [20]

    def test_a_weekly_cap_changes_the_models_version(self, tmp_path: Path) -> None:
        """The same text scored otherwise before: a new version makes the first pass after
        the upgrade recompute every lead, not only the leads due."""
        weekly = model_of(tmp_path, WEEKLY)
        daily = model_of(tmp_path, WEEKLY.replace("per: 7d", "per: 1d"))
        assert weekly.version != content_digest(yaml.safe_load(WEEKLY)["scoring"])
        assert daily.version == content_digest(
            yaml.safe_load(WEEKLY.replace("per: 7d", "per: 1d"))["scoring"]
        )
