"""The funnel end to end through the engine: MQL assignment, SLA ladder, nurture, recycling.

Runs the shipped rule files on a small, hand-made funnel with a clock moved by the test, on
SQLite and PostgreSQL, and asserts exactly which leads moved, who was emailed and when.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from leadflow.clock import SettableClock
from leadflow.engine.nurture import run_nurture_steps
from leadflow.engine.runtime import Runtime
from leadflow.engine.sla import run_sla_escalations
from leadflow.engine.tick import run_due_rules
from leadflow.errors import ProblemsError
from leadflow.store.tables import (
    ACTIVITIES,
    AUDIT,
    DEALS,
    FIRINGS,
    LEADS,
    NURTURE,
    OUTBOX,
    REPS,
    SLA_TIMERS,
)

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # Monday 09:00, business hours 09-17 UTC


@pytest.fixture
def runtime(engine: Engine, make_settings: Any) -> Runtime:
    settings = make_settings(
        **{
            "paths.rules": str(REPO / "tests" / "fixtures" / "funnel_rules"),
            "paths.templates": str(REPO / "templates"),
            "calendar.timezone": "UTC",
            "attributes.leads": {"region": "string"},
        }
    )
    return Runtime.build(engine, settings, SettableClock(T0))


def seed(engine: Engine) -> None:
    old = T0 - timedelta(days=400)
    with engine.begin() as connection:
        rep = {
            "timezone": "UTC",
            "active": True,
            "capacity": None,
            "manager_id": None,
            "created_at": old,
            "updated_at": old,
        }
        connection.execute(
            insert(REPS),
            [
                {
                    **rep,
                    "id": 1,
                    "external_id": "m1",
                    "name": "Mona Manager",
                    "email": "mona@example.com",
                    "pools": [],
                },
                {
                    **rep,
                    "id": 2,
                    "external_id": "r1",
                    "name": "Rita Rep",
                    "email": "rita@example.com",
                    "pools": ["east"],
                    "manager_id": 1,
                },
                {
                    **rep,
                    "id": 3,
                    "external_id": "r2",
                    "name": "Raj Rep",
                    "email": "raj@example.com",
                    "pools": ["east"],
                    "manager_id": 1,
                    "capacity": 2,
                },
                {
                    **rep,
                    "id": 4,
                    "external_id": "r3",
                    "name": "Ron Away",
                    "email": "ron@example.com",
                    "pools": ["east"],
                    "active": False,
                },
            ],
        )
        lead = {
            "stage": "lead",
            "stage_entered_at": T0 - timedelta(days=3),
            "created_at": old,
            "updated_at": old,
            "unsubscribed": False,
            "do_not_email": False,
            "hard_bounced": False,
        }
        connection.execute(
            insert(LEADS),
            [
                {
                    **lead,
                    "id": 1,
                    "external_id": "L1",
                    "email": "ann@acme.test",
                    "name": "Ann Lee",
                    "score": 70,
                    "attributes": {"region": "East"},
                },
                {
                    **lead,
                    "id": 2,
                    "external_id": "L2",
                    "email": "bob@beta.test",
                    "name": "Bob Ng",
                    "score": 40,
                    "attributes": {"region": "East"},
                },
                {
                    **lead,
                    "id": 3,
                    "external_id": "L3",
                    "email": "cy@gamma.test",
                    "name": "Cy Po",
                    "score": 65,
                    "attributes": {"region": "East"},
                },
                {
                    **lead,
                    "id": 4,
                    "external_id": "L4",
                    "email": "di@delta.test",
                    "name": "Di Wu",
                    "score": 90,
                    "attributes": {"region": "West"},
                },
                {
                    **lead,
                    "id": 5,
                    "external_id": "L5",
                    "email": "ed@eps.test",
                    "name": "Ed Fox",
                    "score": 10,
                    "attributes": {},
                    "stage": "customer",
                },
            ],
        )


def outbox(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(OUTBOX.c.recipient, OUTBOX.c.subject, OUTBOX.c.category).order_by(OUTBOX.c.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def leads(engine: Engine) -> dict[str, tuple[str, int | None, int]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(LEADS.c.external_id, LEADS.c.stage, LEADS.c.owner_id, LEADS.c.score).order_by(
                LEADS.c.id
            )
        )
        return {row.external_id: (row.stage, row.owner_id, row.score) for row in rows}


class TestMqlAndSla:
    """Crossing the threshold assigns by region and capacity; the SLA ladder climbs once per level."""

    def test_assignment_ladder_and_nurture(self, runtime: Runtime) -> None:
        seed(runtime.engine)
        rule_set = runtime.load_rules()
        run_due_rules(runtime, rule_set, T0)
        assert leads(runtime.engine) == {
            "L1": ("mql", 2, 70),  # East pool, round robin starts at the lowest id: Rita
            "L2": ("lead", None, 40),  # below threshold: nurtured instead
            "L3": ("mql", 3, 65),  # next in rotation: Raj (Ron is inactive)
            "L4": ("mql", None, 90),  # West routes to the default pool, which has no reps: queued
            "L5": ("customer", None, 10),
        }
        run_nurture_steps(runtime, rule_set, T0)
        first = outbox(runtime.engine)
        assert [(to, category) for to, _subject, category in first] == [
            ("rita@example.com", "operational"),
            ("raj@example.com", "operational"),
            ("bob@beta.test", "marketing"),
        ]
        assert "Ann Lee" in first[0][1]
        assert "Cy Po" in first[1][1]

        # Raj calls Cy at 11:00: his SLA is met. Rita does nothing about Ann.
        with runtime.engine.begin() as connection:
            connection.execute(
                insert(ACTIVITIES).values(
                    external_id="a1",
                    lead_id=3,
                    actor_id=3,
                    type="call",
                    occurred_at=T0 + timedelta(hours=2),
                    properties={},
                    created_at=T0,
                )
            )
        # Running the rules again at the same instant changes nothing and queues nothing.
        run_due_rules(runtime, rule_set, T0, force=True)
        assert len(outbox(runtime.engine)) == 3

        for hour in (13, 15, 17):
            run_sla_escalations(runtime, rule_set, T0.replace(hour=hour))
        emails = outbox(runtime.engine)[3:]
        assert [to for to, _s, _c in emails] == [
            "rita@example.com",
            "mona@example.com",
            "raj@example.com",
        ]
        assert leads(runtime.engine)["L1"] == ("mql", 3, 70)  # reassigned to Raj at 17:00
        with runtime.engine.connect() as connection:
            timers = connection.execute(
                select(
                    SLA_TIMERS.c.lead_id,
                    SLA_TIMERS.c.owner_id,
                    SLA_TIMERS.c.status,
                    SLA_TIMERS.c.level,
                    SLA_TIMERS.c.due_at,
                ).order_by(SLA_TIMERS.c.id)
            ).all()
            actions = (
                connection.execute(
                    select(AUDIT.c.action).where(AUDIT.c.lead_id == 1).order_by(AUDIT.c.id)
                )
                .scalars()
                .all()
            )
        assert [(t.lead_id, t.owner_id, t.status, t.level) for t in timers] == [
            (1, 2, "reassigned", 3),
            (3, 3, "met", 0),
            (1, 3, "running", 0),
        ]
        assert timers[0].due_at == T0.replace(hour=13)
        assert timers[2].due_at == datetime(
            2026, 3, 3, 13, 0, tzinfo=UTC
        )  # 4 business hours after 17:00 Monday
        # Raj's "Reassigned to you" names his fresh SLA's due time, not Rita's (13:00 Monday,
        # four hours before the email: "get in touch by" a time already gone).
        with runtime.engine.connect() as connection:
            told = connection.execute(
                select(OUTBOX.c.body_text, OUTBOX.c.body_html)
                .where(OUTBOX.c.recipient == "raj@example.com")
                .order_by(OUTBOX.c.id.desc())
                .limit(1)
            ).one()
        assert "Please get in touch by Tue 03 Mar 13:00 UTC." in told.body_text
        assert "Please get in touch by <strong>Tue 03 Mar 13:00 UTC</strong>." in told.body_html
        assert actions == [
            "stage_changed",
            "assigned",
            "email_queued",
            "sla_started",
            "sla_escalated",
            "sla_escalated",
            "reassigned",
            "sla_escalated",
        ]


def won_gtx_deals() -> list[dict[str, Any]]:
    """20 GTX deals won 100 days ago after exactly 10 days: GTX's average cycle is 10 days."""
    won = {
        "stage": "Won",
        "outcome": "won",
        "owner_id": 2,
        "product": "GTX",
        "attributes": {},
        "created_at": T0,
        "updated_at": T0,
        "lead_id": None,
        "last_activity_at": None,
    }
    return [
        {
            **won,
            "external_id": f"W{i}",
            "engaged_at": T0 - timedelta(days=110),
            "closed_at": T0 - timedelta(days=100),
        }
        for i in range(20)
    ]


