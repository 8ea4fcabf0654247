"""A steady rescoring pass reads only the leads due, and leaves exactly what a full pass would.

Pins, on SQLite and PostgreSQL:
- after any sequence of activity writes (new, moved to another lead or time, deleted; some
  after ``now``, some by machines), lead updates, rule adjustments, scores set outside the
  model and clock advances, an incremental pass in one store and a full pass in its twin leave
  the same stored scores, parts, grades, ``scored_at``, ``score_changes`` rows and pass record;
- a pass with nothing due reads no lead; a fit criterion that reads the clock makes every pass
  a full one;
- the triggers mark a lead due on every write to it (but the pass's) or to one of its
  activities.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, insert, select, update

from leadflow.rule_language.loader import load_rule_set
from leadflow.rule_language.scoring_model import ScoringModel
from leadflow.scoring import rescoring
from leadflow.scoring.due import reads_clock
from leadflow.scoring.rescoring import rescore
from leadflow.settings import Settings
from leadflow.store.database import create_store_engine
from leadflow.store.tables import ACTIVITIES, LEADS, SCORE_CHANGES, SCORING_RUNS
from tests.conftest import migrated_schema

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

MODEL = """\
scoring:
  fit:
    - id: software
      when: {field: attributes.industry, equals: software}
      points: 20
    - id: free-mail
      when: {field: email, ends_with: "@gmail.com"}
      points: -10
  engagement:
    - id: pricing
      activity: page_view
      when: {field: properties.url, contains: /pricing}
      points: 10
      half_life: 6h
      cap: 15
    - id: views
      activity: page_view
      points: 2
      half_life: 1d
      cap: {points: 3, per: 1d}
    - id: webinar
      activity: webinar
      points: 8
      window: 2d
    - id: downloads
      activity: download
      points: 3
      window: 3d
      cap: {points: 5, per: 12h}
    - id: opens
      activity: email_open
      points: -3
      half_life: 2h
    - id: unsubscribe
      activity: unsubscribe
      points: -20
  grades:
    fit: {A: 20, B: 10, C: 1}
    engagement: {1: 15, 2: 5, 3: 1}
"""

CLOCK_MODEL = """\
scoring:
  fit:
    - id: recent
      when: {field: created_at, within: 10d}
      points: 5
  engagement:
    - id: views
      activity: page_view
      points: 2
      half_life: 1d
"""

CLOCK_FIT_MODEL = MODEL.replace(
    "  engagement:\n",
    "    - id: recent\n      when: {field: created_at, within: 2d}\n      points: 5\n"
    "  engagement:\n",
    1,
)
"""MODEL with a fit criterion that reads the clock: every pass reads every lead, and the
engagement of the leads due only."""

FIT_CHANGED_MODEL = MODEL.replace("points: 20\n", "points: 30\n", 1).replace(
    "fit: {A: 20, B: 10, C: 1}", "fit: {A: 30, B: 12, C: 1}", 1
)
"""MODEL with a fit criterion's points and the fit grade bands changed, its engagement
criteria as they were: another model, the same engagement."""

CLOCK_ENGAGEMENT_MODEL = """\
scoring:
  fit:
    - id: recent
      when: {field: created_at, within: 10d}
      points: 5
  engagement:
    - id: fresh-views
      activity: page_view
      when: {field: occurred_at, within: 1d}
      points: 2
"""

TYPES = ("page_view", "webinar", "download", "email_open", "unsubscribe", "call")
URLS = ("/pricing", "/blog", "/pricing/team")


def model_of(tmp_path: Path, text_: str = MODEL) -> ScoringModel:
    folder = tmp_path / f"rules-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    (folder / "scoring.yaml").write_text(text_, encoding="utf-8")
    settings_ = Settings.model_validate({"attributes": {"leads": {"industry": "string"}}})
    model = load_rule_set(folder, settings_).scoring
    assert isinstance(model, ScoringModel)
    return model


@pytest.fixture(scope="module")
def second_postgres_url() -> Iterator[str]:
    """A second migrated schema of this test's own, for the full pass's twin store."""
    with migrated_schema() as url:
        yield url


@pytest.fixture
def twin(store_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A second empty store of the same kind as ``engine``'s."""
    if store_url.startswith("sqlite"):
        target = tmp_path / "twin" / "leadflow.db"
        target.parent.mkdir()
        target.write_bytes(request.getfixturevalue("sqlite_template").read_bytes())
        url = f"sqlite:///{target}"
    else:
        url = request.getfixturevalue("second_postgres_url")
    created = create_store_engine(url)
    yield created
    created.dispose()


