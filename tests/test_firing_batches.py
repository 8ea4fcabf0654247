"""Firings written a batch at a time keep every promise a firing made alone.

Pins, on SQLite and PostgreSQL:
- a firing that fails half-way (its email cannot render) leaves nothing: the lead keeps its
  stage, no audit, outbox or SLA row is written, round robin does not move; the other firings
  of its batch land whole;
- capacity is counted inside the batch: the third MQL for a rep with room for two waits;
- should the database refuse the batch's statements (PostgreSQL: one lead's idempotency key is
  longer than its column), the firings are written one by one and only that lead's is lost;
- nurture steps of one batch count each other against the frequency cap.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from import_support import rows
from sqlalchemy import Engine, insert, select

from leadflow.clock import SettableClock
from leadflow.engine.nurture import run_nurture_steps
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.store.tables import LEADS, NURTURE, OUTBOX, REPS, ROTATIONS

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # Monday 09:00

MQL_RULE = """\
rules:
  - id: {rule_id}
    every: 5m
    reentry: every_time
    when:
      all:
        - {{field: score, at_least: 60}}
        - {{field: stage, equals: lead}}
    actions:
      - set_stage: mql
      - assign: {{pool: inbound, strategy: round_robin}}
      - notify: {{to: owner, template: {template}}}
      - start_sla: {{name: first_touch, within: 4h}}
"""


def write_files(tmp_path: Path, rules: str, template: str = "new_mql") -> tuple[Path, Path]:
    rules_dir, templates = tmp_path / "rules", tmp_path / "templates"
    rules_dir.mkdir()
    templates.mkdir()
    (rules_dir / "rules.yaml").write_text(rules, encoding="utf-8")
    (templates / f"{template}.subject.txt").write_text("New MQL {{ lead.name }}")
    # industry.title(): a lead without an industry cannot be rendered (None has no title()).
    (templates / f"{template}.txt").write_text(
        "{{ lead.name }} in {{ lead.attributes.industry.title() }} is yours.\n", encoding="utf-8"
    )
    for step in ("welcome", "case_study"):
        (templates / f"{step}.subject.txt").write_text(f"{step} {{{{ lead.name }}}}")
        (templates / f"{step}.txt").write_text("Hello {{ lead.name }}\n")
    return rules_dir, templates


def runtime_for(
    engine: Engine,
    make_settings: Any,
    tmp_path: Path,
    rules: str,
    template: str = "new_mql",
    **overrides: Any,
) -> Runtime:
    rules_dir, templates = write_files(tmp_path, rules, template)
    settings = make_settings(
        **{
            "paths.rules": str(rules_dir),
            "paths.templates": str(templates),
            "calendar.timezone": "UTC",
            "attributes.leads": {"industry": "string"},
            **overrides,
        }
    )
    return Runtime.build(engine, settings, SettableClock(T0))


def seed(engine: Engine, leads: list[dict[str, Any]], capacity: int | None = None) -> None:
    old = T0 - timedelta(days=30)
    with engine.begin() as connection:
        connection.execute(
            insert(REPS),
            [
                {
                    "id": index,
                    "external_id": f"r{index}",
                    "name": f"Rep {index}",
                    "email": f"rep{index}@example.com",
                    "pools": ["inbound"],
                    "capacity": capacity,
                    "active": True,
                    "timezone": "UTC",
                    "created_at": old,
                    "updated_at": old,
                }
                for index in (1, 2)
            ],
        )
        connection.execute(
            insert(LEADS),
            [
                {
                    "id": index,
                    "external_id": lead.get("external_id", f"L{index}"),
                    "email": f"lead{index}@example.com",
                    "name": f"Lead {index}",
                    "score": 70,
                    "stage": "lead",
                    "stage_entered_at": old,
                    "attributes": lead.get("attributes", {"industry": "software"}),
                    "unsubscribed": False,
                    "do_not_email": False,
                    "hard_bounced": False,
                    "created_at": old,
                    "updated_at": old,
                }
                for index, lead in enumerate(leads, start=1)
            ],
        )


def leads(engine: Engine) -> list[tuple[Any, ...]]:
    return rows(engine, "leads", "external_id", "stage", "owner_id")


def audit(engine: Engine) -> list[tuple[Any, ...]]:
    return rows(engine, "audit_log", "lead_id", "action")


def outbox(engine: Engine) -> list[tuple[Any, ...]]:
    return rows(engine, "outbox", "lead_id", "recipient", "subject")


def timers(engine: Engine) -> list[tuple[Any, ...]]:
    return sorted(rows(engine, "sla_timers", "lead_id", "owner_id", "status"))


MQL_AUDIT = ["stage_changed", "assigned", "email_queued", "sla_started"]


class TestAFiringThatFails:
    def test_leaves_nothing_and_its_batch_lands(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        runtime = runtime_for(
            engine, make_settings, tmp_path, MQL_RULE.format(rule_id="mql", template="new_mql")
        )
        seed(engine, [{}, {"attributes": {}}, {}, {}])  # L2 has no industry
        (outcome,) = run_due_rules(runtime, runtime.load_rules(), T0)
        assert (outcome.matched, outcome.fired, outcome.failed) == (4, 3, 1)
        # Round robin went r1, r2, r1: L2's failed firing did not take a turn.
        assert leads(engine) == [
            ("L1", "mql", 1),
            ("L2", "lead", None),
            ("L3", "mql", 2),
            ("L4", "mql", 1),
        ]
        assert audit(engine) == [(lead, action) for lead in (1, 3, 4) for action in MQL_AUDIT]
        assert outbox(engine) == [
            (1, "rep1@example.com", "New MQL Lead 1"),
            (3, "rep2@example.com", "New MQL Lead 3"),
            (4, "rep1@example.com", "New MQL Lead 4"),
        ]
        assert timers(engine) == [(1, 1, "running"), (3, 2, "running"), (4, 1, "running")]
        with engine.connect() as connection:
            rotation = connection.execute(select(ROTATIONS.c.pool, ROTATIONS.c.last_rep_id)).all()
        assert [tuple(row) for row in rotation] == [("inbound", 1)]

    def test_capacity_is_counted_inside_the_batch(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        runtime = runtime_for(
            engine, make_settings, tmp_path, MQL_RULE.format(rule_id="mql", template="new_mql")
        )
        seed(engine, [{}, {}, {}, {}, {}], capacity=2)
        (outcome,) = run_due_rules(runtime, runtime.load_rules(), T0)
        assert (outcome.matched, outcome.fired, outcome.failed) == (5, 5, 0)
        assert leads(engine) == [
            ("L1", "mql", 1),
            ("L2", "mql", 2),
            ("L3", "mql", 1),
            ("L4", "mql", 2),
            ("L5", "mql", None),
        ]
        waiting = [row for row in audit(engine) if row[0] == 5]
        assert waiting == [
            (5, "stage_changed"),
            (5, "assignment_queued"),
            (5, "email_skipped"),
            (5, "sla_not_started"),
        ]
        assert [row[0] for row in outbox(engine)] == [1, 2, 3, 4]


class TestTheDatabaseRefusingOneFiring:
    @pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
    def test_only_that_firing_is_lost(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        rule_id, template = "m" * 100, "t" * 100
        rules = MQL_RULE.format(rule_id=rule_id, template=template)
        runtime = runtime_for(engine, make_settings, tmp_path, rules, template)
        # L2's email key (rule, lead, occasion, action) is over the column's 400 characters.
        seed(engine, [{}, {"external_id": "L2" + "y" * 198}, {}])
        (outcome,) = run_due_rules(runtime, runtime.load_rules(), T0)
        assert (outcome.matched, outcome.fired, outcome.failed) == (3, 2, 1)
        assert [(ext[:2], stage, owner) for ext, stage, owner in leads(engine)] == [
            ("L1", "mql", 1),
            ("L2", "lead", None),
            ("L3", "mql", 1),  # round robin moved for L2 in memory; it is not written back
        ]
        assert audit(engine) == [(lead, action) for lead in (1, 3) for action in MQL_AUDIT]
        assert [row[0] for row in outbox(engine)] == [1, 3]
        assert timers(engine) == [(1, 1, "running"), (3, 1, "running")]


STREAMS = """\
rules:
  - id: enrol
    every: 5m
    reentry: once
    when: {field: stage, equals: lead}
    actions:
      - enroll: welcome
      - enroll: tips