def open_gtx_deal(**values: Any) -> dict[str, Any]:
    """An open GTX deal of Rita's, engaged 25 days ago; ``values`` add the rest."""
    return {
        "stage": "Engaging",
        "outcome": None,
        "owner_id": 2,
        "product": "GTX",
        "attributes": {},
        "created_at": T0,
        "updated_at": T0,
        "closed_at": None,
        "engaged_at": T0 - timedelta(days=25),
        **values,
    }


class TestRecycling:
    """Open deals idle beyond twice their product's average cycle are recycled, once."""

    def test_idle_deal_recycled_with_the_average_in_the_audit(self, runtime: Runtime) -> None:
        seed(runtime.engine)
        deals = won_gtx_deals()
        open_deal = open_gtx_deal()
        deals += [
            {
                **open_deal,
                "external_id": "D-idle",
                "lead_id": 1,
                "engaged_at": T0 - timedelta(days=25),
                "last_activity_at": T0 - timedelta(days=21),
            },
            {
                **open_deal,
                "external_id": "D-fresh",
                "lead_id": 2,
                "engaged_at": T0 - timedelta(days=25),
                "last_activity_at": T0 - timedelta(days=19),
            },
        ]
        with runtime.engine.begin() as connection:
            connection.execute(insert(DEALS), deals)
        rule_set = runtime.load_rules()
        run_due_rules(runtime, rule_set, T0, only=["recycle-idle-deals"])
        run_due_rules(runtime, rule_set, T0 + timedelta(hours=2), only=["recycle-idle-deals"])
        with runtime.engine.connect() as connection:
            recycled = connection.execute(
                select(DEALS.c.external_id, DEALS.c.outcome, DEALS.c.recycle_reason).where(
                    DEALS.c.outcome == "recycled"
                )
            ).all()
            audit = (
                connection.execute(
                    select(AUDIT.c.evidence).where(AUDIT.c.action == "deal_recycled")
                )
                .scalars()
                .all()
            )
        assert [tuple(row) for row in recycled] == [
            ("D-idle", "recycled", "idle beyond twice the average sales cycle")
        ]
        assert audit == [
            {
                "idle_days": 21.0,
                "product": "GTX",
                "average_cycle_days": 10.0,
                "average_cycle_deals": 20,
                "idle_threshold_days": 20.0,
                "outcome": None,
            }
        ]
        assert leads(runtime.engine)["L1"] == ("recycled", None, 40)


