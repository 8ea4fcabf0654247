"""The stage history: every path that moves a lead or deal writes its ``stage_changes`` row.

Rule firings (a lead qualifying, a deal recycled), SLA reassignments, file imports and the
HTTP API, on SQLite and PostgreSQL, each asserted row by row.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Engine, MetaData, Table, insert, select

from leadflow.clock import SettableClock
from leadflow.engine.runtime import Runtime
from leadflow.engine.sla import run_sla_escalations
from leadflow.engine.tick import run_due_rules
from leadflow.funnel.period import Grouping, Period
from leadflow.funnel.report import build_report
from leadflow.ingest.runner import import_file
from leadflow.store.database import create_store_engine, migrate
from leadflow.store.tables import AUDIT, DEALS, LEADS, REPS, STAGE_CHANGES
from tests.conftest import migrated_schema
from tests.http_support import Api, build_app, http_settings, runtime_for
from tests.import_support import write

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # Monday 09:00
OLD = T0 - timedelta(days=400)

Row = tuple[Any, ...]


def history(engine: Engine) -> list[Row]:
    """(lead, deal, at, from, to, from owner, to owner, cause, rule, source) in id order."""
    c = STAGE_CHANGES.c
    query = select(
        c.lead_id,
        c.deal_id,
        c.at,
        c.from_stage,
        c.to_stage,
        c.from_owner_id,
        c.to_owner_id,
        c.cause,
        c.rule_id,
        c.source,
    ).order_by(c.id)
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


def seed_reps(engine: Engine) -> None:
    rep = {
        "timezone": "UTC",
        "active": True,
        "capacity": None,
        "manager_id": None,
        "pools": [],
        "created_at": OLD,
        "updated_at": OLD,
    }
    with engine.begin() as connection:
        connection.execute(
            insert(REPS),
            [
                {**rep, "id": 1, "external_id": "m1", "name": "Mona", "email": "m@x.test"},
                {
                    **rep,
                    "id": 2,
                    "external_id": "r1",
                    "name": "Rita",
                    "email": "r1@x.test",
                    "pools": ["east"],
                    "manager_id": 1,
                },
                {
                    **rep,
                    "id": 3,
                    "external_id": "r2",
                    "name": "Raj",
                    "email": "r2@x.test",
                    "pools": ["east"],
                    "manager_id": 1,
                },
            ],
        )


LEADS_BEFORE_0013 = Table(
    "leads",
    MetaData(),
    *(
        Column(c.name, c.type, primary_key=c.primary_key, default=c.default and c.default.arg)
        for c in LEADS.c
        if c.name != "first_source"
    ),
)
"""The leads table of a store migrated to before 0013: LEADS fills ``first_source`` on every
insert (its default), a column such a store does not have yet."""


def seed_lead(
    engine: Engine, lead_id: int, *, score: int, stage: str = "lead", table: Table = LEADS
) -> None:
    with engine.begin() as connection:
        connection.execute(
            insert(table).values(
                id=lead_id,
                external_id=f"L{lead_id}",
                email=f"l{lead_id}@x.test",
                name=f"Lead {lead_id}",
                score=score,
                stage=stage,
                stage_entered_at=T0 - timedelta(days=3),
                attributes={"region": "East"},
                created_at=OLD,
                updated_at=OLD,
            )
        )


@pytest.fixture
def runtime(engine: Engine, make_settings: Any, clock: SettableClock) -> Runtime:
    settings = make_settings(
        **{
            "paths.rules": str(REPO / "tests" / "fixtures" / "funnel_rules"),
            "paths.templates": str(REPO / "templates"),
            "calendar.timezone": "UTC",
            "attributes.leads": {"region": "string"},
        }
    )
    return Runtime.build(engine, settings, clock)


class TestRules:
    """A rule's stage change and owner change are rows of the firing's own batch."""

    def test_qualifying_lead_enters_mql_with_the_owner_it_is_assigned(
        self, runtime: Runtime
    ) -> None:
        """mql-assignment moves L1 lead -> mql, then assigns Rita: one row, the entry, with
        Rita as the owner on entry (the report counts the MQL for her)."""
        seed_reps(runtime.engine)
        seed_lead(runtime.engine, 1, score=70)
        seed_lead(runtime.engine, 2, score=10)
        rule_set = runtime.load_rules()
        run_due_rules(runtime, rule_set, T0)
        version = rule_set.version
        assert history(runtime.engine) == [
            (1, None, T0, "lead", "mql", None, 2, "rule", "mql-assignment", version),
        ]

    def test_the_report_by_rep_counts_the_mql_for_its_rep(self, runtime: Runtime) -> None:
        """`report --by rep` after the MQL rule: L1's entry into mql counts for Rita, the rep
        it went to, not for "(none)"."""
        seed_reps(runtime.engine)
        seed_lead(runtime.engine, 1, score=70)
        run_due_rules(runtime, runtime.load_rules(), T0)
        period = Period(T0 - timedelta(days=1), T0 + timedelta(days=1), Grouping.rep)
        report = build_report(runtime.engine, runtime.settings, period, T0)
        assert dict(report.entries) == {("Rita", "mql"): 1}

    def test_sla_reassignment_is_an_owner_change(self, runtime: Runtime) -> None:
        """Rita never calls: at 17:00 the ladder's last level gives L1 to Raj, recorded."""
        seed_reps(runtime.engine)
        seed_lead(runtime.engine, 1, score=70)
        rule_set = runtime.load_rules()
        run_due_rules(runtime, rule_set, T0)
        for hour in (13, 15, 17):
            run_sla_escalations(runtime, rule_set, T0.replace(hour=hour))
        at = T0.replace(hour=17)
        assert history(runtime.engine)[1:] == [
            (1, None, at, "mql", "mql", 2, 3, "reassignment", "mql-assignment", rule_set.version)
        ]

    def test_recycled_deal_closes_and_its_lead_goes_back(self, runtime: Runtime) -> None:
        """recycle-idle-deals closes the idle deal (Proposal -> recycled) and moves its lead
        mql -> recycled, releasing the lead's owner: two rows, the deal's first."""
        seed_reps(runtime.engine)
        seed_lead(runtime.engine, 1, score=10, stage="mql")
        deal = {
            "lead_id": 1,
            "product": "Pro",
            "owner_id": 2,
            "amount": 1000.0,
            "attributes": {},
            "created_at": OLD,
            "updated_at": OLD,
        }
        with runtime.engine.begin() as connection:
            connection.execute(LEADS.update().values(owner_id=2))
            connection.execute(
                insert(DEALS),
                [
                    {
                        **deal,
                        "id": 1,
                        "external_id": "D1",
                        "stage": "Won",
                        "outcome": "won",
                        "engaged_at": T0 - timedelta(days=40),
                        "closed_at": T0 - timedelta(days=30),
                        "last_activity_at": T0 - timedelta(days=30),
                    },
                    {
                        **deal,
                        "id": 2,
                        "external_id": "D2",
                        "stage": "Proposal",
                        "outcome": None,
                        "closed_at": None,
                        "engaged_at": T0 - timedelta(days=60),
                        "last_activity_at": T0 - timedelta(days=50),
                    },
                ],
            )
        rule_set = runtime.load_rules()
        run_due_rules(runtime, rule_set, T0)
        version = rule_set.version
        rule = "recycle-idle-deals"
        assert history(runtime.engine) == [
            (None, 2, T0, "Proposal", "recycled", 2, 2, "rule", rule, version),
            (1, None, T0, "mql", "recycled", 2, None, "rule", rule, version),
        ]

    def test_a_lead_imported_after_the_instant_is_left_alone(self, runtime: Runtime) -> None:
        """Evaluated as of T0 (``run --once --now``), with the deal's lead imported a day later
        (its stage entered at T0 + 1 day: t2report D2, the Maven walkthrough's 85 accounts):
        the deal is recycled at T0, its lead is not moved, scored or enrolled (a stage set at
        T0 preceded its import entry, and reports read it open in `lead`), and the skipped
        stage is audited. A lead in its stage by T0 goes back, as above."""
        seed_reps(runtime.engine)
        seed_lead(runtime.engine, 1, score=10, stage="lead")
        seed_lead(runtime.engine, 2, score=10, stage="lead")
        imported = T0 + timedelta(days=1)
        idle = {
            "product": "Pro",
            "owner_id": 2,
            "amount": 1000.0,
            "attributes": {},
            "created_at": OLD,
            "updated_at": OLD,
            "stage": "Proposal",
            "outcome": None,
            "closed_at": None,
            "engaged_at": T0 - timedelta(days=60),
            "last_activity_at": T0 - timedelta(days=50),
        }
        won = {
            **idle,
            "stage": "Won",
            "outcome": "won",
            "engaged_at": T0 - timedelta(days=40),
            "closed_at": T0 - timedelta(days=30),
            "last_activity_at": T0 - timedelta(days=30),
        }
        with runtime.engine.begin() as connection:
            connection.execute(
                LEADS.update().where(LEADS.c.id == 1).values(stage_entered_at=imported)
            )
            connection.execute(
                insert(DEALS),
                [
                    {**won, "id": 1, "external_id": "D1", "lead_id": 1},
                    {**idle, "id": 2, "external_id": "D2", "lead_id": 1},
                    {**idle, "id": 3, "external_id": "D3", "lead_id": 2},
                ],
            )
        rule_set = runtime.load_rules()
        run_due_rules(runtime, rule_set, T0)
        version = rule_set.version
        rule = "recycle-idle-deals"
        assert history(runtime.engine) == [
            (None, 2, T0, "Proposal", "recycled", 2, 2, "rule", rule, version),
            (None, 3, T0, "Proposal", "recycled", 2, 2, "rule", rule, version),
            (2, None, T0, "lead", "recycled", None, None, "rule", rule, version),
        ]
        with runtime.engine.connect() as connection:
            leads = connection.execute(
                select(LEADS.c.id, LEADS.c.stage, LEADS.c.score, LEADS.c.stage_entered_at).order_by(
                    LEADS.c.id
                )
            ).all()
            skipped = connection.execute(
                select(AUDIT.c.deal_id, AUDIT.c.lead_id, AUDIT.c.params).where(
                    AUDIT.c.action == "set_stage_skipped"
                )
            ).all()
        assert [tuple(row) for row in leads] == [
            (1, "lead", 10, imported),
            (2, "recycled", -20, T0),
        ]
        assert [(row.deal_id, row.lead_id, row.params["reason"]) for row in skipped] == [
            (2, 1, "its lead entered its current stage after the rule's instant")
        ]