def empty(*engines: Engine) -> None:
    for engine in engines:
        with engine.begin() as connection:
            for table in (SCORE_CHANGES, SCORING_RUNS, ACTIVITIES, LEADS):
                connection.execute(delete(table))


def add_lead(engine: Engine, lead_id: int, industry: str, mail: str, at: datetime) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(LEADS).values(
                id=lead_id,
                external_id=f"L{lead_id}",
                email=f"lead{lead_id}@{mail}",
                score=0,
                stage="lead",
                stage_entered_at=at,
                attributes={"industry": industry},
                created_at=at,
                updated_at=at,
            )
        )


def stored(engine: Engine) -> tuple[list[tuple[Any, ...]], ...]:
    with engine.connect() as connection:
        leads = connection.execute(
            select(
                LEADS.c.id,
                LEADS.c.score,
                LEADS.c.score_fit,
                LEADS.c.score_engagement,
                LEADS.c.score_adjustment,
                LEADS.c.score_grade,
                LEADS.c.scored_at,
            ).order_by(LEADS.c.id)
        )
        history = connection.execute(
            select(*(c for c in SCORE_CHANGES.c if c.name != "id")).order_by(
                SCORE_CHANGES.c.lead_id, SCORE_CHANGES.c.id
            )
        )
        runs = connection.execute(select(SCORING_RUNS))
        return [tuple(r) for r in leads], [tuple(r) for r in history], [tuple(r) for r in runs]


lead_ref = st.integers(min_value=0, max_value=5)
step = st.one_of(
    st.tuples(
        st.just("activity"),
        lead_ref,
        st.sampled_from(TYPES),
        st.integers(min_value=-4 * 24 * 60, max_value=12 * 60),
        st.sampled_from(URLS),
        st.booleans(),
    ),
    st.tuples(st.just("move"), st.integers(0, 30), lead_ref, st.integers(-3 * 24 * 60, 6 * 60)),
    st.tuples(st.just("delete"), st.integers(0, 30)),
    st.tuples(
        st.just("lead"),
        lead_ref,
        st.sampled_from(("software", "retail")),
        st.sampled_from(("gmail.com", "acme.com")),
    ),
    st.tuples(st.just("new_lead"), st.sampled_from(("software", "retail"))),
    st.tuples(st.just("adjust"), lead_ref, st.integers(-30, 30)),
    st.tuples(st.just("set_score"), lead_ref, st.integers(0, 90)),
    st.tuples(
        st.just("advance"),
        st.sampled_from((1, 59, 600, 3600, 4 * 3600, 9 * 3600, 86400, 3 * 86400)),
    ),
    st.tuples(st.just("pass")),
)


