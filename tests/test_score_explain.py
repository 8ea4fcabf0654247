"""Why a score, and when it changes: explanations that add up, causes, arrivals over HTTP.

Pins, on SQLite and PostgreSQL:
- each change of a score is one ``score_changes`` row naming its cause: ``model`` on the first
  pass, ``activity`` when an activity arrived or came to count, ``decay`` when time alone moved
  it, ``earlier`` for a pass before the last one's instant, ``fit`` when the lead's data did,
  ``rule`` for an ``adjust_score`` action, whose adjustment the next pass keeps;
- ``leadflow score explain`` (and the lead view of the HTTP API) lists every contribution,
  the activities that earned it with their decayed values, machine ones at zero, and the lines
  add up exactly to the stored score;
- an activity posted to the API moves the lead's score at once, not at the next tick.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from import_support import rows
from sqlalchemy import Engine, delete, insert, select, update

from leadflow.cli import main
from leadflow.cli.demo_funnel import with_scoring_on
from leadflow.clock import SettableClock
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_tick
from leadflow.scoring.explain import explain_score
from leadflow.store.tables import ACTIVITIES, LEADS, SCORE_CHANGES, SCORING_RUNS
from tests.http_support import REPO, Api, build_app, http_settings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

RULES = """\
scoring:
  fit:
    - id: east
      description: The East pool.
      when: {field: attributes.region, equals: East}
      points: 20
  engagement:
    - id: visits
      activity: page_view
      points: 10
      half_life: 10d
    - id: opens
      activity: email_open
      points: 3
      window: 30d
rules:
  - id: cool-down
    every: 1m
    when: {field: stage, equals: nurture}
    actions:
      - adjust_score: -5