class TestImports:
    """An import records a new lead's first stage at its entry time and each changed stage."""

    def test_new_changed_and_unchanged_leads(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        """First file: L1 new in `lead` entered 1 Feb (its historical time), L2 new with no time
        (entered now). Second file, a day later: L1 moved to mql (entered then), L2 unchanged."""
        settings = make_settings()
        first = write(
            tmp_path,
            "a.csv",
            "external_id,email,stage,stage_entered_at\n"
            "L1,a@x.test,lead,2026-02-01T10:00:00Z\n"
            "L2,b@x.test,subscriber,\n",
        )
        import_file(engine, settings, "leads", first, clock=SettableClock(T0))
        second = write(
            tmp_path,
            "b.csv",
            "external_id,email,stage,stage_entered_at\nL1,a@x.test,mql,\nL2,b@x.test,subscriber,\n",
        )
        later = T0 + timedelta(days=1)
        import_file(engine, settings, "leads", second, clock=SettableClock(later))
        entered = datetime(2026, 2, 1, 10, 0, tzinfo=UTC)
        rows = [(r[0], r[2], r[3], r[4], r[7], Path(r[9]).name) for r in history(engine)]
        assert rows == [
            (1, entered, None, "lead", "import", "a.csv"),
            (2, T0, None, "subscriber", "import", "a.csv"),
            (1, later, "lead", "mql", "import", "b.csv"),
        ]

    def test_batches_record_created_rows_and_only_changed_stages(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        """Two rows per batch. The first file creates L1-L5: each enters its stage, in file
        order. The second, a day later: L2's stage changed (an entry), L3's name only (none),
        L1 and L4 unchanged (none), L6 and L7 new (their first stage, entered then)."""
        settings = make_settings(import__batch_size=2)
        header = "external_id,name,stage\n"
        first = write(
            tmp_path,
            "a.csv",
            header + "L1,A,lead\nL2,B,subscriber\nL3,C,mql\nL4,D,lead\nL5,E,nurture\n",
        )
        done = import_file(engine, settings, "leads", first, clock=SettableClock(T0))
        assert done.summary == "inserted 5, updated 0, unchanged 0, rejected 0"
        second = write(
            tmp_path,
            "b.csv",
            header + "L1,A,lead\nL2,B,mql\nL3,Cee,mql\nL6,F,subscriber\nL7,G,lead\nL4,D,lead\n",
        )
        later = T0 + timedelta(days=1)
        again = import_file(engine, settings, "leads", second, clock=SettableClock(later))
        assert again.summary == "inserted 2, updated 2, unchanged 2, rejected 0"
        with engine.connect() as connection:
            keys = {
                i: key for i, key in connection.execute(select(LEADS.c.id, LEADS.c.external_id))
            }
        # By external id: PostgreSQL's upsert takes an id from the sequence for an updated row
        # too, so new leads' ids there are not SQLite's.
        rows = [(keys[r[0]], r[2], r[3], r[4], r[7], Path(r[9]).name) for r in history(engine)]
        assert rows == [
            ("L1", T0, None, "lead", "import", "a.csv"),
            ("L2", T0, None, "subscriber", "import", "a.csv"),
            ("L3", T0, None, "mql", "import", "a.csv"),
            ("L4", T0, None, "lead", "import", "a.csv"),
            ("L5", T0, None, "nurture", "import", "a.csv"),
            ("L2", later, "subscriber", "mql", "import", "b.csv"),
            ("L6", later, None, "subscriber", "import", "b.csv"),
            ("L7", later, None, "lead", "import", "b.csv"),
        ]

    def test_a_batch_of_more_leads_than_one_statement_holds(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        """1,500 new leads in one batch (more ids than one IN list carries): each enters its
        stage once, in file order; re-importing them with every third stage changed records
        exactly those 500 changes."""
        settings = make_settings()
        stages = ("lead", "subscriber", "mql")
        lines = [f"L{n:04d},{stages[n % 3]}" for n in range(1500)]
        first = write(tmp_path, "a.csv", "external_id,stage\n" + "\n".join(lines) + "\n")
        done = import_file(engine, settings, "leads", first, clock=SettableClock(T0))
        assert done.summary == "inserted 1500, updated 0, unchanged 0, rejected 0"
        moved = [f"L{n:04d},{'nurture' if n % 3 == 0 else stages[n % 3]}" for n in range(1500)]
        second = write(tmp_path, "b.csv", "external_id,stage\n" + "\n".join(moved) + "\n")
        later = T0 + timedelta(days=1)
        again = import_file(engine, settings, "leads", second, clock=SettableClock(later))
        assert again.summary == "inserted 0, updated 500, unchanged 1000, rejected 0"
        with engine.connect() as connection:
            keys = dict(list(connection.execute(select(LEADS.c.id, LEADS.c.external_id))))
        rows = [(keys[r[0]], r[2], r[3], r[4]) for r in history(engine)]
        assert rows == [
            *((f"L{n:04d}", T0, None, stages[n % 3]) for n in range(1500)),
            *((f"L{n:04d}", later, "lead", "nurture") for n in range(0, 1500, 3)),
        ]

    def test_deal_import_records_its_close(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        """A new open deal enters its stage when engaged; closed later, it enters its outcome at
        its closed_at."""
        settings = make_settings()
        header = "external_id,stage,outcome,engaged_at,closed_at\n"
        first = write(tmp_path, "d1.csv", header + "D1,Engaging,,2026-01-05T00:00:00Z,\n")
        import_file(engine, settings, "deals", first, clock=SettableClock(T0))
        second = write(
            tmp_path,
            "d2.csv",
            header + "D1,Won,won,2026-01-05T00:00:00Z,2026-02-20T00:00:00Z\n",
        )
        import_file(engine, settings, "deals", second, clock=SettableClock(T0))
        rows = [(r[1], r[2], r[3], r[4], r[7]) for r in history(engine)]
        assert rows == [
            (1, datetime(2026, 1, 5, tzinfo=UTC), None, "Engaging", "import"),
            (1, datetime(2026, 2, 20, tzinfo=UTC), "Engaging", "won", "import"),
        ]

    def test_deal_imported_closed_enters_its_open_stage_when_engaged(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        """Historical deals arrive closed: D1 (won, engaged 5 Jan, closed 20 Feb) enters
        ``stages.deal_open`` at its engagement, then ``won`` at its close; D2 (lost the day it
        engaged) keeps the order by id at the same instant; D3 (no engagement) gets its outcome
        alone; D4 (closed before its engagement, a broken row) is rejected; D5, open, its
        stage."""
        settings = make_settings()
        header = "external_id,stage,outcome,engaged_at,closed_at\n"
        body = (
            "D1,Won,won,2026-01-05T00:00:00Z,2026-02-20T00:00:00Z\n"
            "D2,Lost,lost,2026-01-07T00:00:00Z,2026-01-07T00:00:00Z\n"
            "D3,Lost,lost,,2026-01-09T00:00:00Z\n"
            "D4,Won,won,2026-03-01T00:00:00Z,2026-02-01T00:00:00Z\n"
            "D5,Prospecting,,2026-01-11T00:00:00Z,\n"
        )
        done = import_file(
            engine,
            settings,
            "deals",
            write(tmp_path, "d.csv", header + body),
            clock=SettableClock(T0),
        )
        assert done.summary == "inserted 4, updated 0, unchanged 0, rejected 1"
        rows = [(r[1], r[2], r[3], r[4], r[7]) for r in history(engine)]
        assert rows == [
            (1, datetime(2026, 1, 5, tzinfo=UTC), None, "Engaging", "import"),
            (2, datetime(2026, 1, 7, tzinfo=UTC), None, "Engaging", "import"),
            (1, datetime(2026, 2, 20, tzinfo=UTC), "Engaging", "won", "import"),
            (2, datetime(2026, 1, 7, tzinfo=UTC), "Engaging", "lost", "import"),
            (3, datetime(2026, 1, 9, tzinfo=UTC), None, "lost", "import"),
            (4, datetime(2026, 1, 11, tzinfo=UTC), None, "Prospecting", "import"),
        ]

    def test_deal_open_null_records_the_outcome_alone(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        settings = make_settings(stages__deal_open=None)
        header = "external_id,stage,outcome,engaged_at,closed_at\n"
        body = "D1,Won,won,2026-01-05T00:00:00Z,2026-02-20T00:00:00Z\n"
        import_file(
            engine,
            settings,
            "deals",
            write(tmp_path, "d.csv", header + body),
            clock=SettableClock(T0),
        )
        rows = [(r[1], r[2], r[3], r[4]) for r in history(engine)]
        assert rows == [(1, datetime(2026, 2, 20, tzinfo=UTC), None, "won")]


class TestHttpApi:
    """A lead posted to the API is recorded with cause ``api``."""

    def test_post_then_stage_change(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        """POST L1 (no stage: the initial stage, now), then POST it again as an MQL an hour
        later: two rows; a third identical POST adds none."""
        runtime = runtime_for(engine, http_settings(make_settings), clock)
        app, _holder = build_app(runtime)
        api = Api(app)
        assert api.post("/v1/leads", {"external_id": "L1"}).status_code == 200
        clock.advance(timedelta(hours=1))
        for _ in range(2):
            body = {"external_id": "L1", "stage": "mql"}
            assert api.post("/v1/leads", body).status_code == 200
        initial = runtime.settings.stages.initial
        rows = [(r[0], r[2], r[3], r[4], r[7], r[9]) for r in history(engine)]
        assert rows == [
            (1, T0, None, initial, "api", None),
            (1, T0 + timedelta(hours=1), initial, "mql", "api", None),
        ]


class TestMigration:
    """Migration 0009 rebuilds the history from the audit, then each current stage."""

    def test_back_fill_from_audit_rows(
        self, store_url: str, request: pytest.FixtureRequest
    ) -> None:
        """L1 (moved twice by rules, its deal recycled), L2 (never moved) and an open deal D2:
        L1's first stage at its creation, the audited moves in order, then the entries no rule
        made (L2's stage, D2's)."""
        engine = _store_at_0006(store_url, request)
        t1, t2, t3 = (T0 + timedelta(days=d) for d in (1, 2, 3))
        lead = {"score": 0, "attributes": {}, "created_at": OLD, "updated_at": OLD}
        deal = {"attributes": {}, "created_at": OLD, "updated_at": OLD, "lead_id": 1}
        audit = {"source": "rule", "rule_version": "v1", "evidence": {}}
        with engine.begin() as connection:
            connection.execute(
                insert(LEADS_BEFORE_0013),
                [
                    {
                        **lead,
                        "id": 1,
                        "external_id": "L1",
                        "stage": "recycled",
                        "stage_entered_at": t2,
                    },
                    {**lead, "id": 2, "external_id": "L2", "stage": "lead", "stage_entered_at": t3},
                ],
            )
            connection.execute(
                insert(DEALS),
                [
                    {
                        **deal,
                        "id": 1,
                        "external_id": "D1",
                        "stage": "Proposal",
                        "outcome": "recycled",
                        "engaged_at": T0,
                        "closed_at": t2,
                    },
                    {
                        **deal,
                        "id": 2,
                        "external_id": "D2",
                        "stage": "Engaging",
                        "outcome": None,
                        "engaged_at": t1,
                        "closed_at": None,
                    },
                ],
            )
            connection.execute(
                insert(AUDIT),
                [
                    {
                        **audit,
                        "at": t1,
                        "action": "stage_changed",
                        "lead_id": 1,
                        "deal_id": None,
                        "rule_id": "mql",
                        "params": {"from": "lead", "to": "mql"},
                    },
                    {
                        **audit,
                        "at": t2,
                        "action": "deal_recycled",
                        "lead_id": 1,
                        "deal_id": 1,
                        "rule_id": "rec",
                        "params": {"stage": "Proposal", "reason": "idle"},
                    },
                    {
                        **audit,
                        "at": t2,
                        "action": "stage_changed",
                        "lead_id": 1,
                        "deal_id": 1,
                        "rule_id": "rec",
                        "params": {"from": "mql", "to": "recycled"},
                    },
                    {
                        **audit,
                        "at": t2,
                        "action": "score_changed",
                        "lead_id": 1,
                        "deal_id": 1,
                        "rule_id": "rec",
                        "params": {"from": 0, "to": -30},
                    },
                ],
            )
        migrate(engine)
        rows = [(r[0], r[1], r[2], r[3], r[4], r[7], r[8], r[9]) for r in history(engine)]
        engine.dispose()
        assert rows == [
            (1, None, OLD, None, "lead", "migration", None, None),
            (1, None, t1, "lead", "mql", "migration", "mql", "v1"),
            (None, 1, t2, "Proposal", "recycled", "migration", "rec", "v1"),
            (1, None, t2, "mql", "recycled", "migration", "rec", "v1"),
            (2, None, t3, None, "lead", "migration", None, None),
            (None, 2, t1, None, "Engaging", "migration", None, None),
        ]


def _store_at_0006(store_url: str, request: pytest.FixtureRequest) -> Engine:
    """An empty store migrated only to 0006: a new SQLite file, or a new PostgreSQL schema."""
    return _store_at(store_url, request, "0006")


def _store_at(store_url: str, request: pytest.FixtureRequest, revision: str) -> Engine:
    """An empty store migrated only to ``revision``: a new SQLite file, or a new PostgreSQL
    schema."""
    if store_url.startswith("sqlite"):
        path = Path(str(request.getfixturevalue("tmp_path"))) / f"at{revision}.db"
        engine = create_store_engine(f"sqlite:///{path}")
        migrate(engine, revision)
        return engine
    schemas = ExitStack()
    request.addfinalizer(schemas.close)
    return create_store_engine(schemas.enter_context(migrated_schema(revision)))


class TestOwnerOnEntryMigration:
    """Migration 0012 folds a rule's owner change into the entry the same firing made."""

    def test_the_firings_owner_change_becomes_the_entrys_owner(
        self, store_url: str, request: pytest.FixtureRequest
    ) -> None:
        """L1 entered mql then was assigned Rita by one firing (two rows, as written before):
        one row with Rita on entry. Kept as they were: L2's reassignment (not a rule's), L3's
        assignment by another rule at the same instant, L4's assignment an hour after its
        entry, and a deal's entry."""
        engine = _store_at(store_url, request, "0011")
        seed_reps(engine)
        for lead_id in (1, 2, 3, 4):
            seed_lead(engine, lead_id, score=70, stage="mql", table=LEADS_BEFORE_0013)
        rule = {"cause": "rule", "rule_id": "mql-assignment", "source": "v1", "deal_id": None}
        later = T0 + timedelta(hours=1)
        rows = [
            {**rule, "lead_id": 1, "at": T0, "from_stage": "lead", "to_stage": "mql"},
            {
                **rule,
                "lead_id": 1,
                "at": T0,
                "from_stage": "mql",
                "to_stage": "mql",
                "to_owner_id": 2,
            },
            {
                **rule,
                "lead_id": 2,
                "at": T0,
                "from_stage": "lead",
                "to_stage": "mql",
                "to_owner_id": 2,
            },
            {
                **rule,
                "lead_id": 2,
                "at": T0,
                "from_stage": "mql",
                "to_stage": "mql",
                "from_owner_id": 2,
                "to_owner_id": 3,
                "cause": "reassignment",
            },
            {**rule, "lead_id": 3, "at": T0, "from_stage": "lead", "to_stage": "mql"},
            {
                **rule,
                "lead_id": 3,
                "at": T0,
                "from_stage": "mql",
                "to_stage": "mql",
                "to_owner_id": 3,
                "rule_id": "other",
            },
            {**rule, "lead_id": 4, "at": T0, "from_stage": "lead", "to_stage": "mql"},
            {
                **rule,
                "lead_id": 4,
                "at": later,
                "from_stage": "mql",
                "to_stage": "mql",
                "to_owner_id": 2,
            },
        ]
        columns = ("from_owner_id", "to_owner_id")
        with engine.begin() as connection:
            connection.execute(
                insert(STAGE_CHANGES), [{**dict.fromkeys(columns), **row} for row in rows]
            )
        migrate(engine)
        found = [(r[0], r[2], r[3], r[4], r[5], r[6], r[7], r[8]) for r in history(engine)]
        engine.dispose()
        assert found == [
            (1, T0, "lead", "mql", None, 2, "rule", "mql-assignment"),
            (2, T0, "lead", "mql", None, 2, "rule", "mql-assignment"),
            (2, T0, "mql", "mql", 2, 3, "reassignment", "mql-assignment"),
            (3, T0, "lead", "mql", None, None, "rule", "mql-assignment"),
            (3, T0, "mql", "mql", None, 3, "rule", "other"),
            (4, T0, "lead", "mql", None, None, "rule", "mql-assignment"),
            (4, later, "mql", "mql", None, 2, "rule", "mql-assignment"),
        ]