class TestUnusualData:
    """What the CRM sends is not always tidy: the funnel goes on and says what it skipped."""

    def test_a_lead_whose_email_is_not_an_address_moves_through_nurture_unmailed(
        self, runtime: Runtime
    ) -> None:
        seed(runtime.engine)
        with runtime.engine.begin() as connection:
            connection.execute(
                LEADS.update().where(LEADS.c.external_id == "L2").values(email="n/a")
            )
        rule_set = runtime.load_rules()
        run_due_rules(runtime, rule_set, T0)
        assert run_nurture_steps(runtime, rule_set, T0) == 1
        with runtime.engine.connect() as connection:
            steps = (
                connection.execute(select(AUDIT.c.params).where(AUDIT.c.action == "nurture_step"))
                .scalars()
                .all()
            )
            enrollment = connection.execute(select(NURTURE.c.next_step, NURTURE.c.status)).one()
        assert steps == [
            {
                "stream": "welcome",
                "step": 1,
                "template": "nurture_welcome",
                "email": "no email address",
                "skipped": "no email address",
            }
        ]
        assert tuple(enrollment) == (1, "active")
        assert [row for row in outbox(runtime.engine) if row[2] == "marketing"] == []

    def test_a_shortened_stream_completes_its_enrollments(
        self, runtime: Runtime, tmp_path: Path
    ) -> None:
        seed(runtime.engine)
        rule_set = runtime.load_rules()
        run_due_rules(runtime, rule_set, T0)
        run_nurture_steps(runtime, rule_set, T0)  # step 1 of 2 sent; step 2 due in 5 days
        folder = tmp_path / "shortened"
        shutil.copytree(runtime.rules_folder, folder)
        nurture = folder / "nurture.yaml"
        text = nurture.read_text(encoding="utf-8")
        nurture.write_text(
            text.replace("      - template: nurture_case_study\n        after: 5d\n", ""),
            encoding="utf-8",
        )
        shortened = runtime.load_rules(folder)
        assert len(shortened.streams["welcome"].steps) == 1
        assert run_nurture_steps(runtime, shortened, T0 + timedelta(days=5)) == 1
        with runtime.engine.connect() as connection:
            enrollment = connection.execute(select(NURTURE.c.status, NURTURE.c.exit_reason)).one()
        assert tuple(enrollment) == ("completed", "stream shortened")

    def test_every_time_rules_leave_no_firing_rows(self, runtime: Runtime) -> None:
        seed(runtime.engine)
        run_due_rules(runtime, runtime.load_rules(), T0)
        with runtime.engine.connect() as connection:
            firings = connection.execute(select(FIRINGS.c.rule_id, FIRINGS.c.subject_id)).all()
        assert [tuple(row) for row in firings] == [("nurture-new-leads", 2)]