class Store:
    """One store of the twin pair, replaying the same steps."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.activities: list[int] = []
        self.written = 0  # ids are never reused, even after a delete

    def apply(self, item: tuple[Any, ...], now: datetime, leads: int) -> None:
        kind = item[0]
        with self.engine.begin() as connection:
            if kind == "activity":
                _, lead, activity_type, minutes, url, machine = item
                self.written += 1
                number = self.written
                self.activities.append(number)
                connection.execute(
                    insert(ACTIVITIES).values(
                        id=number,
                        external_id=f"A{number}",
                        lead_id=lead % leads + 1,
                        type=activity_type,
                        occurred_at=now + timedelta(minutes=minutes),
                        properties={"url": url},
                        machine=machine,
                        created_at=now,
                    )
                )
            elif kind == "move" and self.activities:
                _, which, lead, minutes = item
                number = self.activities[which % len(self.activities)]
                connection.execute(
                    update(ACTIVITIES)
                    .where(ACTIVITIES.c.id == number)
                    .values(lead_id=lead % leads + 1, occurred_at=now + timedelta(minutes=minutes))
                )
            elif kind == "delete" and self.activities:
                number = self.activities.pop(item[1] % len(self.activities))
                connection.execute(delete(ACTIVITIES).where(ACTIVITIES.c.id == number))
            elif kind == "lead":
                _, lead, industry, mail = item
                connection.execute(
                    update(LEADS)
                    .where(LEADS.c.id == lead % leads + 1)
                    .values(
                        attributes={"industry": industry},
                        email=f"lead{lead % leads + 1}@{mail}",
                        updated_at=now,
                    )
                )
            elif kind == "adjust":  # what a rule's adjust_score does to the lead
                _, lead, by = item
                connection.execute(
                    update(LEADS)
                    .where(LEADS.c.id == lead % leads + 1)
                    .values(
                        score=LEADS.c.score + by, score_adjustment=LEADS.c.score_adjustment + by
                    )
                )
            elif kind == "set_score":  # an import's score column
                connection.execute(
                    update(LEADS).where(LEADS.c.id == item[1] % leads + 1).values(score=item[2])
                )


twin_passes = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
initial_leads = st.lists(
    st.tuples(st.sampled_from(("software", "retail")), st.sampled_from(("gmail.com", "acme.com"))),
    min_size=1,
    max_size=4,
)
histories = st.lists(step, min_size=1, max_size=25)
model_switches = st.lists(
    st.one_of(step, st.tuples(st.just("model"), st.integers(0, 1))), min_size=1, max_size=25
)


class TestIncrementalEqualsFull:
    """Whatever happened since, a steady pass stores exactly what a full pass stores."""

    @twin_passes
    @given(initial=initial_leads, steps=histories)
    @pytest.mark.slow
    def test_same_scores_history_and_pass_record(
        self,
        engine: Engine,
        twin: Engine,
        tmp_path: Path,
        initial: list[tuple[str, str]],
        steps: list[tuple[Any, ...]],
    ) -> None:
        """Each pass: incremental in one store, full in the other, compared row by row."""
        replay(engine, twin, model_of(tmp_path), initial, steps)

    @twin_passes
    # What hypothesis may not draw in 40 examples: points that never fade (the lead never due
    # again) kept across passes, then a webinar's window ending; a lead written for its fit
    # alone (created over 2 days ago) while not due, then its download's window ending.
    @example(
        initial=[("software", "acme.com")],
        steps=[
            ("activity", 0, "download", -10, "/", False),
            ("pass",),
            ("advance", 2 * 86400 + 3600),
            ("pass",),
            ("advance", 86400),
            ("pass",),
        ],
    )
    @example(
        initial=[("software", "acme.com"), ("retail", "gmail.com")],
        steps=[
            ("activity", 0, "unsubscribe", -10, "/", False),
            ("activity", 1, "webinar", -10, "/", False),
            ("pass",),
            ("advance", 86400),
            ("pass",),
            ("advance", 86400),
            ("pass",),
        ],
    )
    @given(initial=initial_leads, steps=histories)
    @pytest.mark.slow
    def test_with_a_fit_criterion_reading_the_clock(
        self,
        engine: Engine,
        twin: Engine,
        tmp_path: Path,
        initial: list[tuple[str, str]],
        steps: list[tuple[Any, ...]],
    ) -> None:
        """Every pass reads every lead, recomputing the engagement of the leads due only; it
        stores what a full pass recomputing every engagement stores."""
        replay(engine, twin, model_of(tmp_path, CLOCK_FIT_MODEL), initial, steps)

    @twin_passes
    @example(
        initial=[("software", "acme.com"), ("retail", "gmail.com")],
        steps=[
            ("activity", 0, "page_view", -10, "/pricing", False),
            ("pass",),
            ("advance", 600),
            ("model", 1),
            ("pass",),
            ("activity", 1, "webinar", -10, "/", False),
            ("advance", 3600),
            ("model", 0),
            ("pass",),
        ],
    )
    @given(initial=initial_leads, steps=model_switches)
    @pytest.mark.slow
    def test_across_models_with_the_same_engagement(
        self,
        engine: Engine,
        twin: Engine,
        tmp_path: Path,
        initial: list[tuple[str, str]],
        steps: list[tuple[Any, ...]],
    ) -> None:
        """The model changes between passes (fit points and grade bands; the engagement
        criteria as they were): each pass after a change reads every lead, recomputing the
        engagement of the leads due only, and stores what a full pass stores."""
        models = (model_of(tmp_path), model_of(tmp_path, FIT_CHANGED_MODEL))
        assert models[0].version != models[1].version
        assert models[0].engagement_version == models[1].engagement_version
        replay(engine, twin, models, initial, steps)


def replay(
    engine: Engine,
    twin: Engine,
    models: ScoringModel | tuple[ScoringModel, ...],
    initial: list[tuple[str, str]],
    steps: list[tuple[Any, ...]],
) -> None:
    """``steps`` on both stores; at each pass, the model's own pass in ``engine`` and a full
    pass in ``twin``, whose stored scores, history and pass record must be equal. A step
    ``("model", k)`` makes ``models[k]`` the model of the passes after it."""
    choices = models if isinstance(models, tuple) else (models,)
    model = choices[0]
    ran: ScoringModel | None = None
    empty(engine, twin)
    incremental, full = Store(engine), Store(twin)
    now = T0
    for number, (industry, mail) in enumerate(initial, start=1):
        for store in (incremental, full):
            add_lead(store.engine, number, industry, mail, now)
    leads = len(initial)
    for item in [*steps, ("pass",)]:
        if item[0] == "advance":
            now += timedelta(seconds=item[1])
        elif item[0] == "new_lead":
            leads += 1
            for store in (incremental, full):
                add_lead(store.engine, leads, item[1], "acme.com", now)
        elif item[0] == "model":
            model = choices[item[1] % len(choices)]
        elif item[0] == "pass":
            steady = rescore(engine, model, now)
            whole = rescore(twin, model, now, full=True)
            whole_pass = ran is not model or reads_clock(model)
            assert steady.due is None if whole_pass else steady.due is not None
            ran = model
            assert whole.due is None
            assert (steady.changed, steady.model_version) == (
                whole.changed,
                whole.model_version,
            )
            assert stored(engine) == stored(twin)
        else:
            for store in (incremental, full):
                store.apply(item, now, leads)


class TestSteadyPasses:
    """What a steady pass reads."""

    def test_nothing_due_reads_nothing_and_an_arrival_reads_its_lead(
        self, engine: Engine, tmp_path: Path
    ) -> None:
        """After a pass, the same instant has no lead due; an activity makes its lead due,
        and only it; its decay makes it due again once a point has faded."""
        model = model_of(tmp_path)
        for number in (1, 2, 3):
            add_lead(engine, number, "software", "acme.com", T0)
        first = rescore(engine, model, T0)
        assert (first.due, first.changed) == (None, 3)
        again = rescore(engine, model, T0)
        assert (again.due, again.changed) == (0, 0)
        Store(engine).apply(("activity", 0, "page_view", 0, "/pricing", False), T0, 3)
        arrival = rescore(engine, model, T0 + timedelta(minutes=1))
        # Lead 1: pricing 10 x 0.5^(1/360) -> 10, views 2 -> 2: engagement 12, fit 20.
        assert (arrival.due, arrival.changed) == (1, 1)
        with engine.connect() as connection:
            row = connection.execute(
                select(LEADS.c.score, LEADS.c.score_next_change_day).where(LEADS.c.id == 2)
            ).one()
            assert row.score == 20
            # Lead 2 has no activity: nothing it has can change with time.
            assert row.score_next_change_day == pytest.approx(1.0e7 - 1 / 86400)
        # pricing drops below 9.5 after 6h x log2(10/9.5) = 26.6 min; views (2 -> 1.5) after
        # 1d x log2(2/1.5) = 9.96 h: due at 26 min, not at 25.
        quiet = rescore(engine, model, T0 + timedelta(minutes=25))
        assert (quiet.due, quiet.changed) == (0, 0)
        faded = rescore(engine, model, T0 + timedelta(minutes=27))
        assert (faded.due, faded.changed) == (1, 1)
        with engine.connect() as connection:
            assert connection.execute(select(LEADS.c.score).where(LEADS.c.id == 1)).scalar() == 31

    def test_a_criterion_reading_the_clock_makes_every_pass_full(
        self, engine: Engine, tmp_path: Path
    ) -> None:
        """A fit criterion with an age changes with no stored instant: every pass reads all."""
        model = model_of(tmp_path, CLOCK_MODEL)
        add_lead(engine, 1, "software", "acme.com", T0)
        assert rescore(engine, model, T0).due is None
        later = rescore(engine, model, T0 + timedelta(days=11))
        assert (later.due, later.changed) == (None, 1)
        with engine.connect() as connection:
            assert connection.execute(select(LEADS.c.score)).scalar() == 0

    def test_with_a_fit_criterion_reading_the_clock_only_due_engagement_is_read(
        self, engine: Engine, tmp_path: Path
    ) -> None:
        """A fit criterion with an age: the pass recomputes every lead's fit, and the
        engagement of the leads due only; a lead not due keeps the engagement stored (here
        one written behind the model's back, as a pass would write it, so that the triggers
        do not mark it), which a full pass recomputes."""
        model = model_of(tmp_path, CLOCK_FIT_MODEL)
        score_two_leads_one_with_a_webinar(engine, model)
        # Fit 20 (software) + 5 (created within 2d); lead 1's webinar 8 for 2 days.
        assert scores(engine) == {1: (33, 25, 8), 2: (25, 25, 0)}
        tamper_engagement(engine, 2, 7, "A2")
        later = rescore(engine, model, T0 + timedelta(days=3))
        assert (later.due, later.changed) == (None, 2)
        # Lead 1 was due (its webinar left the window): recomputed. Lead 2 was not: its fit
        # moved, its engagement is the stored one.
        assert scores(engine) == {1: (20, 20, 0), 2: (27, 20, 7)}
        full = rescore(engine, model, T0 + timedelta(days=3), full=True)
        assert full.changed == 1
        assert scores(engine) == {1: (20, 20, 0), 2: (20, 20, 0)}

    def test_too_many_due_to_list_reads_every_lead_and_the_due_leads_activities(
        self, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Past ``MOST_DUE`` leads due (here 1), a steady pass reads ranges of leads like a
        full one, but recomputes the engagement of the leads due only: a lead not due keeps
        the engagement stored on it."""
        monkeypatch.setattr(rescoring, "MOST_DUE", 1)
        model = model_of(tmp_path)
        for number in (1, 2, 3):
            add_lead(engine, number, "software", "acme.com", T0)
        assert rescore(engine, model, T0).changed == 3
        tamper_engagement(engine, 3, 7, "A2")
        store = Store(engine)
        store.apply(("activity", 0, "webinar", -60, "/", False), T0, 3)
        store.apply(("activity", 1, "webinar", -60, "/", False), T0, 3)
        later = rescore(engine, model, T0 + timedelta(minutes=1))
        assert (later.due, later.changed) == (None, 2)
        # Leads 1 and 2 were due (a webinar each, 8 points); lead 3 was not and keeps 7.
        assert scores(engine) == {1: (28, 20, 8), 2: (28, 20, 8), 3: (27, 20, 7)}
        assert rescore(engine, model, T0 + timedelta(minutes=1), full=True).changed == 1
        assert scores(engine)[3] == (20, 20, 0)

    def test_a_model_change_of_fit_only_reads_the_due_leads_engagement_only(
        self, engine: Engine, tmp_path: Path
    ) -> None:
        """A new model with other fit points and grade bands but the same engagement criteria:
        every lead's fit is recomputed, the engagement of the leads due only (a lead not due
        keeps the engagement stored on it, here written behind the model's back). Another
        engagement criterion, or a pass recorded before the engagement's version was (NULL),
        recomputes every lead's engagement."""
        model, fit_changed = model_of(tmp_path), model_of(tmp_path, FIT_CHANGED_MODEL)
        score_two_leads_one_with_a_webinar(engine, model)
        # Fit 20 (software); lead 1's webinar 8 for 2 days.
        assert scores(engine) == {1: (28, 20, 8), 2: (20, 20, 0)}
        tamper_engagement(engine, 2, 7, "A2")
        later = rescore(engine, fit_changed, T0 + timedelta(hours=1))
        assert (later.due, later.changed, later.model_version) == (None, 2, fit_changed.version)
        # Fit 30 now for both; lead 2 was not due and keeps its stored 7.
        assert scores(engine) == {1: (38, 30, 8), 2: (37, 30, 7)}
        with engine.connect() as connection:
            causes = connection.execute(
                select(SCORE_CHANGES.c.lead_id, SCORE_CHANGES.c.cause, SCORE_CHANGES.c.new_score)
                .where(SCORE_CHANGES.c.model_version == fit_changed.version)
                .order_by(SCORE_CHANGES.c.lead_id)
            ).all()
            run = connection.execute(
                select(SCORING_RUNS.c.model_version, SCORING_RUNS.c.engagement_version)
            ).one()
        assert [tuple(row) for row in causes] == [(1, "model", 38), (2, "model", 37)]
        assert tuple(run) == (fit_changed.version, model.engagement_version)

        other_engagement = model_of(tmp_path, MODEL.replace("points: 8\n", "points: 9\n", 1))
        assert other_engagement.engagement_version != model.engagement_version
        again = rescore(engine, other_engagement, T0 + timedelta(hours=2))
        assert (again.due, again.changed) == (None, 2)
        # Fit 20 again; the webinar is worth 9; lead 2's engagement recomputed: 0.
        assert scores(engine) == {1: (29, 20, 9), 2: (20, 20, 0)}

        tamper_engagement(engine, 2, 7, "A2")
        with engine.begin() as connection:
            connection.execute(update(SCORING_RUNS).values(engagement_version=None))
        both_changed = model_of(
            tmp_path, FIT_CHANGED_MODEL.replace("points: 8\n", "points: 9\n", 1)
        )
        assert both_changed.engagement_version == other_engagement.engagement_version
        before_recorded = rescore(engine, both_changed, T0 + timedelta(hours=3))
        assert (before_recorded.due, before_recorded.changed) == (None, 2)
        assert scores(engine) == {1: (39, 30, 9), 2: (30, 30, 0)}

    def test_with_an_engagement_criterion_reading_the_clock_every_engagement_is_read(
        self, engine: Engine, tmp_path: Path
    ) -> None:
        """An activity condition with an age: no stored engagement holds, every lead's is
        recomputed at every pass."""
        model = model_of(tmp_path, CLOCK_ENGAGEMENT_MODEL)
        for number in (1, 2):
            add_lead(engine, number, "software", "acme.com", T0)
        assert rescore(engine, model, T0).changed == 2
        tamper_engagement(engine, 2, 7, None)
        later = rescore(engine, model, T0 + timedelta(hours=1))
        assert (later.due, later.changed) == (None, 1)
        assert scores(engine) == {1: (5, 5, 0), 2: (5, 5, 0)}