streams:
  - id: welcome
    allow_parallel: true
    steps:
      - {template: welcome, after: 0h}
  - id: tips
    allow_parallel: true
    steps:
      - {template: case_study, after: 0h}
"""


class TestNurtureStepsInOneBatch:
    def test_count_each_other_against_the_frequency_cap(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        runtime = runtime_for(
            engine,
            make_settings,
            tmp_path,
            STREAMS,
            **{
                "mail.frequency_cap": {"messages": 1, "window": "7d"},
                "mail.send_window": {"start": "00:00", "end": "00:00"},
            },
        )
        seed(engine, [{}, {}])
        rule_set = runtime.load_rules()
        (outcome,) = run_due_rules(runtime, rule_set, T0)
        assert outcome.fired == 2
        assert run_nurture_steps(runtime, rule_set, T0) == 4
        with engine.connect() as connection:
            sent = connection.execute(
                select(
                    OUTBOX.c.lead_id, OUTBOX.c.subject, OUTBOX.c.status, OUTBOX.c.status_reason
                ).order_by(OUTBOX.c.id)
            ).all()
            enrollments = connection.execute(
                select(NURTURE.c.lead_id, NURTURE.c.stream, NURTURE.c.status).order_by(NURTURE.c.id)
            ).all()
        cap = "frequency_cap: 1 marketing emails in the last 7d"
        assert [tuple(row) for row in sent] == [
            (1, "welcome Lead 1", "pending", None),
            (1, "case_study Lead 1", "suppressed", cap),
            (2, "welcome Lead 2", "pending", None),
            (2, "case_study Lead 2", "suppressed", cap),
        ]
        assert [tuple(row) for row in enrollments] == [
            (1, "welcome", "completed"),
            (1, "tips", "completed"),
            (2, "welcome", "completed"),
            (2, "tips", "completed"),
        ]