"""


@pytest.fixture
def runtime(engine: Engine, make_settings: Any, tmp_path: Path, store_url: str) -> Runtime:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "scoring.yaml").write_text(RULES, encoding="utf-8")
    # The same settings in the file, for the CLI: rules, templates, the declared attribute.
    (tmp_path / "config.yaml").write_text(
        f"database: {{url: '{store_url}'}}\n"
        f"paths: {{rules: '{folder}', templates: '{REPO / 'templates'}'}}\n"
        "attributes: {leads: {region: string}}\n",
        encoding="utf-8",
    )
    settings = http_settings(
        make_settings, **{"paths.rules": str(folder), "attributes.leads": {"region": "string"}}
    )
    old = T0 - 90 * DAY
    with engine.begin() as connection:
        connection.execute(
            insert(LEADS),
            [
                {
                    "id": index,
                    "external_id": f"L{index}",
                    "email": f"l{index}@example.com",
                    "score": 0,
                    "stage": "lead",
                    "stage_entered_at": old,
                    "attributes": {"region": region},
                    "created_at": old,
                    "updated_at": old,
                }
                for index, region in ((1, "East"), (2, "West"))
            ],
        )
    return Runtime.build(engine, settings, SettableClock(T0))


def activity(
    engine: Engine,
    external_id: str,
    lead_id: int,
    kind: str,
    at: datetime,
    *,
    machine: bool = False,
) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(ACTIVITIES).values(
                external_id=external_id,
                lead_id=lead_id,
                type=kind,
                occurred_at=at,
                properties={},
                machine=machine,
                created_at=at,
            )
        )


def changes(engine: Engine) -> list[tuple[Any, ...]]:
    """The changes pass by pass, each pass's by lead: a pass writes its leads' changes in one
    statement, in no promised order (on a store emptied by DELETE, lead 2's came first)."""
    c = SCORE_CHANGES.c
    query = select(c.lead_id, c.old_score, c.new_score, c.cause, c.detail).order_by(
        c.at, c.lead_id, c.id
    )
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


def last_pass_at(engine: Engine) -> Any:
    with engine.connect() as connection:
        return connection.execute(select(SCORING_RUNS.c.last_run_at)).scalar()


def tick(runtime: Runtime, now: datetime) -> None:
    run_tick(runtime, runtime.load_rules(), now)


class TestCauses:
    """Every change is recorded once, with why it happened."""

    def test_model_activity_decay_fit_and_rule(self, runtime: Runtime, engine: Engine) -> None:
        tick(runtime, T0)
        activity(engine, "A1", 1, "page_view", T0 + HOUR)
        tick(runtime, T0 + HOUR)
        tick(runtime, T0 + 10 * DAY + HOUR)  # one half-life later: 10 -> 5
        tick(runtime, T0 + 10 * DAY + 2 * HOUR)  # nothing moved: no row
        with engine.begin() as connection:
            connection.execute(
                update(LEADS).where(LEADS.c.id == 2).values(attributes={"region": "East"})
            )
        tick(runtime, T0 + 11 * DAY)
        with engine.begin() as connection:
            connection.execute(update(LEADS).where(LEADS.c.id == 2).values(stage="nurture"))
        tick(runtime, T0 + 12 * DAY)  # the rule lowers L2 by 5
        tick(runtime, T0 + 13 * DAY)  # the pass keeps the rule's -5; reentry once: no more
        assert changes(engine) == [
            (1, 0, 20, "model", None),
            (2, 0, 0, "model", None),
            (1, 20, 30, "activity", None),
            (1, 30, 25, "decay", None),
            (2, 0, 20, "fit", None),
            (1, 25, 24, "decay", None),  # at 12d: 10 x 0.5^(11.96/10) = 4.36 -> 4
            (2, 20, 15, "rule", "rule cool-down: adjust_score"),
        ]
        assert rows(
            engine,
            "leads",
            "external_id",
            "score",
            "score_fit",
            "score_engagement",
            "score_adjustment",
        ) == [("L1", 24, 20, 4, 0), ("L2", 15, 20, 0, -5)]

    def test_passes_as_of_past_instants_name_decay_not_activity(
        self, runtime: Runtime, engine: Engine
    ) -> None:
        """Activities imported today (their ``created_at`` the wall clock's), then passes as of
        past instants (``run --once --now``): no activity arrived between the passes, so
        the second pass's changes are decay. The cause once compared ``created_at`` with the
        pass's instant and said ``activity``."""
        imported = T0 + 200 * DAY  # the wall clock of the import, after every pass's instant
        with engine.begin() as connection:
            connection.execute(
                insert(ACTIVITIES).values(
                    external_id="A1",
                    lead_id=1,
                    type="page_view",
                    occurred_at=T0 - DAY,
                    properties={},
                    machine=False,
                    created_at=imported,
                )
            )
        clock = runtime.clock
        assert isinstance(clock, SettableClock)
        tick(runtime, clock.now())
        tick(runtime, clock.advance(10 * DAY))  # one half-life on: 10 x 0.5^(1/10) = 9 -> 5
        activity(engine, "A2", 2, "email_open", T0 + 10 * DAY)
        tick(runtime, clock.advance(HOUR))  # the open arrived after the last pass
        assert changes(engine) == [
            (1, 0, 29, "model", None),
            (2, 0, 0, "model", None),
            (1, 29, 25, "decay", None),
            (2, 0, 3, "activity", None),
        ]

    def test_an_activity_after_the_newest_were_deleted_is_an_arrival(
        self, runtime: Runtime, engine: Engine
    ) -> None:
        """The newest activity deleted (by an operator's clean-up: docs/email.md), SQLite gives
        the next one its id again (no AUTOINCREMENT); that id is not above the last pass's
        highest, yet it arrived after that pass: ``activity``, not ``decay``. A pass's marks
        come down with the highest id that is left (a trigger, on SQLite)."""
        activity(engine, "A1", 1, "page_view", T0 - HOUR)
        activity(engine, "A2", 1, "page_view", T0 - HOUR)
        tick(runtime, T0)
        with engine.begin() as connection:
            connection.execute(delete(ACTIVITIES).where(ACTIVITIES.c.external_id == "A2"))
        activity(engine, "A3", 2, "email_open", T0 + HOUR)
        tick(runtime, T0 + HOUR)
        reused = 2 if engine.dialect.name == "sqlite" else 3  # PostgreSQL: a sequence
        assert rows(engine, "activities", "id", "external_id") == [(1, "A1"), (reused, "A3")]
        assert changes(engine) == [
            (1, 0, 40, "model", None),
            (2, 0, 0, "model", None),
            (1, 40, 30, "decay", None),  # A2 gone: nothing arrived for L1
            (2, 0, 3, "activity", None),
        ]
        # The pass's mark is recorded and no pass is under way.
        with engine.connect() as connection:
            marks = select(SCORING_RUNS.c.last_activity_id, SCORING_RUNS.c.pass_activity_id)
            assert connection.execute(marks).all() == [(reused, None)]


def lead_changes(engine: Engine, lead_id: int) -> list[tuple[Any, ...]]:
    """One lead's changes in the order they were written: (at, old, new, cause)."""
    c = SCORE_CHANGES.c
    query = (
        select(c.at, c.old_score, c.new_score, c.cause).where(c.lead_id == lead_id).order_by(c.id)
    )
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


PENALTY = """\
    - id: unsubscribed
      activity: unsubscribe
      points: -20
      half_life: 10d
"""


class TestEngagementCauses:
    """An engagement that moved with no activity arrived since the last pass: ``decay`` only
    for time alone (which raises it only for a fading penalty), ``activity`` when an activity
    came to count or changed, ``earlier`` for a pass as of an instant before the last one's.
    Each rise below was named ``decay``, as was the penalty that came to count and each move
    of a pass whose clock was moved back."""

    def test_an_activity_dated_after_a_past_pass_counts_as_an_activity(
        self, runtime: Runtime, engine: Engine
    ) -> None:
        """``run --once --now`` at a past instant does not count an activity dated after it;
        the next pass does: a rise, and the activity's. Time alone then lowers it: decay."""
        activity(engine, "A1", 1, "page_view", T0 + DAY)  # stored before any pass
        tick(runtime, T0)
        tick(runtime, T0 + 2 * DAY)  # 10 x 0.5^(1/10) = 9.33 -> 9
        tick(runtime, T0 + 12 * DAY)  # 10 x 0.5^(11/10) = 4.67 -> 5
        assert lead_changes(engine, 1) == [
            (T0, 0, 20, "model"),
            (T0 + 2 * DAY, 20, 29, "activity"),
            (T0 + 12 * DAY, 29, 25, "decay"),
        ]

    def test_a_pass_before_the_last_ones_instant_is_earlier_both_ways(
        self, runtime: Runtime, engine: Engine
    ) -> None:
        """Back to just after the view (younger: worth more), then to before it (not counted
        yet): neither is time fading."""
        activity(engine, "A1", 1, "page_view", T0 + DAY)
        tick(runtime, T0 + 11 * DAY)  # 10 x 0.5^1 = 5
        tick(runtime, T0 + DAY + HOUR)  # 10 x 0.5^(1/240) = 9.97 -> 10
        tick(runtime, T0)  # the view is after it
        assert lead_changes(engine, 1) == [
            (T0 + 11 * DAY, 0, 25, "model"),
            (T0 + DAY + HOUR, 25, 30, "earlier"),
            (T0, 30, 20, "earlier"),
        ]

    def test_a_changed_activity_that_raises_the_engagement_is_an_activity(
        self, runtime: Runtime, engine: Engine
    ) -> None:
        """A call corrected to a page view (its id kept: no arrival) adds points: no penalty
        in the model fades, so the rise is the activity's."""
        activity(engine, "A1", 2, "call", T0 - HOUR)
        tick(runtime, T0)
        with engine.begin() as connection:
            connection.execute(
                update(ACTIVITIES).where(ACTIVITIES.c.external_id == "A1").values(type="page_view")
            )
        tick(runtime, T0 + HOUR)  # 10 x 0.5^(2/240) = 9.94 -> 10
        assert lead_changes(engine, 2) == [(T0, 0, 0, "model"), (T0 + HOUR, 0, 10, "activity")]

    def test_a_fading_penalty_is_decay_and_a_penalty_coming_to_count_an_activity(
        self, runtime: Runtime, engine: Engine
    ) -> None:
        """L1's unsubscribe fades (-20 -> -10): a rise, and time alone. L2's, stored before
        the first pass and dated after it, comes to count (0 -> -20): a fall, the activity's."""
        scoring = runtime.settings.paths.rules / "scoring.yaml"
        scoring.write_text(RULES.replace("rules:\n", PENALTY + "rules:\n", 1), encoding="utf-8")
        activity(engine, "U1", 1, "unsubscribe", T0 - HOUR)
        activity(engine, "U2", 2, "unsubscribe", T0 + 5 * DAY)
        tick(runtime, T0)  # -20 x 0.5^(1/240) = -19.94 -> -20
        tick(runtime, T0 + 10 * DAY)  # L1: -20 x 0.5^(241/240) = -9.97 -> -10; L2: -14.36 -> -14
        assert (lead_changes(engine, 1), lead_changes(engine, 2)) == (
            [(T0, 0, 0, "model"), (T0 + 10 * DAY, 0, 10, "decay")],
            [(T0, 0, 0, "model"), (T0 + 10 * DAY, 0, -14, "activity")],
        )


class TestExplain:
    """The explanation's lines add up exactly to the stored score, activities included."""

    def test_contributions_add_up_and_machines_earn_nothing(
        self, runtime: Runtime, engine: Engine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        activity(engine, "A1", 1, "page_view", T0 - 5 * DAY)
        activity(engine, "A2", 1, "page_view", T0 - 15 * DAY)
        activity(engine, "A3", 1, "email_open", T0 - DAY)
        activity(engine, "A4", 1, "email_open", T0 - 2 * HOUR, machine=True)
        tick(runtime, T0)
        found = explain_score(engine, runtime.load_rules().scoring, "L1", T0)
        assert found is not None
        visits = 10 * 0.5**0.5 + 10 * 0.5**1.5  # 7.0711 + 3.5355 = 10.61 -> 11
        assert [(c.part, c.criterion, c.points) for c in found.contributions] == [
            ("fit", "east", 20),
            ("engagement", "visits", 11),
            ("engagement", "opens", 3),
        ]
        assert found.contributions[1].raw == pytest.approx(visits, abs=1e-9)
        assert [(a.external_id, round(a.value, 6)) for a in found.contributions[1].activities] == [
            ("A1", round(10 * 0.5**0.5, 6)),
            ("A2", round(10 * 0.5**1.5, 6)),
        ]
        assert [a.external_id for a in found.contributions[2].machine] == ["A4"]
        assert (found.total, found.stored["score"], found.matches_stored) == (34, 34, True)
        capsys.readouterr()

        code = main(
            [
                "--config",
                str(runtime.settings.root / "config.yaml"),
                "score",
                "explain",
                "L1",
                "--at",
                "2026-03-02T09:00:00Z",
                "--format",
                "json",
            ]
        )
        document = json.loads(capsys.readouterr().out)
        assert code == 0
        assert (document["computed"], document["stored"]) == (
            {"score": 34, "fit": 20, "engagement": 14, "adjustment": 0},
            {
                "score": 34,
                "fit": 20,
                "engagement": 14,
                "adjustment": 0,
                "grade": None,
                "scored_at": "2026-03-02T09:00:00+00:00",
            },
        )
        # Months later by the system clock: explained when the score was stored, it adds up.
        assert document["at"] == "2026-03-02T09:00:00+00:00"
        assert [c["points"] for c in document["contributions"]] == [20, 11, 3]

    def test_the_rules_adjustment_is_in_the_total_line_and_the_computed_block(
        self, runtime: Runtime, engine: Engine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A rule's -5 was a row of the table but not in the total's formula, which read
        "fit 20 + engagement 0  15" (20 + 0 = 15), and the JSON's ``computed`` had no
        adjustment: both now carry it, as does the HTTP API's lead view."""
        tick(runtime, T0)
        with engine.begin() as connection:
            connection.execute(update(LEADS).where(LEADS.c.id == 1).values(stage="nurture"))
        tick(runtime, T0 + HOUR)  # the rule: -5
        config = str(runtime.settings.root / "config.yaml")
        capsys.readouterr()
        assert main(["--config", config, "score", "explain", "L1"]) == 0
        lines = [line.split() for line in capsys.readouterr().out.splitlines()]
        table = lines[lines.index(["part", "criterion", "points", "how"]) + 1 :]
        assert [row[:3] for row in table[:2]] == [
            ["fit", "east", "+20"],
            ["adjustment", "rules", "-5"],
        ]
        total = "total fit 20 + engagement 0 + rules -5 = 15 = the stored score"
        assert total in [" ".join(row) for row in table]
        assert main(["--config", config, "score", "explain", "L1", "--format", "json"]) == 0
        computed = {"score": 15, "fit": 20, "engagement": 0, "adjustment": -5}
        assert json.loads(capsys.readouterr().out)["computed"] == computed
        view = Api(build_app(runtime)[0]).get("/v1/leads/L1").json()
        assert view["score_explanation"]["computed"] == computed

    def test_a_past_instant_is_explained_as_of_then_not_as_the_next_pass(
        self, runtime: Runtime, engine: Engine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``--at`` an instant before the last pass: the total is that instant's score, which
        no pass will store; it once said "the next one stores this"."""
        activity(engine, "A1", 1, "page_view", T0 - 5 * DAY)
        tick(runtime, T0)
        capsys.readouterr()
        config = str(runtime.settings.root / "config.yaml")
        code = main(["--config", config, "score", "explain", "L1", "--at", "2026-02-26T09:00:00Z"])
        out = capsys.readouterr().out
        assert code == 0
        words = " ".join(out.split())  # the table wraps its last column
        # At 2026-03-02 the view was 5 days old (7.07 -> 7); a day after it, 10 x 0.5^0.1 -> 9.
        assert (
            "total fit 20 + engagement 9 + rules 0 = 29 the score as of 2026-02-26 09:00 UTC; the stored "
            "one is the last pass's (2026-03-02 09:00 UTC)"
        ) in words
        assert "next one stores" not in words

    def test_a_score_written_after_the_last_pass_says_where_it_came_from(
        self, runtime: Runtime, engine: Engine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A score posted while no model was live (after the last pass) was explained as "the
        stored score is from the last scoring pass": it says the API or an import wrote it, in
        the text and in the JSON (``stored_from``); a pass's score still says the pass."""
        tick(runtime, T0)
        scoring = runtime.settings.paths.rules / "scoring.yaml"
        scoring.write_text(RULES.replace("scoring:\n", "scoring:\n  enabled: false\n", 1))
        response = Api(build_app(runtime)[0]).post("/v1/leads", {"external_id": "L2", "score": 95})
        assert response.status_code == 200, response.text
        scoring.write_text(RULES, encoding="utf-8")
        config = str(runtime.settings.root / "config.yaml")
        capsys.readouterr()
        assert main(["--config", config, "score", "explain", "L2"]) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0] == (
            "L2: stored score 95 (fit 0, engagement 0, adjustment 0, grade -)"
        )
        words = " ".join(out.split())
        assert (
            "total fit 0 + engagement 0 + rules 0 = 0 the stored score 95 was written by an "
            "import or the API, not by a scoring pass; the next pass stores this"
        ) in words
        assert "from the last scoring pass" not in words

        def stored_from(lead: str) -> tuple[str, int]:
            assert main(["--config", config, "score", "explain", lead, "--format", "json"]) == 0
            document = json.loads(capsys.readouterr().out)
            return document["stored_from"], document["stored"]["score"]

        assert stored_from("L2") == ("import_or_api", 95)
        assert stored_from("L1") == ("scoring_pass", 20)

    def test_a_lead_no_pass_scored_says_so(
        self, runtime: Runtime, engine: Engine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Before any pass the stored score is the CRM's: no pass's."""
        config = str(runtime.settings.root / "config.yaml")
        capsys.readouterr()
        assert main(["--config", config, "score", "explain", "L1"]) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0] == (
            "L1: stored score 0 (fit -, engagement -, adjustment 0, grade -)"
        )
        words = " ".join(out.split())
        assert (
            "= 20 the stored score 0 was written by an import or the API, not by a scoring pass "
            "(no pass has scored this lead yet); the next pass stores this"
        ) in words

    def test_a_disabled_model_that_ran_in_this_store_explains_its_scores(
        self, runtime: Runtime, engine: Engine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`enabled: false` in the folder, turned on for this store only (as `leadflow demo`
        does): the stored scores are the model's last pass, and the explanation adds up to
        them at that instant. Before any pass it is "not applied", what the score would be."""
        folder = runtime.settings.path(runtime.settings.paths.rules)
        text = (folder / "scoring.yaml").read_text(encoding="utf-8")
        (folder / "scoring.yaml").write_text(
            text.replace("scoring:\n", "scoring:\n  enabled: false\n", 1), encoding="utf-8"
        )
        config = str(runtime.settings.root / "config.yaml")
        activity(engine, "A1", 1, "page_view", T0 - 5 * DAY)

        def explained() -> dict[str, Any]:
            capsys.readouterr()
            assert main(["--config", config, "score", "explain", "L1", "--format", "json"]) == 0
            document: dict[str, Any] = json.loads(capsys.readouterr().out)
            return document

        before = explained()
        assert (before["model_enabled"], before["model_ran_here"]) == (False, False)
        # Explained now (months after T0 by the system clock): the visit has faded to nothing.
        assert (before["stored"]["score"], before["computed"]["score"]) == (0, 20)
        run_tick(runtime, with_scoring_on(runtime.load_rules()), T0)
        after = explained()
        assert (after["model_enabled"], after["model_ran_here"]) == (False, True)
        # Fit 20 + visits 10 x 0.5^0.5 = 7.07 -> 7, at the pass's instant.
        assert after["at"] == "2026-03-02T09:00:00+00:00"
        assert (after["stored"]["score"], after["computed"]["score"]) == (27, 27)
        assert main(["--config", config, "score", "explain", "L1"]) == 0
        table = " ".join(capsys.readouterr().out.split())  # the console wraps at 80 columns
        assert (
            "enabled: false in the rules folder, but the store's scores are from its last pass "
            "(the demo turns it on in its own store); as of 2026-03-02 09:00:00 UTC" in table
        )
        assert "total fit 20 + engagement 7 + rules 0 = 27 = the stored score" in table

    def test_an_activity_thousands_of_half_lives_old_is_worth_exactly_0(
        self, runtime: Runtime, engine: Engine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """PostgreSQL's power() raised "value out of range: underflow" where the factor rounds
        to 0 (from 1,075 half-lives on): the pass failed for every lead of its range, explain
        showed a traceback and the lead view a 500. SQLite gave 0; both do now, and 1,074
        half-lives still give the least double, as Python's float does."""
        activity(engine, "A1", 1, "page_view", T0 - 20_000 * DAY)  # 2,000 half-lives of 10d
        activity(engine, "A2", 1, "page_view", T0 - 10_750 * DAY)  # 1,075: rounds to 0
        activity(engine, "A3", 1, "page_view", T0 - 10_740 * DAY)  # 1,074: 10 x 2^-1074
        activity(engine, "A4", 2, "page_view", T0 - 5 * DAY)
        tick(runtime, T0)
        assert rows(engine, "leads", "external_id", "score", "score_engagement") == [
            ("L1", 20, 0),
            ("L2", 7, 7),  # 10 x 0.5 ^ 0.5 = 7.07
        ]
        assert 10 * 0.5**2000 == 10 * 0.5**1075 == 0.0 < 10 * 0.5**1074
        found = explain_score(engine, runtime.load_rules().scoring, "L1", T0)
        assert found is not None
        assert [(a.external_id, a.value) for a in found.contributions[1].activities] == [
            ("A3", 10 * 0.5**1074),
            ("A2", 0.0),
            ("A1", 0.0),
        ]
        expected = {  # the JSON's values have 6 decimals
            "L1": ("visits", 0, [("A3", 0.0), ("A2", 0.0), ("A1", 0.0)]),
            "L2": ("visits", 7, [("A4", round(10 * 0.5**0.5, 6))]),
        }
        config = str(runtime.settings.root / "config.yaml")
        api = Api(build_app(runtime)[0])
        for lead, visits in expected.items():
            capsys.readouterr()
            code = main(["--config", config, "score", "explain", lead, "--format", "json"])
            out, err = capsys.readouterr()
            assert (code, err) == (0, "")
            view = api.get(f"/v1/leads/{lead}")
            assert view.status_code == 200
            for explained in (json.loads(out), view.json()["score_explanation"]):
                assert explained["computed"]["engagement"] == visits[1]
                assert [
                    (
                        c["criterion"],
                        c["points"],
                        [(a["external_id"], a["value"]) for a in c["activities"]],
                    )
                    for c in explained["contributions"]
                    if c["part"] == "engagement"
                ] == [visits]

    def test_an_unknown_lead_is_one_line(
        self, runtime: Runtime, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = main(
            ["--config", str(runtime.settings.root / "config.yaml"), "score", "explain", "L9"]
        )
        assert (code, capsys.readouterr().err) == (1, "error: no lead with external id 'L9'\n")

    def test_a_time_in_year_one_is_one_line(
        self, runtime: Runtime, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The opens' 30-day window before 0001-01-01 is before any date: an OverflowError
        traceback, now one line."""
        config = str(runtime.settings.root / "config.yaml")
        code = main(["--config", config, "score", "explain", "L1", "--at", "0001-01-01T00:00:00Z"])
        assert (code, capsys.readouterr().err) == (
            1,
            "error: --at 0001-01-01T00:00:00Z: too close to the calendar's first day: the scoring "
            "model looks back from it (windows, half-lives); give a later time\n",
        )


class TestArrivals:
    """An activity posted to the API moves its lead's score in the same request."""

    def test_posted_activity_rescored_at_once(self, runtime: Runtime, engine: Engine) -> None:
        tick(runtime, T0)
        assert isinstance(runtime.clock, SettableClock)
        runtime.clock.set(T0 + timedelta(minutes=1))
        api = Api(build_app(runtime)[0])
        posted = api.post(
            "/v1/activities",
            {
                "external_id": "ev-1",
                "lead": "L2",
                "type": "page_view",
                "occurred_at": "2026-03-02T09:00:00Z",
            },
        )
        assert posted.status_code == 200
        assert rows(engine, "leads", "external_id", "score") == [("L1", 20), ("L2", 10)]
        assert changes(engine)[-1] == (2, 0, 10, "activity", None)
        view = api.get("/v1/leads/L2").json()
        explanation = view["score_explanation"]
        assert (explanation["computed"]["score"], view["score"]) == (10, 10)
        assert [
            (c["criterion"], c["points"], [a["external_id"] for a in c["activities"]])
            for c in explanation["contributions"]
        ] == [("visits", 10, ["ev-1"])]


class TestLastChanges:
    """The last changes are newest first, as docs/scoring.md says, in the table, the JSON and
    the HTTP API's lead view alike; two changes at one instant (the pass, then a rule in the
    same tick) newest first too."""

    def test_newest_first_everywhere(
        self, runtime: Runtime, engine: Engine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        tick(runtime, T0)
        activity(engine, "A1", 1, "page_view", T0 + HOUR)
        with engine.begin() as connection:
            connection.execute(update(LEADS).where(LEADS.c.id == 1).values(stage="nurture"))
        tick(runtime, T0 + HOUR)  # the pass: +10 for A1; then the rule: -5
        newest_first = [
            ("2026-03-02T10:00:00+00:00", 30, 25, "rule"),
            ("2026-03-02T10:00:00+00:00", 20, 30, "activity"),
            ("2026-03-02T09:00:00+00:00", 0, 20, "model"),
        ]
        config = str(runtime.settings.root / "config.yaml")
        capsys.readouterr()
        assert main(["--config", config, "score", "explain", "L1"]) == 0
        table = capsys.readouterr().out.splitlines()
        start = table.index("Last changes (newest first):")
        assert [line.split() for line in table[start + 1 :]] == [
            ["at", "(UTC)", "from", "to", "why"],
            ["2026-03-02", "10:00", "30", "25", "rule:", "rule", "cool-down:", "adjust_score"],
            ["2026-03-02", "10:00", "20", "30", "activity"],
            # The model's first score of the lead, not a change of its data (cause "model").
            [
                "2026-03-02",
                "09:00",
                "0",
                "20",
                "first",
                "score",
                "20",
                "(fit",
                "20,",
                "engagement",
                "0)",
            ],
        ]
        assert main(["--config", config, "score", "explain", "L1", "--format", "json"]) == 0
        document = json.loads(capsys.readouterr().out)
        shown = [(h["at"], h["old_score"], h["new_score"], h["cause"]) for h in document["history"]]
        assert shown == newest_first
        assert [(h["why"], h["first_score"], h["fit"]) for h in document["history"]] == [
            ("rule: rule cool-down: adjust_score", False, 20),
            ("activity", False, 20),
            ("first score 20 (fit 20, engagement 0)", True, 20),
        ]
        view = Api(build_app(runtime)[0]).get("/v1/leads/L1").json()
        history = view["score_explanation"]["history"]
        assert [(h["at"], h["old_score"], h["new_score"], h["cause"]) for h in history] == (
            newest_first
        )

    def test_a_pass_as_of_a_past_instant_wrote_the_newest_change(
        self, runtime: Runtime, engine: Engine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A pass at T0 + 10d, then one as of T0 (``run --once --now`` in the past): the second
        wrote the stored score, so its row comes first though its ``at`` is earlier. Ordered
        by ``at``, the first row was the older pass's 25, and the stored 30 was said to come
        from an import or the API (``stored_from``), in the CLI and in the HTTP lead view."""
        activity(engine, "A1", 1, "page_view", T0 - HOUR)
        tick(runtime, T0 + 10 * DAY)  # 10 x 0.5^(241/240) = 4.99 -> 5
        tick(runtime, T0)  # 10 x 0.5^(1/240) = 9.97 -> 10
        last_written_first = [
            ("2026-03-02T09:00:00+00:00", 25, 30, "earlier"),
            ("2026-03-12T09:00:00+00:00", 0, 25, "model"),
        ]
        config = str(runtime.settings.root / "config.yaml")
        capsys.readouterr()
        assert main(["--config", config, "score", "explain", "L1", "--format", "json"]) == 0
        document = json.loads(capsys.readouterr().out)
        shown = [(h["at"], h["old_score"], h["new_score"], h["cause"]) for h in document["history"]]
        assert (document["stored_from"], document["stored"]["score"], shown) == (
            "scoring_pass",
            30,
            last_written_first,
        )
        assert main(["--config", config, "score", "explain", "L1"]) == 0
        table = capsys.readouterr().out.splitlines()
        start = table.index("Last changes (newest first):")
        assert [line.split() for line in table[start + 2 :]] == [
            ["2026-03-02", "09:00", "25", "30", "earlier"],
            [
                "2026-03-12",
                "09:00",
                "0",
                "25",
                "first",
                "score",
                "25",
                "(fit",
                "20,",
                "engagement",
                "5)",
            ],
        ]
        # Now (months later) the view is worth nothing: 20, which the next pass stores.
        assert main(["--config", config, "score", "explain", "L1", "--at", "now"]) == 0
        words = " ".join(capsys.readouterr().out.split())
        assert (
            "total fit 20 + engagement 0 + rules 0 = 20 the stored score is from the last "
            "scoring pass; the next one stores this"
        ) in words
        view = Api(build_app(runtime)[0]).get("/v1/leads/L1").json()["score_explanation"]
        history = [(h["at"], h["old_score"], h["new_score"], h["cause"]) for h in view["history"]]
        assert (view["stored_from"], history) == ("scoring_pass", last_written_first)


class TestDaemonTick:
    """The daemon's funnel tick rescores first, under the rule set it holds."""

    def test_funnel_tick_rescores_before_sla_and_nurture(
        self, runtime: Runtime, engine: Engine
    ) -> None:
        import asyncio

        from leadflow.service.daemon_ticks import Evaluator
        from leadflow.service.rule_reload import SnapshotHolder

        holder: SnapshotHolder[Any] = SnapshotHolder(clock=runtime.clock)
        holder.record_success(runtime.load_rules())
        handled = asyncio.run(Evaluator(runtime, holder).funnel_tick())
        assert handled == {"scoring": 2, "sla": 0, "nurture": 0}
        assert rows(engine, "leads", "external_id", "score", "score_fit") == [
            ("L1", 20, 20),
            ("L2", 0, 0),
        ]


class TestStatus:
    """`leadflow status` tells whether a model is on and what its last pass did."""

    def test_status_shows_the_model_and_its_last_pass(
        self, runtime: Runtime, capsys: pytest.CaptureFixture[str]
    ) -> None:
        tick(runtime, T0)
        capsys.readouterr()
        config = str(runtime.settings.root / "config.yaml")
        assert main(["--config", config, "status", "--format", "json"]) == 0
        scoring = json.loads(capsys.readouterr().out)["scoring"]
        version = runtime.load_rules().scoring.version  # type: ignore[union-attr]
        assert scoring == {
            "model": {"version": version, "enabled": True},
            "last_pass": {
                "model_version": version,
                "last_run_at": "2026-03-02T09:00:00+00:00",
                "changed": 2,
                "leads_by_grade": {},
            },
            "last_failure": None,
        }

    def test_the_daemon_rescores_every_scoring_every_or_on_a_new_model(
        self, runtime: Runtime, engine: Engine
    ) -> None:
        import asyncio

        from leadflow.service.daemon_ticks import Evaluator
        from leadflow.service.rule_reload import SnapshotHolder

        holder: SnapshotHolder[Any] = SnapshotHolder(clock=runtime.clock)
        holder.record_success(runtime.load_rules())
        evaluator = Evaluator(runtime, holder)
        clock = runtime.clock
        assert isinstance(clock, SettableClock)
        asyncio.run(evaluator.funnel_tick())
        activity(engine, "A1", 1, "page_view", T0 + timedelta(minutes=5))
        clock.set(T0 + timedelta(minutes=14))  # within scoring_every (15m): no pass, but
        # the lead the activity marked due is scored before the SLA and nurture steps
        assert asyncio.run(evaluator.funnel_tick())["scoring"] == 1
        assert changes(engine)[-1] == (1, 20, 30, "activity", None)
        assert last_pass_at(engine) == T0  # not a pass: the cadence is the last pass's
        clock.set(T0 + timedelta(minutes=15))
        assert asyncio.run(evaluator.funnel_tick())["scoring"] == 0
        assert last_pass_at(engine) == T0 + timedelta(minutes=15)

    def test_a_model_back_after_a_folder_without_one_rescores_what_was_posted_meanwhile(
        self, runtime: Runtime, engine: Engine
    ) -> None:
        """While the folder had no enabled model the API kept a posted score (95) as is; the
        model coming back is the last pass's version, so the cadence alone left the 95 until
        the next periodic pass. The next tick rescores the leads written meanwhile at once."""
        import asyncio

        from leadflow.service.daemon_ticks import Evaluator

        app, holder = build_app(runtime)
        evaluator = Evaluator(runtime, holder)
        clock = runtime.clock
        assert isinstance(clock, SettableClock)
        assert asyncio.run(evaluator.funnel_tick())["scoring"] == 2
        scoring = runtime.settings.paths.rules / "scoring.yaml"
        scoring.write_text(RULES.replace("scoring:\n", "scoring:\n  enabled: false\n", 1))
        holder.record_success(runtime.load_rules())
        clock.set(T0 + timedelta(minutes=1))
        response = Api(app).post("/v1/leads", {"external_id": "L2", "score": 95})
        assert response.status_code == 200, response.text
        assert rows(engine, "leads", "external_id", "score") == [("L1", 20), ("L2", 95)]
        scoring.write_text(RULES, encoding="utf-8")
        holder.record_success(runtime.load_rules())
        clock.set(T0 + timedelta(minutes=2))  # within scoring_every (15m)
        assert asyncio.run(evaluator.funnel_tick())["scoring"] == 1
        assert rows(engine, "leads", "external_id", "score") == [("L1", 20), ("L2", 0)]
        # Once: the next tick within the cadence is steady again.
        clock.set(T0 + timedelta(minutes=3))
        assert asyncio.run(evaluator.funnel_tick())["scoring"] == 0