def test_templates_change_only_with_a_validated_rule_set(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    """A template broken on disk after the rules loaded is not used: the loaded set's copy is."""
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates", templates)
    settings = make_settings(
        **{
            "paths.rules": str(REPO / "tests" / "fixtures" / "funnel_rules"),
            "paths.templates": str(templates),
            "calendar.timezone": "UTC",
            "attributes.leads": {"region": "string"},
        }
    )
    runtime = Runtime.build(engine, settings, SettableClock(T0))
    seed(engine)
    rule_set = runtime.load_rules()
    (templates / "mql_assigned.subject.txt").write_text(
        "{{ lead.no_such_field }}\n", encoding="utf-8"
    )
    outcomes = run_due_rules(runtime, rule_set, T0, only=["mql-assignment"])
    assert [(o.rule_id, o.fired, o.failed) for o in outcomes] == [("mql-assignment", 3, 0)]
    assert [subject for _to, subject, _c in outbox(engine)] == [
        "New MQL: Ann Lee (score 70)",
        "New MQL: Cy Po (score 65)",
    ]
    with pytest.raises(ProblemsError, match=r"mql_assigned\.subject\.txt:1: .*no_such_field"):
        runtime.load_rules()  # the next reload sees the broken file and is refused


def test_an_owner_acting_after_the_due_time_is_met_late(runtime: Runtime) -> None:
    """The reminder went out at 13:00; Rita calls at 14:00: the ladder stops, marked late."""
    seed(runtime.engine)
    rule_set = runtime.load_rules()
    run_due_rules(runtime, rule_set, T0, only=["mql-assignment"])
    run_sla_escalations(runtime, rule_set, T0.replace(hour=13))
    with runtime.engine.begin() as connection:
        connection.execute(
            insert(ACTIVITIES).values(
                external_id="late-call",
                lead_id=1,
                actor_id=2,
                type="call",
                occurred_at=T0.replace(hour=14),
                properties={},
                created_at=T0,
            )
        )
    run_sla_escalations(runtime, rule_set, T0.replace(hour=15))
    with runtime.engine.connect() as connection:
        timer = connection.execute(
            select(SLA_TIMERS.c.status, SLA_TIMERS.c.level, SLA_TIMERS.c.closed_at).where(
                SLA_TIMERS.c.lead_id == 1
            )
        ).one()
    assert tuple(timer) == ("met_late", 1, T0.replace(hour=14))


def test_idle_from_engaged_ignores_recent_activity(runtime: Runtime, tmp_path: Path) -> None:
    """With ``idle_from: engaged`` a deal active yesterday but engaged long ago is recycled."""
    seed(runtime.engine)
    with runtime.engine.begin() as connection:
        connection.execute(insert(DEALS), won_gtx_deals())
        connection.execute(
            insert(DEALS).values(
                external_id="D-busy",
                lead_id=1,
                stage="Engaging",
                outcome=None,
                owner_id=2,
                product="GTX",
                attributes={},
                created_at=T0,
                updated_at=T0,
                engaged_at=T0 - timedelta(days=25),
                last_activity_at=T0 - timedelta(days=1),
            )
        )
    folder = tmp_path / "rules"
    shutil.copytree(runtime.rules_folder, folder)
    recycling = folder / "recycling.yaml"
    recycling.write_text(
        recycling.read_text(encoding="utf-8").replace(
            "            min_deals: 20\n",
            "            min_deals: 20\n            idle_from: engaged\n",
        ),
        encoding="utf-8",
    )
    for rule_set, expected in (
        (runtime.load_rules(), []),
        (runtime.load_rules(folder), ["D-busy"]),
    ):
        run_due_rules(runtime, rule_set, T0, only=["recycle-idle-deals"], force=True)
        with runtime.engine.connect() as connection:
            recycled = (
                connection.execute(select(DEALS.c.external_id).where(DEALS.c.outcome == "recycled"))
                .scalars()
                .all()
            )
        assert recycled == expected