def scores(engine: Engine) -> dict[int, tuple[int, int, int]]:
    """(score, fit, engagement) by lead."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(LEADS.c.id, LEADS.c.score, LEADS.c.score_fit, LEADS.c.score_engagement)
        )
        return {row.id: (row.score, row.score_fit, row.score_engagement) for row in rows}


def score_two_leads_one_with_a_webinar(engine: Engine, model: ScoringModel) -> None:
    """Leads 1 and 2 (software, acme.com), lead 1 with a webinar an hour before T0, scored by
    ``model`` at T0: both change."""
    for number in (1, 2):
        add_lead(engine, number, "software", "acme.com", T0)
    Store(engine).apply(("activity", 0, "webinar", -60, "/", False), T0, 2)
    assert rescore(engine, model, T0).changed == 2


def tamper_engagement(engine: Engine, lead_id: int, engagement: int, grade: str | None) -> None:
    """Store ``engagement`` (and the score and ``grade`` with it) on a lead as a pass would:
    with a new next change, a second earlier, so that no trigger marks the lead due."""
    with engine.begin() as connection:
        connection.execute(
            update(LEADS)
            .where(LEADS.c.id == lead_id)
            .values(
                score=LEADS.c.score - LEADS.c.score_engagement + engagement,
                score_engagement=engagement,
                score_grade=grade,
                score_next_change_day=LEADS.c.score_next_change_day - 1 / 86400,
            )
        )


class TestMarks:
    """The triggers mark a lead due on every write to it or to one of its activities."""

    def test_insert_update_and_delete_mark_their_leads(
        self, engine: Engine, tmp_path: Path
    ) -> None:
        """Moving an activity marks the lead it left and the lead it joined; an update of the
        lead by anything but the pass marks it."""
        model = model_of(tmp_path)
        for number in (1, 2, 3):
            add_lead(engine, number, "retail", "acme.com", T0)
        store = Store(engine)
        store.apply(("activity", 0, "webinar", -60, "/", False), T0, 3)

        def due_after(item: tuple[Any, ...]) -> list[int]:
            rescore(engine, model, T0)
            store.apply(item, T0, 3)
            with engine.connect() as connection:
                marked = connection.execute(
                    select(LEADS.c.id)
                    .where(
                        LEADS.c.score_next_change_day.is_(None)
                        | (LEADS.c.score_next_change_day < 0)
                    )
                    .order_by(LEADS.c.id)
                )
                return [row[0] for row in marked]

        assert due_after(("activity", 2, "download", 0, "/", True)) == [3]
        assert due_after(("move", 0, 1, -30)) == [1, 2]
        assert due_after(("delete", 0)) == [2]
        assert due_after(("lead", 1, "software", "gmail.com")) == [2]
        assert due_after(("adjust", 2, 5)) == [3]
        # The pass's own writes mark nothing, even where it stored a lead's score anew.
        assert due_after(("pass",)) == []
